"""Decoding images safely and deterministically, whatever their mode, orientation or format."""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import BinaryIO, Optional, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from fashion_search.errors import ImageError

# Names a catalog folder's images may have; what they hold is judged by content all the same.
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
# The formats decoded, by content (never by name), everywhere: CLI, index runs, uploads. Pillow
# knows many more, some through outside programs (EPS runs Ghostscript): none of them is a photo.
IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
# Above this, a file is treated as a decompression bomb rather than a photo.
MAX_PIXELS = 64_000_000

ImageSource = Union[str, os.PathLike, bytes, BinaryIO, Image.Image]


def _missing_jpeg_rows(img: Image.Image) -> bool:
    """Whether the bottom of a decoded JPEG is libjpeg's fill for data that is not there: rows of
    exact mid-grey (128 in every channel) below rows that are not, at least an eighth of the image
    and 16 rows. A file whose header claims more rows than it holds decodes so, without an error."""
    if img.mode not in ("L", "RGB") or img.height < 32:
        return False
    pixels = np.asarray(img)
    if not (pixels[-1] == 128).all():  # the usual case, decided on one row
        return False
    grey = (pixels == 128).reshape(img.height, -1).all(axis=1)
    if grey.all():  # a flat grey picture, not a truncated one
        return False
    tail = int(np.argmin(grey[::-1]))
    return tail >= max(16, img.height // 8)


def is_image_path(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit grey: scale to 8 bits from the actual range rather than clipping at 255
        arr = np.asarray(img, dtype=np.float64)
        hi = arr.max() if arr.size else 0.0
        scale = 255.0 / hi if hi > 255 else 1.0
        return Image.fromarray(np.clip(arr * scale, 0, 255).astype(np.uint8), "L").convert("RGB")
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 1.0)
        arr = (arr - lo) / (hi - lo or 1.0) * 255.0
        return Image.fromarray(arr.astype(np.uint8), "L").convert("RGB")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # Transparent areas become white, like the product-shot backgrounds the catalog has.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def load_image(
    source: ImageSource, max_pixels: int = MAX_PIXELS, draft: Optional[tuple[int, int]] = None
) -> Image.Image:
    """Decode ``source`` into an upright RGB image, or raise :class:`ImageError` saying why.

    ``draft`` asks a JPEG to decode at the smallest 1/2-1/8 scale that still covers that size
    (much faster for thumbnails); ``max_pixels`` then caps what is actually decoded.
    """
    if isinstance(source, Image.Image):
        img = source
    else:
        if isinstance(source, (bytes, bytearray)):
            if not source:
                raise ImageError("empty file")
            fp: object = io.BytesIO(source)
        elif isinstance(source, (str, os.PathLike)):
            path = Path(source)
            if not path.is_file():
                raise ImageError(f"no such file: {path}")
            if path.stat().st_size == 0:
                raise ImageError("empty file")
            fp = path
        else:
            fp = source
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                img = Image.open(fp, formats=IMAGE_FORMATS)  # type: ignore[arg-type]
                if draft is not None:
                    img.draft("RGB", draft)
                width, height = img.size
                if width * height > max_pixels:
                    raise ImageError(f"image too large: {width}x{height} pixels (limit {max_pixels:,})")
                img.load()  # decode now so that truncation is caught here, not later
                if img.format == "JPEG" and _missing_jpeg_rows(img):
                    raise ImageError(f"truncated JPEG: its header claims {width}x{height} pixels, its data ends sooner")
        except ImageError:
            raise
        except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageError(f"not a readable image: {exc}") from exc
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise ImageError(f"corrupt or truncated image: {exc}") from exc
        except Exception as exc:  # a plug-in's own error on a malformed file (found by scripts/fuzz.py)
            raise ImageError(f"corrupt image: {type(exc).__name__}: {exc}") from exc
    # The first frame (of a GIF, a TIFF) is the one decoded; counting frames would parse the rest
    # of the file, and a malformed later page raises from there.
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # a broken EXIF block should not cost us the picture
        pass
    if img.width < 1 or img.height < 1:
        raise ImageError("image has no pixels")
    try:
        return _to_rgb(img)
    except Exception as exc:
        raise ImageError(f"corrupt image: {type(exc).__name__}: {exc}") from exc


def image_format(data: bytes, max_pixels: int = MAX_PIXELS) -> str:
    """The format (as Pillow names it: ``JPEG``, ``PNG``...) of an encoded image that
    :func:`load_image` reads whole; :class:`ImageError` for anything else."""
    load_image(data, max_pixels)  # a full decode: truncation and bombs are refused here
    with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as img:
        return str(img.format)


def differs_from_border(rgb: np.ndarray, band: int, tolerance: float) -> tuple[np.ndarray, float]:
    """Pixels of an ``(h, w, 3)`` image whose colour differs from its border's median colour
    (the backdrop of a product shot), and the share of border pixels close to that median
    (how plain the backdrop is). Colours in 8-bit units; ``band`` is the border's width."""
    arr = np.asarray(rgb, dtype=np.int16)
    border = np.concatenate(
        [
            arr[:band].reshape(-1, 3),
            arr[-band:].reshape(-1, 3),
            arr[:, :band].reshape(-1, 3),
            arr[:, -band:].reshape(-1, 3),
        ]
    )
    background = np.median(border, axis=0)
    uniformity = float((np.abs(border - background).max(axis=1) <= tolerance).mean())
    return np.abs(arr - background).max(axis=2) > tolerance, uniformity
