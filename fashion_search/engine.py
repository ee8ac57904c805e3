"""The Python API in one object: an index opened for searching and, when asked, for writing.

:class:`SearchEngine` is a thin facade over the two sides of the house: the read side
(:class:`~fashion_search.search.Searcher`: search, "more like this") and the write side
(:class:`~fashion_search.writer.CatalogWriter`: index runs, product writes). Both share one store
and one set of models; the CLI, the web app and evaluation use the side they need directly.
"""

from __future__ import annotations

import os
from typing import Any, Iterable, Optional, Sequence

from fashion_search.catalog import CatalogItem
from fashion_search.catalog.uploads import UploadFolder
from fashion_search.images import MAX_PIXELS, ImageSource
from fashion_search.indexing import IndexReport, IndexRunner
from fashion_search.pipeline import Component, GarmentPipeline
from fashion_search.search import (
    GarmentResult,
    ProductResult,
    Searcher,
    SearchResult,
    best_per_product,
    describe_index,
)
from fashion_search.store import VectorStore
from fashion_search.store.filters import Filter
from fashion_search.writer import CatalogWriter, ProductWrite, check_product_fields


class SearchEngine:
    """An open index with its models loaded; safe to share between threads for searching."""

    def __init__(self, searcher: Optional[Searcher] = None, writer: Optional[CatalogWriter] = None) -> None:
        if searcher is None and writer is None:
            raise ValueError("a SearchEngine needs a searcher or a writer")
        self._searcher = searcher
        self._writer = writer

    @classmethod
    def open(
        cls,
        db: str | os.PathLike,
        embedder: Optional[Component] = None,
        detector: Optional[Component] = None,
        warm: bool = False,
        crop: Optional[str] = None,
        text_encoder: Optional[Component] = None,
    ) -> "SearchEngine":
        """Open an existing index for searching (see :meth:`Searcher.open`)."""
        return cls(searcher=Searcher.open(db, embedder, detector, warm=warm, crop=crop, text_encoder=text_encoder))

    @classmethod
    def create(
        cls,
        db: str | os.PathLike,
        embedder: Optional[Component] = None,
        detector: Optional[Component] = None,
        crop: Optional[str] = None,
        rebuild: bool = False,
        runner: Optional[IndexRunner] = None,
    ) -> "SearchEngine":
        """Open an index for writing, creating it if needed (see :meth:`CatalogWriter.create`)."""
        return cls(writer=CatalogWriter.create(db, embedder, detector, crop=crop, rebuild=rebuild, runner=runner))

    @property
    def searcher(self) -> Searcher:
        """The read side, over the same store and models as the write side."""
        if self._searcher is None:
            assert self._writer is not None
            self._searcher = Searcher(self._writer.store, self._writer.pipeline)
        return self._searcher

    @property
    def writer(self) -> CatalogWriter:
        """The write side, over the same store and models as the read side."""
        if self._writer is None:
            self._writer = CatalogWriter(self.searcher.store, self.searcher.pipeline)
        return self._writer

    @property
    def store(self) -> VectorStore:
        return (self._searcher or self._writer).store  # type: ignore[union-attr]

    @property
    def pipeline(self) -> GarmentPipeline:
        return (self._searcher or self._writer).pipeline  # type: ignore[union-attr]

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
        """The ``k`` most similar products for each garment found in ``image``, as ``text``
        says them when given, or the products ``text`` alone describes (see
        :meth:`Searcher.search`)."""
        return self.searcher.search(image, k, category, query_name, same_class, where, max_pixels, text)

    def search_product(
        self,
        product_id: str,
        k: int = 12,
        category: Optional[str] = None,
        same_class: bool = True,
        where: "str | Filter | None" = None,
    ) -> SearchResult:
        """ "More like this" (see :meth:`Searcher.search_product`)."""
        return self.searcher.search_product(product_id, k, category, same_class, where)

    def index(self, items: Iterable[CatalogItem], **options: Any) -> IndexReport:
        """Index ``items`` (see :meth:`CatalogWriter.index` for ``options``)."""
        report = self.writer.index(items, **options)
        self._written(product_write=False)
        return report

    def put_product(
        self,
        product_id: str,
        images: Sequence[bytes],
        category: str,
        metadata: Optional[dict[str, Any]],
        uploads: UploadFolder,
        max_pixels: int = MAX_PIXELS,
    ) -> ProductWrite:
        """Add or replace a catalog product (see :meth:`CatalogWriter.put_product`)."""
        written = self.writer.put_product(product_id, images, category, metadata, uploads, max_pixels)
        self._written()
        return written

    def delete_product(self, product_id: str, uploads: Optional[UploadFolder] = None) -> int:
        """Remove a catalog product (see :meth:`CatalogWriter.delete_product`)."""
        try:
            return self.writer.delete_product(product_id, uploads)
        finally:
            self._written()

    def _written(self, product_write: bool = True) -> None:
        """The read side learns at once what a write through this engine taught the record: the
        record a product write left (no read), or the store's after an index run."""
        if self._searcher is None:
            return
        if product_write:
            self._searcher.use_record(self.writer.latest_record)
        else:
            self._searcher.refresh_record()

    def close(self) -> None:
        if self._searcher is not None:
            self._searcher.close()
        elif self._writer is not None:
            self._writer.close()


__all__ = [
    "GarmentResult",
    "ProductResult",
    "ProductWrite",
    "SearchEngine",
    "SearchResult",
    "best_per_product",
    "check_product_fields",
    "describe_index",
]
