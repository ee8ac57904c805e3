"""Garment detection: where the clothing items are in a photo, and what they are."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
from PIL import Image

from fashion_search.registry import DEFAULT_DETECTOR, DETECTORS


@dataclass
class Garment:
    """One item found in a photo.

    ``box`` is ``(x1, y1, x2, y2)`` in pixels of the upright image, x2/y2 exclusive.
    ``mask`` (optional) is a boolean array of the image's shape, True on the item.
    """

    label: str
    score: float
    box: tuple[int, int, int, int]
    mask: Optional[np.ndarray] = field(default=None, repr=False)

    def crop(self, image: Image.Image, background: tuple[int, int, int] | None = None) -> Image.Image:
        """The item cut out of ``image``; with ``background``, pixels outside the mask are painted over."""
        x1, y1, x2, y2 = self.box
        if background is not None and self.mask is not None:
            canvas = Image.new("RGB", image.size, background)
            canvas.paste(image, (0, 0), Image.fromarray(self.mask.astype(np.uint8) * 255, "L"))
            image = canvas
        return image.crop((x1, y1, x2, y2))


class GarmentDetector(ABC):
    """Finds the garments in an image. Must return at least one garment for any image:
    when it finds nothing specific, the whole image is the garment."""

    name: str

    @abstractmethod
    def detect(self, image: Image.Image) -> list[Garment]: ...

    def identity(self) -> dict[str, Any]:
        """What must match between indexing and search for garments to be found alike: the
        weights (by sha256), the classes, and every setting that changes the garments. The index
        records it, and search refuses an index whose identity differs from the installed one."""
        return {"name": self.name}

    def for_parallel_use(self) -> "GarmentDetector":
        """This detector as used from several threads at once (indexing detects in a thread
        pool). A model that spreads one call over every core should return a copy that keeps to
        one: threads fighting over two cores cost the parser 20% of its indexing throughput."""
        return self


def whole_image(image: Image.Image, label: str = "image", score: float = 1.0) -> Garment:
    return Garment(label=label, score=score, box=(0, 0, image.width, image.height))


def encode_mask(mask: np.ndarray) -> dict:
    """A boolean mask as uncompressed run-length encoding, row-major: ``{"size": [h, w],
    "counts": [...]}`` with runs alternating False/True, starting with False (the first run may
    be 0). Compact for garment-shaped masks and decodable in a few lines of JavaScript."""
    flat = np.asarray(mask, dtype=bool).ravel()
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts.insert(0, 0)
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": [int(c) for c in counts]}


def decode_mask(rle: dict) -> np.ndarray:
    height, width = rle["size"]
    counts = np.asarray(rle["counts"], dtype=np.int64)
    if counts.sum() != height * width:
        raise ValueError(f"mask runs cover {counts.sum()} pixels, not {height}x{width}")
    values = np.arange(len(counts)) % 2 == 1
    return np.repeat(values, counts).reshape(height, width)


def create_detector(name: str = DEFAULT_DETECTOR, **options: object) -> GarmentDetector:
    return DETECTORS.create(name, **options)


__all__ = ["Garment", "GarmentDetector", "create_detector", "decode_mask", "encode_mask", "whole_image"]
