"""Embedders turn a garment crop into an L2-normalised feature vector."""
from __future__ import annotations

import hashlib
import os
from abc import ABC, abstractmethod
from typing import Sequence

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

    def describe(self) -> dict:
        """What must match between indexing and search for vectors to be comparable."""
        return {"name": self.name, "dim": self.dim}


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def sha256_file(path: str | os.PathLike) -> str:
    """Content hash of a weights or model file, for provenance records and index manifests."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def create_embedder(name: str = DEFAULT_EMBEDDER, **options: object) -> Embedder:
    return EMBEDDERS.create(name, **options)


__all__ = ["Embedder", "create_embedder", "l2_normalise", "sha256_file"]
