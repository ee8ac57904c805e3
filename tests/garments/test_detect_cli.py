"""``fashion-search detect``, run in-process."""

import json

import numpy as np
import pytest
from PIL import Image

from fashion_search.cli import main
from fashion_search.garments import decode_mask
from tests.helpers import COLOUR_CLASSES


@pytest.fixture
def outfit(tmp_path):
    image = Image.new("RGB", (60, 90), (255, 255, 255))
    image.paste(COLOUR_CLASSES["top"], (10, 5, 50, 45))
    image.paste(COLOUR_CLASSES["skirt"], (15, 50, 45, 80))
    path = tmp_path / "outfit.png"
    image.save(path)
    return path


def test_detect_prints_each_garment_with_its_mask_as_json(outfit, tmp_path, capsys):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    code = main(["detect", str(outfit), str(bad), "--detector", "test-colour-garments", "--json"])
    first, second = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 1  # one photo could not be read; the other was still reported
    assert first["size"] == [60, 90]
    garments = {g["label"]: g for g in first["garments"]}
    assert set(garments) == {"top", "skirt"}
    assert garments["skirt"]["box"] == [15, 50, 45, 80]
    assert decode_mask(garments["skirt"]["mask"]).sum() == 30 * 30
    assert "error" in second


def test_detect_draws_the_garments_over_the_photo(outfit, tmp_path, capsys):
    out = tmp_path / "drawn.png"
    assert main(["detect", str(outfit), "--detector", "test-colour-garments", "--draw", str(out)]) == 0
    text = capsys.readouterr().out
    assert "top" in text and "skirt" in text
    drawn = np.asarray(Image.open(out).convert("RGB"), np.int16)
    original = np.asarray(Image.open(outfit).convert("RGB"), np.int16)
    assert drawn.shape == original.shape and np.abs(drawn - original).max() > 50


def test_the_shipped_parser_finds_garments_in_a_street_photo(shared_data, capsys):
    photo = shared_data / "ccp" / "photos" / "0705.jpg"
    assert main(["detect", str(photo), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    labels = [g["label"] for g in result["garments"]]
    assert labels and "footwear" in labels
    for garment in result["garments"]:
        assert decode_mask(garment["mask"]).shape == (result["size"][1], result["size"][0])
