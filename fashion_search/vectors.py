"""Unit vectors: every stage stores and compares L2-normalised float32 rows, so that cosine
similarity is a plain dot product everywhere."""

from __future__ import annotations

import numpy as np


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length, as float32. A zero or non-finite row has no direction and no
    similarity to anything, so it is refused rather than stored or compared."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2:
        raise ValueError(f"expected a 2-d array of row vectors, got shape {vectors.shape}")
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    bad = ~np.isfinite(norms[:, 0]) | (norms[:, 0] == 0)
    if bad.any():
        raise ValueError(f"{int(bad.sum())} vector(s) are zero or not finite")
    return vectors / norms


__all__ = ["l2_normalise"]
