"""Near-duplicate catalog images across products, found through the store's index."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fashion_search.cli import main
from fashion_search.duplicates import find_duplicates
from fashion_search.store import VectorRow, open_store
from tests.store.rows import DIM, random_rows, row, unit


def garment(image_id: str, product_id: str, vector: np.ndarray, garment: int = 0, box=(0, 0, 10, 10)) -> VectorRow:
    r = row(image_id, garment, vector=vector, product_id=product_id)
    r.box = box
    return r


@pytest.fixture
def store(tmp_path: Path):
    rng = np.random.default_rng(7)
    rows = random_rows(300, seed=3)  # distinct images, products of two images each
    base = unit(rng.standard_normal(DIM))
    other = unit(rng.standard_normal(DIM))
    rows += [
        garment("copy-a1", "A", base),
        garment("copy-b1", "B", base + 0.01 * rng.standard_normal(DIM)),  # a re-encoded copy
        garment("copy-c1", "C", base + 0.012 * rng.standard_normal(DIM)),
        garment("copy-d1", "D", other),
        garment("copy-d2", "D", other + 0.01 * rng.standard_normal(DIM)),  # same product: not a finding
        # The same jeans worn in two photos: a small second garment alike, main garments not.
        garment("look-e1", "E", unit(rng.standard_normal(DIM)), box=(0, 0, 10, 10)),
        garment("look-e1", "E", other, garment=1, box=(0, 0, 2, 2)),
        garment("look-f1", "F", unit(rng.standard_normal(DIM)), box=(0, 0, 10, 10)),
        garment("look-f1", "F", other, garment=1, box=(0, 0, 2, 2)),
    ]
    s = open_store(str(tmp_path / "db"), dim=DIM)
    s.upsert_images(rows)
    return s


def test_copies_under_different_products_form_one_group(store):
    report = find_duplicates(store, threshold=0.98)
    assert report.images == 300 + 7
    assert [g.products for g in report.groups] == [["A", "B", "C"]]
    group = report.groups[0]
    assert [i.image_id for i in group.images] == ["copy-a1", "copy-b1", "copy-c1"]
    assert 0.98 <= group.similarity < 1.0


def test_a_lower_threshold_finds_more_and_one_above_every_similarity_finds_none(store):
    assert find_duplicates(store, threshold=0.999999).groups == []
    loose = find_duplicates(store, threshold=0.3)
    assert len(loose.groups) >= 1 and sum(len(g.images) for g in loose.groups) > 3
    with pytest.raises(ValueError, match="threshold"):
        find_duplicates(store, threshold=1.5)


def test_the_command_prints_groups_as_json_and_refuses_a_missing_index(store, tmp_path, capsys):
    assert main(["duplicates", "--db", str(tmp_path / "db"), "--threshold", "0.98", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [g["products"] for g in report["groups"]] == [["A", "B", "C"]]
    assert report["images"] == 307 and report["threshold"] == 0.98
    assert main(["duplicates", "--db", str(tmp_path / "db"), "--threshold", "0.98"]) == 0
    assert "1 groups of near-identical images (3 images)" in capsys.readouterr().out
    assert main(["duplicates", "--db", str(tmp_path / "nothing")]) == 2
    assert "no index at" in capsys.readouterr().err and not (tmp_path / "nothing").exists()


def test_a_chain_of_small_steps_does_not_become_one_group(tmp_path):
    # Each image is 0.985 alike to the next, the ends only ~0.94: two groups, not one chain.
    base, step = np.zeros(DIM, np.float32), np.zeros(DIM, np.float32)
    base[0], step[1] = 1.0, 1.0
    angles = [0.0, 0.17, 0.34, 0.51]
    rows = [garment(f"chain-{n}", f"P{n}", np.cos(a) * base + np.sin(a) * step) for n, a in enumerate(angles)]
    store = open_store(str(tmp_path / "db"), dim=DIM)
    store.upsert_images(rows + random_rows(50, seed=9))
    groups = find_duplicates(store, threshold=0.98).groups
    assert groups and all(len(g.images) <= 2 for g in groups)
    linked = {frozenset(g.products) for g in groups}
    assert frozenset({"P0", "P1"}) in linked or frozenset({"P1", "P2"}) in linked
