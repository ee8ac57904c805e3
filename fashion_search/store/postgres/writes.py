"""Writing rows and the manifest, each change in one transaction under advisory locks."""

from __future__ import annotations

import json
import zlib
from typing import Any, Iterable, Optional, Sequence

import numpy as np

from fashion_search.store import ManifestChange, ProductManifestChange, VectorRow, check_product_rows
from fashion_search.store.postgres.connection import psycopg, sql
from fashion_search.store.postgres.reads import rows_to_hits
from fashion_search.store.postgres.schema import (
    _COLUMNS,
    _COPY_TYPES,
    _HIT_COLUMNS,
    _LOCK_BUCKETS,
    _MANIFEST_LOCK,
    _PRODUCT_LOCKS,
)
from fashion_search.vectors import l2_normalise


class Writes:
    """Row and manifest writes (part of :class:`~fashion_search.store.postgres.PostgresVectorStore`)."""

    dim: Optional[int]
    _lock_key: int
    _meta: str

    def _prepare(self, rows: Sequence[VectorRow]) -> list[list[Any]]:
        assert self.dim is not None
        vectors = np.asarray([np.asarray(r.vector, dtype=np.float32).reshape(-1) for r in rows], dtype=np.float32)
        if vectors.shape != (len(rows), self.dim):
            raise ValueError(f"vectors must be {self.dim}-d, got shape {vectors.shape[1:]}")
        vectors = l2_normalise(vectors)
        return [
            [
                r.row_id,
                str(r.image_id),
                int(r.garment),
                str(r.image),
                str(r.product_id),
                str(r.category),
                str(r.label),
                float(r.score),
                [float(v) for v in r.box],
                str(r.fingerprint),
                json.dumps(r.metadata or {}, sort_keys=True, default=str),
                vector,
            ]
            for r, vector in zip(rows, vectors)
        ]

    def _lock_images(self, conn: "psycopg.Connection", image_ids: Sequence[str]) -> None:
        buckets = sorted({zlib.crc32(i.encode("utf-8", "surrogatepass")) % _LOCK_BUCKETS for i in image_ids})
        # Ascending order in every writer: two writers never wait for each other in a circle.
        conn.execute(
            "SELECT pg_advisory_xact_lock(%s::int4, b) FROM (SELECT unnest(%s::int4[]) AS b ORDER BY 1) AS s",
            [self._lock_key, buckets],
        ).fetchall()

    def _copy(self, conn: "psycopg.Connection", data: list[list[Any]]) -> None:
        statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
            self._ident(), sql.SQL(", ").join(map(sql.Identifier, _COLUMNS))
        )
        with conn.cursor() as cur, cur.copy(statement) as copy:
            copy.set_types(_COPY_TYPES)
            for values in data:
                copy.write_row(values)

    def _write(self, work: Any) -> Any:
        """Run ``work(conn)`` in one transaction; once more after recreating a dropped table."""
        try:
            with self._conn(vectors=True) as conn, conn.transaction():
                return work(conn)
        except psycopg.errors.UndefinedTable:
            self._writable()
        with self._conn(vectors=True) as conn, conn.transaction():
            return work(conn)

    def upsert_images(self, rows: Sequence[VectorRow]) -> None:
        """Replace every stored row of the images in ``rows`` by ``rows``, in one transaction:
        the images' old rows are deleted and the new ones copied in, under the images' locks."""
        rows = list(rows)
        if not rows:
            return
        seen: set[str] = set()
        for row in rows:
            if row.row_id in seen:
                raise ValueError(f"row {row.row_id!r} appears twice in one upsert")
            seen.add(row.row_id)
        if self.dim is None:
            self._writable()
        data = self._prepare(rows)
        image_ids = sorted({str(r.image_id) for r in rows})

        def work(conn: "psycopg.Connection") -> None:
            self._lock_images(conn, image_ids)
            conn.execute(sql.SQL("DELETE FROM {} WHERE image_id = ANY(%s)").format(self._ident()), [image_ids])
            self._copy(conn, data)

        self._write(work)
        self._forget_counts()

    def replace_product(
        self, product_id: str, rows: Sequence[VectorRow], manifest_change: Optional[ProductManifestChange] = None
    ) -> int:
        """One transaction: the product's rows are deleted and ``rows`` copied in, under the
        product's lock and those of its old and new images (so an index run writing one of them
        waits), and ``manifest_change`` applied to the manifest with them."""
        rows = list(rows)
        check_product_rows(product_id, rows)
        if self.dim is None:
            if not rows:
                with self._direct() as conn:
                    self.dim = self._inspect(conn)
                if self.dim is None:
                    return 0
            else:
                self._writable()
        data = self._prepare(rows) if rows else []

        def work(conn: "psycopg.Connection") -> int:
            # Two writes of one product take turns, so each reads what the other left.
            bucket = zlib.crc32(product_id.encode("utf-8", "surrogatepass")) % _LOCK_BUCKETS
            conn.execute("SELECT pg_advisory_xact_lock(%s::int4, %s::int4)", [self._lock_key, _PRODUCT_LOCKS - bucket])
            old = rows_to_hits(
                conn.execute(
                    sql.SQL("SELECT {} FROM {} WHERE product_id = %s ORDER BY image_id, garment").format(
                        sql.SQL(", ").join(map(sql.Identifier, _HIT_COLUMNS)), self._ident()
                    ),
                    [product_id],
                ).fetchall()
            )
            self._lock_images(conn, sorted({h.image_id for h in old} | {r.image_id for r in rows}))
            conn.execute(sql.SQL("DELETE FROM {} WHERE product_id = %s").format(self._ident()), [product_id])
            if data:
                self._copy(conn, data)
            if manifest_change is not None:
                self._change_manifest(conn, lambda manifest: manifest_change(manifest, old))
            return len({h.image_id for h in old})

        try:
            before = self._write(work)
        except psycopg.errors.UndefinedTable:
            return 0
        self._forget_counts()
        return before

    def add_rows_bulk(self, rows: Sequence[VectorRow]) -> None:
        """Append rows of images that are NOT stored yet, in one transaction, without deleting
        first (for first builds and bulk loads; a stored image would get its garments twice,
        which the ``row_id`` key refuses)."""
        rows = list(rows)
        if not rows:
            return
        if self.dim is None:
            self._writable()
        data = self._prepare(rows)
        self._write(lambda conn: self._copy(conn, data))
        self._forget_counts()

    def delete_images(self, image_ids: Iterable[str]) -> int:
        """Remove all rows of these images in one transaction; returns how many were stored."""
        ids = sorted({str(i) for i in image_ids})
        if not ids:
            return 0

        def work(conn: "psycopg.Connection") -> int:
            self._lock_images(conn, ids)
            deleted = conn.execute(
                sql.SQL(
                    "WITH gone AS (DELETE FROM {} WHERE image_id = ANY(%s) RETURNING image_id) "
                    "SELECT count(DISTINCT image_id) FROM gone"
                ).format(self._ident()),
                [ids],
            ).fetchone()
            return int(deleted[0])

        try:
            with self._conn() as conn, conn.transaction():
                removed = work(conn)
        except psycopg.errors.UndefinedTable:
            return 0
        self._forget_counts()
        return removed

    # -- manifest -------------------------------------------------------------------------------

    def read_manifest(self) -> dict[str, Any]:
        rows = self._fetch(sql.SQL("SELECT value FROM {} WHERE key = 'manifest'").format(self._ident(self._meta)))
        return json.loads(rows[0][0]) if rows else {}

    def _change_manifest(self, conn: "psycopg.Connection", change: ManifestChange) -> dict[str, Any]:
        """Read, change and write the manifest within the caller's transaction, under the
        table's manifest lock: writers of the manifest take turns, each reading what the
        previous one committed."""
        conn.execute("SELECT pg_advisory_xact_lock(%s::int4, %s::int4)", [self._lock_key, _MANIFEST_LOCK])
        meta = self._ident(self._meta)
        found = conn.execute(sql.SQL("SELECT value FROM {} WHERE key = 'manifest'").format(meta)).fetchone()
        before = json.loads(found[0]) if found else {}
        after = change(json.loads(found[0]) if found else {})
        if after != before:
            conn.execute(
                sql.SQL(
                    "INSERT INTO {} (key, value) VALUES ('manifest', %s) "
                    "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"
                ).format(meta),
                [json.dumps(after, sort_keys=True, default=str)],
            )
        return after

    def update_manifest(self, change: ManifestChange) -> dict[str, Any]:
        """``change`` applied to the manifest in one transaction (see :meth:`_change_manifest`)."""
        try:
            with self._conn() as conn, conn.transaction():
                return self._change_manifest(conn, change)
        except psycopg.errors.UndefinedTable:
            pass
        # A manifest before any vector (or after clear): the meta table alone is created.
        with self._direct() as conn:
            with self._schema_change(conn):
                self._ensure_meta(conn)
        with self._conn() as conn, conn.transaction():
            return self._change_manifest(conn, change)
