"""The default embedder: ImageNet EfficientNet-Lite2 features, served by onnxruntime on CPU.

The ONNX file ships as package data (see ``models/MODEL_CARD.md`` for provenance, licence and the
retrieval measurements behind its pooling), so searching needs neither torch nor a download.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from fashion_search.embed import Embedder, l2_normalise
from fashion_search.embed.preprocess import (
    EFFICIENTNET_LITE_MEAN,
    EFFICIENTNET_LITE_STD,
    WHITE,
    to_tensor,
)
from fashion_search.registry import EMBEDDERS

MODEL_FILENAME = "efficientnet_lite2_features.onnx"
DEFAULT_MODEL_PATH = Path(__file__).resolve().parent / "models" / MODEL_FILENAME
REGENERATE_HINT = (
    "regenerate it from a source checkout with: pip install -e '.[export]' && "
    "python scripts/export_embedder.py"
)


class ModelNotFoundError(FileNotFoundError):
    """The ONNX model file is missing (e.g. a checkout without the binary)."""


def default_threads() -> int:
    """CPU cores this process may use: more intra-op threads than that only adds contention."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _floats(text: str | None, default: Sequence[float]) -> tuple[float, ...]:
    if not text:
        return tuple(default)
    return tuple(float(v) for v in text.split(","))


@EMBEDDERS.register("efficientnet-lite2")
class OnnxCnnEmbedder(Embedder):
    """Letterboxed image -> EfficientNet-Lite2 pooled features -> unit vector (1280-d).

    ``flip=True`` also embeds the mirror image and averages the two descriptors, so that a
    garment photographed facing left matches one facing right. It doubles the cost.
    """

    name = "efficientnet-lite2"
    dim = 1280

    def __init__(
        self,
        model_path: str | os.PathLike | None = None,
        threads: int | str | None = None,
        batch_size: int | str = 4,
        flip: bool | str = False,
    ) -> None:
        # Options may arrive as strings from a command line or config file.
        # Small batches measured fastest per image on CPU (about 5.5 ms at 1-4 vs 6.9 ms at 16
        # on 2 cores): bigger ones only spill activations out of cache.
        self.batch_size = int(batch_size)
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be positive, not {batch_size!r}")
        self.flip = flip if isinstance(flip, bool) else str(flip).lower() in ("1", "true", "yes", "on")
        self.threads = int(threads) if threads not in (None, "") else default_threads()
        self.model_path = Path(model_path) if model_path is not None else DEFAULT_MODEL_PATH
        if not self.model_path.is_file():
            raise ModelNotFoundError(
                f"embedding model not found: {self.model_path}; {REGENERATE_HINT}"
            )

        import onnxruntime as ort  # imported here so that listing embedders stays cheap

        from fashion_search.embed.runtime import no_spinning

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        # One graph runs at a time; parallelism comes from inside each convolution.
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # warnings about unused initializers are noise to users
        no_spinning(options)
        self._session = ort.InferenceSession(
            str(self.model_path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        model_input = self._session.get_inputs()[0]
        self._input_name = model_input.name
        self._output_name = self._session.get_outputs()[0].name
        height, width = model_input.shape[2], model_input.shape[3]
        if not (isinstance(height, int) and height == width):
            raise ValueError(
                f"{self.model_path} must take square input of a fixed size, not {model_input.shape}"
            )
        self.image_size = height
        output_dim = self._session.get_outputs()[0].shape[1]
        if output_dim != self.dim:
            raise ValueError(f"{self.model_path} outputs {output_dim}-d vectors, expected {self.dim}")

        # The exporter records the preprocessing the model was made for; use it, so that a
        # regenerated model with different statistics cannot silently mismatch.
        meta = self._session.get_modelmeta().custom_metadata_map
        self.mean = _floats(meta.get("fashion_search.mean"), EFFICIENTNET_LITE_MEAN)
        self.std = _floats(meta.get("fashion_search.std"), EFFICIENTNET_LITE_STD)
        fill = _floats(meta.get("fashion_search.letterbox_fill"), WHITE)
        self.fill: tuple[int, int, int] = (int(fill[0]), int(fill[1]), int(fill[2]))
        self.pooling = meta.get("fashion_search.pooling", "unknown")

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
        (features,) = self._session.run([self._output_name], {self._input_name: pixels})
        return features

    def describe(self) -> dict:
        return {
            "name": self.name,
            "dim": self.dim,
            "pooling": self.pooling,
            "image_size": self.image_size,
            "flip": self.flip,
        }


__all__ = ["DEFAULT_MODEL_PATH", "ModelNotFoundError", "OnnxCnnEmbedder", "default_threads"]
