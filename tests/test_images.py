import io

import numpy as np
import pytest
from PIL import Image

from fashion_search.images import ImageError, load_image


def _encode(image: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "LA", "P", "CMYK", "I;16", "I", "F", "1"])
def test_any_mode_becomes_rgb(mode):
    image = Image.new("RGB", (10, 6), (200, 100, 50)).convert(mode)
    assert load_image(image).mode == "RGB"
    assert load_image(image).size == (10, 6)


def test_sixteen_bit_png_keeps_its_contrast():
    arr = np.zeros((4, 4), np.uint16)
    arr[:, 2:] = 60000
    png = _encode(Image.fromarray(arr), "PNG")
    out = np.asarray(load_image(png))
    assert out[0, 0, 0] == 0 and out[0, 3, 0] == 255


def test_transparent_pixels_become_white():
    image = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    assert load_image(image).getpixel((0, 0)) == (255, 255, 255)


def test_exif_orientation_is_honoured():
    image = Image.new("RGB", (40, 20), (0, 0, 0))
    image.paste((255, 255, 255), (0, 0, 20, 20))  # white left half
    exif = image.getexif()
    exif[0x0112] = 6  # stored rotated: display needs a 90 degree clockwise turn
    data = _encode(image, "JPEG", exif=exif, quality=95)
    upright = load_image(data)
    assert upright.size == (20, 40)
    top, bottom = np.asarray(upright)[5, 10].mean(), np.asarray(upright)[35, 10].mean()
    assert top > 200 and bottom < 50


def test_truncated_jpeg_is_a_clear_error():
    data = _encode(Image.new("RGB", (200, 200), (9, 9, 9)), "JPEG")
    with pytest.raises(ImageError, match="corrupt or truncated"):
        load_image(data[: len(data) // 2])


@pytest.mark.parametrize("payload", [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n garbage"])
def test_non_images_are_rejected(payload):
    with pytest.raises(ImageError):
        load_image(payload)


def test_missing_file_is_reported(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        load_image(tmp_path / "missing.jpg")


def test_decompression_bombs_are_refused():
    data = _encode(Image.new("L", (3000, 3000)), "PNG")
    with pytest.raises(ImageError, match="too large"):
        load_image(data, max_pixels=1_000_000)


EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nnewpath 0 0 moveto 10 10 lineto stroke\nshowpage\n"


@pytest.mark.parametrize("fmt", ["EPS", "PCX", "TGA", "ICO"])
def test_formats_that_are_not_photos_are_refused_whatever_the_file_is_called(tmp_path, fmt):
    # EPS would be rendered by Ghostscript, an outside program: never opened at all.
    data = EPS if fmt == "EPS" else _encode(Image.new("RGB", (16, 16), (200, 0, 0)), fmt)
    path = tmp_path / "product.jpg"
    path.write_bytes(data)
    with pytest.raises(ImageError, match="not a readable image"):
        load_image(path)


def test_a_jpeg_whose_header_claims_more_rows_than_its_data_holds_is_refused():
    import struct

    photo = Image.fromarray((np.random.default_rng(0).random((100, 80, 3)) * 255).astype("uint8"))
    data = bytearray(_encode(photo, "JPEG"))
    at = data.find(b"\xff\xc0")  # start of frame: its height is what libjpeg believes
    data[at + 5 : at + 7] = struct.pack(">H", 400)
    with pytest.raises(ImageError, match="truncated JPEG: its header claims 80x400 pixels"):
        load_image(bytes(data))
    # A photo that is simply grey, or grey at the bottom, is still a photo.
    assert load_image(_encode(Image.new("RGB", (64, 64), (128, 128, 128)), "JPEG")).size == (64, 64)
    half = np.full((100, 80, 3), 128, np.uint8)
    half[:90] = 30
    assert load_image(_encode(Image.fromarray(half), "PNG")).size == (80, 100)
