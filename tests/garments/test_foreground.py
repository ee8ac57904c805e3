import numpy as np
from PIL import Image

from fashion_search.garments import create_detector
from tests.helpers import make_product


def test_product_on_plain_background_is_boxed_tightly():
    image = make_product((200, 20, 20), size=(200, 300))  # item spans x 50..150, y 60..240
    [garment] = create_detector("foreground").detect(image)
    x1, y1, x2, y2 = garment.box
    assert 40 <= x1 <= 52 and 148 <= x2 <= 160 and 50 <= y1 <= 62 and 238 <= y2 <= 250
    assert garment.mask is not None and garment.mask.shape == (300, 200)
    assert garment.mask[150, 100] and not garment.mask[5, 5]


def test_coloured_studio_background_works_too():
    image = make_product((250, 250, 250), size=(120, 120), background=(90, 90, 200))
    [garment] = create_detector("foreground").detect(image)
    assert garment.box[0] > 20 and garment.box[2] < 100


def test_busy_background_falls_back_to_whole_image():
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (100, 80, 3), dtype=np.uint8))
    [garment] = create_detector("foreground").detect(image)
    assert garment.box == (0, 0, 80, 100) and garment.label == "image"


def test_blank_image_falls_back_to_whole_image():
    [garment] = create_detector("foreground").detect(Image.new("RGB", (50, 50), "white"))
    assert garment.box == (0, 0, 50, 50)


def test_tiny_images_do_not_break_detection():
    [garment] = create_detector("foreground").detect(Image.new("RGB", (1, 1), "red"))
    assert garment.box == (0, 0, 1, 1)


def test_whole_image_detector_returns_the_frame():
    [garment] = create_detector("whole-image").detect(Image.new("RGB", (30, 20)))
    assert garment.box == (0, 0, 30, 20)
