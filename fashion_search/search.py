"""The read side: searching an index by photo or by product ("more like this"), the catalog views
that pages and evaluation read, and what ``info`` shows. Nothing here writes to the index.

A :class:`Searcher` holds an open store and the models its index was built with, and the index's
record (:class:`~fashion_search.index_record.IndexRecord`), re-read every ``record_ttl_s`` in a
server so that what other processes learn (category classes, metadata columns) reaches it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Optional, Sequence

import numpy as np

from fashion_search.category_classes import CategoryClasses
from fashion_search.errors import (
    EmptyIndexError,
    FashionSearchError,
    IndexMismatchError,
    UnknownProductError,
    UsageError,
)
from fashion_search.garments import Garment, encode_mask
from fashion_search.images import MAX_PIXELS, ImageSource
from fashion_search.index_record import IndexRecord, read_record
from fashion_search.pipeline import Component, GarmentPipeline, model_files, pipeline_from_record
from fashion_search.registry import DEFAULT_TEXT_ENCODER, TEXT_ENCODERS
from fashion_search.store import Hit, VectorStore, hit_order, missing_local_store, open_store
from fashion_search.store.filters import Filter, MetadataColumns, all_of, excluding, one_of, parse_filter
from fashion_search.vectors import l2_normalise

if TYPE_CHECKING:
    from fashion_search.embed.text_encoder import TextEncoder

log = logging.getLogger(__name__)

# How much the words of a photo-and-words query weigh against the photo's garment (both unit
# vectors, added, then normalised again).
TEXT_WEIGHT = 1.0
# The label a text query's lookup is made with: no garment class, so no class filter.
TEXT_LABEL = "text"


@dataclass
class ProductResult:
    product_id: str
    category: str
    image: str
    score: float
    metadata: dict[str, Any]
    label: str = ""
    image_id: str = ""  # lets a server show the image by id, never by path

    def to_dict(self) -> dict[str, Any]:
        return {
            "product_id": self.product_id,
            "category": self.category,
            "image": self.image,
            "score": round(float(self.score), 6),
            "metadata": self.metadata,
        }


@dataclass
class GarmentResult:
    garment: Garment
    results: list[ProductResult]

    def to_dict(self) -> dict[str, Any]:
        mask = self.garment.mask
        return {
            "label": self.garment.label,
            "score": round(float(self.garment.score), 4),
            "box": [int(v) for v in self.garment.box],
            "mask": encode_mask(mask) if mask is not None else None,
            "results": [r.to_dict() for r in self.results],
        }


@dataclass
class SearchResult:
    """What one query found: per garment of its photo (``garments``), or, for words alone, one
    list of products (``results``, with ``garments`` empty). ``query`` names the query: the
    photo's name, or ``{"image", "text"}`` where a query has words."""

    query: Any
    garments: list[GarmentResult]
    timings_ms: dict[str, float] = field(default_factory=dict)
    results: Optional[list[ProductResult]] = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"query": self.query}
        if self.results is not None:
            data["results"] = [r.to_dict() for r in self.results]
        else:
            data["garments"] = [g.to_dict() for g in self.garments]
        data["timings_ms"] = {k: round(v, 2) for k, v in self.timings_ms.items()}
        return data


def best_per_product(hits: Iterable[Hit], k: int) -> list[ProductResult]:
    """Results are products, not images: each product once, shown by its best-matching view
    (of equally near views, the first in :func:`hit_order`), products in that order too."""
    best: dict[str, Hit] = {}
    for hit in sorted(hits, key=hit_order):
        best.setdefault(hit.product_id, hit)
    ranked = list(best.values())[:k]
    return [ProductResult(h.product_id, h.category, h.image, h.score, h.metadata, h.label, h.image_id) for h in ranked]


def _open_existing(db: str | os.PathLike) -> tuple[VectorStore, str, IndexRecord]:
    """The store at ``db``, how messages name it, and its record; :class:`EmptyIndexError` when
    nothing was indexed there (a missing folder is never created by reading it)."""
    if missing_local_store(db):
        raise EmptyIndexError(f"no index at {db}: run `fashion-search index CATALOG --db {db}` first")
    store = open_store(str(db))
    shown = store.shown_as(str(db))
    record = read_record(store, shown)
    if record is None:
        raise EmptyIndexError(f"no index at {shown}: run `fashion-search index CATALOG --db {shown}` first")
    return store, shown, record


class Searcher:
    """An open index with its models loaded, for searching; safe to share between threads."""

    def __init__(
        self,
        store: VectorStore,
        pipeline: GarmentPipeline,
        record: Optional[IndexRecord] = None,
        text_encoder: Optional[Component] = None,
    ) -> None:
        self.store = store
        self.pipeline = pipeline
        # Words are understood by a model loaded on the first text query (about 25 MB).
        self.text_encoder_spec = text_encoder or Component(DEFAULT_TEXT_ENCODER)
        self._text_encoder: Optional[TextEncoder] = None
        self._text_lock = threading.Lock()
        self._record = record
        self._record_read_at = time.monotonic() if record is not None else 0.0
        # How often the index's record is re-read (None: once). A server sets it, so that
        # classes learned by another process's index run reach it without a restart.
        self.record_ttl_s: Optional[float] = None
        # Set when a re-read finds the index rebuilt with other models: its vectors no longer
        # compare with this process's queries (a server then reports itself unavailable).
        self.models_changed: list[str] = []
        # Its threads start on first use.
        self._lookup_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="lookup")

    @classmethod
    def open(
        cls,
        db: str | os.PathLike,
        embedder: Optional[Component] = None,
        detector: Optional[Component] = None,
        warm: bool = False,
        crop: Optional[str] = None,
        threads: Optional[int] = None,
        text_encoder: Optional[Component] = None,
    ) -> "Searcher":
        """Open an existing index with the models it was built with (unless others are given).

        Refuses (:class:`IndexMismatchError`) an index whose recorded models differ from the
        ones loaded: other weights at the same path, another version's model, other options.
        ``warm=True`` loads the store's indexes into memory now (about a second at a million
        vectors): right for a serving process, wasted on a one-shot search.
        """
        store, shown, record = _open_existing(db)
        pipeline = pipeline_from_record(record, embedder, detector, crop, threads)
        pipeline.check(
            record,
            shown,
            f"Re-embed its catalog with the installed models: fashion-search index "
            f"CATALOG --db {shown} --rebuild (or use the models that built it).",
        )
        searcher = cls(store, pipeline, record, text_encoder)
        if warm:
            store.warm()
        return searcher

    # -- the index's record ----------------------------------------------------------------------

    @property
    def record(self) -> Optional[IndexRecord]:
        """The index's record as last read (re-read when due); None while nothing is indexed."""
        self.refresh_record_if_due()
        return self._record

    def refresh_record_if_due(self) -> None:
        """:meth:`refresh_record` when never read, or read more than ``record_ttl_s`` ago."""
        stale = self.record_ttl_s is not None and time.monotonic() - self._record_read_at > self.record_ttl_s
        if self._record is None or stale:
            self.refresh_record()

    def refresh_record(self) -> None:
        """Re-read the index's record: the learned category classes and metadata columns, and
        whether it was rebuilt with other models since this process opened it
        (:attr:`models_changed`)."""
        record = read_record(self.store)
        self._record, self._record_read_at = record, time.monotonic()
        changed = self.pipeline.differences(record) if record is not None else []
        if changed and not self.models_changed:
            log.error("the index was rebuilt with other models; restart to load them: %s", "; ".join(changed))
        self.models_changed = changed

    def use_record(self, record: Optional[IndexRecord]) -> None:
        """Take over the record a write of this process just stored (no store read, so it cannot
        fail); None: read it again from the store when next needed."""
        self._record, self._record_read_at = record, time.monotonic()

    @property
    def category_classes(self) -> CategoryClasses:
        """Garment classes each catalog category holds, as learned by index runs and writes."""
        record = self.record
        return record.classes if record is not None else CategoryClasses()

    @property
    def metadata_columns(self) -> MetadataColumns:
        """The metadata columns the catalog's products have, as learned by index runs and writes."""
        record = self.record
        return record.columns if record is not None else MetadataColumns()

    def parse_filter(self, where: "str | Filter | None") -> Optional[Filter]:
        """A metadata filter for this index: text is parsed against its columns
        (:class:`FilterError` when it does not parse or names an unknown column)."""
        if where is None or not isinstance(where, str):
            return where
        return parse_filter(where, self.metadata_columns)

    # -- ranking ---------------------------------------------------------------------------------

    def class_filter(self, label: str, category: Optional[str], same_class: bool) -> Optional[Filter]:
        """The store filter a garment of class ``label`` searches with: with ``same_class``, the
        categories and labels of :meth:`CategoryClasses.search_filter`; without, everything (or
        the explicit ``category``)."""
        if not same_class:
            return one_of("category", category)
        categories, labels = self.category_classes.search_filter(label, category)
        return all_of(one_of("category", categories), one_of("label", labels))

    def lookup(
        self,
        vector: np.ndarray,
        label: str,
        k: int = 12,
        category: Optional[str] = None,
        same_class: bool = True,
        exclude_product: Optional[str] = None,
        exclude_image: Optional[str] = None,
        where: "str | Filter | None" = None,
    ) -> list[ProductResult]:
        """The ``k`` products nearest to one garment's ``vector``, each ranked by its best-matching
        stored garment: the one ranking that search, "more like this" and evaluation share.

        ``label`` is the garment's class, which class-aware search (``same_class``) turns into
        store filters; ``where`` is a metadata filter (text in the grammar of
        :mod:`fashion_search.store.filters`, or parsed); ``exclude_product`` leaves a product
        out ("more like this"), ``exclude_image`` one catalog image (evaluation, where a query
        is a catalog image). All of them are one filter tree for the store.
        """
        self.refresh_record_if_due()
        if self.models_changed:
            raise IndexMismatchError(
                "the index was rebuilt with other models since this process opened it ("
                + "; ".join(self.models_changed)
                + "): restart to search it with them"
            )
        tree = all_of(
            self.class_filter(label, category, same_class),
            self.parse_filter(where),
            excluding("product_id", exclude_product),
            excluding("image_id", exclude_image),
        )
        # Over-fetch because several views of one product may crowd the top; widen until k
        # distinct products are found or the index runs out.
        fetch = max(4 * k, 32)
        while True:
            hits = self.store.search(vector, fetch, where=tree)
            products = best_per_product(hits, k)
            # The store size is asked only in the rare widening case, not on every search.
            if len(products) >= k or len(hits) < fetch or fetch >= self.store.count():
                return products
            fetch *= 4

    def _lookups(
        self,
        queries: list[tuple[np.ndarray, str]],
        k: int,
        category: Optional[str],
        same_class: bool,
        exclude_product: Optional[str] = None,
        where: Optional[Filter] = None,
    ) -> list[list[ProductResult]]:
        """One lookup per garment ``(vector, label)``, run side by side: the store's queries
        spend most of their time outside the GIL, so a photo with five garments does not wait
        five lookups in a row."""

        def one(query: tuple[np.ndarray, str]) -> list[ProductResult]:
            return self.lookup(query[0], query[1], k, category, same_class, exclude_product, where=where)

        if len(queries) < 2:
            return [one(q) for q in queries]
        return list(self._lookup_pool.map(one, queries))

    @property
    def text_encoder(self) -> "TextEncoder":
        """The model that turns words into this index's vectors, loaded on first use; refused
        (:class:`TextSearchError`) for an index another embedder built."""
        with self._text_lock:
            if self._text_encoder is None:
                spec = self.text_encoder_spec
                options = dict(spec.options)
                if self.pipeline.threads is not None:
                    options.setdefault("threads", self.pipeline.threads)
                encoder = TEXT_ENCODERS.create(spec.name, **options)
                encoder.check_embedder(self.pipeline.embedder.identity(), self.store.shown_as(self.store.uri))
                self._text_encoder = encoder
            return self._text_encoder

    def search(
        self,
        image: Optional[ImageSource] = None,
        k: int = 12,
        category: Optional[str] = None,
        query_name: Optional[str] = None,
        same_class: bool = True,
        where: "str | Filter | None" = None,
        max_pixels: int = MAX_PIXELS,
        text: Optional[str] = None,
    ) -> SearchResult:
        """The ``k`` most similar products for each garment found in ``image``, only among
        products whose metadata passes ``where`` when given (e.g. ``'brand = "Nike" and
        price < 50'``; see :mod:`fashion_search.store.filters`).

        With ``text`` too, each garment is searched for what the photo shows as the words say
        it (its vector and the words' added, :data:`TEXT_WEIGHT`); with ``text`` alone, the
        ``k`` products the words describe (``results`` of the answer)."""
        if image is None and text is None:
            raise UsageError("a search needs a photo, words, or both")
        metadata_filter = self.parse_filter(where)  # before any model runs: a typo fails fast
        if image is None:
            return self.search_text(str(text), k, category, metadata_filter)
        timings: dict[str, float] = {}
        started = time.perf_counter()
        words = None
        if text is not None:
            words = self.text_encoder.encode([text])[0]
            timings["text"] = (time.perf_counter() - started) * 1e3
        prepared = self.pipeline.prepare(image, timings=timings, max_pixels=max_pixels)
        [vectors] = self.pipeline.embed_prepared([prepared], timings)
        if words is not None:
            vectors = l2_normalise(vectors + TEXT_WEIGHT * words[None, :])
        looked_up = time.perf_counter()
        found = self._lookups(
            [(v, g.label) for g, v in zip(prepared.garments, vectors)], k, category, same_class, where=metadata_filter
        )
        results = [GarmentResult(g, products) for g, products in zip(prepared.garments, found)]
        timings["lookup"] = (time.perf_counter() - looked_up) * 1e3
        timings["total"] = (time.perf_counter() - started) * 1e3
        name = (
            query_name
            if query_name is not None
            else (str(image) if isinstance(image, (str, os.PathLike)) else "<image>")
        )
        query: Any = name if text is None else {"image": name, "text": text}
        return SearchResult(query=query, garments=results, timings_ms=timings)

    def search_text(
        self,
        text: str,
        k: int = 12,
        category: Optional[str] = None,
        where: "str | Filter | None" = None,
    ) -> SearchResult:
        """The ``k`` products the words describe best, each by its best-matching garment, over
        every garment class (or the ``category`` given), only among products passing ``where``."""
        metadata_filter = self.parse_filter(where)
        started = time.perf_counter()
        vector = self.text_encoder.encode([text])[0]
        encoded = time.perf_counter()
        products = self.lookup(vector, TEXT_LABEL, k, category, same_class=False, where=metadata_filter)
        done = time.perf_counter()
        timings = {"text": (encoded - started) * 1e3, "lookup": (done - encoded) * 1e3, "total": (done - started) * 1e3}
        return SearchResult(query={"image": None, "text": text}, garments=[], timings_ms=timings, results=products)

    def search_product(
        self,
        product_id: str,
        k: int = 12,
        category: Optional[str] = None,
        same_class: bool = True,
        where: "str | Filter | None" = None,
    ) -> SearchResult:
        """ "More like this": the ``k`` products most similar to each stored garment of a
        catalog product's first image, the product itself excluded.

        No image is decoded or embedded: the stored vectors are the query. Raises
        :class:`UnknownProductError` when the index does not hold ``product_id``.
        """
        metadata_filter = self.parse_filter(where)
        t0 = time.perf_counter()
        hits = self.product(product_id)
        first = [h for h in hits if h.image_id == hits[0].image_id]
        vectors = self.store.get_vectors([h.row_id for h in first])
        t1 = time.perf_counter()
        # Rows re-indexed between the two reads are skipped.
        kept = [hit for hit in first if hit.row_id in vectors]
        garments = [Garment(label=hit.label, score=1.0, box=tuple(int(round(v)) for v in hit.box)) for hit in kept]
        found = self._lookups(
            [(vectors[hit.row_id], hit.label) for hit in kept],
            k,
            category,
            same_class,
            exclude_product=product_id,
            where=metadata_filter,
        )
        results = [GarmentResult(g, products) for g, products in zip(garments, found)]
        t2 = time.perf_counter()
        timings = {"fetch": (t1 - t0) * 1e3, "lookup": (t2 - t1) * 1e3, "total": (t2 - t0) * 1e3}
        return SearchResult(query=f"product:{product_id}", garments=results, timings_ms=timings)

    # -- catalog views ---------------------------------------------------------------------------

    def product(self, product_id: str) -> list[Hit]:
        """Every stored garment of one product, by image and garment; :class:`UnknownProductError`
        when the index does not hold it."""
        hits = self.store.get_product(product_id)
        if not hits:
            raise UnknownProductError(f"unknown product: {product_id!r}")
        return hits

    def image_path(self, image_id: str) -> Optional[str]:
        """Where the catalog image ``image_id`` lives (None when it is not indexed)."""
        return self.store.image_path(image_id)

    def categories(self) -> dict[str, int]:
        """Every catalog category with its number of products (a scan of the store)."""
        return self.store.categories()

    def garment_count(self) -> int:
        return self.store.count()

    def rows(self, with_vectors: bool = False) -> Iterator[dict[str, Any]]:
        """Every stored garment (the fields of :class:`~fashion_search.store.VectorRow`)."""
        return self.store.iter_rows(with_vectors=with_vectors)

    def vectors(self, row_ids: Sequence[str]) -> dict[str, np.ndarray]:
        """The stored vectors of ``row_ids`` that the index holds."""
        return self.store.get_vectors(row_ids)

    def close(self) -> None:
        self._lookup_pool.shutdown(wait=True)
        self.store.close()


def describe_index(db: str | os.PathLike) -> dict[str, Any]:
    """What an index holds and which models built it, and whether the models found here are those
    (``models_match``; ``differences`` says how they are not): what ``fashion-search info`` shows.
    Unlike :meth:`Searcher.open`, it answers for an index built with other models too."""
    store, shown, record = _open_existing(db)
    try:
        differences = pipeline_from_record(record).differences(record)
    except FashionSearchError as exc:  # the models it names cannot be loaded here
        differences = [str(exc)]
    manifest = record.to_dict()
    return {
        "db": shown,
        "format": record.format,
        "garments": store.count(),
        "images": len(store.fingerprints()),
        "categories": store.categories(),
        "models": {role: manifest.get(role) for role in ("embedder", "detector")},
        "dim": record.dim,
        "crop": record.crop,
        "models_match": not differences,
        "differences": differences,
        "category_classes": record.classes.shares,
        "metadata_columns": record.columns.to_dict(),
    }


def measured_with(pipeline: GarmentPipeline, same_class: bool) -> dict[str, Any]:
    """What an evaluation's JSON says about how it was measured: the date and the models."""
    import datetime

    record = pipeline.record()
    return {
        "measured": datetime.date.today().isoformat(),
        "models": {
            role: {"name": model.name, "files": dict(model_files(model.identity))}
            for role, model in (("embedder", record.embedder), ("detector", record.detector))
        },
        "crop": record.crop,
        "same_class": same_class,
    }


__all__ = [
    "GarmentResult",
    "ProductResult",
    "SearchResult",
    "Searcher",
    "best_per_product",
    "describe_index",
    "measured_with",
]
