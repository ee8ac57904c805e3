"""Test fixtures shared by the unit tests next to each module and the end-to-end tests."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pytest
from PIL import Image

from fashion_search.embed import Embedder, l2_normalise
from fashion_search.garments import GarmentDetector
from fashion_search.registry import DETECTORS, EMBEDDERS

SHARED_DATA = Path(__file__).resolve().parent.parent / "shared" / "data"


class PixelEmbedder(Embedder):
    """A tiny deterministic embedder (an 8x8 colour thumbnail) so that pipeline tests run in
    milliseconds and do not depend on the shipped CNN."""

    name = "test-pixels"
    dim = 8 * 8 * 3

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        if not images:
            return np.zeros((0, self.dim), np.float32)
        rows = [np.asarray(img.convert("RGB").resize((8, 8), Image.Resampling.BILINEAR), np.float32).ravel() - 127.5 for img in images]
        return l2_normalise(np.stack(rows))


@EMBEDDERS.register("test-pixels")
def _pixels(**options: object) -> Embedder:
    return PixelEmbedder()


class SlowPixelEmbedder(PixelEmbedder):
    """Takes its time per batch, so that a test can kill an index run in the middle."""

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        import time

        time.sleep(0.3)
        return super().embed(images)


@EMBEDDERS.register("test-slow-pixels")
def _slow_pixels(**options: object) -> Embedder:
    return SlowPixelEmbedder()


def make_product(colour: tuple[int, int, int], size: tuple[int, int] = (64, 80), shape: str = "box",
                 background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """A synthetic product shot: a coloured shape on a plain background."""
    image = Image.new("RGB", size, background)
    w, h = size
    pixels = image.load()
    for y in range(h // 5, 4 * h // 5):
        for x in range(w // 4, 3 * w // 4):
            if shape == "box" or (shape == "stripes" and (y // 4) % 2 == 0):
                pixels[x, y] = colour
    return image


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data set not found at {SHARED_DATA} (it is provided beside the checkout in CI)")
    return SHARED_DATA


@pytest.fixture
def tiny_catalog(tmp_path: Path) -> Path:
    """Folder-layout catalog: 2 categories, 4 products, one of them with two views."""
    root = tmp_path / "catalog"
    products = {
        ("Tops", "red-1"): [make_product((220, 20, 20)), make_product((200, 30, 30), size=(70, 90))],
        ("Tops", "blue-1"): [make_product((20, 20, 220))],
        ("Skirts", "green-1"): [make_product((20, 200, 20), shape="stripes")],
        ("Skirts", "black-1"): [make_product((10, 10, 10))],
    }
    for (category, pid), images in products.items():
        folder = root / category / pid
        folder.mkdir(parents=True)
        for n, image in enumerate(images):
            image.save(folder / f"view{n}.jpg" if n == 0 else folder / f"VIEW{n}.PNG")
    return root


COLOUR_CLASSES = {"skirt": (220, 20, 20), "top": (20, 20, 220), "footwear": (20, 200, 20), "knitwear": (200, 200, 20)}


class ColourGarmentDetector(GarmentDetector):
    """A stand-in for the garment parser: pixels close to a class's colour are that garment, so
    tests control exactly which garments a photo holds."""

    name = "test-colour-garments"

    def detect(self, image: Image.Image):
        from fashion_search.garments import Garment

        rgb = np.asarray(image.convert("RGB"), np.int16)
        found = []
        for label, colour in COLOUR_CLASSES.items():
            mask = np.abs(rgb - np.array(colour)).max(axis=2) < 40
            if mask.sum() >= 4:
                rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
                box = (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)
                found.append(Garment(label=label, score=0.9, box=box, mask=mask))
        return sorted(found, key=lambda g: -g.mask.sum())

    def describe(self) -> dict:
        return {"name": self.name}


@DETECTORS.register("test-colour-garments")
def _colour_garments(**options: object):
    return ColourGarmentDetector()
