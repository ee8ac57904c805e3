"""ImageNet EfficientNet-Lite2 features, served by onnxruntime on CPU: the backbone of the default
embedder (``garment_head.py``) and, with a colour histogram, the previous default.

The ONNX file ships as package data (see ``models/MODEL_CARD.md`` for provenance, licence and the
retrieval measurements behind its pooling), so searching needs neither torch nor a download.
The file records its input size and preprocessing in its metadata; they are read from there, so
a regenerated model with other statistics cannot silently mismatch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
from PIL import Image

from fashion_search.embed import Embedder
from fashion_search.embed.preprocess import to_tensor
from fashion_search.errors import ModelError, UsageError
from fashion_search.registry import EMBEDDERS, PathLike
from fashion_search.runtime import OnnxModel
from fashion_search.vectors import l2_normalise

MODEL_FILENAME = "efficientnet_lite2_features.onnx"
DEFAULT_MODEL_PATH = Path(__file__).resolve().parent / "models" / MODEL_FILENAME
REGENERATE_HINT = (
    "regenerate it from a source checkout with: pip install -e '.[train]' && fashion-search train export-embedder"
)


@EMBEDDERS.register("efficientnet-lite2")
class OnnxCnnEmbedder(OnnxModel, Embedder):
    """Letterboxed image -> EfficientNet-Lite2 pooled features -> unit vector (1280-d).

    ``flip=True`` also embeds the mirror image and averages the two descriptors, so that a
    garment photographed facing left matches one facing right. It doubles the cost.
    """

    name = "efficientnet-lite2"
    dim = 1280
    kind = "embedding model"
    default_path = DEFAULT_MODEL_PATH
    regenerate_hint = REGENERATE_HINT

    def __init__(
        self,
        model_path: Optional[PathLike] = None,
        threads: Optional[int] = None,
        batch_size: int = 4,
        flip: bool = False,
    ) -> None:
        # Small batches measured fastest per image on CPU (about 5.5 ms at 1-4 vs 6.9 ms at 16
        # on 2 cores): bigger ones only spill activations out of cache.
        if batch_size < 1:
            raise UsageError(f"batch_size must be positive, not {batch_size!r}")
        self.batch_size = batch_size
        self.flip = flip
        super().__init__(model_path, threads)
        model_input = self.session.get_inputs()[0]
        self._input_name = model_input.name
        self._output_name = self.session.get_outputs()[0].name
        height, width = model_input.shape[2], model_input.shape[3]
        if not (isinstance(height, int) and height == width):
            raise ModelError(f"{self.model_path} must take square input of a fixed size, not {model_input.shape}")
        output_dim = self.session.get_outputs()[0].shape[1]
        if output_dim != self.dim:
            raise ModelError(f"{self.model_path} outputs {output_dim}-d vectors, expected {self.dim}")
        self.image_size = int(self.metadata_floats("image_size", 1)[0])
        if self.image_size != height:
            raise ModelError(f"{self.model_path} records input size {self.image_size} but its graph takes {height}")
        self.mean = self.metadata_floats("mean", 3)
        self.std = self.metadata_floats("std", 3)
        fill = self.metadata_floats("letterbox_fill", 3)
        self.fill: tuple[int, int, int] = (int(fill[0]), int(fill[1]), int(fill[2]))
        self.pooling = self.metadata.get("pooling", "unknown")

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        images = list(images)
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = np.empty((len(images), self.dim), dtype=np.float32)
        for start in range(0, len(images), self.batch_size):
            chunk = images[start : start + self.batch_size]
            pixels = to_tensor(chunk, self.image_size, self.mean, self.std, self.fill)
            features = self._run(pixels)
            if self.flip:
                # Mirroring the letterboxed tensor matches letterboxing the mirrored image (the
                # canvas is centred, to within a pixel) and skips a second resize.
                features = (features + self._run(np.ascontiguousarray(pixels[..., ::-1]))) / 2
            out[start : start + len(chunk)] = features
        return l2_normalise(out)

    def _run(self, pixels: np.ndarray) -> np.ndarray:
        (features,) = self.session.run([self._output_name], {self._input_name: pixels})
        return features

    def identity(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dim": self.dim,
            **self.file_identity(),
            "input_size": self.image_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "letterbox_fill": list(self.fill),
            "pooling": self.pooling,
            "flip": self.flip,
        }


__all__ = ["DEFAULT_MODEL_PATH", "OnnxCnnEmbedder"]
