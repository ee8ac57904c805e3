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


# Label values of training maps that stand for "any of these parser classes" (LIP labels that do
# not tell lookalike classes apart), numbered after the parser's classes and below ``IGNORE``.
def _label_sets() -> dict[int, tuple[str, ...]]:
    from fashion_search.garments.taxonomy import LIP_TO_CLASSES

    multiple = sorted({classes for classes in LIP_TO_CLASSES.values() if classes and len(classes) > 1})
    return {200 + i: classes for i, classes in enumerate(multiple)}


LABEL_SETS: dict[int, tuple[str, ...]] = _label_sets()


def lip_lookup_table() -> list[int]:
    """A 256-entry table from LIP label ids to parser class ids, to a ``LABEL_SETS`` value where
    LIP's label covers several classes, ``IGNORE`` where it covers none."""
    from fashion_search.garments.taxonomy import IGNORE, LIP_LABELS, LIP_TO_CLASSES, class_index

    codes = {classes: code for code, classes in LABEL_SETS.items()}
    table = [IGNORE] * 256
    for label_id, name in enumerate(LIP_LABELS):
        classes = LIP_TO_CLASSES[name]
        if classes:
            table[label_id] = codes[classes] if len(classes) > 1 else class_index(classes[0])
    return table


def viton_ids(viton_root: Path, exclude: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """VITON's ids in ``pairs.csv`` order, minus ``exclude`` (the validation split)."""
    listing = viton_root / "pairs.csv"
    if not listing.is_file():
        raise FileNotFoundError(f"{viton_root} is not a VITON folder: {listing} is missing")
    with open(listing, newline="", encoding="utf-8") as handle:
        return [row["id"] for row in csv.DictReader(handle) if row["id"] not in exclude]


def load_viton_photo(viton_root: Path, photo_id: str, table: list[int]) -> tuple[Image.Image, Image.Image]:
    """A VITON model photo and its parse map mapped through ``table`` (:func:`lip_lookup_table`)."""
    photo = Image.open(viton_root / "photos" / f"{photo_id}.jpg").convert("RGB")
    with Image.open(viton_root / "parse" / f"{photo_id}.png") as parse:
        # Palette PNGs: the label ids are the palette indices, not the colours they show as.
        labels = Image.fromarray(np.asarray(table, np.uint8)[np.asarray(parse)], "L")
    if labels.size != photo.size:
        labels = labels.resize(photo.size, Image.NEAREST)
    return photo, labels
