"""Vector stores: where catalog vectors and product metadata live, chosen by URI."""

from __future__ import annotations

import os
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Optional, Sequence

import numpy as np

from fashion_search.registry import DEFAULT_STORE_SCHEME, STORES

if TYPE_CHECKING:
    from fashion_search.store.filters import Filter

# VectorRow's fields every store keeps in columns of their own, beside its vector.
ROW_FIELDS: tuple[str, ...] = (
    "image_id",
    "garment",
    "image",
    "product_id",
    "category",
    "label",
    "score",
    "box",
    "fingerprint",
    "metadata",
)


@dataclass
class VectorRow:
    """One garment of one catalog image, as stored.

    ``image_id`` identifies the catalog image (all its garments share it) and
    ``fingerprint`` tells whether the image or its catalog entry changed since it was indexed.
    """

    image_id: str
    garment: int
    image: str
    product_id: str
    category: str
    label: str
    score: float
    box: tuple[float, float, float, float]
    fingerprint: str
    metadata: dict[str, Any]
    vector: np.ndarray

    @property
    def row_id(self) -> str:
        return f"{self.image_id}#{self.garment}"


@dataclass
class Hit:
    """A stored garment returned by a vector search; ``score`` is cosine similarity (higher is closer)."""

    row_id: str
    image_id: str
    image: str
    product_id: str
    category: str
    label: str
    score: float
    box: tuple[float, float, float, float]
    metadata: dict[str, Any] = field(default_factory=dict)


class VectorStore(ABC):
    """The index: vectors plus what a result needs to be shown, searchable with filters.

    Writes are per catalog image and atomic, so an interrupted index run never leaves an image
    half-written or duplicated.
    """

    uri: str

    @abstractmethod
    def upsert_images(self, rows: Sequence[VectorRow]) -> None:
        """Replace every stored row of the images in ``rows`` by ``rows``, atomically."""

    @abstractmethod
    def replace_product(self, product_id: str, rows: Sequence[VectorRow]) -> int:
        """Make ``rows`` the product's only stored rows, atomically: a reader sees the old
        product or the new one, never a mix (empty ``rows`` deletes it). Returns how many
        images the product had before."""

    @abstractmethod
    def delete_images(self, image_ids: Iterable[str]) -> int:
        """Remove all rows of these images; returns how many images were removed."""

    @abstractmethod
    def fingerprints(self) -> dict[str, str]:
        """``image_id -> fingerprint`` of every indexed image."""

    @abstractmethod
    def search(
        self,
        vector: np.ndarray,
        k: int,
        category: Optional[str | Sequence[str]] = None,
        label: Optional[str | Sequence[str]] = None,
        exclude_product: Optional[str] = None,
        exclude_image: Optional[str] = None,
        where: Optional["Filter"] = None,
    ) -> list[Hit]:
        """The ``k`` stored garments nearest to ``vector``, optionally only of one catalog
        ``category`` (or any of several) and/or garment ``label`` (or any of several) and/or
        whose product metadata passes ``where`` (:mod:`fashion_search.store.filters`), without
        the garments of ``exclude_product`` or of the image ``exclude_image``; filters are
        applied before ranking so they never cost recall."""

    @abstractmethod
    def count(self) -> int:
        """Number of stored rows (garments)."""

    @abstractmethod
    def categories(self) -> dict[str, int]:
        """Catalog category -> number of distinct products."""

    @abstractmethod
    def iter_rows(self, with_vectors: bool = True, batch_size: int = 10_000) -> Iterator[dict[str, Any]]:
        """Every stored row as a dict (the fields of :class:`VectorRow`)."""

    @abstractmethod
    def get_product(self, product_id: str) -> list[Hit]:
        """All stored garments of one product (empty if unknown)."""

    def get_vectors(self, row_ids: Sequence[str]) -> dict[str, np.ndarray]:
        """``row_id -> stored (unit) vector`` for those of ``row_ids`` that are stored.

        The default scans every row; stores with an index on ``row_id`` should override it.
        """
        wanted = set(row_ids)
        return {
            f"{r['image_id']}#{r['garment']}": r["vector"]
            for r in self.iter_rows()
            if f"{r['image_id']}#{r['garment']}" in wanted
        }

    def image_path(self, image_id: str) -> Optional[str]:
        """Where the catalog image ``image_id`` lives, or None when it is not indexed: what a
        server may read to show it, so clients name images by id and never by path.

        The default scans every row; stores with an index on ``image_id`` should override it.
        """
        return next((r["image"] for r in self.iter_rows(with_vectors=False) if r["image_id"] == image_id), None)

    @abstractmethod
    def read_manifest(self) -> dict[str, Any]:
        """What built this index: each model's name, options and identity, the manifest's format,
        and what indexing learned (the classes each catalog category holds)."""

    @abstractmethod
    def write_manifest(self, manifest: dict[str, Any]) -> None: ...

    @abstractmethod
    def clear(self) -> None:
        """Remove every row and the manifest, leaving an empty store (for a rebuild)."""

    def optimize(self) -> None:
        """Build or refresh the approximate-search index after bulk writes (no-op by default)."""

    def check_writable(self) -> None:
        """Raise :class:`~fashion_search.errors.StoreError` when this store cannot be written,
        before an index run spends its time on images (no-op by default)."""

    def needs_optimize(self) -> bool:
        """Whether an index that :meth:`optimize` builds is missing (a run killed while building
        it), so that a run with nothing else to do still repairs it. Cheap: no row scan."""
        return False

    def warm(self) -> None:
        """Load indexes into memory ahead of the first searches; for serving processes
        (no-op by default)."""

    def close(self) -> None:
        pass


def check_product_rows(product_id: str, rows: Sequence[VectorRow]) -> None:
    """Refuse rows of another product, or one row twice, for :meth:`VectorStore.replace_product`."""
    seen: set[str] = set()
    for row in rows:
        if row.product_id != product_id:
            raise ValueError(f"row {row.row_id!r} is of product {row.product_id!r}, not {product_id!r}")
        if row.row_id in seen:
            raise ValueError(f"row {row.row_id!r} appears twice")
        seen.add(row.row_id)


_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://(.*)$")


def open_store(uri: str, dim: Optional[int] = None, **options: Any) -> VectorStore:
    """Open the store named by ``uri``: ``lancedb://path`` or a plain path for the embedded
    default, ``postgresql://user@host:5432/dbname?table=garments`` for PostgreSQL with
    pgvector; other schemes resolve through the store registry."""
    match = _SCHEME.match(str(uri))
    scheme, location = (match.group(1).lower(), match.group(2)) if match else (DEFAULT_STORE_SCHEME, str(uri))
    return STORES.create(scheme, location=location, dim=dim, **options)


def missing_local_store(uri: str | os.PathLike) -> bool:
    """Whether ``uri`` names an embedded store's folder that does not exist: reading it must say
    so rather than open it, which would leave an empty folder behind."""
    match = _SCHEME.match(str(uri))
    scheme, location = (match.group(1).lower(), match.group(2)) if match else (DEFAULT_STORE_SCHEME, str(uri))
    return scheme == "lancedb" and not Path(os.path.expanduser(location or ".")).exists()


__all__ = ["Hit", "VectorRow", "VectorStore", "missing_local_store", "open_store"]
