"""Garment detectors that need no learned model.

Catalog photos are mostly product shots on a plain background, so the item is whatever
differs from the background colour. When the border is not plain (street photos, scenes),
there is no safe way to tell the garment from its surroundings without a learned parser, so
the whole image is returned instead of a guess.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from fashion_search.garments import Garment, GarmentDetector, whole_image
from fashion_search.images import differs_from_border
from fashion_search.registry import DETECTORS


def _extent(profile: np.ndarray, min_count: float) -> tuple[int, int] | None:
    idx = np.flatnonzero(profile > min_count)
    if idx.size == 0:
        return None
    return int(idx[0]), int(idx[-1]) + 1


class ForegroundDetector(GarmentDetector):
    """Finds the main object of a product shot by its contrast with a plain background.

    Parameters are in 8-bit colour units and fractions of the image; the defaults were
    chosen on product shots (white, grey and coloured studio backgrounds).
    """

    name = "foreground"

    def __init__(
        self,
        work_size: int = 256,
        border_uniformity: float = 0.75,
        colour_tolerance: float = 28.0,
        min_area: float = 0.01,
        margin: float = 0.02,
    ) -> None:
        self.work_size = work_size
        self.border_uniformity = border_uniformity
        self.colour_tolerance = colour_tolerance
        self.min_area = min_area
        self.margin = margin

    def identity(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "work_size": self.work_size,
            "border_uniformity": self.border_uniformity,
            "colour_tolerance": self.colour_tolerance,
            "min_area": self.min_area,
            "margin": self.margin,
        }

    def foreground_mask(self, image: Image.Image) -> tuple[np.ndarray, float] | None:
        """Boolean mask at working resolution and the border's uniformity, or None when the
        background is not plain enough to separate the object from it."""
        small = image.copy()
        small.thumbnail((self.work_size, self.work_size), Image.Resampling.BILINEAR)
        arr = np.asarray(small)
        h, w = arr.shape[:2]
        if h < 8 or w < 8:
            return None
        mask, uniformity = differs_from_border(arr, band=max(1, min(h, w) // 64), tolerance=self.colour_tolerance)
        if uniformity < self.border_uniformity:
            return None
        return mask, uniformity

    def detect(self, image: Image.Image) -> list[Garment]:
        found = self.foreground_mask(image)
        if found is None:
            return [whole_image(image)]
        mask, uniformity = found
        h, w = mask.shape
        if mask.mean() < self.min_area:
            return [whole_image(image)]
        # Projection profiles ignore specks of dust or JPEG noise that a plain bounding box of
        # the mask would stretch to.
        rows = _extent(mask.sum(axis=1), max(1.0, 0.01 * w))
        cols = _extent(mask.sum(axis=0), max(1.0, 0.01 * h))
        if rows is None or cols is None:
            return [whole_image(image)]
        sx, sy = image.width / w, image.height / h
        pad_x, pad_y = self.margin * image.width, self.margin * image.height
        box = (
            int(max(0, np.floor(cols[0] * sx - pad_x))),
            int(max(0, np.floor(rows[0] * sy - pad_y))),
            int(min(image.width, np.ceil(cols[1] * sx + pad_x))),
            int(min(image.height, np.ceil(rows[1] * sy + pad_y))),
        )
        if box[2] - box[0] < 2 or box[3] - box[1] < 2:
            return [whole_image(image)]
        full_mask = (
            np.asarray(Image.fromarray(mask.astype(np.uint8) * 255, "L").resize(image.size, Image.Resampling.NEAREST))
            > 0
        )
        return [Garment(label="item", score=round(uniformity, 4), box=box, mask=full_mask)]


class WholeImageDetector(GarmentDetector):
    """Treats the whole photo as one garment: the baseline, and the choice for pre-cropped catalogs."""

    name = "whole-image"

    def detect(self, image: Image.Image) -> list[Garment]:
        return [whole_image(image)]


DETECTORS.register("foreground")(ForegroundDetector)
DETECTORS.register("whole-image")(WholeImageDetector)
