"""Reading rows back: scans, a product's garments, vectors and image paths."""

from __future__ import annotations

import json
from typing import Any, Iterator, Optional, Sequence

import numpy as np

from fashion_search.store import Hit
from fashion_search.store.postgres.connection import psycopg, sql
from fashion_search.store.postgres.schema import _HIT_COLUMNS, _ROW_FIELDS


def _as_array(value: Any) -> np.ndarray:
    """A loaded vector as a float32 array of its own (pgvector's loaders return ``Vector``
    objects from 0.4 on, NumPy arrays before)."""
    array = value.to_numpy() if hasattr(value, "to_numpy") else value
    return np.array(array, dtype=np.float32)


def rows_to_hits(rows: list[tuple], scores: Optional[np.ndarray] = None) -> list[Hit]:
    """Rows of the columns ``_HIT_COLUMNS`` as hits (``score`` 1.0 where none is given)."""
    hits = []
    for n, values in enumerate(rows):
        fields_ = dict(zip(_HIT_COLUMNS, values))
        fields_["box"] = tuple(fields_["box"])
        fields_["metadata"] = json.loads(fields_["metadata"]) if fields_["metadata"] else {}
        hits.append(Hit(score=float(scores[n]) if scores is not None else 1.0, **fields_))
    return hits


class Reads:
    """Scans and lookups (part of :class:`~fashion_search.store.postgres.PostgresVectorStore`)."""

    def fingerprints(self) -> dict[str, str]:
        rows = self._fetch(sql.SQL("SELECT image_id, max(fingerprint) FROM {} GROUP BY image_id").format(self._ident()))
        return dict(rows)

    def count(self) -> int:
        rows = self._fetch(sql.SQL("SELECT count(*) FROM {}").format(self._ident()))
        return int(rows[0][0]) if rows else 0

    def categories(self) -> dict[str, int]:
        rows = self._fetch(
            sql.SQL("SELECT category, count(DISTINCT product_id) FROM {} GROUP BY category").format(self._ident())
        )
        return dict(sorted((category, int(n)) for category, n in rows))

    def iter_rows(self, with_vectors: bool = True, batch_size: int = 10_000) -> Iterator[dict[str, Any]]:
        columns = _ROW_FIELDS + (["vector"] if with_vectors else [])
        query = sql.SQL("SELECT {} FROM {}").format(sql.SQL(", ").join(map(sql.Identifier, columns)), self._ident())
        try:
            # A server-side cursor streams the table batch by batch, inside one snapshot.
            with self._conn(vectors=with_vectors) as conn, conn.transaction():
                with conn.cursor(name="fashion_search_iter_rows", binary=True) as cur:
                    cur.itersize = max(1, int(batch_size))
                    cur.execute(query)
                    for values in cur:
                        row = dict(zip(columns, values))
                        row["box"] = tuple(row["box"])
                        row["metadata"] = json.loads(row["metadata"]) if row["metadata"] else {}
                        if with_vectors:
                            row["vector"] = _as_array(row["vector"])
                        yield row
        except psycopg.errors.UndefinedTable:
            return

    def _hits(self, rows: list[tuple], scores: Optional[np.ndarray] = None) -> list[Hit]:
        return rows_to_hits(rows, scores)

    def get_product(self, product_id: str) -> list[Hit]:
        """All garments of one product, ordered by image and garment; ``score`` is 1.0 as there
        is no query to compare with."""
        rows = self._fetch(
            sql.SQL("SELECT {} FROM {} WHERE product_id = %s ORDER BY image_id, garment").format(
                sql.SQL(", ").join(map(sql.Identifier, _HIT_COLUMNS)), self._ident()
            ),
            [str(product_id)],
        )
        return self._hits(rows)

    def get_vectors(self, row_ids: Sequence[str]) -> dict[str, np.ndarray]:
        ids = sorted({str(r) for r in row_ids})
        if not ids:
            return {}
        rows = self._fetch(
            sql.SQL("SELECT row_id, vector FROM {} WHERE row_id = ANY(%s)").format(self._ident()), [ids], vectors=True
        )
        return {row_id: _as_array(vector) for row_id, vector in rows}

    def image_path(self, image_id: str) -> Optional[str]:
        rows = self._fetch(
            sql.SQL("SELECT image FROM {} WHERE image_id = %s LIMIT 1").format(self._ident()), [image_id]
        )
        return rows[0][0] if rows else None
