"""Retrieval evaluation: what it counts, and that it measures what search returns."""

import shutil

import numpy as np
import pytest
from PIL import Image

from fashion_search.catalog import CatalogItem, load_catalog
from fashion_search.category_classes import CategoryClasses, main_garment
from fashion_search.engine import SearchEngine
from fashion_search.evaluation import catalog_queries, evaluate_index
from fashion_search.pipeline import Component, GarmentPipeline
from fashion_search.search import Searcher
from fashion_search.store import VectorRow, open_store
from tests.helpers import COLOUR_CLASSES

PIPELINE = GarmentPipeline(Component("test-pixels"), Component("whole-image"))


def _searcher(store):
    """The read side of a store written by hand; evaluation never runs its models."""
    return Searcher(store, PIPELINE)


def _store(tmp_path, vectors, items, labels=None):
    store = open_store(str(tmp_path / "eval.lance"), dim=vectors.shape[1])
    rows = [
        VectorRow(
            item.image_id,
            0,
            str(item.path),
            item.product_id,
            item.category,
            label,
            1.0,
            (0, 0, 1, 1),
            "f",
            item.metadata,
            vec,
        )
        for item, vec, label in zip(items, vectors, labels or ["item"] * len(items))
    ]
    store.upsert_images(rows)
    learned = CategoryClasses.learn(
        {"image_id": r.image_id, "category": r.category, "label": r.label, "box": r.box} for r in rows
    )
    store.write_manifest(PIPELINE.record().replace(category_classes=learned).to_dict())
    return _searcher(store)


def _item(tmp_path, name, pid, category, colour=""):
    return CatalogItem(tmp_path / f"{name}.jpg", pid, category, {"colour": colour})


def test_recall_counts_own_product_in_top_k_and_excludes_query_image(tmp_path):
    items = [
        _item(tmp_path, "a1", "A", "Tops"),
        _item(tmp_path, "a2", "A", "Tops"),
        _item(tmp_path, "b1", "B", "Tops"),
        _item(tmp_path, "c1", "C", "Skirts"),
    ]
    # a1 is closest to b1, then a2: R@1 misses for a1, hits for a2 (nearest to a1).
    vectors = np.array([[1, 0, 0], [0.9, -0.436, 0], [0.95, 0.31, 0], [0, 0, 1]], np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    report = evaluate_index(
        items, _store(tmp_path, vectors, items), recall_at=(1, 2), labels=("category",), precision_at=(1,)
    )
    assert report.multi_view_queries == 2
    assert report.recall == {1: 0.5, 2: 1.0}


def test_attribute_precision_ignores_the_query_product(tmp_path):
    items = [
        _item(tmp_path, "a1", "A", "Tops", "red"),
        _item(tmp_path, "b1", "B", "Tops", "blue"),
        _item(tmp_path, "c1", "C", "Skirts", "red"),
    ]
    vectors = np.array([[1, 0], [0.9, 0.436], [0, 1]], np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    report = evaluate_index(items, _store(tmp_path, vectors, items), labels=("category", "colour"), precision_at=(1,))
    # a1 -> b1 (Tops, blue); b1 -> a1 (Tops, red); c1 -> b1 (Tops, blue)
    assert report.precision["category"][1] == pytest.approx(2 / 3)
    assert report.precision["colour"][1] == pytest.approx(0.0)


def test_recall_measures_class_aware_search_unless_told_otherwise(tmp_path):
    items = [
        _item(tmp_path, "a1", "A", "Tops"),
        _item(tmp_path, "a2", "A", "Tops"),
        _item(tmp_path, "b1", "B", "Skirts"),
        _item(tmp_path, "b2", "B", "Skirts"),
    ]
    # a1's nearest is the skirt b1, which class-aware search never shows for a top.
    vectors = np.array([[1, 0, 0], [0.8, 0.6, 0], [0.95, 0.31, 0], [0.95, 0.31, 0.3]], np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    searcher = _store(tmp_path, vectors, items, labels=["top", "top", "skirt", "skirt"])
    assert evaluate_index(items, searcher, recall_at=(1,), labels=()).recall[1] == 1.0
    any_class = evaluate_index(items, searcher, recall_at=(1,), labels=(), same_class=False)
    assert any_class.recall[1] == 0.5  # a1 and a2 both meet the skirt b1 first


def test_a_product_is_ranked_by_its_best_matching_garment(tmp_path):
    store = open_store(str(tmp_path / "eval.lance"), dim=2)
    items = [_item(tmp_path, "a1", "A", "Tops"), _item(tmp_path, "a2", "A", "Tops"), _item(tmp_path, "b1", "B", "Tops")]
    v = lambda x, y: np.array([x, y], np.float32) / np.hypot(x, y)  # noqa: E731
    a1, a2, b1 = (it.image_id for it in items)
    rows = [
        VectorRow(a1, 0, "a1", "A", "Tops", "top", 1.0, (0, 0, 10, 10), "f", {}, v(1, 0)),
        # a2's main garment points elsewhere, but its second garment matches a1's exactly.
        VectorRow(a2, 0, "a2", "A", "Tops", "top", 1.0, (0, 0, 10, 10), "f", {}, v(0, 1)),
        VectorRow(a2, 1, "a2", "A", "Tops", "top", 1.0, (0, 0, 5, 5), "f", {}, v(1, 0)),
        VectorRow(b1, 0, "b1", "B", "Tops", "top", 1.0, (0, 0, 10, 10), "f", {}, v(1, 0.2)),
    ]
    store.upsert_images(rows)
    report = evaluate_index(items, _searcher(store), recall_at=(1,), labels=())
    # a1 finds A through a2's second garment; a2 (its main garment) finds b1 nearer than a1.
    assert report.multi_view_queries == 2 and report.recall[1] == 0.5


def test_recall_comes_with_an_interval_that_holds_it(tmp_path):
    items = [_item(tmp_path, f"{p}{v}", p, "Tops") for p in "ABCDEF" for v in (1, 2)]
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(len(items), 8)).astype(np.float32)
    vectors[1::2] = vectors[0::2] + 0.3 * rng.normal(size=(6, 8))  # each product's views alike
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    report = evaluate_index(items, _store(tmp_path, vectors, items), recall_at=(1, 5), labels=())
    for k in (1, 5):
        lo, hi = report.recall_interval[k]
        assert 0.0 <= lo <= report.recall[k] <= hi <= 1.0
    assert report.to_dict()["recall_95ci"]["R@1"] == [round(v, 4) for v in report.recall_interval[1]]


def _outfit(top: tuple[int, int], skirt_shade: int, skirt_first: bool) -> Image.Image:
    """A photo of a top over a skirt, both found by the stand-in detector; the product (the top
    in a photo of tops, the skirt in one of skirts) is the larger."""
    image = Image.new("RGB", (60, 90), (255, 255, 255))
    pixels = image.load()
    blue = tuple(int(v) for v in np.clip(np.array(COLOUR_CLASSES["top"]) + [top[0], top[1], 0], 0, 255))
    red = tuple(int(v) for v in np.clip(np.array(COLOUR_CLASSES["skirt"]) + [0, skirt_shade, skirt_shade], 0, 255))
    split = 30 if skirt_first else 55
    for y in range(3, split):
        for x in range(5, 55):
            pixels[x, y] = blue if (x + y) % 7 else (0, 0, 0)
    for y in range(split + 2, 88):
        for x in range(10, 50):
            pixels[x, y] = red
    return image


def test_evaluation_ranks_each_query_as_search_returns_it(tmp_path):
    root = tmp_path / "catalog"
    for n in range(4):
        for category in ("Tops", "Skirts"):
            folder = root / category / f"{category.lower()}-{n}"
            folder.mkdir(parents=True)
            for view in range(2):
                shade = (n * 9 + view * 3, 30 - n * 7)
                _outfit(shade, n * 8 + view * 2, skirt_first=category == "Skirts").save(folder / f"view{view}.png")
    items = load_catalog(folder=root)
    db = tmp_path / "db.lance"
    engine = SearchEngine.create(db, Component("test-pixels"), Component("test-colour-garments"))
    engine.index(items, all_garments=True)
    rankings = list(catalog_queries(items, engine.searcher, k=5))
    assert len(rankings) == len(items) == 16
    assert {r.label for r in rankings} == {"top", "skirt"} and all(len(r.products) == 4 for r in rankings)

    for n, ranking in enumerate(rankings):
        # The same photo searched against the index without it: what evaluation leaves out.
        copy = tmp_path / f"without-{n}.lance"
        shutil.copytree(db, copy)
        open_store(str(copy)).delete_images([ranking.item.image_id])
        searcher = Searcher.open(copy)
        result = searcher.search(ranking.item.path, k=5)
        held = searcher.category_classes.classes_of(ranking.item.category)
        searched = result.garments[main_garment([g.garment for g in result.garments], held)]
        assert searched.garment.label == ranking.label
        assert [p.product_id for p in searched.results] == [p.product_id for p in ranking.products]
        assert [p.score for p in searched.results] == pytest.approx([p.score for p in ranking.products], abs=1e-5)
        searcher.close()
