"""The write side: index runs, catalog writes (one product at a time) and what they teach the
index's record (which garment classes each category holds, which metadata columns products
have). Nothing here searches.

Every change of the record is one atomic update of the store's manifest
(:func:`~fashion_search.index_record.update_record`; a product write's change travels with its
rows, :meth:`VectorStore.replace_product`), so writers in several processes never lose each
other's updates.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Iterator, Optional, Sequence, TextIO

from fashion_search.catalog import CatalogItem
from fashion_search.catalog.uploads import UPLOAD_FINGERPRINT, UploadFolder, content_digest
from fashion_search.catalog.validation import MAX_PRODUCT_IMAGES, check_product_fields
from fashion_search.category_classes import CatalogGarmentFilter, CategoryClasses
from fashion_search.errors import CatalogError, ImageError, UnknownProductError
from fashion_search.images import MAX_PIXELS, image_format
from fashion_search.index_record import IndexRecord, read_record, update_record
from fashion_search.indexing import IndexReport, IndexRunner, LocalRunner, analyse_batch, record_models
from fashion_search.pipeline import Component, GarmentPipeline, pipeline_from_record
from fashion_search.store import Hit, VectorRow, VectorStore, open_store
from fashion_search.store.filters import MetadataColumns

log = logging.getLogger(__name__)


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


def _learned_from_write(
    manifest: dict[str, Any], where: str, previous: Sequence[Hit], rows: Sequence[VectorRow], metadata: Optional[dict]
) -> dict[str, Any]:
    """The manifest once one product write is counted: its previous garments' votes and metadata
    taken back, its new ones counted (a scan-free update; an index run re-learns everything)."""
    if not manifest:  # nothing recorded: nothing was indexed to count against
        return manifest
    record = IndexRecord.from_dict(manifest, where)
    classes = record.classes.updated([vars(h) for h in previous], [vars(r) for r in rows])
    removed = [previous[0].metadata] if previous else []
    added = [metadata or {}] if rows else []
    columns = record.metadata_columns
    if columns is not None or any(added):
        columns = record.columns.updated(removed, added)
    return record.replace(category_classes=classes, metadata_columns=columns).to_dict()


class CatalogWriter:
    """An index opened for writing, with the models that analyse its images; catalog writes
    through one writer are taken one at a time (each also changes the record)."""

    def __init__(self, store: VectorStore, pipeline: GarmentPipeline, runner: Optional[IndexRunner] = None) -> None:
        self.store = store
        self.pipeline = pipeline
        self.runner = runner or LocalRunner()
        self._write_lock = threading.Lock()
        # The record as the last catalog write through this writer left it: what the read side
        # of the same process takes over without reading the store again.
        self.latest_record: Optional[IndexRecord] = None

    @classmethod
    def create(
        cls,
        db: str | os.PathLike,
        embedder: Optional[Component] = None,
        detector: Optional[Component] = None,
        crop: Optional[str] = None,
        rebuild: bool = False,
        runner: Optional[IndexRunner] = None,
        threads: Optional[int] = None,
    ) -> "CatalogWriter":
        """Open an index for writing, creating it if needed. An existing index keeps its models
        and must have been built with the very same ones (:class:`IndexMismatchError` otherwise,
        which never mixes two models' vectors in one index); ``rebuild=True`` empties it first,
        so that the next :meth:`index` re-embeds every image with the models at hand."""
        probe = open_store(str(db))
        shown = probe.shown_as(str(db))
        record = read_record(probe, shown)
        if record is not None:
            pipeline = pipeline_from_record(record, embedder, detector, crop, threads)
            if rebuild:
                probe.check_writable()  # a read-only index is refused before anything is dropped
                probe.clear()
            elif pipeline.differences(record):
                # Counted only for the message: a full scan of the store (seconds at 1M rows).
                images = len(probe.fingerprints())
                pipeline.check(
                    record,
                    shown,
                    f"Re-embed its {images} images with these models by running the "
                    "same `fashion-search index` command with --rebuild (it empties "
                    "the index first), or index into a new --db.",
                )
        else:
            chosen = (("embedder", embedder), ("detector", detector), ("crop", crop))
            pipeline = GarmentPipeline(**{k: v for k, v in chosen if v}, threads=threads)
        probe.close()
        store = open_store(str(db), dim=pipeline.dim)
        store.check_writable()  # now, not after an index run has embedded its first batch
        return cls(store, pipeline, runner)

    def record(self) -> Optional[IndexRecord]:
        """The index's record as stored now (None before anything was indexed)."""
        return read_record(self.store)

    def index(
        self,
        items: Iterable[CatalogItem],
        all_garments: bool = False,
        batch_size: int = 64,
        prune: bool = True,
        progress: Optional[TextIO] = None,
        runner: Optional[IndexRunner] = None,
    ) -> IndexReport:
        """Bring the index in line with ``items`` (new and changed images embedded, removed ones
        dropped unless ``prune=False``), by ``runner`` (default: this writer's). Each photo's
        main garment and the garments its category holds are stored; ``all_garments`` stores
        every garment found (for search with ``same_class=False`` over everything models wear).
        Then the record learns again what the catalog holds, when anything changed."""
        before = self.record()
        classes = None if all_garments else (before.classes if before is not None else CategoryClasses())
        report = (runner or self.runner).run(
            items, self.store, self.pipeline, classes, batch_size=batch_size, prune=prune, progress=progress
        )
        after = self.record()
        # A full scan of the store's labels: skipped when the run changed nothing.
        if report.indexed or report.removed or after is None or not after.classes or after.metadata_columns is None:
            self.learn_category_classes()
        return report

    def learn_category_classes(self) -> CategoryClasses:
        """Re-learn which garment classes each category holds, and which metadata columns the
        products have (what filters may name), from what the index contains: one scan, then
        one atomic update of the record."""
        metadata: dict[str, dict[str, Any]] = {}

        def rows() -> Iterator[dict[str, Any]]:
            for row in self.store.iter_rows(with_vectors=False):
                metadata.setdefault(row["product_id"], row["metadata"])
                yield row

        learned = CategoryClasses.learn(rows())
        columns = MetadataColumns.learn(metadata.values())
        update_record(
            self.store,
            lambda record: record.replace(category_classes=learned, metadata_columns=columns) if record else None,
        )
        return learned

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
        images, and become the product's only stored rows in one atomic store write, with what
        the record learns from them. The same call twice leaves the same index.

        Everything that can refuse the write runs before it commits: :class:`CatalogError` for
        bad fields, :class:`ImageError` (naming the image) for a file that is not a readable
        photo. Once the rows are committed, nothing raises."""
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
        entry = hashlib.sha1(json.dumps([category, metadata], sort_keys=True).encode()).hexdigest()[:12]
        with self._write_lock:
            record = record_models(self.store, self.pipeline)  # a new index records its models first
            todo = []
            for data, fmt in zip(images, formats):
                path = uploads.save(product_id, data, fmt)
                item = CatalogItem(path, product_id, category, metadata)
                todo.append((item, f"{UPLOAD_FINGERPRINT}{content_digest(data)[:16]}:{entry}"))
            todo = list({item.image_id: (item, fp) for item, fp in todo}.values())  # one photo sent twice
            batch = analyse_batch(
                todo, self.pipeline, self.pipeline.detector, garment_filter=CatalogGarmentFilter(record.classes)
            )
            if batch.failed:
                raise ImageError(f"an image could not be analysed: {batch.failed[0][1]}")
            before = self._replace(product_id, batch.rows, metadata)
            self._forget_old_files(uploads, product_id, {item.path for item, _ in todo})
        return ProductWrite(product_id, category, len(todo), len(batch.rows), created=before == 0)

    def delete_product(self, product_id: str, uploads: Optional[UploadFolder] = None) -> int:
        """Remove a catalog product (all its images) in one store write, and its uploaded files;
        how many images it had. :class:`UnknownProductError` when the index does not hold it."""
        with self._write_lock:
            removed = self._replace(product_id, [], None)
            if not removed:
                raise UnknownProductError(f"unknown product: {product_id!r}")
            if uploads is not None:
                self._forget_old_files(uploads, product_id, set())
        return removed

    def _replace(self, product_id: str, rows: Sequence[VectorRow], metadata: Optional[dict[str, Any]]) -> int:
        """The store write of a product with its record's change (see
        :meth:`VectorStore.replace_product`); how many images the product had."""
        where = self.store.uri
        stored: list[dict[str, Any]] = []
        self.latest_record = None

        def change(manifest: dict[str, Any], previous: list[Hit]) -> dict[str, Any]:
            stored[:] = [_learned_from_write(manifest, where, previous, rows, metadata)]
            return stored[0]

        before = self.store.replace_product(product_id, rows, change)
        try:
            self.latest_record = IndexRecord.from_dict(stored[0], where) if stored and stored[0] else None
        except Exception:  # committed: the read side then reads the record from the store
            log.exception("%s: the record written with %r could not be read back", where, product_id)
            self.latest_record = None
        return before

    @staticmethod
    def _forget_old_files(uploads: UploadFolder, product_id: str, kept: set) -> None:
        """Remove the product's files of versions the index no longer holds. After the commit:
        a file that cannot be removed is logged and left (the next write of the product tries
        again), never an error of a write that has landed."""
        try:
            uploads.keep_only(product_id, kept)
        except OSError as exc:
            log.warning("uploads of %r: could not remove old files: %s", product_id, exc)

    def close(self) -> None:
        self.store.close()


__all__ = ["CatalogWriter", "ProductWrite", "check_product_fields"]
