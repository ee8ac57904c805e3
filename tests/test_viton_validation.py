"""scripts/viton_validation.py: the VITON worn-to-shop validation set as catalog and pairs CSVs."""

import csv
from pathlib import Path

import pytest

from fashion_search.evaluation import read_query_pairs
from tests.helpers import SHARED_DATA, load_script

ROOT = Path(__file__).resolve().parents[1]
VITON = SHARED_DATA / "viton"


def _script():
    return load_script("viton_validation")


def test_the_validation_set_lists_each_ids_product_shot_and_worn_photo(tmp_path):
    if not VITON.is_dir():
        pytest.skip(f"VITON data not found at {VITON} (the shared data set is provided beside the checkout)")
    assert _script().main([str(tmp_path), "--data", str(VITON)]) == 0
    ids = (ROOT / "splits" / "viton_validation_ids.txt").read_text().split()
    with open(tmp_path / "catalog.csv", newline="") as fh:
        catalog = list(csv.DictReader(fh))
    assert len(catalog) == len(ids) == 1000
    assert [row["product_id"] for row in catalog] == ids
    assert all(row["category"] == "tops" for row in catalog)
    assert all(Path(row["image"]) == VITON.resolve() / "products" / f"{row['product_id']}.jpg" for row in catalog)
    pairs = read_query_pairs(tmp_path / "pairs.csv")
    assert len(pairs) == 1000 and all(p.photo == VITON.resolve() / "photos" / f"{p.product_id}.jpg" for p in pairs)
    assert all(p.photo.is_file() for p in pairs[:20])


def test_ids_without_images_are_refused_by_name(tmp_path, capsys):
    data = tmp_path / "viton"
    (data / "products").mkdir(parents=True)
    (data / "photos").mkdir()
    (data / "products" / "000001.jpg").write_bytes(b"x")
    (tmp_path / "ids.txt").write_text("000001\n")
    assert _script().main([str(tmp_path / "out"), "--data", str(data), "--ids", str(tmp_path / "ids.txt")]) == 2
    assert "photos/000001.jpg" in capsys.readouterr().err and not (tmp_path / "out").exists()
