import numpy as np
import pytest

from fashion_search.garments.parser import DEFAULT_MODEL, INPUT_SIZE, GarmentParser, canvas_size, garments_from_labels
from fashion_search.garments.taxonomy import class_index

H, W = 200, 100


def _labels(*parts: tuple[str, tuple[int, int, int, int]]) -> np.ndarray:
    labels = np.zeros((H, W), np.uint8)
    for name, (x1, y1, x2, y2) in parts:
        labels[y1:y2, x1:x2] = class_index(name)
    return labels


def _parse(labels: np.ndarray, image_size=(W, H), **options):
    return garments_from_labels(labels, np.full(labels.shape, 0.8, np.float32), image_size, **options)


def test_two_shoes_are_one_footwear_item():
    garments = _parse(_labels(("footwear", (20, 180, 40, 195)), ("footwear", (60, 182, 80, 196))))
    assert [g.label for g in garments] == ["footwear"]
    assert garments[0].box == (20, 180, 80, 196)


def test_two_trouser_legs_apart_are_one_pair():
    garments = _parse(_labels(("trousers", (20, 100, 43, 190)), ("trousers", (53, 100, 76, 190))))
    assert [g.label for g in garments] == ["trousers"] and garments[0].box == (20, 100, 76, 190)


def test_garments_of_two_people_far_apart_stay_separate():
    garments = _parse(_labels(("top", (0, 20, 30, 80)), ("top", (70, 20, 100, 80))))
    assert [g.label for g in garments] == ["top", "top"]


def test_a_garment_split_by_an_arm_is_merged():
    garments = _parse(_labels(("skirt", (20, 100, 80, 120)), ("skirt", (20, 124, 80, 150))))
    assert len(garments) == 1 and garments[0].box == (20, 100, 80, 150)


def test_specks_skin_and_hair_are_not_garments():
    labels = _labels(
        ("skin", (0, 0, 100, 40)), ("hair", (30, 0, 70, 20)), ("dress", (20, 50, 80, 160)), ("bag", (0, 190, 3, 193))
    )
    assert [g.label for g in _parse(labels)] == ["dress"]


def test_small_garment_classes_keep_a_lower_size_floor():
    # 6x5 pixels of a 100x200 map: under the default floor for a bag, over it for sunglasses
    assert [g.label for g in _parse(_labels(("eyewear", (40, 10, 46, 15))))] == ["eyewear"]
    assert _parse(_labels(("bag", (40, 10, 46, 15)))) == []


def test_masks_and_boxes_are_in_the_photos_pixels():
    [garment] = _parse(_labels(("trousers", (25, 100, 75, 190))), image_size=(400, 800))
    assert garment.mask.shape == (800, 400) and garment.mask.dtype == bool
    assert garment.box == pytest.approx((100, 400, 300, 760), abs=3)
    assert garment.score == pytest.approx(0.8)


def test_a_garment_smaller_than_one_photo_pixel_keeps_the_pixel_it_falls_in():
    # A photo of a few pixels is parsed on a larger canvas: a garment off the resampling grid
    # must still come back with a box and a mask inside the photo.
    garments = _parse(_labels(("skirt", (67, 2, 75, 14))), image_size=(3, 3))
    assert [(g.label, g.box) for g in garments] == [("skirt", (2, 0, 3, 1))]
    assert garments[0].mask.shape == (3, 3) and garments[0].mask.sum() == 1 and garments[0].mask[0, 2]


def test_garments_come_largest_first_and_are_capped():
    labels = _labels(("hat", (40, 0, 60, 10)), ("top", (10, 20, 90, 90)), ("shorts", (20, 90, 80, 120)))
    assert [g.label for g in _parse(labels)] == ["top", "shorts", "hat"]
    assert [g.label for g in _parse(labels, max_garments=2)] == ["top", "shorts"]


@pytest.mark.parametrize(
    "photo, canvas",
    [
        ((550, 825), INPUT_SIZE),
        ((2362, 3410), INPUT_SIZE),
        ((224, 224), (224, 224)),
        ((300, 200), INPUT_SIZE),
        ((200, 100), (128, 224)),
        ((20, 10), (64, 64)),
        ((1000, 250), INPUT_SIZE),
        ((287, 447), (448, 288)),
    ],
)
def test_small_photos_are_parsed_at_their_own_size_never_blown_up(photo, canvas):
    h, w = canvas_size(photo)
    assert (h, w) == canvas
    assert h % 32 == 0 and w % 32 == 0 and h <= INPUT_SIZE[0] and w <= INPUT_SIZE[1]


@pytest.mark.skipif(not DEFAULT_MODEL.is_file(), reason="the shipped parser model is missing")
def test_shipped_parser_accepts_any_canvas_and_returns_the_photos_shape():
    from PIL import Image

    parser = GarmentParser()
    assert parser.dynamic_size
    for size, shape in [((224, 224), (224, 224)), ((640, 480), (216, 288)), ((100, 200), (224, 112))]:
        labels, confidence = parser.parse(Image.new("RGB", size, (200, 40, 40)))
        assert labels.dtype == np.uint8 and labels.shape == confidence.shape == shape


@pytest.mark.skipif(not DEFAULT_MODEL.is_file(), reason="the shipped parser model is missing")
def test_parallel_copy_keeps_one_core_per_call_and_the_same_settings():
    from PIL import Image

    parser = GarmentParser(min_area=0.01, merge_distance=0.5, max_garments=3)
    copy = parser.for_parallel_use()
    assert copy is not parser and copy.threads == 1
    assert copy.identity() == parser.identity()
    assert copy.for_parallel_use() is copy
    photo = Image.new("RGB", (200, 300), (30, 60, 160))
    assert [g.box for g in copy.detect(photo)] == [g.box for g in parser.detect(photo)]
