import numpy as np
import pytest
from PIL import Image

from fashion_search.catalog import load_catalog
from fashion_search.engine import SearchEngine
from fashion_search.errors import IndexMismatchError
from fashion_search.garments import Garment
from fashion_search.index_record import IndexRecord
from fashion_search.pipeline import Component, GarmentPipeline, pipeline_from_record


def _photo_and_garment():
    image = Image.new("RGB", (40, 40), (10, 200, 10))  # a green backdrop
    mask = np.zeros((40, 40), bool)
    mask[10:30, 10:30] = True
    return image, Garment(label="top", score=1.0, box=(5, 5, 35, 35), mask=mask)


def test_masked_crop_paints_everything_outside_the_garment_white():
    image, garment = _photo_and_garment()
    pipeline = GarmentPipeline(Component("test-pixels", {}), Component("whole-image", {}), crop="masked")
    [crop] = pipeline.crop_garments(image, [garment])
    pixels = np.asarray(crop)
    assert crop.size == (30, 30)
    assert (pixels[0, 0] == 255).all() and (pixels[15, 15] == (10, 200, 10)).all()


def test_box_crop_keeps_the_photo_as_it_is():
    image, garment = _photo_and_garment()
    pipeline = GarmentPipeline(Component("test-pixels", {}), Component("whole-image", {}), crop="box")
    [crop] = pipeline.crop_garments(image, [garment])
    assert (np.asarray(crop) == (10, 200, 10)).all()


def test_unknown_crop_mode_is_refused():
    with pytest.raises(ValueError, match="crop mode"):
        GarmentPipeline(Component("test-pixels", {}), Component("whole-image", {}), crop="circle")


def test_indexes_from_before_crop_modes_embedded_boxes():
    manifest = {"embedder": {"name": "test-pixels"}, "detector": {"name": "whole-image"}, "dim": 192}
    assert pipeline_from_record(IndexRecord.from_dict(manifest)).crop == "box"


def test_an_index_keeps_its_crop_mode(tiny_catalog, tmp_path):
    db = tmp_path / "db"
    engine = SearchEngine.create(db, Component("test-pixels", {}), Component("foreground", {}), crop="box")
    engine.index(load_catalog(folder=tiny_catalog))
    assert SearchEngine.open(db).pipeline.crop == "box"
    with pytest.raises(IndexMismatchError, match="crop"):
        SearchEngine.create(db, Component("test-pixels", {}), Component("foreground", {}), crop="masked").index(
            load_catalog(folder=tiny_catalog)
        )
