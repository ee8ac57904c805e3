"""Vector stores: where catalog vectors and product metadata live, chosen by URI."""

from __future__ import annotations

import os
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Optional, Sequence

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


# A change of an index's manifest: the stored document in, the one to store out.
ManifestChange = Callable[[dict[str, Any]], dict[str, Any]]
# What a product write changes in the manifest, also given the product's garments before it.
ProductManifestChange = Callable[[dict[str, Any], list[Hit]], dict[str, Any]]


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
    def replace_product(
        self, product_id: str, rows: Sequence[VectorRow], manifest_change: Optional[ProductManifestChange] = None
    ) -> int:
        """Make ``rows`` the product's only stored rows, atomically: a reader sees the old
        product or the new one, never a mix (empty ``rows`` deletes it). Returns how many
        images the product had before.

        ``manifest_change(manifest, previous garments)`` is applied to the manifest as
        :meth:`update_manifest` applies a change, and atomically with the rows: in the same
        transaction where the store has transactions across tables (PostgreSQL), else under the
        manifest's lock, written first and put back if the rows fail to commit (Lance). Either
        way nothing runs once the rows are committed, so a committed write never fails."""

    @abstractmethod
    def delete_images(self, image_ids: Iterable[str]) -> int:
        """Remove all rows of these images; returns how many images were removed."""

    @abstractmethod
    def fingerprints(self) -> dict[str, str]:
        """``image_id -> fingerprint`` of every indexed image."""

    @abstractmethod
    def search(self, vector: np.ndarray, k: int, where: Optional["Filter"] = None) -> list[Hit]:
        """The ``k`` stored garments nearest to ``vector`` among those that pass ``where``: one
        filter tree (:mod:`fashion_search.store.filters`) of metadata conditions and conditions
        on the garments' own fields (catalog category, garment label, product and image ids, to
        narrow by class or leave a product out), applied before ranking so it never costs
        recall. Hits come in :func:`hit_order`, which also decides which of several equally
        near garments make the cut at ``k``."""

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
        """The index's record as a JSON document ({} when none was written): what built it and
        what indexing learned (:class:`fashion_search.index_record.IndexRecord` reads it)."""

    @abstractmethod
    def update_manifest(self, change: ManifestChange) -> dict[str, Any]:
        """Apply ``change`` to the stored manifest atomically and return the new one: writers in
        any process take turns, each changing what the previous one stored, so that none loses
        another's update (a read, then a write, would)."""

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        """Store ``manifest`` in place of whatever is stored."""
        self.update_manifest(lambda _stored: manifest)

    @abstractmethod
    def clear(self) -> None:
        """Remove every row and the manifest, leaving an empty store (for a rebuild)."""

    def shown_as(self, given: str) -> str:
        """How messages name this store, given how the user named it: by its URI by default,
        which never holds a password."""
        return self.uri

    def local_folder(self) -> Optional[Path]:
        """The folder this store keeps its files in, for an embedded store (None for a server's):
        where files that belong with the index, such as written products' images, may go."""
        return None

    @classmethod
    def missing(cls, location: str) -> bool:
        """Whether nothing was ever created at ``location`` (what follows the scheme), so that
        reading it must say so rather than open it and leave something behind."""
        return False

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


def hit_order(hit: Hit) -> tuple[float, str, str, str]:
    """How every store orders hits: nearest first; equally near ones (the same photo filed under
    two products) by product id, then image id, so that stores agree on ties."""
    return (-hit.score, hit.product_id, hit.image_id, hit.row_id)


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
    """Whether ``uri`` names a store that was never created (an embedded store's folder that
    does not exist): reading it must say so rather than open it, which would create it."""
    match = _SCHEME.match(str(uri))
    scheme, location = (match.group(1).lower(), match.group(2)) if match else (DEFAULT_STORE_SCHEME, str(uri))
    return STORES.factory(scheme).missing(location)


__all__ = [
    "Hit",
    "ManifestChange",
    "ProductManifestChange",
    "VectorRow",
    "VectorStore",
    "hit_order",
    "missing_local_store",
    "open_store",
]
