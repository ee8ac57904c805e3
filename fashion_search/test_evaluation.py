import numpy as np
import pytest

from fashion_search.catalog import CatalogItem
from fashion_search.evaluation import evaluate_index
from fashion_search.store import VectorRow, open_store


def _store(tmp_path, vectors, items):
    store = open_store(str(tmp_path / "eval.lance"), dim=vectors.shape[1])
    store.upsert_images([
        VectorRow(item.image_id, 0, str(item.path), item.product_id, item.category, "item", 1.0,
                  (0, 0, 1, 1), "f", item.metadata, vec)
        for item, vec in zip(items, vectors)
    ])
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
