"""Readers for the labelled data sets the parser is trained and measured on (torch-free, so
evaluation runs in the runtime install)."""

from __future__ import annotations

import csv
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from fashion_search.images import differs_from_border


def ccp_names(ccp_root: Path) -> dict[int, str]:
    with open(ccp_root / "labels.csv", newline="") as handle:
        return {int(row["id"]): row["name"] for row in csv.DictReader(handle)}


def ccp_ids(split: str) -> list[int]:
    """The fixed split the model card reports: photos 1-700 train, 701-800 validation."""
    return list(range(1, 701)) if split == "train" else list(range(701, 801))


def load_ccp_photo(ccp_root: Path, photo_id: int, table: list[int]) -> tuple[Image.Image, Image.Image]:
    """A CCP photo and its labels mapped through ``table`` (CCP id -> parser class id)."""
    photo = Image.open(ccp_root / "photos" / f"{photo_id:04d}.jpg").convert("RGB")
    labels = Image.open(ccp_root / "masks" / f"{photo_id:04d}.png").point(table)
    if labels.size != photo.size:  # a few masks are a pixel off their photo
        labels = labels.resize(photo.size, Image.NEAREST)
    return photo, labels


def skin_share(rgb: np.ndarray, mask: np.ndarray) -> float:
    """Share of ``mask`` pixels with a skin-like colour (the classic YCrCb box rule): a product
    worn by a model is a street photo in disguise, not a product shot."""
    ycbcr = np.asarray(Image.fromarray(rgb).convert("YCbCr"), dtype=np.int16)
    y, cb, cr = ycbcr[..., 0], ycbcr[..., 1], ycbcr[..., 2]
    skin = (y > 60) & (cb >= 85) & (cb <= 130) & (cr >= 135) & (cr <= 175)
    return float((skin & mask).sum() / max(1, mask.sum()))


def product_mask(rgb: np.ndarray) -> tuple[np.ndarray, float]:
    from scipy import ndimage

    h, w = rgb.shape[:2]
    mask, uniformity = differs_from_border(rgb, band=max(1, min(h, w) // 64), tolerance=20.0)
    mask = ndimage.binary_opening(mask, iterations=1)
    mask = ndimage.binary_fill_holes(ndimage.binary_closing(mask, iterations=3))
    return mask, uniformity


def is_kaggle_holdout(product_id: str) -> bool:
    """Every fifth product (by a stable hash) is kept out of training for evaluation."""
    return zlib.crc32(product_id.encode()) % 5 == 0
