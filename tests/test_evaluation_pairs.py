"""Worn-to-shop evaluation on a pairs CSV, per-query outcomes and paired comparisons of two runs."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fashion_search.catalog import load_catalog
from fashion_search.category_classes import CategoryClasses
from fashion_search.engine import SearchEngine
from fashion_search.errors import CatalogError
from fashion_search.evaluation import (
    ProductGarment,
    evaluate_index,
    evaluate_pairs,
    paired_difference,
    reaches,
    read_query_pairs,
    write_per_query,
)
from fashion_search.pipeline import Component, GarmentPipeline
from fashion_search.search import Searcher
from fashion_search.store import open_store
from tests.helpers import COLOUR_CLASSES, load_script


def _photo(garments: dict[str, tuple[tuple[int, int, int, int], int]], size=(80, 100)) -> Image.Image:
    """A photo holding each garment ``label: (box, shade)`` as a filled box of its class's colour,
    shifted by ``shade`` so that products of one class differ; the stand-in detector finds each."""
    image = Image.new("RGB", size, (255, 255, 255))
    pixels = image.load()
    for label, ((x1, y1, x2, y2), shade) in garments.items():
        colour = tuple(int(v) for v in np.clip(np.array(COLOUR_CLASSES[label]) + [shade, shade, -shade], 0, 255))
        for y in range(y1, y2):
            for x in range(x1, x2):
                pixels[x, y] = colour
    return image


@pytest.fixture
def indexed(tmp_path):
    """Tops and skirts, three products each, one product shot each, indexed with the stand-ins."""
    root = tmp_path / "catalog"
    for n in range(3):
        for category, label in (("Tops", "top"), ("Skirts", "skirt")):
            folder = root / category / f"{label}-{n}"
            folder.mkdir(parents=True)
            _photo({label: ((10, 10, 70, 90), n * 12)}).save(folder / "view0.png")
    engine = SearchEngine.create(tmp_path / "db.lance", Component("test-pixels"), Component("test-colour-garments"))
    engine.index(load_catalog(folder=root))
    yield engine, root
    engine.close()


def _pairs_csv(folder: Path, rows: list[tuple[str, str]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "pairs.csv"
    path.write_text("photo,product_id\n" + "".join(f"{photo},{pid}\n" for photo, pid in rows))
    return path


def test_read_query_pairs_resolves_relative_photos_and_skips_blank_rows(tmp_path):
    path = _pairs_csv(tmp_path / "queries", [("a.jpg", "P1"), ("", ""), ("/abs/b.jpg", "P2"), ("c.jpg", " ")])
    pairs = read_query_pairs(path)
    assert [(p.photo, p.product_id) for p in pairs] == [
        (tmp_path / "queries" / "a.jpg", "P1"),
        (Path("/abs/b.jpg"), "P2"),
    ]


def test_read_query_pairs_names_the_columns_it_found_when_one_is_missing(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text("image,sku\na.jpg,P1\n")
    with pytest.raises(CatalogError, match=r"'photo', 'product_id'.*columns: image, sku"):
        read_query_pairs(path)


def test_a_photo_copied_from_the_catalog_finds_its_product_first(indexed, tmp_path):
    engine, root = indexed
    queries = tmp_path / "queries"
    queries.mkdir()
    shutil.copy(root / "Tops" / "top-1" / "view0.png", queries / "worn.png")
    report = evaluate_pairs(
        read_query_pairs(_pairs_csv(queries, [("worn.png", "top-1")])), engine.searcher, recall_at=(1, 2)
    )
    assert report.queries == 1 and not report.skipped
    assert report.records[0].rank == 1 and report.records[0].label == "top"
    assert report.recall == {1: 1.0, 2: 1.0} and report.recall_95ci[1] == (1.0, 1.0)
    assert report.to_dict()["recall"] == {"R@1": 1.0, "R@2": 1.0}


def test_unreadable_photos_and_unknown_products_are_skipped_without_stopping_the_run(indexed, tmp_path):
    engine, root = indexed
    queries = tmp_path / "queries"
    queries.mkdir()
    shutil.copy(root / "Skirts" / "skirt-2" / "view0.png", queries / "good.png")
    (queries / "corrupt.jpg").write_bytes(b"not a photo")
    rows = [("corrupt.jpg", "top-0"), ("missing.jpg", "top-0"), ("good.png", "nope"), ("good.png", "skirt-2")]
    report = evaluate_pairs(read_query_pairs(_pairs_csv(queries, rows)), engine.searcher, recall_at=(1,))
    assert report.queries == 1 and report.records[0].rank == 1
    reasons = {(Path(s.photo).name, s.product_id): s.reason for s in report.skipped}
    assert set(reasons) == {("corrupt.jpg", "top-0"), ("missing.jpg", "top-0"), ("good.png", "nope")}
    assert reasons[("corrupt.jpg", "top-0")].startswith("cannot read photo")
    assert reasons[("good.png", "nope")] == "product not in the index"
    assert report.to_dict()["skipped"] == 3 and "skipped" in report.table()


def test_the_query_garment_is_the_one_that_can_match_the_product_not_the_largest(indexed, tmp_path):
    engine, _ = indexed
    queries = tmp_path / "queries"
    queries.mkdir()
    # A large top over a small skirt, the skirt exactly skirt-1's colour.
    _photo({"top": ((5, 5, 75, 70), 30), "skirt": ((20, 75, 60, 95), 12)}).save(queries / "outfit.png")
    rows = [("outfit.png", "skirt-1"), ("outfit.png", "top-2")]
    report = evaluate_pairs(read_query_pairs(_pairs_csv(queries, rows)), engine.searcher, recall_at=(1, 3))
    skirt, top = report.records
    assert (skirt.label, skirt.rank) == ("skirt", 1)
    assert top.label == "top" and top.rank is not None
    # Each pair is its own query in per-query outcomes, though they share a photo.
    assert len({row["key"] for row in report.per_query_rows()}) == 2


def test_a_lookalike_class_the_products_category_holds_reaches_it(tmp_path):
    store = open_store(str(tmp_path / "db.lance"), dim=2)
    learned = CategoryClasses(
        {"Tops": {"top": 0.7, "knitwear": 0.3}, "Skirts": {"skirt": 1.0}}, {"Tops": 10, "Skirts": 5}
    )
    pipeline = GarmentPipeline(Component("test-pixels"), Component("whole-image"))
    store.write_manifest(pipeline.record().replace(category_classes=learned).to_dict())
    searcher = Searcher(store, pipeline)
    top = ProductGarment("Tops", "top")
    assert reaches(searcher, "top", top) and reaches(searcher, "knitwear", top)
    assert not reaches(searcher, "skirt", top)
    assert not reaches(searcher, "dress", top)  # a lookalike, but no category holds dresses


def test_catalog_evaluation_writes_per_query_outcomes_whose_means_are_its_figures(indexed, tmp_path):
    engine, root = indexed
    for n in range(3):  # a second view of each top, so that the tops are recall queries
        shutil.copy(root / "Tops" / f"top-{n}" / "view0.png", root / "Tops" / f"top-{n}" / "view1.png")
    items = load_catalog(folder=root)
    engine.index(items)
    report = evaluate_index(items, engine.searcher, recall_at=(1, 5), precision_at=(2,))
    assert "per_query" not in report.to_dict() and len(report.to_dict(per_query=True)["per_query"]) == 6 * 2 + 9
    assert write_per_query(report, tmp_path / "runs" / "a.jsonl") == 21
    rows = [json.loads(line) for line in (tmp_path / "runs" / "a.jsonl").read_text().splitlines()]
    assert {row["metric"] for row in rows} == {"R@1", "R@5", "category P@2"}
    assert {row["key"] for row in rows if row["metric"] == "R@1"} == {
        str(it.path) for it in items if "Tops" in str(it.path)
    }
    for metric, value in (("R@1", report.recall[1]), ("category P@2", report.precision["category"][2])):
        assert np.mean([row["value"] for row in rows if row["metric"] == metric]) == pytest.approx(value)


def _per_query_file(path: Path, values: dict[str, list[float]]) -> Path:
    path.write_text(
        "".join(
            json.dumps({"key": f"q{n}", "metric": metric, "value": v}) + "\n"
            for metric, vs in values.items()
            for n, v in enumerate(vs)
        )
    )
    return path


def test_paired_difference_of_a_run_with_itself_is_zero(tmp_path):
    a = _per_query_file(tmp_path / "a.jsonl", {"R@1": [1, 0, 1, 0, 1], "category P@10": [0.5, 0.2, 0.9, 1, 0]})
    comparison = paired_difference(a, a)
    assert list(comparison) == ["R@1", "category P@10"]
    assert comparison["R@1"] == {"queries": 5, "a": 0.6, "b": 0.6, "difference": 0.0, "95ci": [0.0, 0.0]}


def test_paired_difference_gives_the_sign_and_size_of_a_change_on_the_shared_queries(tmp_path):
    before = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    after = [1, 1, 1, 1, 1, 1, 0, 0, 0, 0]  # two queries fixed, none broken
    a = _per_query_file(tmp_path / "a.jsonl", {"R@1": before})
    b = _per_query_file(tmp_path / "b.jsonl", {"R@1": after})
    with open(b, "a") as fh:  # a query only B holds is not compared
        fh.write(json.dumps({"key": "extra", "metric": "R@1", "value": 1.0}) + "\n")
    row = paired_difference(a, b)["R@1"]
    assert row["queries"] == 10 and row["a"] == pytest.approx(0.4) and row["b"] == pytest.approx(0.6)
    assert row["difference"] == pytest.approx(0.2)
    lo, hi = row["95ci"]
    assert 0.0 <= lo < 0.2 < hi
    assert paired_difference(b, a)["R@1"]["difference"] == pytest.approx(-0.2)


def test_compare_runs_prints_a_markdown_table(tmp_path, capsys):
    script = load_script("compare_runs")
    a = _per_query_file(tmp_path / "a.jsonl", {"R@1": [0, 0, 1, 1]})
    b = _per_query_file(tmp_path / "b.jsonl", {"R@1": [1, 0, 1, 1]})
    assert script.main([str(a), str(b)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| metric | queries | A | B | B-A | 95% interval |"
    assert lines[2].startswith("| R@1 | 4 | 0.500 | 0.750 | +0.250 |")
