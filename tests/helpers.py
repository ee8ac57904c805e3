"""Stand-ins for the shipped models and synthetic product photos, shared by the tests.

Importing this module registers the stand-ins by name (``test-pixels``, ``test-slow-pixels``,
``test-colour-garments``), so that a test, or a CLI run in a subprocess, can choose them like
any other model.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from fashion_search.embed import Embedder
from fashion_search.errors import TextSearchError
from fashion_search.garments import Garment, GarmentDetector
from fashion_search.registry import DETECTORS, EMBEDDERS, TEXT_ENCODERS
from fashion_search.vectors import l2_normalise

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
# Colours the stand-in detector reads as garment classes.
COLOUR_CLASSES = {"skirt": (220, 20, 20), "top": (20, 20, 220), "footwear": (20, 200, 20), "knitwear": (200, 200, 20)}


class PixelEmbedder(Embedder):
    """A tiny deterministic embedder (a ``size`` x ``size`` colour thumbnail) so that pipeline
    tests run in milliseconds and do not depend on the shipped CNN."""

    name = "test-pixels"

    def __init__(self, size: int = 8) -> None:
        self.size = size
        self.dim = size * size * 3

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        if not images:
            return np.zeros((0, self.dim), np.float32)
        rows = [
            np.asarray(img.convert("RGB").resize((self.size, self.size), Image.Resampling.BILINEAR), np.float32).ravel()
            - 127.5
            for img in images
        ]
        return l2_normalise(np.stack(rows))

    def identity(self) -> dict[str, Any]:
        return {"name": self.name, "dim": self.dim, "size": self.size}


class SlowPixelEmbedder(PixelEmbedder):
    """Takes its time per batch, so that a test can kill an index run in the middle."""

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        time.sleep(0.3)
        return super().embed(images)


class ColourGarmentDetector(GarmentDetector):
    """A stand-in for the garment parser: pixels close to a class's colour are that garment, so
    tests control exactly which garments a photo holds."""

    name = "test-colour-garments"

    def detect(self, image: Image.Image) -> list[Garment]:
        rgb = np.asarray(image.convert("RGB"), np.int16)
        found = []
        for label, colour in COLOUR_CLASSES.items():
            mask = np.abs(rgb - np.array(colour)).max(axis=2) < 40
            if mask.sum() >= 4:
                rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
                box = (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)
                found.append(Garment(label=label, score=0.9, box=box, mask=mask))
        return sorted(found, key=lambda g: -g.mask.sum())


# Words the stand-in text encoder knows, as the colour of a product shot.
WORD_COLOURS = {"red": (220, 20, 20), "blue": (20, 20, 220), "green": (20, 200, 20), "black": (10, 10, 10)}


class WordsEncoder:
    """A stand-in text encoder for indexes of ``test-pixels``: a colour word becomes the vector of
    a product shot of that colour; several words, the mean of theirs."""

    name = "test-words"

    def __init__(self, size: int = 8) -> None:
        self.pixels = PixelEmbedder(size)
        self.dim = self.pixels.dim

    def identity(self) -> dict[str, Any]:
        return {"name": self.name, "embedder": "test-pixels"}

    def check_embedder(self, embedder_identity: dict[str, Any], where: str) -> None:
        if embedder_identity.get("name") != "test-pixels":
            raise TextSearchError(f"the index at {where} was not built by test-pixels")

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        from fashion_search.embed.text_encoder import check_text

        rows = []
        for text in texts:
            colours = [WORD_COLOURS[w] for w in check_text(text).lower().split() if w in WORD_COLOURS]
            # What the foreground detector cuts out of a product shot: the colour alone.
            images = [Image.new("RGB", (32, 40), c) for c in colours] or [Image.new("RGB", (32, 40), (128, 128, 128))]
            rows.append(self.pixels.embed(images).mean(axis=0))
        return l2_normalise(np.stack(rows))


TEXT_ENCODERS.register("test-words")(WordsEncoder)
EMBEDDERS.register("test-pixels")(PixelEmbedder)
EMBEDDERS.register("test-slow-pixels")(SlowPixelEmbedder)
DETECTORS.register("test-colour-garments")(ColourGarmentDetector)


def eventually(condition: Any, timeout: float = 30.0) -> bool:
    """Whether ``condition()`` becomes true, asked every few milliseconds. The timeout only
    ends a test that fails (a condition that never holds); a passing one never reaches it."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def load_script(name: str) -> Any:
    """``scripts/<name>.py`` as a module: the research scripts are not part of the package."""
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_product(
    colour: tuple[int, int, int],
    size: tuple[int, int] = (64, 80),
    shape: str = "box",
    background: tuple[int, int, int] = (255, 255, 255),
) -> Image.Image:
    """A synthetic product shot: a coloured shape on a plain background."""
    image = Image.new("RGB", size, background)
    w, h = size
    pixels = image.load()
    for y in range(h // 5, 4 * h // 5):
        for x in range(w // 4, 3 * w // 4):
            if shape == "box" or (shape == "stripes" and (y // 4) % 2 == 0):
                pixels[x, y] = colour
    return image


# A `fashion-search` command in a child process that knows the stand-in models above.
SERVE_WITH_TEST_MODELS = "import sys, tests.helpers; from fashion_search.cli import main; sys.exit(main(sys.argv[1:]))"


def start_serving(db: str, *options: str, env: dict | None = None, stderr: Any = None) -> tuple[Any, str]:
    """``fashion-search serve --db DB OPTIONS`` (stand-in models known) on a free loopback port,
    in a child process; the process and its URL, once its health check answers."""
    import os
    import socket
    import subprocess
    import sys

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = Path(__file__).resolve().parents[1]
    process = subprocess.Popen(
        [sys.executable, "-c", SERVE_WITH_TEST_MODELS, "serve", "--db", str(db), "--port", str(port), *options],
        cwd=root,
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=stderr if stderr is not None else subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        if process.poll() is not None:
            message = process.communicate()[1] if stderr is not None else b""
            raise AssertionError(f"the server exited at start-up: {(message or b'').decode()[-2000:]}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("the server did not start within 120 s")
        time.sleep(0.2)
