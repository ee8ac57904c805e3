"""PostgreSQL store with pgvector: ``postgresql://user@host:5432/dbname?table=garments``.

For catalogs shared by several indexers and servers: every process connects to one database.
Layout and choices:

* One table per index (``table``, default ``garments``) with one row per garment, keyed by
  ``row_id = image_id#garment``, and a companion ``<table>_meta`` holding the schema version
  and the manifest. Vectors are stored L2-normalised in a ``vector(dim)`` column, as in the
  Lance store, and searched by cosine distance (``<=>``).
* Every write is one transaction: a reader sees an image entirely before or entirely after an
  upsert. Writers take a transaction-level advisory lock per bucket of image ids (in sorted
  order, so never a deadlock), so two indexers that write the same image one after the other
  leave exactly the later version, never a mix. Creating the schema is serialised by another
  advisory lock, so processes that open a new store at once agree on one table.
* Small tables are searched exactly; :meth:`PostgresVectorStore.optimize` builds an HNSW index
  (``vector_cosine_ops``) once the table reaches ``ann.min_rows`` rows, as the Lance store
  builds its IVF index, and PostgreSQL keeps it up to date on every later write.
* Filters must never cost recall (see :class:`HnswParams` for how), and a filtered approximate
  search that comes back short is repeated exactly.
* The password never leaves the connection: :attr:`uri` and every message name the server
  without it (give it in the URI, ``PGPASSWORD`` or ``~/.pgpass``).
"""

from __future__ import annotations

import threading
import zlib
from typing import Any, Optional

from fashion_search.errors import MissingDependencyError, StoreError, UsageError
from fashion_search.registry import STORES, _parse_value
from fashion_search.store import VectorStore
from fashion_search.store.postgres import connection
from fashion_search.store.postgres.connection import DEFAULT_TABLE, INSTALL_HINT, Connections, psycopg
from fashion_search.store.postgres.filters import postgres_filter
from fashion_search.store.postgres.planner import STORE_OPTIONS, HnswParams, Search
from fashion_search.store.postgres.reads import Reads
from fashion_search.store.postgres.schema import _TABLE_NAME, Schema
from fashion_search.store.postgres.writes import Writes


def parse_uri(location: str) -> connection._Target:
    """What follows ``postgresql://``, parsed (see :func:`connection.parse_uri`), with the
    fields of :class:`HnswParams` taken as this store's options."""
    return connection.parse_uri(location, STORE_OPTIONS)


@STORES.register("postgresql", "postgres")
class PostgresVectorStore(Connections, Schema, Reads, Writes, Search, VectorStore):
    """A :class:`VectorStore` in a PostgreSQL database with the pgvector extension.

    ``location`` is what follows ``postgresql://``. Opening with ``dim`` creates the extension
    (when the user may), the tables and their indexes, unless they exist; without ``dim`` an
    absent table reads as empty and refuses writes, as the Lance store does.

    Options (keyword, all optional; ``table`` and the :class:`HnswParams` fields may also be
    given in the URI's query): ``table``; ``ann``, an :class:`HnswParams` or a dict of its
    fields; ``pool_size``, the most connections this process opens (default 8);
    ``connect_timeout`` in seconds (default 10).
    """

    def __init__(
        self,
        location: str,
        dim: Optional[int] = None,
        *,
        table: Optional[str] = None,
        ann: HnswParams | dict[str, Any] | None = None,
        pool_size: int = 8,
        connect_timeout: int = 10,
        **unknown: Any,
    ) -> None:
        if unknown:
            raise UsageError(f"unknown postgresql store options: {', '.join(sorted(unknown))}")
        if psycopg is None:
            raise MissingDependencyError(
                f"the postgresql:// store needs its extra: {INSTALL_HINT} ({connection.IMPORT_ERROR})"
            )
        target = parse_uri(str(location))
        if target.table is not None and table is not None and target.table != table:
            raise UsageError(f"two tables asked for: {target.table!r} in the URI and {table!r}")
        self.table = target.table or table or DEFAULT_TABLE
        if not _TABLE_NAME.match(self.table):
            raise UsageError(
                f"table name {self.table!r} is not allowed: lower-case letters, digits and _, at most 48 characters"
            )
        if isinstance(ann, HnswParams):
            params = ann
        else:
            given = dict(ann or {})
            wrong = sorted(set(given) - set(STORE_OPTIONS))
            if wrong:
                raise UsageError(f"unknown postgresql ann options: {', '.join(wrong)}")
            params = HnswParams(**given)
        for key, text in target.options.items():
            setattr(params, key, _parse_value(text, STORE_OPTIONS[key], key))
        self.ann = params
        self._target = target
        self._connect_params = {"connect_timeout": str(connect_timeout), **target.params}
        self.uri = target.uri(self.table)
        self.pool_size = max(1, int(pool_size))
        self._meta = f"{self.table}_meta"
        self._hnsw_name = f"{self.table}_vector_hnsw"
        self._metadata_index = f"{self.table}_metadata_gin"
        self._lock_key = zlib.crc32(f"fashion-search table {self.table}".encode()) - 2**31
        self._pool: Optional[connection._SharedPool] = None
        self._pool_lock = threading.Lock()
        self._counts: dict[Any, tuple[int, float]] = {}
        self._index_state: Optional[tuple[bool, bool, float]] = None  # exists, on halfvec, when read
        self.dim: Optional[int] = None
        self.vector_version: Optional[str] = None  # pgvector's version in this database
        self.iterative_scan = False  # whether filtered ANN searches use hnsw.iterative_scan

        with self._direct() as conn:
            found = self._inspect(conn, check=True)
            if found is None and dim is not None:
                if int(dim) <= 0:
                    raise ValueError(f"dim must be positive, not {dim}")
                found = self._create_schema(conn, int(dim))
            if found is not None and dim is not None and int(dim) != found:
                raise StoreError(f"store {self.uri} holds {found}-d vectors, not {dim}-d")
            self.dim = found
            self._detect_iterative_scan(conn)

    def __repr__(self) -> str:
        return f"PostgresVectorStore({self.uri!r})"

    def close(self) -> None:
        with self._pool_lock:
            shared, self._pool = self._pool, None
        if shared is not None:
            shared.release()


__all__ = ["HnswParams", "PostgresVectorStore", "parse_uri", "postgres_filter"]
