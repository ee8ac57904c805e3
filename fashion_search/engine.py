"""The Python API: open an index, search it by photo. The CLI and the web layer call only this."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Optional, Sequence, Union

import numpy as np

from fashion_search.catalog import CatalogItem
from fashion_search.catalog.uploads import UPLOAD_FINGERPRINT, UploadFolder, content_digest
from fashion_search.category_classes import CatalogGarmentFilter, CategoryClasses
from fashion_search.errors import (
    CatalogError,
    EmptyIndexError,
    FashionSearchError,
    ImageError,
    IndexMismatchError,
    UnknownProductError,
)
from fashion_search.garments import Garment, encode_mask
from fashion_search.images import MAX_PIXELS, ImageSource, image_format, load_image
from fashion_search.indexing import IndexReport, analyse_batch, check_manifest, index_catalog
from fashion_search.pipeline import DEFAULT_CROP, Component, GarmentPipeline, pipeline_from_manifest
from fashion_search.store import Hit, VectorRow, VectorStore, missing_local_store, open_store
from fashion_search.store.filters import Filter, MetadataColumns, parse_filter

if TYPE_CHECKING:
    from fashion_search.indexing_ray import RaySettings

# Store filters for one lookup: catalog categories and garment labels (None: no filter).
Narrowing = Optional[Union[str, list[str]]]


log = logging.getLogger(__name__)


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
    query: str
    garments: list[GarmentResult]
    timings_ms: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "garments": [g.to_dict() for g in self.garments],
            "timings_ms": {k: round(v, 2) for k, v in self.timings_ms.items()},
        }


def best_per_product(hits: Iterable[Hit], k: int) -> list[ProductResult]:
    """Results are products, not images: each product once, shown by its best-matching view."""
    best: dict[str, Hit] = {}
    for hit in hits:
        if hit.product_id not in best or hit.score > best[hit.product_id].score:
            best[hit.product_id] = hit
    ranked = sorted(best.values(), key=lambda h: -h.score)[:k]
    return [ProductResult(h.product_id, h.category, h.image, h.score, h.metadata, h.label, h.image_id) for h in ranked]


# Limits of one catalog write, so that one request cannot hold the server for long.
MAX_PRODUCT_IMAGES = 20
MAX_ID_CHARS = 256
MAX_METADATA_COLUMNS = 100
MAX_METADATA_CHARS = 64 * 1024


@dataclass
class ProductWrite:
    """What a catalog write did: the product as now stored, and whether it is new."""

    product_id: str
    category: str
    images: int
    garments: int
    created: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_product_fields(product_id: str, category: str, metadata: Any) -> dict[str, Any]:
    """Refuse (:class:`CatalogError`) what cannot be a catalog product; its metadata."""
    for name, value in (("product id", product_id), ("category", category)):
        if not isinstance(value, str) or not value.strip():
            raise CatalogError(f"a product needs a {name}")
        if len(value) > MAX_ID_CHARS or not value.isprintable():
            raise CatalogError(f"the {name} must be printable text of at most {MAX_ID_CHARS} characters")
    metadata = {} if metadata is None else metadata
    if not isinstance(metadata, dict):
        raise CatalogError("metadata must be a JSON object of column names to values")
    if len(metadata) > MAX_METADATA_COLUMNS:
        raise CatalogError(f"metadata has more than {MAX_METADATA_COLUMNS} columns")
    for key, value in metadata.items():
        if not isinstance(key, str) or not key.strip() or len(key) > MAX_ID_CHARS:
            raise CatalogError(f"metadata column names must be text of 1 to {MAX_ID_CHARS} characters")
        if value is not None and not isinstance(value, (str, int, float, bool)):
            raise CatalogError(f"metadata column {key!r}: values must be text, numbers, true/false or null")
        if isinstance(value, float) and not math.isfinite(value):
            raise CatalogError(f"metadata column {key!r}: numbers must be finite")
    if len(json.dumps(metadata, default=str)) > MAX_METADATA_CHARS:
        raise CatalogError(f"metadata is longer than {MAX_METADATA_CHARS:,} characters")
    return metadata


class SearchEngine:
    """An open index with its models loaded; safe to share between threads for searching."""

    def __init__(self, store: VectorStore, pipeline: GarmentPipeline) -> None:
        self.store = store
        self.pipeline = pipeline
        self._category_classes: Optional[CategoryClasses] = None
        self._metadata_columns = MetadataColumns()
        self._manifest_read_at = 0.0
        # How often the index's manifest is re-read (None: once). A server sets it, so that
        # classes learned by another process's index run reach it without a restart.
        self.manifest_ttl_s: Optional[float] = None
        # Set when a re-read finds the index rebuilt with other models: its vectors no longer
        # compare with this process's queries (a server then reports itself unavailable).
        self.models_changed: list[str] = []
        # Its threads start on first use, so an engine that only indexes never has any.
        self._lookup_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="lookup")
        # Catalog writes through this engine, one at a time: each updates the manifest.
        self._write_lock = threading.Lock()

    @classmethod
    def open(
        cls,
        db: str | os.PathLike,
        embedder: Optional[Component] = None,
        detector: Optional[Component] = None,
        warm: bool = False,
        crop: Optional[str] = None,
    ) -> "SearchEngine":
        """Open an existing index with the models it was built with (unless others are given).

        Refuses (:class:`IndexMismatchError`) an index whose recorded models differ from the
        ones loaded: other weights at the same path, another version's model, other options.
        ``warm=True`` loads the store's indexes into memory now (about a second at a million
        vectors): right for a serving process, wasted on a one-shot search.
        """
        if missing_local_store(db):
            raise EmptyIndexError(f"no index at {db}: run `fashion-search index CATALOG --db {db}` first")
        store = open_store(str(db))
        db = shown_location(db, store)
        manifest = store.read_manifest()
        if not manifest:
            raise EmptyIndexError(f"no index at {db}: run `fashion-search index CATALOG --db {db}` first")
        pipeline = pipeline_from_manifest(manifest, embedder, detector, crop)
        pipeline.check(
            manifest,
            str(db),
            f"Re-embed its catalog with the installed models: fashion-search index "
            f"CATALOG --db {db} --rebuild (or use the models that built it).",
        )
        engine = cls(store, pipeline)
        if warm:
            store.warm()
        return engine

    @classmethod
    def create(
        cls,
        db: str | os.PathLike,
        embedder: Optional[Component] = None,
        detector: Optional[Component] = None,
        crop: Optional[str] = None,
        rebuild: bool = False,
    ) -> "SearchEngine":
        """Open an index for writing, creating it if needed. An existing index keeps its models
        and must have been built with the very same ones (:class:`IndexMismatchError` otherwise,
        which never mixes two models' vectors in one index); ``rebuild=True`` empties it first,
        so that the next :meth:`index` re-embeds every image with the models at hand."""
        probe = open_store(str(db))
        shown = shown_location(db, probe)
        manifest = probe.read_manifest()
        if manifest:
            pipeline = pipeline_from_manifest(manifest, embedder, detector, crop)
            if rebuild:
                probe.clear()
            elif pipeline.differences(manifest):
                # Counted only for the message: a full scan of the store (seconds at 1M rows).
                images = len(probe.fingerprints())
                pipeline.check(
                    manifest,
                    shown,
                    f"Re-embed its {images} images with these models by running the "
                    "same `fashion-search index` command with --rebuild (it empties "
                    "the index first), or index into a new --db.",
                )
        else:
            chosen = (("embedder", embedder), ("detector", detector), ("crop", crop))
            pipeline = GarmentPipeline(**{k: v for k, v in chosen if v})
        probe.close()
        store = open_store(str(db), dim=pipeline.dim)
        store.check_writable()  # now, not after an index run has embedded its first batch
        return cls(store, pipeline)

    @property
    def category_classes(self) -> CategoryClasses:
        """Garment classes each catalog category holds, as learned at the last index run."""
        self.refresh_manifest_if_due()
        assert self._category_classes is not None
        return self._category_classes

    def refresh_manifest_if_due(self) -> None:
        """:meth:`refresh_manifest` when never read, or read more than ``manifest_ttl_s`` ago."""
        stale = self.manifest_ttl_s is not None and time.monotonic() - self._manifest_read_at > self.manifest_ttl_s
        if self._category_classes is None or stale:
            self.refresh_manifest()

    def refresh_manifest(self) -> None:
        """Re-read what the index records: the learned category classes, and whether it was
        rebuilt with other models since this engine opened it (:attr:`models_changed`)."""
        manifest = self.store.read_manifest()
        self._manifest_read_at = time.monotonic()
        self._category_classes = CategoryClasses.from_dict(manifest.get("category_classes"))
        self._metadata_columns = MetadataColumns.from_dict(manifest.get("metadata_columns"))
        changed = self.pipeline.differences(manifest) if manifest.get("embedder") else []
        if changed and not self.models_changed:
            log.error("the index was rebuilt with other models; restart to load them: %s", "; ".join(changed))
        self.models_changed = changed

    def index(
        self,
        items: Iterable[CatalogItem],
        all_garments: bool = False,
        ray: Optional[RaySettings] = None,
        **options: Any,
    ) -> IndexReport:
        """Index ``items`` (see :func:`index_catalog` for ``options``). Each photo's main garment
        and the garments its category holds are stored; ``all_garments`` stores every garment
        found (for search with ``same_class=False`` over everything models wear). With ``ray``,
        the images are analysed by workers of a Ray cluster (the ``distributed`` extra)."""
        if ray is not None:
            from fashion_search.indexing_ray import index_catalog_on_ray

            options.pop("workers", None)
            report = index_catalog_on_ray(
                items,
                self.store,
                self.pipeline,
                ray,
                garment_classes=self.category_classes,
                all_garments=all_garments,
                **options,
            )
        else:
            garment_filter = None if all_garments else CatalogGarmentFilter(self.category_classes)
            report = index_catalog(items, self.store, self.pipeline, garment_filter=garment_filter, **options)
        # A full scan of the store's labels: skipped when the run changed nothing.
        if (
            report.indexed
            or report.removed
            or not self.category_classes
            or "metadata_columns" not in self.store.read_manifest()
        ):
            self.learn_category_classes()
        return report

    def learn_category_classes(self) -> CategoryClasses:
        """Re-learn which garment classes each category holds, and which metadata columns the
        products have (what filters may name), from what the index contains: one scan."""
        metadata: dict[str, dict[str, Any]] = {}

        def rows() -> Iterator[dict[str, Any]]:
            for row in self.store.iter_rows(with_vectors=False):
                metadata.setdefault(row["product_id"], row["metadata"])
                yield row

        learned = CategoryClasses.learn(rows())
        columns = MetadataColumns.learn(metadata.values())
        manifest = self.store.read_manifest()
        manifest["category_classes"] = learned.to_dict()
        manifest["metadata_columns"] = columns.to_dict()
        self.store.write_manifest(manifest)
        self._category_classes = learned
        self._metadata_columns = columns
        self._manifest_read_at = time.monotonic()
        return learned

    @property
    def metadata_columns(self) -> MetadataColumns:
        """The metadata columns the catalog's products have, as learned at the last index run."""
        self.refresh_manifest_if_due()
        return self._metadata_columns

    def parse_filter(self, where: "str | Filter | None") -> Optional[Filter]:
        """A metadata filter for this index: text is parsed against its columns
        (:class:`FilterError` when it does not parse or names an unknown column)."""
        if where is None or not isinstance(where, str):
            return where
        return parse_filter(where, self.metadata_columns)

    def put_product(
        self,
        product_id: str,
        images: Sequence[bytes],
        category: str,
        metadata: Optional[dict[str, Any]],
        uploads: UploadFolder,
        max_pixels: int = MAX_PIXELS,
    ) -> ProductWrite:
        """Add or replace a catalog product: its ``images`` (encoded files) are kept in
        ``uploads`` under names of the server's choosing, analysed as ``index`` analyses catalog
        images, and become the product's only stored rows in one atomic store write. The same
        call twice leaves the same index. Raises :class:`CatalogError` for bad fields and
        :class:`ImageError` (naming the image) for a file that is not a readable photo."""
        metadata = check_product_fields(product_id, category, metadata)
        if not images:
            raise CatalogError("a product needs at least one image")
        if len(images) > MAX_PRODUCT_IMAGES:
            raise CatalogError(f"a product has at most {MAX_PRODUCT_IMAGES} images, not {len(images)}")
        formats = []
        for n, data in enumerate(images, 1):
            try:
                formats.append(image_format(data, max_pixels))
            except ImageError as exc:
                raise ImageError(f"image {n}: {exc}") from None
        entry = hashlib.sha1(json.dumps([category, metadata], sort_keys=True, default=str).encode()).hexdigest()[:12]
        with self._write_lock:
            check_manifest(self.store, self.pipeline)  # a new index records its models first
            todo = []
            for data, fmt in zip(images, formats):
                path = uploads.save(product_id, data, fmt)
                item = CatalogItem(path, product_id, category, metadata)
                todo.append((item, f"{UPLOAD_FINGERPRINT}{content_digest(data)[:16]}:{entry}"))
            todo = list({item.image_id: (item, fp) for item, fp in todo}.values())  # one photo sent twice
            batch = analyse_batch(
                todo, self.pipeline, self.pipeline.detector, garment_filter=CatalogGarmentFilter(self.category_classes)
            )
            if batch.failed:
                raise ImageError(f"an image could not be analysed: {batch.failed[0][1]}")
            old = self.store.get_product(product_id)
            before = self.store.replace_product(product_id, batch.rows)
            uploads.keep_only(product_id, {item.path for item, _ in todo})
            self._learn_from_write(old, batch.rows, metadata)
        return ProductWrite(product_id, category, len(todo), len(batch.rows), created=before == 0)

    def delete_product(self, product_id: str, uploads: Optional[UploadFolder] = None) -> int:
        """Remove a catalog product (all its images) in one store write, and its uploaded files;
        how many images it had. :class:`UnknownProductError` when the index does not hold it."""
        with self._write_lock:
            old = self.store.get_product(product_id)
            removed = self.store.replace_product(product_id, [])
            if uploads is not None:
                uploads.keep_only(product_id, set())
            if not removed:
                raise UnknownProductError(f"unknown product: {product_id!r}")
            self._learn_from_write(old, [], None)
        return removed

    def _learn_from_write(self, old: Sequence[Hit], new: Sequence[VectorRow], metadata: Optional[dict]) -> None:
        """Keep the manifest's category classes and metadata columns current after one write."""
        manifest = self.store.read_manifest()
        classes = CategoryClasses.from_dict(manifest.get("category_classes")).updated(
            [vars(h) for h in old], [vars(r) for r in new]
        )
        manifest["category_classes"] = classes.to_dict()
        if metadata:
            columns = MetadataColumns.from_dict(manifest.get("metadata_columns")).merged(metadata)
            manifest["metadata_columns"] = columns.to_dict()
            self._metadata_columns = columns
        self.store.write_manifest(manifest)
        self._category_classes = classes
        self._manifest_read_at = time.monotonic()

    def class_filter(self, label: str, category: Optional[str], same_class: bool) -> tuple[Narrowing, Narrowing]:
        """The store filters (categories, garment labels) a garment of class ``label`` searches:
        with ``same_class``, see :meth:`CategoryClasses.search_filter`; without, everything (or
        the explicit ``category``)."""
        if not same_class:
            return category, None
        return self.category_classes.search_filter(label, category)

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
        is a catalog image).
        """
        self.refresh_manifest_if_due()
        if self.models_changed:
            raise IndexMismatchError(
                "the index was rebuilt with other models since this process opened it ("
                + "; ".join(self.models_changed)
                + "): restart to search it with them"
            )
        metadata_filter = self.parse_filter(where)
        categories, labels = self.class_filter(label, category, same_class)
        # Over-fetch because several views of one product may crowd the top; widen until k
        # distinct products are found or the index runs out.
        fetch = max(4 * k, 32)
        while True:
            hits = self.store.search(
                vector,
                fetch,
                category=categories,
                label=labels,
                exclude_product=exclude_product,
                exclude_image=exclude_image,
                where=metadata_filter,
            )
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

    def search(
        self,
        image: ImageSource,
        k: int = 12,
        category: Optional[str] = None,
        query_name: Optional[str] = None,
        same_class: bool = True,
        where: "str | Filter | None" = None,
    ) -> SearchResult:
        """The ``k`` most similar products for each garment found in ``image``, only among
        products whose metadata passes ``where`` when given (e.g. ``'brand = "Nike" and
        price < 50'``; see :mod:`fashion_search.store.filters`)."""
        metadata_filter = self.parse_filter(where)  # before any model runs: a typo fails fast
        t0 = time.perf_counter()
        picture = load_image(image)
        t1 = time.perf_counter()
        garments = self.pipeline.detect(picture)
        t2 = time.perf_counter()
        vectors = self.pipeline.embed_garments([picture], [garments])[0]
        t3 = time.perf_counter()
        found = self._lookups(
            [(v, g.label) for g, v in zip(garments, vectors)], k, category, same_class, where=metadata_filter
        )
        results = [GarmentResult(g, products) for g, products in zip(garments, found)]
        t4 = time.perf_counter()
        timings = dict(
            decode=(t1 - t0) * 1e3,
            detect=(t2 - t1) * 1e3,
            embed=(t3 - t2) * 1e3,
            lookup=(t4 - t3) * 1e3,
            total=(t4 - t0) * 1e3,
        )
        name = (
            query_name
            if query_name is not None
            else (str(image) if isinstance(image, (str, os.PathLike)) else "<image>")
        )
        return SearchResult(query=name, garments=results, timings_ms=timings)

    def close(self) -> None:
        self._lookup_pool.shutdown(wait=True)
        self.store.close()

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
        hits = self.store.get_product(product_id)
        if not hits:
            raise UnknownProductError(f"unknown product: {product_id!r}")
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


def shown_location(db: str | os.PathLike, store: VectorStore) -> str:
    """How messages name an index: as the user wrote it for a folder, by the store's own URI for a
    server, which leaves out any password the user's URI held."""
    return str(db) if store.uri.startswith("lancedb://") else store.uri


def describe_index(db: str | os.PathLike) -> dict[str, Any]:
    """What an index holds and which models built it, and whether the models found here are those
    (``models_match``; ``differences`` says how they are not): what ``fashion-search info`` shows.
    Unlike :meth:`SearchEngine.open`, it answers for an index built with other models too."""
    if missing_local_store(db):
        raise EmptyIndexError(f"no index at {db}: run `fashion-search index CATALOG --db {db}` first")
    store = open_store(str(db))
    db = shown_location(db, store)
    manifest = store.read_manifest()
    if not manifest:
        raise EmptyIndexError(f"no index at {db}: run `fashion-search index CATALOG --db {db}` first")
    models = {role: manifest.get(role) for role in ("embedder", "detector")}
    try:
        differences = pipeline_from_manifest(manifest).differences(manifest)
    except FashionSearchError as exc:  # the models it names cannot be loaded here
        differences = [str(exc)]
    return {
        "db": str(db),
        "format": manifest.get("format", 1),
        "garments": store.count(),
        "images": len(store.fingerprints()),
        "categories": store.categories(),
        "models": models,
        "dim": manifest.get("dim"),
        "crop": manifest.get("crop", DEFAULT_CROP),
        "models_match": not differences,
        "differences": differences,
        "category_classes": manifest.get("category_classes", {}).get("shares", {}),
        "metadata_columns": manifest.get("metadata_columns", {}),
    }
