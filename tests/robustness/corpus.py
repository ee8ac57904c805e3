"""A corpus of broken and unusual image files, for the robustness suite.

    python -m tests.robustness.corpus OUT_DIR      # writes the files and corpus.json

Each entry says what the file is and what every entry point must make of it: ``photo`` (read and
searched like any photo) or ``refused`` (the documented error: a failed image in an index run,
``{"error": ...}`` from search and detect, a 4xx JSON error from the HTTP API). Nothing here is
third-party data: every file is drawn or assembled by this script.
"""

from __future__ import annotations

import io
import json
import struct
import sys
import zipfile
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image


@dataclass
class Entry:
    name: str  # file name in the corpus (its extension may lie on purpose)
    what: str
    expect: str  # "photo" or "refused"


def _photo(size: tuple[int, int] = (120, 160), seed: int = 0) -> Image.Image:
    """A garment-like picture: a coloured shape with texture on a light background."""
    rng = np.random.default_rng(seed)
    w, h = size
    pixels = np.full((h, w, 3), 235, np.uint8)
    colour = rng.integers(20, 220, 3)
    yy, xx = np.mgrid[0:h, 0:w]
    inside = ((xx - w / 2) / (w * 0.35)) ** 2 + ((yy - h / 2) / (h * 0.42)) ** 2 < 1
    texture = (np.sin(xx / 3.0) * 20).astype(int)[..., None]
    pixels[inside] = np.clip(colour + texture[inside], 0, 255)
    return Image.fromarray(pixels)


def _encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def _exif_orientation(value: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = value
    return _encode(_photo((96, 128), value), "JPEG", exif=exif.tobytes())


def _ycck() -> bytes:
    """A CMYK JPEG whose Adobe marker says YCCK (transform 2), as some print workflows write."""
    data = bytearray(_encode(_photo().convert("CMYK"), "JPEG"))
    at = data.find(b"Adobe")
    if at < 0:
        raise RuntimeError("Pillow wrote no Adobe marker")
    data[at + 11] = 2  # the transform byte: 0 CMYK, 1 YCbCr, 2 YCCK
    return bytes(data)


def _claims_more_rows() -> bytes:
    data = bytearray(_encode(_photo(), "JPEG"))
    at = data.find(b"\xff\xc0")
    data[at + 5 : at + 7] = struct.pack(">H", 4 * 160)
    return bytes(data)


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_bomb(side: int) -> bytes:
    """A small PNG that decodes to ``side`` x ``side`` grey pixels."""
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    row = b"\x00" + b"\x00" * side
    compressor = zlib.compressobj(9)
    body = b"".join(compressor.compress(row) for _ in range(min(side, 4096))) + compressor.flush()
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", body) + _png_chunk(b"IEND", b"")


def _zip() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("readme.txt", "not a photo")
    return out.getvalue()


def _animated_gif() -> bytes:
    frames = [_photo(seed=n).convert("P") for n in range(3)]
    return _encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def _multipage_tiff() -> bytes:
    pages = [_photo(seed=n) for n in range(3)]
    return _encode(pages[0], "TIFF", save_all=True, append_images=pages[1:])


def _palette_transparent() -> bytes:
    image = _photo().convert("P")
    return _encode(image, "PNG", transparency=0)


def _sixteen_bit() -> bytes:
    grey = np.asarray(_photo().convert("L"), np.uint16) * 257
    return _encode(Image.fromarray(grey.astype(np.uint16)), "PNG")


def _huge_flat() -> bytes:
    return _encode(Image.new("1", (20_000, 20_000), 1), "PNG", optimize=True)


def _polyglot() -> bytes:
    """A real JPEG with a ZIP archive after its end: both programs read it."""
    return _encode(_photo(), "JPEG") + _zip()


def _eps() -> bytes:
    return b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nnewpath 0 0 moveto 10 10 lineto stroke\n%%EOF\n"


MAKERS: list[tuple[Entry, Callable[[], bytes]]] = [
    (Entry("plain.jpg", "an ordinary JPEG photo", "photo"), lambda: _encode(_photo(), "JPEG")),
    (Entry("truncated.jpg", "a JPEG cut off halfway", "refused"), lambda: _encode(_photo(), "JPEG")[:700]),
    (Entry("zero-bytes.jpg", "an empty file", "refused"), lambda: b""),
    (Entry("png-named.jpg", "a PNG called .jpg", "photo"), lambda: _encode(_photo(), "PNG")),
    (Entry("jpeg-named.png", "a JPEG called .png", "photo"), lambda: _encode(_photo(), "JPEG")),
    (Entry("cmyk.jpg", "a CMYK JPEG", "photo"), lambda: _encode(_photo().convert("CMYK"), "JPEG")),
    (Entry("ycck.jpg", "a YCCK JPEG (Adobe transform 2)", "photo"), _ycck),
    (Entry("sixteen-bit.png", "a 16-bit greyscale PNG", "photo"), _sixteen_bit),
    (Entry("palette-transparent.png", "a palette PNG with a transparent colour", "photo"), _palette_transparent),
    (Entry("rgba.png", "a PNG with an alpha channel", "photo"), lambda: _encode(_photo().convert("RGBA"), "PNG")),
    (Entry("animated.gif", "an animated GIF of three frames", "photo"), _animated_gif),
    (Entry("multipage.tiff", "a TIFF of three pages", "photo"), _multipage_tiff),
    (Entry("one-pixel.png", "a 1x1 image", "photo"), lambda: _encode(Image.new("RGB", (1, 1), (200, 30, 30)), "PNG")),
    (Entry("huge-20000.png", "20000x20000 pixels, a small file", "refused"), _huge_flat),
    (Entry("bomb.png", "a decompression bomb: 60000x60000 pixels in a few KB", "refused"), lambda: _png_bomb(60_000)),
    *[
        (Entry(f"exif-orientation-{n}.jpg", f"EXIF orientation {n}", "photo"), lambda n=n: _exif_orientation(n))
        for n in range(1, 9)
    ],
    (Entry("grayscale.jpg", "a greyscale JPEG", "photo"), lambda: _encode(_photo().convert("L"), "JPEG")),
    (Entry("html.jpg", "an HTML page called .jpg", "refused"), lambda: b"<!doctype html><html><body>hi</body></html>"),
    (
        Entry("svg.jpg", "an SVG called .jpg", "refused"),
        lambda: b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>',
    ),
    (Entry("zip.jpg", "a ZIP archive called .jpg", "refused"), _zip),
    (Entry("polyglot.jpg", "a JPEG with a ZIP archive appended", "photo"), _polyglot),
    (Entry("eps.jpg", "an EPS (PostScript) file called .jpg", "refused"), _eps),
    (Entry("claims-more-rows.jpg", "a JPEG whose header claims 4x the rows it holds", "refused"), _claims_more_rows),
    (Entry("webp.webp", "a WebP photo", "photo"), lambda: _encode(_photo(), "WEBP")),
    (Entry("bmp.bmp", "a BMP photo", "photo"), lambda: _encode(_photo(), "BMP")),
    (Entry("garbage.jpg", "random bytes", "refused"), lambda: np.random.default_rng(1).bytes(4096)),
    (Entry("jpeg-header-only.jpg", "the first 20 bytes of a JPEG", "refused"), lambda: _encode(_photo(), "JPEG")[:20]),
]


def write_corpus(folder: str | Path) -> list[Entry]:
    """Write every corpus file into ``folder`` (and ``corpus.json`` listing them)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for entry, make in MAKERS:
        (folder / entry.name).write_bytes(make())
        entries.append(entry)
    (folder / "corpus.json").write_text(json.dumps([asdict(e) for e in entries], indent=1))
    return entries


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m tests.robustness.corpus OUT_DIR")
    written = write_corpus(sys.argv[1])
    print(f"{len(written)} files in {sys.argv[1]}")
