from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from fashion_search.embed.preprocess import (
    EFFICIENTNET_LITE_MEAN,
    EFFICIENTNET_LITE_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    fitted_size,
    letterbox,
    to_tensor,
)

RED = (220, 20, 20)


def content_box(img: Image.Image) -> tuple[int, int, int, int]:
    """Bounding box (left, top, right, bottom) of the non-white pixels."""
    pixels = np.asarray(img).astype(int)
    mask = (pixels < 250).any(axis=2)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return cols[0], rows[0], cols[-1] + 1, rows[-1] + 1


@pytest.mark.parametrize("width,height", [(200, 100), (100, 200), (300, 100), (64, 64)])
def test_letterbox_keeps_aspect_ratio_and_centres(width: int, height: int) -> None:
    out = letterbox(Image.new("RGB", (width, height), RED), 64)
    assert out.size == (64, 64) and out.mode == "RGB"
    left, top, right, bottom = content_box(out)
    box_w, box_h = right - left, bottom - top
    assert max(box_w, box_h) == 64
    assert box_w / box_h == pytest.approx(width / height, rel=0.05)
    # centred: the margins on opposite sides differ by at most one pixel
    assert abs(left - (64 - right)) <= 1 and abs(top - (64 - bottom)) <= 1


def test_letterbox_pads_with_white() -> None:
    out = np.asarray(letterbox(Image.new("RGB", (200, 100), RED), 64))
    assert (out[0, :] == 255).all() and (out[-1, :] == 255).all()
    assert tuple(out[32, 32]) == RED


@pytest.mark.parametrize("width,height", [(1, 1), (5000, 1), (1, 5000), (3, 2000), (2, 2)])
def test_degenerate_sizes(width: int, height: int) -> None:
    out = letterbox(Image.new("RGB", (width, height), RED), 32)
    assert out.size == (32, 32)
    assert (np.asarray(out) != 255).any(), "a thin image must still leave visible content"


def test_fitted_size() -> None:
    assert fitted_size(762, 1100, 260) == (180, 260)
    assert fitted_size(5000, 1, 260) == (260, 1)
    with pytest.raises(ValueError):
        fitted_size(0, 10, 260)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK"])
def test_non_rgb_modes_are_accepted(mode: str) -> None:
    img = Image.new("RGB", (40, 30), RED).convert(mode)
    out = to_tensor([img], 32, IMAGENET_MEAN, IMAGENET_STD)
    assert out.shape == (1, 3, 32, 32)
    assert np.isfinite(out).all()


def test_to_tensor_layout_and_normalisation() -> None:
    white, black = Image.new("RGB", (10, 10), "white"), Image.new("RGB", (10, 10), "black")
    out = to_tensor([white, black], 16, EFFICIENTNET_LITE_MEAN, EFFICIENTNET_LITE_STD)
    assert out.shape == (2, 3, 16, 16) and out.dtype == np.float32 and out.flags.c_contiguous
    # (x - 127) / 128
    np.testing.assert_allclose(out[0], 1.0, atol=1e-6)
    np.testing.assert_allclose(out[1], -127 / 128, atol=1e-6)
    out = to_tensor([white], 16, IMAGENET_MEAN, IMAGENET_STD)
    for channel, (mean, std) in enumerate(zip(IMAGENET_MEAN, IMAGENET_STD)):
        np.testing.assert_allclose(out[0, channel], (1 - mean) / std, rtol=1e-5)


def test_channel_order_is_rgb() -> None:
    out = to_tensor([Image.new("RGB", (8, 8), (255, 0, 0))], 8, (0, 0, 0), (1, 1, 1))
    assert out[0, 0].min() == 1 and out[0, 1].max() == 0 and out[0, 2].max() == 0


def test_deterministic_and_input_untouched() -> None:
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (123, 457, 3), dtype=np.uint8))
    before = np.asarray(img).copy()
    first = to_tensor([img], 64, IMAGENET_MEAN, IMAGENET_STD)
    second = to_tensor([img], 64, IMAGENET_MEAN, IMAGENET_STD)
    assert np.array_equal(first, second)
    assert np.array_equal(np.asarray(img), before)


def test_empty_batch() -> None:
    assert to_tensor([], 32, IMAGENET_MEAN, IMAGENET_STD).shape == (0, 3, 32, 32)
