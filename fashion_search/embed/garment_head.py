"""The default embedder: a head trained on worn-to-shop pairs over EfficientNet-Lite2 features.

ImageNet features describe "what object is this" with colour mostly ignored, and a fixed-weight
colour histogram appended to them outweighed shape (docs/experiments/2026-12-01-garment-head.md).
The garment head is a small network, trained on photos of models paired with the product photo
of the top they wear (and on product types and colours), that maps the pooled backbone features
and the colour histogram together to one short vector where the same product comes first and
similar products next. The backbone stays the shipped ImageNet one: the head file records the
sha256 of the backbone it was trained on, and refuses another.

``fashion-search train embedder`` trains a head; a retailer's own (trained on its pairs) is
used with ``--embedder garment-head --embedder-option model_path=HEAD.onnx``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
from PIL import Image

from fashion_search.embed import Embedder
from fashion_search.embed.colour import ColourHistogramEmbedder
from fashion_search.embed.onnx_cnn import OnnxCnnEmbedder
from fashion_search.errors import ModelError, ModelNotFoundError, UsageError
from fashion_search.registry import EMBEDDERS, PathLike
from fashion_search.runtime import metadata_floats, model_metadata, onnx_session, sha256_file
from fashion_search.vectors import l2_normalise

HEAD_FILENAME = "garment_head.onnx"
DEFAULT_HEAD_PATH = Path(__file__).resolve().parent / "models" / HEAD_FILENAME
HEAD_INPUT = "features"
HEAD_OUTPUT = "embedding"
REGENERATE_HINT = (
    "regenerate it from a source checkout with: pip install -e '.[train]' && fashion-search train embedder "
    "--recipe fashion_search/embed/models/garment_head.recipe.toml"
)


class HeadInputs:
    """What the head reads for a crop: unit backbone features then the colour histogram (itself
    unit length) scaled by ``colour_weight``. Training and search both build it here."""

    def __init__(
        self,
        backbone_path: Optional[PathLike] = None,
        threads: Optional[int] = None,
        batch_size: int = 4,
        colour_weight: float = 0.5,
    ) -> None:
        self.backbone = OnnxCnnEmbedder(model_path=backbone_path, threads=threads, batch_size=batch_size)
        self.colour = ColourHistogramEmbedder()
        self.colour_weight = float(colour_weight)
        self.dim = self.backbone.dim + self.colour.dim

    def __call__(self, images: Sequence[Image.Image]) -> np.ndarray:
        images = list(images)
        backbone, colour = self.backbone.embed(images), self.colour.embed(images)
        return np.concatenate([backbone, self.colour_weight * colour], axis=1).astype(np.float32)

    def identity(self) -> dict[str, Any]:
        return {
            "colour_weight": self.colour_weight,
            "backbone": self.backbone.identity(),
            "colour": self.colour.identity(),
        }


@EMBEDDERS.register("garment-head")
class GarmentHeadEmbedder(Embedder):
    """Letterboxed crop -> EfficientNet-Lite2 GeM features + colour histogram -> trained head ->
    unit vector (the head's output size, 256 for the shipped one)."""

    name = "garment-head"

    def __init__(
        self,
        model_path: Optional[PathLike] = None,
        backbone_path: Optional[PathLike] = None,
        threads: Optional[int] = None,
        batch_size: int = 4,
    ) -> None:
        if batch_size < 1:
            raise UsageError(f"batch_size must be positive, not {batch_size!r}")
        self.model_path = Path(model_path) if model_path is not None else DEFAULT_HEAD_PATH
        if not self.model_path.is_file():
            raise ModelNotFoundError(f"garment head model not found: {self.model_path}; {REGENERATE_HINT}")
        self._session = onnx_session(self.model_path, threads)
        meta = model_metadata(self._session)
        colour_weight = float(metadata_floats(meta, "colour_weight", self.model_path, 1)[0])
        self.inputs = HeadInputs(backbone_path, threads, batch_size, colour_weight)
        self.backbone = self.inputs.backbone
        trained_on = meta.get("backbone_sha256", "")
        if trained_on != self.backbone.sha256:
            raise ModelError(
                f"{self.model_path} was trained on backbone features of sha256 {trained_on[:12] or 'unknown'}, "
                f"but the backbone {self.backbone.model_path} is {self.backbone.sha256[:12]}: retrain the head "
                "(fashion-search train embedder) or pass the backbone it was trained on as backbone_path"
            )
        model_input = self._session.get_inputs()[0]
        expected = self.inputs.dim
        if model_input.name != HEAD_INPUT or model_input.shape[1] != expected:
            raise ModelError(
                f"{self.model_path} must take {HEAD_INPUT!r} of width {expected}, not {model_input.name!r} "
                f"{model_input.shape}"
            )
        output = self._session.get_outputs()[0]
        if not isinstance(output.shape[1], int):
            raise ModelError(f"{self.model_path} must output vectors of a fixed size, not {output.shape}")
        self.dim = int(output.shape[1])
        self.sha256 = sha256_file(self.model_path)

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        images = list(images)
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.project(self.inputs(images))

    def project(self, features: np.ndarray) -> np.ndarray:
        """Unit vectors for rows of head input (see :class:`HeadInputs`)."""
        (out,) = self._session.run([HEAD_OUTPUT], {HEAD_INPUT: np.ascontiguousarray(features, dtype=np.float32)})
        return l2_normalise(out)

    def identity(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dim": self.dim,
            "model": self.model_path.name,
            "sha256": self.sha256,
            **self.inputs.identity(),
        }


__all__ = ["DEFAULT_HEAD_PATH", "GarmentHeadEmbedder", "HeadInputs"]
