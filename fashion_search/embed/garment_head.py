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
from fashion_search.errors import ModelError, UsageError
from fashion_search.registry import EMBEDDERS, PathLike
from fashion_search.runtime import OnnxModel
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
class GarmentHeadEmbedder(OnnxModel, Embedder):
    """Letterboxed crop -> EfficientNet-Lite2 GeM features + colour histogram -> trained head ->
    unit vector (the head's output size, 256 for the shipped one)."""

    name = "garment-head"
    kind = "garment head model"
    default_path = DEFAULT_HEAD_PATH
    regenerate_hint = REGENERATE_HINT

    def __init__(
        self,
        model_path: Optional[PathLike] = None,
        backbone_path: Optional[PathLike] = None,
        threads: Optional[int] = None,
        batch_size: int = 4,
    ) -> None:
        if batch_size < 1:
            raise UsageError(f"batch_size must be positive, not {batch_size!r}")
        super().__init__(model_path, threads)
        colour_weight = float(self.metadata_floats("colour_weight", 1)[0])
        self.inputs = HeadInputs(backbone_path, threads, batch_size, colour_weight)
        self.backbone = self.inputs.backbone
        trained_on = self.metadata.get("backbone_sha256", "")
        if trained_on != self.backbone.sha256:
            raise ModelError(
                f"{self.model_path} was trained on backbone features of sha256 {trained_on[:12] or 'unknown'}, "
                f"but the backbone {self.backbone.model_path} is {self.backbone.sha256[:12]}: retrain the head "
                "(fashion-search train embedder) or pass the backbone it was trained on as backbone_path"
            )
        model_input = self.session.get_inputs()[0]
        expected = self.inputs.dim
        if model_input.name != HEAD_INPUT or model_input.shape[1] != expected:
            raise ModelError(
                f"{self.model_path} must take {HEAD_INPUT!r} of width {expected}, not {model_input.name!r} "
                f"{model_input.shape}"
            )
        output = self.session.get_outputs()[0]
        if not isinstance(output.shape[1], int):
            raise ModelError(f"{self.model_path} must output vectors of a fixed size, not {output.shape}")
        self.dim = int(output.shape[1])

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        images = list(images)
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.project(self.inputs(images))

    def project(self, features: np.ndarray) -> np.ndarray:
        """Unit vectors for rows of head input (see :class:`HeadInputs`)."""
        (out,) = self.session.run([HEAD_OUTPUT], {HEAD_INPUT: np.ascontiguousarray(features, dtype=np.float32)})
        return l2_normalise(out)

    def identity(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dim": self.dim,
            **self.file_identity(),
            **self.inputs.identity(),
        }


__all__ = ["DEFAULT_HEAD_PATH", "GarmentHeadEmbedder", "HeadInputs"]
