"""How a search runs on PostgreSQL: exact, or through the HNSW index, chosen per query from
how many rows its filter passes; and the query that ranks them."""

from __future__ import annotations

import math
import time
import typing
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from fashion_search.store import Hit
from fashion_search.store.filters import Filter, passes_nothing, split_exclusions
from fashion_search.store.postgres.connection import psycopg, sql
from fashion_search.store.postgres.filters import postgres_filter
from fashion_search.store.postgres.schema import _HIT_COLUMNS, _HNSW_MAX_DIM
from fashion_search.vectors import l2_normalise

# hnsw.ef_search accepts at most 1,000: a search for more rows than that is exact.
_MAX_EF_SEARCH = 1_000


@dataclass
class HnswParams:
    """How the HNSW index is built and searched.

    * ``min_rows`` 2,000, as the Lance store: below it an exact scan is fast and exact.
    * ``m`` 16 (pgvector's) and ``ef_construction`` 128 (pgvector's 64 doubled), ``ef_search``
      400 (pgvector's 40): at a million 1,280-d vectors, the narrowest settings measured that
      keep Recall@10 above 0.95 (docs/experiments/2026-12-01-postgres-vs-lance.md).
    * Filters (category, garment class) thin the graph: a plain HNSW scan looks at
      ``ef_search`` nearest garments and only then filters, so a 5% category would keep ~5 of
      100 candidates. Filters that pass at most ``exact_filter_rows`` rows are searched
      exactly, with the index scan disabled (fetching a few thousand rows by the category
      index beats walking the graph). Wider filters walk the graph: on pgvector >= 0.8 with
      ``hnsw.iterative_scan = relaxed_order``, which keeps walking until ``k`` rows pass
      (up to ``max_scan_tuples``, raised for the filter's selectivity; results re-sorted);
      on older servers with ``ef_search`` raised so that ``candidate_factor * k`` passing
      rows are expected among the candidates, or exactly when that needs more than 1,000.
      A walk that still comes back short is repeated exactly. An iterative walk fetches
      ``filtered_fetch_factor * k`` passing rows and keeps the k nearest: 1.5 keeps a 5%
      filter's p50 under 15 ms at k=10 and its Recall@48 near the unfiltered one
      (docs/experiments/2026-12-02-postgres-filtered-fetch.md).
    * ``iterative_scan``: None uses it when the server's pgvector has it; False forces the
      older strategy (True refuses a server without it).
    * ``count_ttl_s``: how long the row counts behind these choices are reused; they only
      steer speed, never correctness.
    * ``maintenance_work_mem``: for the index build (e.g. ``"1GB"``); a graph that fits builds
      several times faster. None keeps the server's setting.
    * ``halfvec``: index a half-precision copy of the vectors (half the index's size and
      memory traffic; rankings are finished in full precision). Wider than 2,000 dimensions
      it is always on. Read when the index is built; searches follow the index that exists.
    """

    min_rows: int = 2_000
    m: int = 16
    ef_construction: int = 128
    ef_search: int = 400
    exact_filter_rows: int = 2_000
    candidate_factor: float = 2.0
    max_scan_tuples: int = 20_000
    iterative_scan: Optional[bool] = None
    count_ttl_s: float = 30.0
    maintenance_work_mem: Optional[str] = None
    halfvec: bool = False
    filtered_fetch_factor: float = 1.5


STORE_OPTIONS = typing.get_type_hints(HnswParams)


@dataclass
class _Plan:
    """How one search runs: the settings of its transaction and whether it may come back short."""

    exact: bool
    settings: dict[str, str]
    fetch_factor: float = 1.0  # rows the walk fetches, as a multiple of k (re-ranked exactly)


# filter (found through a bitmap of the column indexes) are all ranked; sorting is back on in
# case a graph walk of the same transaction turned it off.
_EXACT = {"enable_indexscan": "off", "enable_sort": "on"}


def _walk(settings: dict[str, str], fetch_factor: float = 1.0) -> _Plan:
    """A search through the HNSW index. The counts already chose it over ranking every passing
    row, so the planner's alternative (a sort of the rows a category index finds) is ruled out:
    its costs guess poorly how far a filtered graph walk goes."""
    return _Plan(exact=False, settings={**settings, "enable_sort": "off"}, fetch_factor=fetch_factor)


class Search:
    """Searching (part of :class:`~fashion_search.store.postgres.PostgresVectorStore`)."""

    ann: HnswParams
    dim: Optional[int]
    iterative_scan: bool
    table: str
    _counts: dict[Any, tuple[int, float]]
    _index_state: Optional[tuple[bool, bool, float]]

    def _forget_counts(self) -> None:
        self._counts = {}
        self._index_state = None

    def _has_index(self, conn: "psycopg.Connection") -> bool:
        """Whether a usable HNSW index exists; re-read every ``count_ttl_s`` (another process
        may build it), which only steers how a filtered search starts."""
        state = self._index_state
        if state is None or time.monotonic() - state[2] > self.ann.count_ttl_s:
            found = conn.execute(
                "SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                "JOIN pg_am a ON a.oid = c.relam "
                "WHERE i.indrelid = to_regclass(%s) AND a.amname = 'hnsw' AND i.indisvalid",
                [self.table],
            ).fetchone()
            half = found is not None and "halfvec" in found[0]
            state = self._index_state = (found is not None, half, time.monotonic())
        return state[0]

    def _half_index(self) -> bool:
        """Whether searches order by the half-precision copy (the index's expression)."""
        assert self.dim is not None
        state = self._index_state
        return self.dim > _HNSW_MAX_DIM if state is None or not state[0] else state[1]

    def _rows_passing(self, conn: "psycopg.Connection", key: Any, where: Any, params: dict[str, Any]) -> int:
        """How many rows pass a filter, cached for ``count_ttl_s`` (answered by the column's
        index; a few ms per 100k rows)."""
        cached = self._counts.get(key)
        if cached is not None and time.monotonic() - cached[1] <= self.ann.count_ttl_s:
            return cached[0]
        query = sql.SQL("SELECT count(*) FROM {} WHERE {}").format(self._ident(), where)
        count = int(conn.execute(query, params).fetchone()[0])
        if len(self._counts) > 10_000:  # many distinct filters: start over rather than grow
            self._counts = {}
        self._counts[key] = (count, time.monotonic())
        return count

    def _plan(
        self, conn: "psycopg.Connection", k: int, narrow_key: Any, narrow: Any, params: dict[str, Any], filtered: bool
    ) -> _Plan:
        """Exact or a walk of the HNSW index, and its settings: from how many rows pass the
        narrowing filter ``narrow`` (counted once per ``narrow_key`` for ``count_ttl_s``)."""
        exact = _Plan(exact=True, settings=_EXACT)
        if k > _MAX_EF_SEARCH or not self._has_index(conn):
            return exact
        ann = self.ann
        ef = min(_MAX_EF_SEARCH, max(ann.ef_search, k))
        if narrow_key is None:
            if not filtered:
                return _walk({"hnsw.ef_search": str(ef)})
            # Exclusions only: a few rows of one product or image fail the filter.
            if self.iterative_scan:
                return _walk({"hnsw.ef_search": str(ef), "hnsw.iterative_scan": "relaxed_order"})
            return _walk({"hnsw.ef_search": str(min(_MAX_EF_SEARCH, max(ef, 2 * k)))})
        passing = self._rows_passing(conn, narrow_key, narrow, params)
        if passing <= ann.exact_filter_rows:
            # Few rows pass: ranking them all is exact and cheaper than walking the graph.
            return exact
        total = max(passing, self._rows_passing(conn, (), sql.SQL("true"), {}))
        # Candidates to look at so that ``candidate_factor * k`` of them are expected to pass.
        needed = math.ceil(ann.candidate_factor * k * total / passing)
        if self.iterative_scan:
            # pgvector >= 0.8 keeps walking the graph until enough rows pass (relaxed order:
            # the query re-sorts), up to max_scan_tuples, raised for a selective filter. The
            # first k passing rows a relaxed walk meets are not the k nearest: it fetches
            # more and keeps the best (docs/experiments/2026-12-01-postgres-vs-lance.md).
            return _walk(
                {
                    "hnsw.ef_search": str(ef),
                    "hnsw.iterative_scan": "relaxed_order",
                    "hnsw.max_scan_tuples": str(
                        math.ceil(max(ann.max_scan_tuples, 4 * needed * ann.filtered_fetch_factor))
                    ),
                },
                ann.filtered_fetch_factor,
            )
        if needed > _MAX_EF_SEARCH:
            # Older pgvector filters only the ef_search nearest rows: too few would pass.
            return exact
        return _walk({"hnsw.ef_search": str(max(ef, needed))})

    def _search_query(self, where: Any, exact: bool) -> Any:
        """The ranking query: the ``fetch`` nearest passing rows, then the ``k`` first of them
        in :func:`~fashion_search.store.hit_order` (equal distances by product id, image id).
        An exact search cuts at ``fetch`` in that order too; a walk of the HNSW index cuts in
        the index's order, which is what lets PostgreSQL walk it."""
        assert self.dim is not None
        ties = sql.SQL("product_id, image_id, row_id")
        if exact:
            order = sql.SQL("distance, {}").format(ties)
        elif not self._half_index():
            order = sql.SQL("vector <=> %(q)s")
        else:  # the index is on the half-precision copy; the final order is by full precision
            half = sql.SQL("halfvec({})").format(sql.Literal(self.dim))
            order = sql.SQL("vector::{h} <=> %(q)s::vector::{h}").format(h=half)
        return sql.SQL(
            "WITH hits AS MATERIALIZED (SELECT {cols}, vector <=> %(q)s AS distance FROM {t} WHERE {where} "
            "ORDER BY {order} LIMIT %(fetch)s) SELECT {cols}, distance FROM hits ORDER BY distance, {ties} LIMIT %(k)s"
        ).format(
            cols=sql.SQL(", ").join(map(sql.Identifier, _HIT_COLUMNS)),
            t=self._ident(),
            where=where,
            order=order,
            ties=ties,
        )

    def search(self, vector: np.ndarray, k: int, where: Optional[Filter] = None) -> list[Hit]:
        if k <= 0 or passes_nothing(where):
            return []
        if self.dim is None:
            with self._direct() as conn:  # another process may have created the table since
                self.dim = self._inspect(conn)
            if self.dim is None:
                return []
        query_vector = l2_normalise(np.asarray(vector, dtype=np.float32).reshape(1, -1))[0]
        if query_vector.shape[0] != self.dim:
            raise ValueError(f"query must be {self.dim}-d, got {query_vector.shape[0]}-d")
        params: dict[str, Any] = {"q": query_vector, "k": int(k)}
        condition = postgres_filter(where, params) if where is not None else sql.SQL("true")
        # The plan is chosen by what narrows the search (a category, a class, metadata); the
        # exclusions of "more like this" and evaluation fail a few rows only.
        narrowing, _ = split_exclusions(where)
        narrow_params: dict[str, Any] = {}
        narrow_where = postgres_filter(narrowing, narrow_params) if narrowing is not None else None
        try:
            with self._conn(vectors=True) as conn, conn.transaction(), conn.cursor(binary=True) as cur:
                plan = self._plan(conn, int(k), narrowing, narrow_where, narrow_params, where is not None)
                fetch = int(k) if plan.exact else max(int(k), min(_MAX_EF_SEARCH, math.ceil(plan.fetch_factor * k)))
                rows = self._run_search(
                    cur, self._search_query(condition, plan.exact), {**params, "fetch": fetch}, plan.settings
                )
                if not plan.exact and len(rows) < k:
                    # The walk ran out before k rows passed: rank every passing row instead.
                    rows = self._run_search(
                        cur, self._search_query(condition, True), {**params, "fetch": int(k)}, _EXACT
                    )
        except psycopg.errors.UndefinedTable:
            return []
        # Float rounding can push 1 - distance a hair outside [-1, 1].
        scores = np.clip(1.0 - np.asarray([r[-1] for r in rows], dtype=np.float64), -1.0, 1.0)
        return self._hits([r[:-1] for r in rows], scores)

    @staticmethod
    def _run_search(cur: Any, query: Any, params: dict[str, Any], settings: dict[str, str]) -> list[tuple]:
        if settings:
            # set_config(..., true) is SET LOCAL: the settings end with this transaction.
            calls = sql.SQL(", ").join(
                sql.SQL("set_config({}, {}, true)").format(sql.Literal(name), sql.Literal(value))
                for name, value in settings.items()
            )
            cur.execute(sql.SQL("SELECT {}").format(calls))
        return cur.execute(query, params).fetchall()
