"""Retrieval quality on a labelled catalog, measured from the index itself.

* Same-product Recall@K: each view of a product that has several views is a query; the rest
  of the catalog (the query image excluded) is the gallery; products are ranked by their
  best-matching view, as search does. A hit is the query's own product in the top K.
* Attribute precision@K for a label column (category, colour, ...): each labelled image is a
  query; its top K *other* products are the results (its own product is left out so that the
  figure says how good the suggestions are, not that a product matches itself).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from fashion_search.catalog import CatalogItem
from fashion_search.category_classes import CategoryClasses
from fashion_search.store import VectorStore


@dataclass
class EvaluationReport:
    images: int
    products: int
    multi_view_queries: int
    recall: dict[int, float] = field(default_factory=dict)
    precision: dict[str, dict[int, float]] = field(default_factory=dict)
    precision_queries: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "images": self.images,
            "products": self.products,
            "multi_view_queries": self.multi_view_queries,
            "recall": {f"R@{k}": round(v, 4) for k, v in self.recall.items()},
            "precision": {
                label: {f"P@{k}": round(v, 4) for k, v in ks.items()} for label, ks in self.precision.items()
            },
            "precision_queries": self.precision_queries,
        }

    def table(self) -> str:
        lines = [
            f"images {self.images}, products {self.products}, multi-view queries {self.multi_view_queries}",
            "",
            "| metric | value |",
            "|---|---|",
        ]
        for k, v in self.recall.items():
            lines.append(f"| same-product R@{k} | {v:.3f} |")
        for label, ks in self.precision.items():
            for k, v in ks.items():
                lines.append(f"| {label} P@{k} ({self.precision_queries[label]} queries) | {v:.3f} |")
        return "\n".join(lines)


def _image_vectors(store: VectorStore, wanted: set[str]) -> dict[str, np.ndarray]:
    """One vector per catalog image: the garment that is its product. That is the largest
    garment of a class its category holds (a shirt photo also shows the model's trousers), else
    the largest garment; model-free detectors give one garment per image anyway."""
    classes = CategoryClasses.from_dict(store.read_manifest().get("category_classes"))
    best: dict[str, tuple[tuple[bool, float], np.ndarray]] = {}
    for row in store.iter_rows(with_vectors=True):
        image_id = row["image_id"]
        if image_id not in wanted:
            continue
        x1, y1, x2, y2 = row["box"]
        rank = (row["label"] in classes.classes_of(row["category"]), (x2 - x1) * (y2 - y1) * row["score"])
        if image_id not in best or rank > best[image_id][0]:
            best[image_id] = (rank, np.asarray(row["vector"], np.float32))
    return {k: v for k, (_, v) in best.items()}


def _label_of(item: CatalogItem, column: str) -> str:
    return item.category if column == "category" else str(item.metadata.get(column, "") or "")


def evaluate_index(
    items: Sequence[CatalogItem],
    store: VectorStore,
    recall_at: Sequence[int] = (1, 5, 10),
    labels: Sequence[str] = ("category",),
    precision_at: Sequence[int] = (5, 10),
    chunk: int = 512,
) -> EvaluationReport:
    vectors = _image_vectors(store, {item.image_id for item in items})
    items = [item for item in items if item.image_id in vectors]
    # Sorting by product lets per-product maxima be taken with one reduceat per chunk.
    items.sort(key=lambda it: (it.product_id, str(it.path)))
    n = len(items)
    report = EvaluationReport(images=n, products=len({it.product_id for it in items}), multi_view_queries=0)
    if n < 2:
        return report
    matrix = np.stack([vectors[it.image_id] for it in items])
    product_ids = [it.product_id for it in items]
    starts = np.flatnonzero(np.r_[True, np.array(product_ids[1:]) != np.array(product_ids[:-1])])
    product_of_image = np.cumsum(np.isin(np.arange(n), starts)) - 1
    views = np.diff(np.r_[starts, n])

    label_values = {
        column: np.array([_label_of(it, column) for it in items], dtype=object) for column in labels
    }
    product_labels = {column: values[starts] for column, values in label_values.items()}

    max_k = max(list(recall_at) + list(precision_at))
    hits = {k: 0 for k in recall_at}
    correct = {column: {k: 0.0 for k in precision_at} for column in labels}
    counted = {column: 0 for column in labels}
    multi = 0
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        sims = matrix[lo:hi] @ matrix.T
        sims[np.arange(hi - lo), np.arange(lo, hi)] = -np.inf  # the query image itself
        per_product = np.maximum.reduceat(sims, starts, axis=1)
        for row in range(hi - lo):
            q = lo + row
            own = product_of_image[q]
            scores = per_product[row]
            top = np.argsort(-scores, kind="stable")[: max_k + 1]
            if views[own] >= 2:
                multi += 1
                for k in recall_at:
                    hits[k] += int(own in top[:k])
            others = top[top != own]
            for column in labels:
                value = label_values[column][q]
                if not value:
                    continue
                counted[column] += 1
                for k in precision_at:
                    chosen = others[:k]
                    correct[column][k] += float(np.mean(product_labels[column][chosen] == value)) if len(chosen) else 0.0
    report.multi_view_queries = multi
    report.recall = {k: hits[k] / multi for k in recall_at} if multi else {}
    report.precision = {
        column: {k: correct[column][k] / counted[column] for k in precision_at}
        for column in labels
        if counted[column]
    }
    report.precision_queries = {column: counted[column] for column in labels if counted[column]}
    return report
