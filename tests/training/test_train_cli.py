"""``fashion-search train parser``: a model the parser loads, stages, packs, and the recipe a run records."""

import json

import numpy as np
import pytest
from PIL import Image

from fashion_search.cli import main
from fashion_search.training.cli import read_recipe

pytestmark = pytest.mark.torch


def test_train_parser_writes_a_model_the_parser_loads_and_its_recipe(shared_data, tmp_path, capsys):
    pytest.importorskip("torch")
    from fashion_search.garments.parser import GarmentParser

    out = tmp_path / "run"
    code = main(
        [
            "train",
            "parser",
            "--ccp",
            str(shared_data / "ccp"),
            "--kaggle",
            str(shared_data / "kaggle"),
            "--output",
            str(out),
            "--epochs",
            "1",
            "--limit",
            "4",
            "--products-per-class",
            "1",
        ]
    )
    assert code == 0
    report = json.loads((out / "training.json").read_text())
    assert report["history"][0]["epoch"] == 1 and "val_garment_miou" in report["history"][0]
    parser = GarmentParser(model_path=str(out / "garment_parser.onnx"))
    labels, confidence = parser.parse(Image.open(shared_data / "ccp" / "photos" / "0701.jpg"))
    assert labels.dtype == np.uint8 and labels.shape == confidence.shape
    assert 0 <= confidence.min() and confidence.max() <= 1
    # The run's recipe names what made the model; rerun from it, the command line still wins.
    recipe = read_recipe(out / "recipe.toml")
    assert recipe["epochs"] == 1 and recipe["limit"] == 4 and recipe["ccp"] == str(shared_data / "ccp")
    assert "output" not in recipe and "threads" not in recipe
    rerun = tmp_path / "rerun"
    assert main(["train", "parser", "--recipe", str(out / "recipe.toml"), "--output", str(rerun), "--seed", "1"]) == 0
    assert json.loads((rerun / "training.json").read_text())["config"]["seed"] == 1
    assert read_recipe(rerun / "recipe.toml") == {**recipe, "seed": 1}

    # A second stage: start from the first stage's checkpoint, train more blocks, augment on threads.
    second = tmp_path / "second"
    code = main(
        [
            "train",
            "parser",
            "--ccp",
            str(shared_data / "ccp"),
            "--output",
            str(second),
            "--epochs",
            "1",
            "--limit",
            "4",
            "--init",
            str(out / "parser.pt"),
            "--frozen-blocks",
            "2",
            "--jaccard-weight",
            "0.5",
            "--loader-threads",
            "2",
        ]
    )
    assert code == 0
    report = json.loads((second / "training.json").read_text())
    assert report["config"]["init"] == str(out / "parser.pt") and report["history"][0]["loss"] > 0
    assert report["config"]["loader_threads"] == 2

    # A machine without the datasets: pack the examples, then train from the pack in worker processes.
    pack = tmp_path / "examples.zip"
    assert (
        main(["train", "parser", "--ccp", str(shared_data / "ccp"), "--limit", "4", "--write-examples", str(pack)]) == 0
    )
    third = tmp_path / "third"
    assert (
        main(
            [
                "train",
                "parser",
                "--examples",
                str(pack),
                "--output",
                str(third),
                "--epochs",
                "1",
                "--loader-processes",
                "2",
            ]
        )
        == 0
    )
    report = json.loads((third / "training.json").read_text())
    assert report["train_examples"] == 4 and report["config"]["loader_processes"] == 2
    assert (third / "garment_parser.onnx").is_file()
