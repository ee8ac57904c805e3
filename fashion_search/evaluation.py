"""Retrieval quality on a labelled catalog, measured from the index itself.

* Same-product Recall@K: each view of a product that has several views is a query (the garment
  that is its product); every stored garment of the rest of the catalog (the query image
  excluded) is the gallery; products are ranked by their best-matching garment, and class-aware
  search's filter applies unless ``same_class=False``, all as search does. A hit is the query's
  own product in the top K.
* Attribute precision@K for a label column (category, colour, ...): each labelled image is a
  query; its top K *other* products are the results (its own product is left out so that the
  figure says how good the suggestions are, not that a product matches itself).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

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
    # 95% interval of each R@K, bootstrapped over products: a catalog of 30 multi-view products
    # gives R@1 to about +-0.07, and two setups are only told apart beyond that.
    recall_interval: dict[int, tuple[float, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "images": self.images,
            "products": self.products,
            "multi_view_queries": self.multi_view_queries,
            "recall": {f"R@{k}": round(v, 4) for k, v in self.recall.items()},
            "recall_95ci": {f"R@{k}": [round(lo, 4), round(hi, 4)] for k, (lo, hi) in self.recall_interval.items()},
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
            lo, hi = self.recall_interval.get(k, (v, v))
            lines.append(f"| same-product R@{k} (95% interval {lo:.3f}-{hi:.3f}) | {v:.3f} |")
        for label, ks in self.precision.items():
            for k, v in ks.items():
                lines.append(f"| {label} P@{k} ({self.precision_queries[label]} queries) | {v:.3f} |")
        return "\n".join(lines)


@dataclass
class _Gallery:
    """Every stored garment of the evaluated images, ordered by product, and the garment that
    stands for each image as a query."""
    rows: list[dict[str, Any]]
    vectors: np.ndarray
    query_row: dict[str, int]  # image_id -> index into rows


def _gallery(store: VectorStore, classes: CategoryClasses, wanted: set[str], product_order: dict[str, int]) -> _Gallery:
    """A photo's query garment is the garment that is its product: the largest garment of a class
    its category holds (a shirt photo also shows the model's trousers), else the largest garment;
    model-free detectors give one garment per image anyway."""
    rows = [row for row in store.iter_rows(with_vectors=True) if row["image_id"] in wanted]
    rows.sort(key=lambda r: (product_order[r["image_id"]], r["image_id"], r["garment"]))
    best: dict[str, tuple[tuple[bool, float], int]] = {}
    for i, row in enumerate(rows):
        x1, y1, x2, y2 = row["box"]
        rank = (row["label"] in classes.classes_of(row["category"]), (x2 - x1) * (y2 - y1) * row["score"])
        if row["image_id"] not in best or rank > best[row["image_id"]][0]:
            best[row["image_id"]] = (rank, i)
    dim = len(rows[0]["vector"]) if rows else 0
    vectors = np.stack([np.asarray(r["vector"], np.float32) for r in rows]) if rows else np.zeros((0, dim), np.float32)
    return _Gallery(rows, vectors, {image_id: i for image_id, (_, i) in best.items()})


def _label_of(item: CatalogItem, column: str) -> str:
    return item.category if column == "category" else str(item.metadata.get(column, "") or "")


def evaluate_index(
    items: Sequence[CatalogItem],
    store: VectorStore,
    recall_at: Sequence[int] = (1, 5, 10),
    labels: Sequence[str] = ("category",),
    precision_at: Sequence[int] = (5, 10),
    chunk: int = 512,
    same_class: bool = True,
) -> EvaluationReport:
    """Each image's query garment searched against every stored garment of the other images,
    as :meth:`SearchEngine.search` does: products ranked by their best-matching garment, and
    with ``same_class`` (search's default) only among the garments that class-aware search
    would consider for the query garment's class."""
    items = sorted(items, key=lambda it: (it.product_id, str(it.path)))
    product_index: dict[str, int] = {}
    for it in items:
        product_index.setdefault(it.product_id, len(product_index))
    image_product = {it.image_id: product_index[it.product_id] for it in items}
    classes = CategoryClasses.from_dict(store.read_manifest().get("category_classes"))
    gallery = _gallery(store, classes, set(image_product), image_product)
    items = [it for it in items if it.image_id in gallery.query_row]
    n = len(items)
    report = EvaluationReport(images=n, products=len({it.product_id for it in items}), multi_view_queries=0)
    if n < 2:
        return report
    # Products renumbered over the images that have garments, in gallery order.
    kept_products = sorted({image_product[it.image_id] for it in items})
    renumber = {p: i for i, p in enumerate(kept_products)}
    row_product = np.array([renumber[image_product[r["image_id"]]] for r in gallery.rows])
    starts = np.flatnonzero(np.r_[True, row_product[1:] != row_product[:-1]])
    # An image's garments are adjacent in the gallery: its span is masked out of its own query.
    span: dict[str, list[int]] = {}
    for i, r in enumerate(gallery.rows):
        span.setdefault(r["image_id"], [i, i])[1] = i + 1
    product_of_image = {it.image_id: renumber[image_product[it.image_id]] for it in items}
    views = np.bincount([product_of_image[it.image_id] for it in items], minlength=len(kept_products))

    row_categories = np.array([r["category"] for r in gallery.rows], dtype=object)
    row_labels = np.array([r["label"] for r in gallery.rows], dtype=object)
    allowed_for: dict[str, Optional[np.ndarray]] = {}

    def allowed(label: str) -> Optional[np.ndarray]:
        # The same filter the store applies at search time, as a mask over the gallery.
        if label not in allowed_for:
            categories, labels_ = classes.search_filter(label) if same_class else (None, None)
            mask = None
            if categories is not None or labels_ is not None:
                mask = np.ones(len(gallery.rows), bool)
                if categories is not None:
                    mask &= np.isin(row_categories, list(categories))
                if labels_ is not None:
                    mask &= np.isin(row_labels, list(labels_))
            allowed_for[label] = mask
        return allowed_for[label]

    first_item = {}
    for it in items:
        first_item.setdefault(product_of_image[it.image_id], it)
    product_labels = {
        column: np.array([_label_of(first_item[p], column) for p in range(len(kept_products))], dtype=object)
        for column in labels
    }

    max_k = max(list(recall_at) + list(precision_at))
    hits = {k: 0 for k in recall_at}
    per_query: list[tuple[int, list[int]]] = []  # (product, hit at each K) of every recall query
    correct = {column: {k: 0.0 for k in precision_at} for column in labels}
    counted = {column: 0 for column in labels}
    multi = 0
    for lo in range(0, n, chunk):
        batch = items[lo : lo + chunk]
        query_rows = [gallery.query_row[it.image_id] for it in batch]
        sims = gallery.vectors[query_rows] @ gallery.vectors.T
        by_label: dict[str, list[int]] = {}
        for row, it in enumerate(batch):
            a, b = span[it.image_id]
            sims[row, a:b] = -np.inf  # the query image itself
            by_label.setdefault(gallery.rows[query_rows[row]]["label"], []).append(row)
        for label, members in by_label.items():
            mask = allowed(label)
            if mask is not None:
                sims[np.ix_(members, np.flatnonzero(~mask))] = -np.inf
        per_product = np.maximum.reduceat(sims, starts, axis=1)
        for row, it in enumerate(batch):
            own = product_of_image[it.image_id]
            scores = per_product[row]
            top = np.argsort(-scores, kind="stable")[: max_k + 1]
            top = top[np.isfinite(scores[top])]  # search returns only products that pass its filter
            if views[own] >= 2:
                multi += 1
                found = [int(own in top[:k]) for k in recall_at]
                per_query.append((own, found))
                for k, hit in zip(recall_at, found):
                    hits[k] += hit
            others = top[top != own]
            for column in labels:
                value = _label_of(it, column)
                if not value:
                    continue
                counted[column] += 1
                for k in precision_at:
                    chosen = others[:k]
                    correct[column][k] += float(np.mean(product_labels[column][chosen] == value)) if len(chosen) else 0.0
    report.multi_view_queries = multi
    report.recall = {k: hits[k] / multi for k in recall_at} if multi else {}
    report.recall_interval = _bootstrap_interval(per_query, list(recall_at))
    report.precision = {
        column: {k: correct[column][k] / counted[column] for k in precision_at}
        for column in labels
        if counted[column]
    }
    report.precision_queries = {column: counted[column] for column in labels if counted[column]}
    return report


def _bootstrap_interval(per_query: list[tuple[int, list[int]]], recall_at: list[int], rounds: int = 2000,
                        seed: int = 0) -> dict[int, tuple[float, float]]:
    """95% percentile intervals of R@K, resampling products (all views of a product together,
    since they are not independent queries); seeded, so a rerun prints the same interval."""
    if not per_query:
        return {}
    products = sorted({p for p, _ in per_query})
    index = {p: i for i, p in enumerate(products)}
    hits = np.zeros((len(products), len(recall_at)))
    queries = np.zeros(len(products))
    for product, found in per_query:
        hits[index[product]] += found
        queries[index[product]] += 1
    draws = np.random.default_rng(seed).integers(0, len(products), size=(rounds, len(products)))
    recalls = hits[draws].sum(axis=1) / queries[draws].sum(axis=1)[:, None]
    lo, hi = np.percentile(recalls, [2.5, 97.5], axis=0)
    return {k: (float(lo[i]), float(hi[i])) for i, k in enumerate(recall_at)}
