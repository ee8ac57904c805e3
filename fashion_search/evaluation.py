"""Retrieval quality on a labelled catalog, measured through the read side's own search code.

Every catalog image of the index is a query: its query garment is the one
:func:`~fashion_search.category_classes.main_garment` says is its product, and the garment's
stored vector is ranked by :meth:`Searcher.lookup`, the ranking that search itself returns
(class-aware filters unless ``same_class=False``, each product by its best-matching garment),
with only the query image itself left out. So what ``fashion-search eval`` measures is what
``fashion-search search`` returns for that photo.

* Same-product Recall@K: each view of a product that has several views is a query; a hit is
  the query's own product (another view of it) in the top K.
* Attribute precision@K for a label column (category, colour, ...): each labelled image is a
  query; its top K *other* products are the results (its own product is left out so that the
  figure says how good the suggestions are, not that a product matches itself).

Worn-to-shop recall (:func:`evaluate_pairs`) measures what catalog views of a product cannot:
a photo of someone wearing it (a CSV of ``photo,product_id`` pairs) is searched as ``search``
searches it, and the product must come back. Per-query outcomes of either evaluation can be
written as JSON lines (:func:`write_per_query`) and two runs compared query by query
(:func:`paired_difference`), which tells two setups apart with far fewer queries than
comparing their two intervals.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, NamedTuple, Optional, Sequence, Union

import numpy as np

from fashion_search.catalog import CatalogItem, _read_csv
from fashion_search.category_classes import StoredGarment, main_garment
from fashion_search.errors import CatalogError, ImageError, UsageError
from fashion_search.garments import Garment, GarmentDetector
from fashion_search.pipeline import PreparedImage
from fashion_search.search import ProductResult, Searcher
from fashion_search.store.filters import evaluate


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
    # Each query's outcome, for paired comparisons of two runs (:func:`write_per_query`): recall
    # hits by catalog image path, and precision by label column, then image path.
    recall_per_query: dict[str, dict[int, int]] = field(default_factory=dict)
    precision_per_query: dict[str, dict[str, dict[int, float]]] = field(default_factory=dict)

    def per_query_rows(self) -> Iterator[dict[str, Any]]:
        """``{"key", "metric", "value"}`` for each query and metric (``R@5``, ``category P@10``)."""
        for key, hits in self.recall_per_query.items():
            for k, hit in hits.items():
                yield {"key": key, "metric": f"R@{k}", "value": float(hit)}
        for label, queries in self.precision_per_query.items():
            for key, values in queries.items():
                for k, value in values.items():
                    yield {"key": key, "metric": f"{label} P@{k}", "value": float(value)}

    def to_dict(self, per_query: bool = False) -> dict[str, Any]:
        out = {
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
        if per_query:
            out["per_query"] = list(self.per_query_rows())
        return out

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


def query_garments(items: Sequence[CatalogItem], searcher: Searcher) -> list[tuple[CatalogItem, dict[str, Any]]]:
    """Each indexed image of ``items`` with the stored row of its query garment (its
    :func:`main_garment` given the classes its category holds), in ``items``' order; images the
    index does not hold are left out."""
    wanted = {it.image_id for it in items}
    stored: dict[str, list[dict[str, Any]]] = {}
    for row in searcher.rows(with_vectors=False):
        if row["image_id"] in wanted:
            stored.setdefault(row["image_id"], []).append(row)
    classes = searcher.category_classes
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
    searcher: Searcher,
    k: int,
    same_class: bool = True,
    threads: int = 2,
) -> Iterator[QueryRanking]:
    """The top ``k`` products for each query garment's stored vector, its own image left out,
    in the queries' order."""

    def rank(item: CatalogItem, row: dict[str, Any], vector: np.ndarray) -> QueryRanking:
        products = searcher.lookup(vector, row["label"], k, same_class=same_class, exclude_image=item.image_id)
        return QueryRanking(item, row["label"], products)

    chunk = 512
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        for lo in range(0, len(queries), chunk):
            batch = queries[lo : lo + chunk]
            row_ids = [f"{item.image_id}#{row['garment']}" for item, row in batch]
            vectors = searcher.vectors(row_ids)
            yield from pool.map(
                rank, [item for item, _ in batch], [row for _, row in batch], [vectors[row_id] for row_id in row_ids]
            )


def catalog_queries(
    items: Sequence[CatalogItem], searcher: Searcher, k: int, same_class: bool = True
) -> Iterator[QueryRanking]:
    """Each indexed image of ``items`` searched as evaluation searches it."""
    return rank_queries(query_garments(items, searcher), searcher, k, same_class)


def _label_of(item: CatalogItem, column: str) -> str:
    return item.category if column == "category" else str(item.metadata.get(column, "") or "")


def _precision(chosen: Sequence[str], product_of: dict[str, CatalogItem], column: str, value: str) -> float:
    """Share of the ``chosen`` products labelled ``value``; 0 when there is none to show (such a
    query still counts in the mean)."""
    if not chosen:
        return 0.0
    return float(np.mean([_label_of(product_of[p], column) == value for p in chosen]))


def evaluate_index(
    items: Sequence[CatalogItem],
    searcher: Searcher,
    recall_at: Sequence[int] = (1, 5, 10),
    labels: Sequence[str] = ("category",),
    precision_at: Sequence[int] = (5, 10),
    same_class: bool = True,
) -> EvaluationReport:
    """Same-product recall and attribute precision of ``searcher``'s index over ``items``, every
    ranking taken from :meth:`Searcher.lookup` (see the module's description)."""
    items = sorted(items, key=lambda it: (it.product_id, str(it.path)))
    queries = query_garments(items, searcher)
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
    recall_per_query: dict[str, dict[int, int]] = {}
    precision_per_query: dict[str, dict[str, dict[int, float]]] = {column: {} for column in labels}
    # One more than the largest K: the query's own product may take a place among the others.
    for ranking in rank_queries(queries, searcher, max_k + 1, same_class):
        item = ranking.item
        top = [p.product_id for p in ranking.products]
        if views[item.product_id] >= 2:
            found = [int(item.product_id in top[:k]) for k in recall_at]
            per_query.append((item.product_id, found))
            recall_per_query[str(item.path)] = dict(zip(recall_at, found))
            for k, hit in zip(recall_at, found):
                hits[k] += hit
        others = [p for p in top if p != item.product_id]
        for column in labels:
            value = _label_of(item, column)
            if not value:
                continue
            counted[column] += 1
            values = {k: _precision(others[:k], product_of, column, value) for k in precision_at}
            precision_per_query[column][str(item.path)] = values
            for k in precision_at:
                correct[column][k] += values[k]

    report = EvaluationReport(images=len(queries), products=len(views), multi_view_queries=len(per_query))
    if len(queries) < 2:
        return report
    report.recall_per_query = recall_per_query
    report.precision_per_query = {column: precision_per_query[column] for column in labels if counted[column]}
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


# --- Worn-to-shop evaluation: photos of people wearing catalog products ---------------------

PAIR_COLUMNS = ("photo", "product_id")
# Query photos decoded, detected and embedded together: one embedder batch, bounded memory.
PAIR_BATCH = 64


@dataclass(frozen=True)
class QueryPair:
    """A photo of someone wearing a catalog product, and that product's id."""

    photo: Path  # absolute
    product_id: str


@dataclass
class PairRecord:
    """One pair's outcome: the class of the garment searched, and where its product came."""

    photo: str
    product_id: str
    label: str
    rank: Optional[int]  # 1-based; None when not in the top max(K)

    @property
    def key(self) -> str:
        # A photo may be paired with several products (the top and the trousers it shows).
        return f"{self.photo}#{self.product_id}"

    def to_dict(self) -> dict[str, Any]:
        return {"photo": self.photo, "product_id": self.product_id, "label": self.label, "rank": self.rank}


@dataclass
class SkippedPair:
    photo: str
    product_id: str
    reason: str


@dataclass
class PairsReport:
    queries: int
    skipped: list[SkippedPair] = field(default_factory=list)
    recall: dict[int, float] = field(default_factory=dict)
    # 95% interval of each R@K, bootstrapped over queries (seeded, as for catalog recall).
    recall_95ci: dict[int, tuple[float, float]] = field(default_factory=dict)
    records: list[PairRecord] = field(default_factory=list)

    def per_query_rows(self) -> Iterator[dict[str, Any]]:
        """``{"key", "metric", "value"}``: whether each pair's product is in the top K."""
        for record in self.records:
            for k in self.recall:
                hit = record.rank is not None and record.rank <= k
                yield {"key": record.key, "metric": f"R@{k}", "value": float(hit)}

    def to_dict(self, per_query: bool = False) -> dict[str, Any]:
        labels: dict[str, int] = {}
        for record in self.records:
            labels[record.label] = labels.get(record.label, 0) + 1
        out: dict[str, Any] = {
            "queries": self.queries,
            "skipped": len(self.skipped),
            "recall": {f"R@{k}": round(v, 4) for k, v in self.recall.items()},
            "recall_95ci": {f"R@{k}": [round(lo, 4), round(hi, 4)] for k, (lo, hi) in self.recall_95ci.items()},
            # Which garment class the queries searched with: a photo of a top searched as a dress
            # meets other categories than its product's.
            "query_labels": dict(sorted(labels.items(), key=lambda kv: -kv[1])),
            "skipped_pairs": [vars(s) for s in self.skipped],
        }
        if per_query:
            out["per_query"] = [r.to_dict() for r in self.records]
        return out

    def table(self) -> str:
        lines = [f"queries {self.queries}, skipped {len(self.skipped)}", "", "| metric | value |", "|---|---|"]
        for k, v in self.recall.items():
            lo, hi = self.recall_95ci.get(k, (v, v))
            lines.append(f"| worn-to-shop R@{k} (95% interval {lo:.3f}-{hi:.3f}) | {v:.3f} |")
        shown = 10
        for s in self.skipped[:shown]:
            lines.append(f"  skipped: {s.photo} ({s.product_id}): {s.reason}")
        if len(self.skipped) > shown:
            lines.append(f"  ... and {len(self.skipped) - shown} more skipped")
        return "\n".join(lines)


def read_query_pairs(path: str | os.PathLike) -> list[QueryPair]:
    """The pairs of a CSV with columns ``photo`` and ``product_id`` (others are ignored); relative
    photo paths are relative to the CSV's folder, blank rows are skipped."""
    path = Path(path).expanduser().resolve()
    fields, rows = _read_csv(path)
    missing = [c for c in PAIR_COLUMNS if c not in fields]
    if missing:
        raise CatalogError(
            f"pairs CSV {path} lacks column(s) {', '.join(map(repr, missing))} "
            f"(columns: {', '.join(fields) or 'none'}); it needs {', '.join(PAIR_COLUMNS)}"
        )
    pairs = []
    for row in rows:
        photo, product_id = ((row.get(c) or "").strip() for c in PAIR_COLUMNS)
        if not photo or not product_id:
            continue
        photo_path = Path(photo).expanduser()
        if not photo_path.is_absolute():
            photo_path = path.parent / photo_path
        pairs.append(QueryPair(photo_path.resolve(), product_id))
    return pairs


class ProductGarment(NamedTuple):
    """A catalog image's main garment as stored: what a pair's photo should be searched with."""

    category: str
    label: str


def product_garments(searcher: Searcher, product_ids: Iterable[str]) -> dict[str, set[ProductGarment]]:
    """The main garment (:func:`main_garment`, given its category's classes) of each stored image
    of each of ``product_ids`` the index holds; products it lacks are left out."""
    wanted = set(product_ids)
    images: dict[str, list[dict[str, Any]]] = {}
    for row in searcher.rows(with_vectors=False):
        if row["product_id"] in wanted:
            images.setdefault(row["image_id"], []).append(row)
    classes = searcher.category_classes
    found: dict[str, set[ProductGarment]] = {}
    for rows in images.values():
        rows.sort(key=lambda r: r["garment"])
        held = classes.classes_of(rows[0]["category"])
        main = rows[main_garment([StoredGarment(r["label"], r["box"]) for r in rows], held)]  # type: ignore[index]
        found.setdefault(main["product_id"], set()).add(ProductGarment(main["category"], main["label"]))
    return found


def reaches(searcher: Searcher, label: str, target: ProductGarment) -> bool:
    """Whether class-aware search of a garment of class ``label`` can return ``target``: the same
    class, or a class whose store filters (:meth:`CategoryClasses.search_filter`: the categories
    holding it, and there its lookalike classes) let the target's stored garment through."""
    if label == target.label:
        return True
    where = searcher.class_filter(label, None, same_class=True)
    return where is None or bool(evaluate(where, {}, {"category": target.category, "label": target.label}))


def pair_query_garment(garments: Sequence[Garment], targets: Iterable[ProductGarment], searcher: Searcher) -> int:
    """Index of the garment a pair's photo is searched with: the largest of those whose class can
    reach the product (:func:`reaches`), else the largest garment, by :func:`main_garment`'s rule.
    Why not every garment: a shopper who photographs an outfit for its top looks at the top's
    results, and counting the trousers' results too would credit a hit to the wrong garment."""
    targets = list(targets)
    compatible = {g.label for g in garments if any(reaches(searcher, g.label, t) for t in targets)}
    chosen = main_garment(garments, compatible)
    if chosen is None:
        raise ValueError("no garments to choose from")  # pipeline.detect always returns one
    return chosen


def evaluate_pairs(
    pairs: Sequence[QueryPair],
    searcher: Searcher,
    recall_at: Sequence[int] = (1, 5, 20),
    same_class: bool = True,
    threads: int = 2,
) -> PairsReport:
    """Worn-to-shop recall: each pair's photo is searched as :meth:`Searcher.search` searches
    it (same decoding, detection, crop and embedding, ranked by :meth:`Searcher.lookup`), with
    the garment :func:`pair_query_garment` picks, and the rank of its product recorded. A pair
    whose product the index lacks, or whose photo cannot be read, is skipped with its reason.

    The garment is chosen by the class-aware rule whatever ``same_class`` says, so that both
    settings search with the same garment and differ only in how it is ranked."""
    recall_at = list(recall_at)
    if not recall_at or min(recall_at) < 1:
        raise UsageError(f"recall cut-offs must be positive, not {recall_at}")
    k = max(recall_at)
    targets = product_garments(searcher, {p.product_id for p in pairs})
    pipeline = searcher.pipeline
    detector: GarmentDetector = pipeline.detector.for_parallel_use() if threads > 1 else pipeline.detector

    def prepare(pair: QueryPair) -> Union[PreparedImage, str]:
        """The photo with its query garment alone, or why the pair is skipped."""
        choose = lambda garments: [pair_query_garment(garments, targets[pair.product_id], searcher)]  # noqa: E731
        try:
            return pipeline.prepare(pair.photo, detector, choose)
        except ImageError as exc:
            return f"cannot read photo: {exc}"

    report = PairsReport(queries=0)
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        for lo in range(0, len(pairs), PAIR_BATCH):
            batch = []
            for pair in pairs[lo : lo + PAIR_BATCH]:
                if pair.product_id in targets:
                    batch.append(pair)
                else:
                    report.skipped.append(SkippedPair(str(pair.photo), pair.product_id, "product not in the index"))
            queries = []
            for pair, prepared in zip(batch, pool.map(prepare, batch)):
                if isinstance(prepared, str):
                    report.skipped.append(SkippedPair(str(pair.photo), pair.product_id, prepared))
                else:
                    queries.append((pair, prepared))
            vectors = pipeline.embed_prepared([prepared for _, prepared in queries])
            found = pool.map(
                lambda query, vector: searcher.lookup(vector[0], query[1].garments[0].label, k, same_class=same_class),
                queries,
                vectors,
            )
            for (pair, prepared), products in zip(queries, found):
                label = prepared.garments[0].label
                ids = [p.product_id for p in products]
                rank = ids.index(pair.product_id) + 1 if pair.product_id in ids else None
                report.records.append(PairRecord(str(pair.photo), pair.product_id, label, rank))

    report.queries = len(report.records)
    if report.records:
        # Each query its own group for the bootstrap: pairs are independent photos.
        outcomes = [
            (f"{n:09d}", [int(r.rank is not None and r.rank <= cut) for cut in recall_at])
            for n, r in enumerate(report.records)
        ]
        report.recall = {cut: float(np.mean([o[i] for _, o in outcomes])) for i, cut in enumerate(recall_at)}
        report.recall_95ci = _bootstrap_interval(outcomes, recall_at)
    return report


# --- Per-query outcomes and paired comparisons ------------------------------------------------

PerQueryReport = Union[EvaluationReport, PairsReport]


def write_per_query(report: PerQueryReport, path: str | os.PathLike) -> int:
    """Write each query's outcome as JSON lines ``{"key", "metric", "value"}``; returns how many."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = 0
    with open(path, "w", encoding="utf-8") as fh:
        for row in report.per_query_rows():
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            lines += 1
    return lines


def read_per_query(path: str | os.PathLike) -> dict[tuple[str, str, int], float]:
    """The values of a :func:`write_per_query` file by ``(key, metric, occurrence)``: a pairs CSV
    may list one pair twice, and the n-th of them in one run matches the n-th in another."""
    values: dict[tuple[str, str, int], float] = {}
    seen: dict[tuple[str, str], int] = {}
    try:
        with open(path, encoding="utf-8") as fh:
            for number, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                    key, metric, value = str(row["key"]), str(row["metric"]), float(row["value"])
                except (ValueError, KeyError, TypeError) as exc:
                    raise UsageError(
                        f'{path}:{number} is not a per-query line ({{"key": ..., "metric": ..., "value": ...}}): {exc}'
                    ) from exc
                n = seen.get((key, metric), 0)
                seen[(key, metric)] = n + 1
                values[(key, metric, n)] = value
    except OSError as exc:
        raise UsageError(f"cannot read per-query file {path}: {exc.strerror or exc}") from exc
    return values


def _bootstrap_means(values: np.ndarray, rounds: int, seed: int) -> np.ndarray:
    """``rounds`` means of ``values`` resampled with replacement (seeded), drawn in chunks so
    that a hundred thousand queries do not need gigabytes of indices."""
    rng = np.random.default_rng(seed)
    chunk = max(1, 5_000_000 // max(1, len(values)))
    means = [
        values[rng.integers(0, len(values), size=(min(chunk, rounds - start), len(values)))].mean(axis=1)
        for start in range(0, rounds, chunk)
    ]
    return np.concatenate(means)


def paired_difference(
    a_path: str | os.PathLike, b_path: str | os.PathLike, rounds: int = 2000, seed: int = 0
) -> dict[str, dict[str, Any]]:
    """Per metric, B's mean minus A's over the queries both per-query files hold, with a 95%
    interval bootstrapped over those queries (seeded). Pairing queries removes how hard each
    query is from the comparison, so a change is told apart from noise far sooner than by
    comparing the two runs' own intervals. Metrics in A's order; queries only one run holds are
    left out (``queries`` says how many were compared)."""
    a, b = read_per_query(a_path), read_per_query(b_path)
    common: dict[str, list[tuple[float, float]]] = {}
    for (key, metric, n), value in a.items():
        if (key, metric, n) in b:
            common.setdefault(metric, []).append((value, b[(key, metric, n)]))
    out = {}
    for metric, values in common.items():
        va, vb = np.array(values).T
        lo, hi = np.percentile(_bootstrap_means(vb - va, rounds, seed), [2.5, 97.5])
        out[metric] = {
            "queries": len(values),
            "a": float(va.mean()),
            "b": float(vb.mean()),
            "difference": float((vb - va).mean()),
            "95ci": [float(lo), float(hi)],
        }
    return out
