"""Garments drawn over their photo: for ``fashion-search detect --draw`` and for eyeballing the
parser."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from fashion_search.garments import Garment

# Distinct, colour-blind-friendly hues (Okabe-Ito), cycled per garment.
PALETTE = [
    (230, 159, 0),
    (86, 180, 233),
    (0, 158, 115),
    (240, 228, 66),
    (0, 114, 178),
    (213, 94, 0),
    (204, 121, 167),
    (0, 0, 0),
]


def outline(mask: np.ndarray, width: int = 2) -> np.ndarray:
    """Pixels of ``mask`` within ``width`` pixels of its edge."""
    from scipy import ndimage

    return mask & ~ndimage.binary_erosion(mask, iterations=width)


def draw_garments(image: Image.Image, garments: Sequence[Garment]) -> Image.Image:
    canvas = image.convert("RGB").copy()
    pixels = np.asarray(canvas).copy()
    width = max(2, min(canvas.size) // 200)
    for i, garment in enumerate(garments):
        colour = np.array(PALETTE[i % len(PALETTE)], np.float32)
        if garment.mask is not None:
            inside = garment.mask
            pixels[inside] = (0.7 * pixels[inside] + 0.3 * colour).astype(np.uint8)
            pixels[outline(inside, width)] = colour.astype(np.uint8)
    canvas = Image.fromarray(pixels)
    draw = ImageDraw.Draw(canvas)
    for i, garment in enumerate(garments):
        colour = PALETTE[i % len(PALETTE)]
        x1, y1, x2, y2 = garment.box
        if garment.mask is None:
            draw.rectangle((x1, y1, x2 - 1, y2 - 1), outline=colour, width=width)
        text = f"{garment.label} {garment.score:.2f}"
        left, top, right, bottom = draw.textbbox((x1, y1), text)
        draw.rectangle((left - 2, top - 2, right + 2, bottom + 2), fill=colour)
        draw.text((x1, y1), text, fill=(255, 255, 255) if sum(colour) < 400 else (0, 0, 0))
    return canvas
