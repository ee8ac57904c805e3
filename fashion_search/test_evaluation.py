import numpy as np
import pytest

from fashion_search.catalog import CatalogItem
from fashion_search.category_classes import CategoryClasses
from fashion_search.evaluation import evaluate_index
from fashion_search.store import VectorRow, open_store


def _store(tmp_path, vectors, items, labels=None):
    store = open_store(str(tmp_path / "eval.lance"), dim=vectors.shape[1])
    rows = [
        VectorRow(item.image_id, 0, str(item.path), item.product_id, item.category, label, 1.0,
                  (0, 0, 1, 1), "f", item.metadata, vec)
        for item, vec, label in zip(items, vectors, labels or ["item"] * len(items))
    ]
    store.upsert_images(rows)
    learned = CategoryClasses.learn({"image_id": r.image_id, "category": r.category, "label": r.label, "box": r.box}
                                    for r in rows)
    store.write_manifest({"category_classes": learned.to_dict()})
    return store


def _item(tmp_path, name, pid, category, colour=""):
    return CatalogItem(tmp_path / f"{name}.jpg", pid, category, {"colour": colour})


def test_recall_counts_own_product_in_top_k_and_excludes_query_image(tmp_path):
    items = [
        _item(tmp_path, "a1", "A", "Tops"), _item(tmp_path, "a2", "A", "Tops"),
        _item(tmp_path, "b1", "B", "Tops"), _item(tmp_path, "c1", "C", "Skirts"),
    ]
    # a1 is closest to b1, then a2: R@1 misses for a1, hits for a2 (nearest to a1).
    vectors = np.array([[1, 0, 0], [0.9, -0.436, 0], [0.95, 0.31, 0], [0, 0, 1]], np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    report = evaluate_index(items, _store(tmp_path, vectors, items), recall_at=(1, 2), labels=("category",), precision_at=(1,))
    assert report.multi_view_queries == 2
    assert report.recall == {1: 0.5, 2: 1.0}


def test_attribute_precision_ignores_the_query_product(tmp_path):
    items = [
        _item(tmp_path, "a1", "A", "Tops", "red"), _item(tmp_path, "b1", "B", "Tops", "blue"),
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
        _item(tmp_path, "a1", "A", "Tops"), _item(tmp_path, "a2", "A", "Tops"),
        _item(tmp_path, "b1", "B", "Skirts"), _item(tmp_path, "b2", "B", "Skirts"),
    ]
    # a1's nearest is the skirt b1, which class-aware search never shows for a top.
    vectors = np.array([[1, 0, 0], [0.8, 0.6, 0], [0.95, 0.31, 0], [0.95, 0.31, 0.3]], np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    store = _store(tmp_path, vectors, items, labels=["top", "top", "skirt", "skirt"])
    assert evaluate_index(items, store, recall_at=(1,), labels=()).recall[1] == 1.0
    any_class = evaluate_index(items, store, recall_at=(1,), labels=(), same_class=False)
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
    report = evaluate_index(items, store, recall_at=(1,), labels=())
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
