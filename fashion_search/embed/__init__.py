"""Embedders turn a garment crop into an L2-normalised feature vector."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Sequence

import numpy as np
from PIL import Image

from fashion_search.registry import DEFAULT_EMBEDDER, EMBEDDERS


class Embedder(ABC):
    """Maps RGB images to unit-length float32 vectors of a fixed dimension.

    Implementations must be deterministic (no random crop or flip) so that the same photo
    always gives the same vector, and must accept any aspect ratio.
    """

    #: registry name, recorded in the index so that search uses the same model
    name: str
    dim: int

    @abstractmethod
    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Return an array of shape ``(len(images), dim)``, float32, rows L2-normalised."""

    def identity(self) -> dict[str, Any]:
        """What must match between indexing and search for vectors to be comparable: the
        weights (by sha256) and every setting that changes the vectors. The index records it,
        and search refuses an index whose identity differs from the installed model's."""
        return {"name": self.name, "dim": self.dim}


def create_embedder(name: str = DEFAULT_EMBEDDER, **options: Any) -> Embedder:
    return EMBEDDERS.create(name, **options)


__all__ = ["Embedder", "create_embedder"]
