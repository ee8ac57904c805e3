"""The tables of a PostgreSQL index, how they are created and kept (indexes, statistics),
and how they are dropped."""

from __future__ import annotations

import logging
import re
import time
import zlib
from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator, Optional

from fashion_search.errors import StoreError
from fashion_search.store import ROW_FIELDS
from fashion_search.store.postgres.connection import psycopg, sql

if TYPE_CHECKING:
    from fashion_search.store.postgres.planner import HnswParams

log = logging.getLogger("fashion_search.store.postgres")

SCHEMA_VERSION = 1
EXTENSION = "vector"
# Lower-case names need no quoting anywhere; 48 characters leave room for the suffixes of the
# meta table and the indexes within PostgreSQL's 63.
_TABLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,47}$")
# pgvector's HNSW indexes ``vector`` up to 2,000 dimensions and ``halfvec`` up to 4,000; wider
# stores are indexed as half precision, and past that searched exactly.
_HNSW_MAX_DIM = 2_000
_HALFVEC_MAX_DIM = 4_000
# large the batch, so a bulk load never exhausts the server's lock table.
_LOCK_BUCKETS = 256
# Advisory lock keys: one for all schema changes in a database, one per table for index builds.
_SCHEMA_LOCK = zlib.crc32(b"fashion-search schema") - 2**31
_OPTIMIZE_LOCK = -1

_COLUMNS = ["row_id", *ROW_FIELDS, "vector"]
_COPY_TYPES = ["text", "text", "int4", "text", "text", "text", "text", "float4", "float4[]", "text", "text", "vector"]
_HIT_COLUMNS = ["row_id", "image_id", "image", "product_id", "category", "label", "box", "metadata"]
_ROW_FIELDS = list(ROW_FIELDS)
# Advisory lock of a table's manifest (see Writes.update_manifest), and the first of the
# product locks (see Writes.replace_product), counting down.
_MANIFEST_LOCK = -2
_PRODUCT_LOCKS = -1000


class Schema:
    """Creating, checking, maintaining and dropping the tables (part of
    :class:`~fashion_search.store.postgres.PostgresVectorStore`)."""

    ann: HnswParams
    dim: Optional[int]
    table: str
    uri: str
    vector_version: Optional[str]
    iterative_scan: bool
    _meta: str
    _hnsw_name: str
    _metadata_index: str
    _lock_key: int

    # -- schema ---------------------------------------------------------------------------------

    def _inspect(self, conn: "psycopg.Connection", check: bool = False) -> Optional[int]:
        """The dimension of the stored vectors, None while there is no table; notes the
        extension's version. With ``check``, refuses a schema made by another version or by
        something else."""
        row = conn.execute(
            "SELECT (SELECT extversion FROM pg_extension WHERE extname = %s), to_regclass(%s), to_regclass(%s)",
            [EXTENSION, self.table, self._meta],
        ).fetchone()
        self.vector_version, garments, meta = row[0], row[1], row[2]
        if garments is None:
            if check and meta is not None:
                self._check_version(conn)
            return None
        if check:
            if meta is None:
                raise StoreError(
                    f"table {self.table!r} in {self.uri} was not made by fashion-search (no {self._meta} table): "
                    "choose another table (?table=...)"
                )
            self._check_version(conn)
        typmod = conn.execute(
            "SELECT atttypmod FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attname = 'vector'",
            [self.table],
        ).fetchone()
        return int(typmod[0]) if typmod and typmod[0] > 0 else None

    def _check_version(self, conn: "psycopg.Connection") -> None:
        found = conn.execute(
            sql.SQL("SELECT value FROM {} WHERE key = 'schema_version'").format(self._ident(self._meta))
        ).fetchone()
        version = found[0] if found else None
        if version != str(SCHEMA_VERSION):
            raise StoreError(
                f"table {self.table!r} in {self.uri} has schema version {version or 'unknown'}, made by another "
                f"version of fashion-search (this one reads version {SCHEMA_VERSION}): index into a new table "
                "(?table=...) or use the fashion-search version that made it"
            )

    def _ensure_extension(self, conn: "psycopg.Connection") -> None:
        if conn.execute("SELECT 1 FROM pg_extension WHERE extname = %s", [EXTENSION]).fetchone():
            return
        user = self._target.params.get("user") or "this user"
        try:
            with conn.transaction():  # a savepoint: a refusal leaves the caller's transaction usable
                conn.execute(sql.SQL("CREATE EXTENSION IF NOT EXISTS {}").format(sql.Identifier(EXTENSION)))
        except (psycopg.errors.FeatureNotSupported, psycopg.errors.UndefinedFile):
            raise StoreError(
                f"the pgvector extension is not installed on the PostgreSQL server at {self._target.server}: "
                "install it there (e.g. apt install postgresql-NN-pgvector) and retry"
            ) from None
        except psycopg.errors.InsufficientPrivilege:
            raise StoreError(
                f"the pgvector extension is not enabled in database {self._target.params.get('dbname', '')!r} "
                f"and {user} may not enable it: ask an administrator to run CREATE EXTENSION vector; there"
            ) from None

    def _ensure_meta(self, conn: "psycopg.Connection") -> None:
        conn.execute(
            sql.SQL("CREATE TABLE IF NOT EXISTS {} (key text PRIMARY KEY, value text NOT NULL)").format(
                self._ident(self._meta)
            )
        )
        conn.execute(
            sql.SQL("INSERT INTO {} VALUES ('schema_version', %s) ON CONFLICT (key) DO NOTHING").format(
                self._ident(self._meta)
            ),
            [str(SCHEMA_VERSION)],
        )
        self._check_version(conn)

    @contextmanager
    def _schema_change(self, conn: "psycopg.Connection") -> Iterator[None]:
        """A transaction holding the database's schema lock, so that processes creating or
        dropping stores at once take turns; privilege errors are explained."""
        try:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s::int8)", [_SCHEMA_LOCK])
                yield
        except psycopg.errors.InsufficientPrivilege as exc:
            raise StoreError(f"not allowed to change the schema for {self.uri}: {self._message(exc)}") from None

    def _create_schema(self, conn: "psycopg.Connection", dim: int) -> int:
        """Create the extension and tables for ``dim``-d vectors unless another process just
        did; the dimension of the table that exists afterwards."""
        with self._schema_change(conn):
            found = self._inspect(conn, check=True)
            if found is None:
                self._ensure_extension(conn)
                self._ensure_meta(conn)
                text = sql.SQL('text COLLATE "C"')
                conn.execute(
                    sql.SQL(
                        "CREATE TABLE {t} (row_id {c} PRIMARY KEY, image_id {c} NOT NULL, garment integer NOT NULL, "
                        "image text NOT NULL, product_id {c} NOT NULL, category {c} NOT NULL, label {c} NOT NULL, "
                        "score real NOT NULL, box real[] NOT NULL, fingerprint text NOT NULL, metadata text NOT NULL, "
                        "vector vector({d}) NOT NULL)"
                    ).format(t=self._ident(), c=text, d=sql.Literal(dim))
                )
                for column in ("image_id", "product_id", "category", "label"):
                    conn.execute(
                        sql.SQL("CREATE INDEX {} ON {} ({})").format(
                            sql.Identifier(f"{self.table}_{column}"), self._ident(), sql.Identifier(column)
                        )
                    )
                found = dim
                self.vector_version = conn.execute(
                    "SELECT extversion FROM pg_extension WHERE extname = %s", [EXTENSION]
                ).fetchone()[0]
        self._forget_counts()
        return found

    def _detect_iterative_scan(self, conn: "psycopg.Connection") -> None:
        """Whether the server's pgvector library (0.8 and later) has ``hnsw.iterative_scan``.
        Its settings appear once the library is loaded, which casting a vector does."""
        supported = False
        if self.vector_version is not None:
            conn.execute("SELECT '[1]'::vector")
            supported = bool(conn.execute("SELECT 1 FROM pg_settings WHERE name = 'hnsw.iterative_scan'").fetchone())
        if self.ann.iterative_scan and not supported and self.vector_version is not None:
            raise StoreError(
                f"pgvector {self.vector_version} at {self._target.server} has no hnsw.iterative_scan (0.8+)"
            )
        self.iterative_scan = (
            supported if self.ann.iterative_scan is None else bool(self.ann.iterative_scan and supported)
        )

    def _writable(self) -> None:
        """Find the table another process created, or create again the one that was dropped
        (by :meth:`clear`, here or elsewhere); refuse when no dimension is known."""
        with self._direct() as conn:
            found = self._inspect(conn, check=True)
            if found is None:
                if self.dim is None:
                    raise StoreError(f"store {self.uri} is empty: open it with dim=... to write vectors")
                found = self._create_schema(conn, self.dim)
                self._detect_iterative_scan(conn)
            if self.dim is not None and found != self.dim:
                raise StoreError(f"store {self.uri} now holds {found}-d vectors, not {self.dim}-d")
            self.dim = found

    def clear(self) -> None:
        """Drop the table, its indexes and the manifest in one transaction: the store is as
        new (its dimension is chosen again by the next open with ``dim``)."""
        with self._direct() as conn, self._schema_change(conn):
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}, {}").format(self._ident(), self._ident(self._meta)))
        self.dim = None
        self._forget_counts()

    # -- maintenance ----------------------------------------------------------------------------

    def optimize(self) -> None:
        """Refresh the planner's statistics and, once the table holds ``ann.min_rows`` rows,
        build the HNSW index (once: pgvector keeps it up to date on later writes).

        The index is built ``CONCURRENTLY``, so searches and other indexers' writes go on
        meanwhile; a per-table advisory lock keeps two processes from building it at once.
        """
        with self._direct() as conn:
            dim = self._inspect(conn)
            if dim is None:
                return
            self.dim = dim
            conn.execute(sql.SQL("ANALYZE {}").format(self._ident()))
            rows = int(conn.execute(sql.SQL("SELECT count(*) FROM {}").format(self._ident())).fetchone()[0])
            self._forget_counts()
            hnsw = self.ann.min_rows <= rows and self.dim <= _HALFVEC_MAX_DIM
            if rows >= self.ann.min_rows and not hnsw:
                log.warning("%s: %d-d vectors are too wide for an HNSW index; searches stay exact", self.uri, self.dim)
            conn.execute("SELECT pg_advisory_lock(%s::int4, %s::int4)", [self._lock_key, _OPTIMIZE_LOCK])
            try:
                # Metadata filters' equality and `in` tests are answered by it (docs/filters.md).
                self._build_index(
                    conn,
                    self._metadata_index,
                    sql.SQL("gin ((metadata::jsonb) jsonb_path_ops)"),
                )
                if hnsw:
                    self._build_vector_index(conn)
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s::int4, %s::int4)", [self._lock_key, _OPTIMIZE_LOCK])
        self._forget_counts()

    def check_writable(self) -> None:
        with self._direct() as conn:
            allowed = conn.execute(
                "SELECT CASE WHEN to_regclass(%s) IS NULL THEN has_schema_privilege(current_schema(), 'CREATE') "
                "ELSE has_table_privilege(to_regclass(%s), 'INSERT') AND has_table_privilege(to_regclass(%s), 'DELETE') END",
                [self.table, self.table, self.table],
            ).fetchone()[0]
        if not allowed:
            raise StoreError(f"this user may not write the index at {self.uri}: grant it INSERT and DELETE (or CREATE)")

    def needs_optimize(self) -> bool:
        with self._direct() as conn:
            if self._inspect(conn) is None:
                return False
            self._forget_counts()
            metadata_indexed = bool(self._index_validity(conn, self._metadata_index))
            if metadata_indexed and self._has_index(conn):
                return False
            rows = int(conn.execute(sql.SQL("SELECT count(*) FROM {}").format(self._ident())).fetchone()[0])
        if rows and not metadata_indexed:
            return True
        # Here the vector index is missing: wanted at this size and width only.
        return self.ann.min_rows <= rows and (self.dim or 0) <= _HALFVEC_MAX_DIM

    def _index_validity(self, conn: "psycopg.Connection", name: str) -> Optional[bool]:
        """Whether the index ``name`` is valid; None when there is none."""
        state = conn.execute(
            "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE i.indrelid = to_regclass(%s) AND c.relname = %s",
            [self.table, name],
        ).fetchone()
        return None if state is None else bool(state[0])

    def _build_index(self, conn: "psycopg.Connection", name: str, method: sql.Composable) -> None:
        """``CREATE INDEX CONCURRENTLY name ON table USING method``, unless a valid one exists;
        one left invalid by an interrupted build is dropped first."""
        state = self._index_validity(conn, name)
        if state:
            return
        if state is not None:
            conn.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier(name)))
        if self.ann.maintenance_work_mem:
            conn.execute("SELECT set_config('maintenance_work_mem', %s, false)", [self.ann.maintenance_work_mem])
        started = time.monotonic()
        try:
            conn.execute(
                sql.SQL("CREATE INDEX CONCURRENTLY IF NOT EXISTS {} ON {} USING {}").format(
                    sql.Identifier(name), self._ident(), method
                )
            )
        except psycopg.errors.InsufficientPrivilege as exc:
            raise StoreError(f"not allowed to build the index {name} of {self.uri}: {self._message(exc)}") from None
        log.info("%s: index %s built in %.1f s", self.uri, name, time.monotonic() - started)

    def _build_vector_index(self, conn: "psycopg.Connection") -> None:
        assert self.dim is not None
        if self.dim <= _HNSW_MAX_DIM and not self.ann.halfvec:
            column = sql.SQL("vector vector_cosine_ops")
        else:
            column = sql.SQL("(vector::halfvec({})) halfvec_cosine_ops").format(sql.Literal(self.dim))
        self._build_index(
            conn,
            self._hnsw_name,
            sql.SQL("hnsw ({}) WITH (m = {}, ef_construction = {})").format(
                column, sql.Literal(int(self.ann.m)), sql.Literal(int(self.ann.ef_construction))
            ),
        )

    def warm(self) -> None:
        """Open a connection ready for searching, and load the HNSW index into the server's
        memory when the pg_prewarm extension is there (pgvector's advice for fast first
        searches)."""
        with self._conn(vectors=self.dim is not None) as conn:
            prewarm = conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_prewarm'").fetchone()
            if prewarm and self._has_index(conn):
                conn.execute("SELECT pg_prewarm(%s::regclass)", [self._hnsw_name])
