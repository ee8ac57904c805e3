"""``fashion-search train embedder``: pairs, crops, batches, and a head the embedder loads."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fashion_search.cli import main
from fashion_search.errors import CatalogError
from fashion_search.training.cli import read_recipe
from fashion_search.training.embedder.head import batches_of_distinct_products
from fashion_search.training.embedder.pairs import (
    kaggle_training_half,
    parse_map_box,
    read_ids,
    read_pairs_csv,
    viton_pairs,
)


def test_parse_map_box_bounds_the_upper_clothes_and_falls_back_to_coat_or_dress():
    parse = np.zeros((256, 192), np.uint8)
    parse[40:120, 50:150] = 5
    parse[130:200, 60:140] = 9  # trousers are not the top
    assert parse_map_box(parse) == (50, 40, 150, 120)
    coat = np.where(parse == 5, 7, parse).astype(np.uint8)
    assert parse_map_box(coat) == (50, 40, 150, 120)
    assert parse_map_box(np.zeros((256, 192), np.uint8)) is None


def test_pairs_csv_resolves_relative_paths_and_defaults_the_product_id(tmp_path):
    (tmp_path / "pairs.csv").write_text("photo,product\nworn/a.jpg,shop/a.jpg\n,\n/abs/b.jpg,shop/b.jpg\n")
    pairs = read_pairs_csv(tmp_path / "pairs.csv")
    assert [p.photo for p in pairs] == [tmp_path / "worn" / "a.jpg", Path("/abs/b.jpg")]
    assert pairs[0].product_id == str(tmp_path / "shop" / "a.jpg") and pairs[0].box is None


def test_pairs_csv_without_a_product_column_is_refused(tmp_path):
    (tmp_path / "pairs.csv").write_text("photo,product_id\na.jpg,1\n")
    with pytest.raises(CatalogError, match="lacks column"):
        read_pairs_csv(tmp_path / "pairs.csv")


def test_batches_never_hold_one_product_twice():
    ids = [str(i // 3) for i in range(300)]  # every product three times
    batches = batches_of_distinct_products(ids, 16, np.random.default_rng(0))
    assert batches and all(len(b) == 16 for b in batches)
    for batch in batches:
        assert len({ids[i] for i in batch}) == 16
    assert len({i for b in batches for i in b}) == sum(len(b) for b in batches)


def test_kaggle_halves_split_ids_about_evenly_and_stably():
    first = [kaggle_training_half(str(i)) for i in range(10000, 12000)]
    assert 0.45 < np.mean(first) < 0.55
    assert first == [kaggle_training_half(str(i)) for i in range(10000, 12000)]


def test_validation_split_is_left_out_of_viton_training(shared_data, tmp_path):
    viton = shared_data / "viton"
    if not viton.is_dir():
        pytest.skip(f"VITON data not found at {viton}")
    validation = read_ids("splits/viton_validation_ids.txt")
    assert len(validation) == 1000
    pairs = viton_pairs(viton, validation)
    assert len(pairs) == 9000 and not {p.product_id for p in pairs} & validation
    assert sum(p.box is not None for p in pairs) > 8900


def make_pairs(folder, products: int = 12):
    """Pairs of a striped 'product' and a 'worn' photo of it: the stripes on a grey figure."""
    rng = np.random.default_rng(0)
    rows = ["photo,product,product_id"]
    for i in range(products):
        colour = rng.integers(0, 255, 3)
        product = np.full((120, 90, 3), 255, np.uint8)
        product[20:100, 15:75] = colour
        product[20:100:6, 15:75] = 255 - colour
        worn = np.full((200, 150, 3), 120, np.uint8)
        worn[40:140, 35:115] = np.asarray(Image.fromarray(product[20:100, 15:75]).resize((80, 100)))
        Image.fromarray(product).save(folder / f"p{i}.jpg")
        Image.fromarray(worn).save(folder / f"w{i}.jpg")
        rows.append(f"w{i}.jpg,p{i}.jpg,{i}")
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    rows.append("broken.jpg,p0.jpg,0")
    (folder / "pairs.csv").write_text("\n".join(rows) + "\n")
    return folder / "pairs.csv"


@pytest.mark.torch
def test_train_embedder_on_own_pairs_writes_a_head_the_embedder_loads(tmp_path, capsys):
    pytest.importorskip("torch")
    from fashion_search.embed.garment_head import GarmentHeadEmbedder

    pairs = make_pairs(tmp_path)
    out = tmp_path / "run"
    argv = ["train", "embedder", "--pairs", str(pairs), "--detector", "whole-image", "--output", str(out)]
    argv += ["--epochs", "2", "--batch-size", "4", "--dim", "16", "--hidden", "32"]
    assert main(argv) == 0
    report = json.loads((out / "training.json").read_text())
    assert report["pairs"] == 12  # the unreadable photo is skipped, not fatal
    assert [h["epoch"] for h in report["history"]] == [1, 2]
    assert report["export_max_abs_error"] < 1e-4
    embedder = GarmentHeadEmbedder(model_path=out / "garment_head.onnx")
    vectors = embedder.embed([Image.open(tmp_path / "p1.jpg"), Image.open(tmp_path / "w1.jpg")])
    assert vectors.shape == (2, 16)
    recipe = read_recipe(out / "recipe.toml")
    assert recipe["dim"] == 16 and recipe["pairs"] == str(pairs) and "output" not in recipe

    # A rerun finds the checkpoint of the finished run and the cached features: no epoch retrains.
    capsys.readouterr()
    assert main(argv) == 0
    rerun = json.loads((out / "training.json").read_text())
    assert rerun["history"] == report["history"] and rerun["train_seconds_this_run"] < report["minutes"] * 60


def test_worn_and_product_photos_are_cut_as_search_and_indexing_cut_them():
    from fashion_search.training.embedder.features import detected_crops
    from tests.helpers import COLOUR_CLASSES, ColourGarmentDetector

    product = Image.new("RGB", (100, 120), (255, 255, 255))
    product.paste(COLOUR_CLASSES["top"], (20, 30, 80, 90))
    worn = Image.new("RGB", (200, 300), (128, 128, 128))
    worn.paste(COLOUR_CLASSES["top"], (60, 40, 140, 120))
    worn.paste(COLOUR_CLASSES["skirt"], (30, 120, 170, 290))  # larger, but not the product's class
    box, product_crop = detected_crops(worn, product, ColourGarmentDetector())
    assert box == (60, 40, 140, 120) and product_crop.size == (60, 60)
    # No garment of the product's class in the photo: the parse map's box, when there is one.
    only_skirt = Image.new("RGB", (200, 300), (128, 128, 128))
    only_skirt.paste(COLOUR_CLASSES["skirt"], (30, 120, 170, 290))
    assert detected_crops(only_skirt, product, ColourGarmentDetector(), fallback=(1, 2, 3, 4))[0] == (1, 2, 3, 4)
    assert detected_crops(only_skirt, product, ColourGarmentDetector())[0] == (30, 120, 170, 290)
