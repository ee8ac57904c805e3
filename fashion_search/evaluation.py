"""Retrieval quality on a labelled catalog, measured through the engine's own search code.

Every catalog image of the index is a query: its query garment is the one
:func:`~fashion_search.category_classes.main_garment` says is its product, and the garment's
stored vector is ranked by :meth:`SearchEngine.lookup`, the ranking that search itself returns
(class-aware filters unless ``same_class=False``, each product by its best-matching garment),
with only the query image itself left out. So what ``fashion-search eval`` measures is what
``fashion-search search`` returns for that photo.

* Same-product Recall@K: each view of a product that has several views is a query; a hit is
  the query's own product (another view of it) in the top K.
* Attribute precision@K for a label column (category, colour, ...): each labelled image is a
  query; its top K *other* products are the results (its own product is left out so that the
  figure says how good the suggestions are, not that a product matches itself).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np

from fashion_search.catalog import CatalogItem
from fashion_search.category_classes import StoredGarment, main_garment
from fashion_search.engine import ProductResult, SearchEngine


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
class QueryRanking:
    """What search returns for one catalog image's query garment, that image left out."""

    item: CatalogItem
    label: str
    products: list[ProductResult]


def query_garments(items: Sequence[CatalogItem], engine: SearchEngine) -> list[tuple[CatalogItem, dict[str, Any]]]:
    """Each indexed image of ``items`` with the stored row of its query garment (its
    :func:`main_garment` given the classes its category holds), in ``items``' order; images the
    index does not hold are left out."""
    wanted = {it.image_id for it in items}
    stored: dict[str, list[dict[str, Any]]] = {}
    for row in engine.store.iter_rows(with_vectors=False):
        if row["image_id"] in wanted:
            stored.setdefault(row["image_id"], []).append(row)
    classes = engine.category_classes
    queries = []
    for item in items:
        rows = sorted(stored.get(item.image_id, []), key=lambda r: r["garment"])
        if rows:
            held = classes.classes_of(rows[0]["category"])
            main = main_garment([StoredGarment(r["label"], r["box"]) for r in rows], held)
            queries.append((item, rows[main]))  # type: ignore[index]
    return queries


def rank_queries(
    queries: Sequence[tuple[CatalogItem, dict[str, Any]]],
    engine: SearchEngine,
    k: int,
    same_class: bool = True,
    threads: int = 2,
) -> Iterator[QueryRanking]:
    """The top ``k`` products for each query garment's stored vector, its own image left out,
    in the queries' order."""

    def rank(item: CatalogItem, row: dict[str, Any], vector: np.ndarray) -> QueryRanking:
        products = engine.lookup(vector, row["label"], k, same_class=same_class, exclude_image=item.image_id)
        return QueryRanking(item, row["label"], products)

    chunk = 512
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        for lo in range(0, len(queries), chunk):
            batch = queries[lo : lo + chunk]
            row_ids = [f"{item.image_id}#{row['garment']}" for item, row in batch]
            vectors = engine.store.get_vectors(row_ids)
            yield from pool.map(
                rank, [item for item, _ in batch], [row for _, row in batch], [vectors[row_id] for row_id in row_ids]
            )


def catalog_queries(
    items: Sequence[CatalogItem], engine: SearchEngine, k: int, same_class: bool = True
) -> Iterator[QueryRanking]:
    """Each indexed image of ``items`` searched as evaluation searches it."""
    return rank_queries(query_garments(items, engine), engine, k, same_class)


def _label_of(item: CatalogItem, column: str) -> str:
    return item.category if column == "category" else str(item.metadata.get(column, "") or "")


def evaluate_index(
    items: Sequence[CatalogItem],
    engine: SearchEngine,
    recall_at: Sequence[int] = (1, 5, 10),
    labels: Sequence[str] = ("category",),
    precision_at: Sequence[int] = (5, 10),
    same_class: bool = True,
) -> EvaluationReport:
    """Same-product recall and attribute precision of ``engine``'s index over ``items``, every
    ranking taken from :meth:`SearchEngine.lookup` (see the module's description)."""
    items = sorted(items, key=lambda it: (it.product_id, str(it.path)))
    queries = query_garments(items, engine)
    # Views the index holds: a product's other view that failed to index cannot be found.
    views: dict[str, int] = {}
    product_of: dict[str, CatalogItem] = {}
    for item, _ in queries:
        views[item.product_id] = views.get(item.product_id, 0) + 1
        product_of.setdefault(item.product_id, item)
    max_k = max(list(recall_at) + list(precision_at))

    hits = {k: 0 for k in recall_at}
    per_query: list[tuple[str, list[int]]] = []  # (product, hit at each K) of every recall query
    correct = {column: {k: 0.0 for k in precision_at} for column in labels}
    counted = {column: 0 for column in labels}
    # One more than the largest K: the query's own product may take a place among the others.
    for ranking in rank_queries(queries, engine, max_k + 1, same_class):
        item = ranking.item
        top = [p.product_id for p in ranking.products]
        if views[item.product_id] >= 2:
            found = [int(item.product_id in top[:k]) for k in recall_at]
            per_query.append((item.product_id, found))
            for k, hit in zip(recall_at, found):
                hits[k] += hit
        others = [p for p in top if p != item.product_id]
        for column in labels:
            value = _label_of(item, column)
            if not value:
                continue
            counted[column] += 1
            for k in precision_at:
                chosen = others[:k]
                if chosen:
                    correct[column][k] += float(np.mean([_label_of(product_of[p], column) == value for p in chosen]))

    report = EvaluationReport(images=len(queries), products=len(views), multi_view_queries=len(per_query))
    if len(queries) < 2:
        return report
    multi = len(per_query)
    report.recall = {k: hits[k] / multi for k in recall_at} if multi else {}
    report.recall_interval = _bootstrap_interval(per_query, list(recall_at))
    report.precision = {
        column: {k: correct[column][k] / counted[column] for k in precision_at} for column in labels if counted[column]
    }
    report.precision_queries = {column: counted[column] for column in labels if counted[column]}
    return report


def _bootstrap_interval(
    per_query: list[tuple[str, list[int]]], recall_at: list[int], rounds: int = 2000, seed: int = 0
) -> dict[int, tuple[float, float]]:
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
