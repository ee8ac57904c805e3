"""Embedded LanceDB store: one directory on disk holding the ``garments`` table and a manifest.

Layout and choices:

* ``garments`` has one row per garment, keyed by ``row_id = image_id#garment``. Vectors are
  stored L2-normalised so that cosine similarity is a plain dot product everywhere (the
  evaluation code and any client that reads vectors back can rely on it).
* ``manifest`` holds one JSON document; it is rewritten with an overwrite commit, which Lance
  makes atomic.
* Every upsert is a single Lance commit, so a reader (in this or another process) sees an
  image either entirely before or entirely after it.
* Small tables are searched exactly (brute force); :meth:`LanceVectorStore.optimize` builds an
  IVF vector index only once the table is large enough for exact search to be slow. Filters
  are always prefilters, so they never cost recall.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import fcntl
import json
import logging
import math
import os
import random
import re
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterable, Iterator, Optional, Sequence, TypeVar

# Lance logs a WARN line per HNSW sub-graph while building IVF indexes (thousands at 1M rows)
# and deprecation notices on queries; keep the CLI readable. A value set by the user wins.
os.environ.setdefault("LANCEDB_LOG", "error")

import lancedb  # noqa: E402
import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
from lancedb import index as lidx  # noqa: E402

from fashion_search.errors import StoreError, UsageError  # noqa: E402
from fashion_search.registry import STORES  # noqa: E402
from fashion_search.store import (  # noqa: E402
    ROW_FIELDS,
    Hit,
    ManifestChange,
    ProductManifestChange,
    VectorRow,
    VectorStore,
    check_product_rows,
    hit_order,
)
from fashion_search.store.filters import (  # noqa: E402
    Condition,
    Filter,
    FilterError,
    Junction,
    Not,
    RowCondition,
    column_tag,
    columns_of,
    metadata_tags,
    negation_normal_form,
    passes_nothing,
    split_exclusions,
    value_tag,
)
from fashion_search.vectors import l2_normalise  # noqa: E402

log = logging.getLogger(__name__)

GARMENTS = "garments"
MANIFEST = "manifest"
MANIFEST_LOCK_FILE = ".manifest.lock"

# Everything a search result shows (the fields of Hit but its score) is also packed into one
# JSON column, ``hit``. Lance fetches each selected column of each result row with its own
# read, so one packed column instead of eight cuts a k=48 lookup at 1M rows from ~9.7 to
# ~5.9 ms (k=10: ~5.7 to ~4.0 ms). The separate columns stay for filters, scans and
# iter_rows; both are written from the same VectorRow.
_ROW_FIELDS = list(ROW_FIELDS)
# Which columns get scalar indexes, and which kind: bitmaps suit the few distinct values of
# category/label, B-trees the near-unique ids (row_id speeds up the merge join of upserts).
_SCALAR_INDEXES = {
    "category": "BITMAP",
    "label": "BITMAP",
    "image_id": "BTREE",
    "product_id": "BTREE",
    "row_id": "BTREE",
    "metadata_tags": "LABEL_LIST",  # metadata filters' equality and `in` (docs/filters.md)
}
_INDEX_CONFIGS = {"BITMAP": lidx.Bitmap, "BTREE": lidx.BTree, "LABEL_LIST": lidx.LabelList}
# Long IN (...) lists are split so that a huge delete does not build one enormous SQL string.
_IN_CHUNK = 5_000


def garments_schema(dim: int) -> pa.Schema:
    return pa.schema(
        [
            pa.field("row_id", pa.string(), nullable=False),
            pa.field("image_id", pa.string(), nullable=False),
            pa.field("garment", pa.int32(), nullable=False),
            pa.field("image", pa.string()),
            pa.field("product_id", pa.string()),
            pa.field("category", pa.string()),
            pa.field("label", pa.string()),
            pa.field("score", pa.float32()),
            pa.field("box", pa.list_(pa.float32(), 4)),
            pa.field("fingerprint", pa.string()),
            pa.field("metadata", pa.string()),
            pa.field("hit", pa.string()),  # JSON of the Hit fields: what a search reads
            pa.field("vector", pa.list_(pa.float32(), dim)),
            # The metadata again, for filters: as Lance's JSON type, which its expressions can
            # read into, and as tags ("column has this value") for a label-list index.
            pa.field(METADATA_JSON, pa.json_(pa.utf8())),
            pa.field(METADATA_TAGS, pa.list_(pa.string())),
        ]
    )


# Added after the first release: a table without them is still read and written, only not
# filtered on metadata.
METADATA_JSON = "metadata_json"
METADATA_TAGS = "metadata_tags"
_OPTIONAL_COLUMNS = {METADATA_JSON, METADATA_TAGS}


_MANIFEST_SCHEMA = pa.schema([pa.field("key", pa.string()), pa.field("value", pa.string())])


def sql_str(value: str) -> str:
    """A SQL string literal; doubling quotes is the only escaping DataFusion needs."""
    return "'" + str(value).replace("'", "''") + "'"


def sql_in(column: str, values: Iterable[str]) -> str:
    return f"{column} IN ({', '.join(sql_str(v) for v in values)})"


def _sql_list(values: Iterable[str]) -> str:
    return "[" + ", ".join(sql_str(v) for v in values) + "]"


def lance_filter(node: Filter) -> str:
    """A filter tree as a Lance (DataFusion) predicate; every name and value is a quoted
    literal. Row conditions test the garment's own columns (scalar indexes answer them); text
    equality and ``in`` on metadata look tags up in ``metadata_tags`` (a label-list index
    answers them); number comparisons read ``metadata_json``."""
    return _lance_filter(negation_normal_form(node))


def _lance_filter(node: Filter) -> str:
    # After negation_normal_form everything is monotone: "unknown" may read as "fails".
    if isinstance(node, Junction):
        return "(" + f" {node.op.upper()} ".join(_lance_filter(p) for p in node.parts) + ")"
    negated = isinstance(node, Not)
    condition = node.part if isinstance(node, Not) else node
    if isinstance(condition, RowCondition):
        return _row_filter(condition, negated)
    assert isinstance(condition, Condition)
    if condition.numeric:
        value = f"try_cast(nullif(json_get_string({METADATA_JSON}, {sql_str(condition.column)}), '') AS DOUBLE)"
        # Numbers go in as text cast by the engine: no float formatting to get wrong.
        literals = [f"CAST({sql_str(repr(float(v)))} AS DOUBLE)" for v in condition.values]
        if condition.op == "in":
            test = f"{value} IN ({', '.join(literals)})"
        else:
            test = f"{value} {'<>' if condition.op == '!=' else condition.op} {literals[0]}"
        return f"(NOT ({test}))" if negated else f"({test})"
    has_value = f"array_has_any({METADATA_TAGS}, {_sql_list(value_tag(condition.column, v) for v in condition.values)})"
    if negated or condition.op == "!=":
        return f"(array_has({METADATA_TAGS}, {sql_str(column_tag(condition.column))}) AND NOT {has_value})"
    return f"({has_value})"


def _row_filter(condition: RowCondition, negated: bool) -> str:
    if not condition.values:
        return "TRUE" if negated else "FALSE"
    if len(condition.values) == 1:
        return f"({condition.field} {'!=' if negated else '='} {sql_str(condition.values[0])})"
    return f"({'NOT ' if negated else ''}{sql_in(condition.field, condition.values)})"


@dataclass
class AnnParams:
    """How the approximate index is built and searched once the table is large.

    Tuned with ``benchmarks/bench_store.py`` (1M x 1280-d, 2 CPU cores; numbers in the report
    of that benchmark):

    * IVF_SQ (8-bit scalar quantisation) rather than IVF_PQ: at 1280-d, PQ with 160 sub-vectors
      ranks near neighbours too coarsely -- a 5%-category filter needed a shortlist of 400
      to reach 0.95 recall (13 ms) -- while SQ keeps recall at ~1.0 with a 2x shortlist, and
      trains in ~1.5 minutes instead of ~5.
    * ``partition_size`` 1000 rows per IVF partition (1000 partitions at 1M): probing is cheap
      and the data's clusters stay within few partitions.
    * ``nprobes`` 8 unfiltered: recall 1.0 already at 5 on the benchmark; 8 is the margin.
    * Filtered queries probe enough partitions to expect ``min_candidates`` passing rows
      (at least ``filtered_nprobes``), because a prefilter thins every partition; filters
      that pass at most ``exact_filter_rows`` rows are searched exactly instead (fetching a
      few thousand vectors by scalar index is faster than probing most of the index).
    * ``refine_factor`` 2: the shortlist is re-ranked on the stored float vectors.
    * ``min_rows`` 2,000: Lance's exact scan reads the whole vector column per query,
      ~2.5 us per 1280-d row on this machine (9.6k rows: ~29 ms, 100k: ~250 ms), so the index
      pays off early; on the 9,583 Kaggle images an IVF_SQ index builds in 0.6 s and answers
      in 5.5 ms with Recall@10 1.000 (exact: 28.8 ms).
    """

    min_rows: int = 2_000  # below this, search is exact (brute force)
    index_type: str = "IVF_SQ"
    partition_size: int = 1_000  # rows per IVF partition -> num_partitions = rows / this
    nprobes: int = 8
    filtered_nprobes: int = 12
    min_candidates: int = 400
    exact_filter_rows: int = 2_000
    refine_factor: int = 2
    dims_per_subvector: int = 8  # IVF_PQ / IVF_HNSW_PQ only: num_sub_vectors = dim / this
    ef: int = 100  # IVF_HNSW_* only
    m: int = 20  # IVF_HNSW_* only
    ef_construction: int = 150  # IVF_HNSW_* only
    sample_rate: int = 256
    max_iterations: int = 50

    def num_partitions(self, rows: int) -> int:
        return max(1, int(round(rows / self.partition_size)))


@dataclass
class _TableState:
    """What search needs to know about one table version; rebuilt when the version changes."""

    version: int
    vector_index: Optional[str]
    partitions: int
    counts: dict[str, int]


@STORES.register("lancedb")
class LanceVectorStore(VectorStore):
    """A :class:`VectorStore` in an embedded LanceDB directory.

    Every read sees the latest commit, including commits made by other processes (checking
    costs one ``stat`` of the version directory).

    Options (all keyword, all optional):

    ``ann``: an :class:`AnnParams` or a dict of its fields, overriding the index/search tuning.
    ``keep_versions_s``: how long :meth:`optimize` keeps superseded table versions, so that
    readers in other processes that still hold one are not broken (default one hour).
    """

    def __init__(
        self,
        location: str,
        dim: Optional[int] = None,
        *,
        ann: AnnParams | dict[str, Any] | None = None,
        keep_versions_s: float = 3600.0,
        **unknown: Any,
    ) -> None:
        if unknown:
            raise UsageError(f"unknown lancedb store options: {', '.join(sorted(unknown))}")
        # A store opened from another working directory must land on the same files.
        self.path = Path(os.path.expanduser(str(location) or ".")).resolve()
        if self.path.exists() and not self.path.is_dir():
            raise StoreError(f"{self.path} is a file, not an index folder: give a folder for --db")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the index folder {self.path}: {exc.strerror or exc}") from None
        self.uri = f"lancedb://{self.path}"
        if isinstance(ann, dict):
            ann = AnnParams(**ann)
        self.ann = ann or AnnParams()
        self.keep_versions = timedelta(seconds=keep_versions_s)
        # One cache of loaded indexes, shared by the sync connection (writes, scans) and the
        # async one that serves searches.
        self._session = lancedb.Session()
        self._db = lancedb.connect(str(self.path), read_consistency_interval=timedelta(0), session=self._session)
        self._adb: Optional[lancedb.AsyncConnection] = None
        self._atable: Optional[lancedb.AsyncTable] = None
        self._table: Optional[lancedb.table.Table] = None
        self._table_state: Optional[_TableState] = None
        self._manifest_thread_lock = threading.Lock()
        self.dim: Optional[int] = None
        table = self._open_garments()
        if table is not None:
            self.dim = table.schema.field("vector").type.list_size
            missing = set(garments_schema(self.dim).names) - set(table.schema.names) - _OPTIONAL_COLUMNS
            if missing:
                raise StoreError(
                    f"store at {self.path} has an older layout (no {', '.join(sorted(missing))}); "
                    "index into a new store"
                )
            if dim is not None and int(dim) != self.dim:
                raise StoreError(f"store at {self.path} holds {self.dim}-d vectors, not {dim}-d")
        elif dim is not None:
            if int(dim) <= 0:
                raise ValueError(f"dim must be positive, not {dim}")
            self.dim = int(dim)
            self._table = self._create_garments()

    def shown_as(self, given: str) -> str:
        return given  # a folder, as the user wrote it

    def local_folder(self) -> Optional[Path]:
        return self.path

    @classmethod
    def missing(cls, location: str) -> bool:
        return not Path(os.path.expanduser(location or ".")).exists()

    # -- tables -------------------------------------------------------------------------------

    def _open_garments(self) -> Optional[lancedb.table.Table]:
        """The garments table, or None while nothing was written (another process may create
        it later, so keep looking until it exists)."""
        if self._table is None:
            try:
                self._table = self._db.open_table(GARMENTS)
            except (FileNotFoundError, ValueError):
                return None
            if self.dim is None:
                self.dim = self._table.schema.field("vector").type.list_size
        return self._table

    def _create_garments(self) -> lancedb.table.Table:
        """Create the garments table for ``self.dim``-d vectors, or open the one another process
        created at the same moment (Lance then refuses ``exist_ok`` for a schema it stored with
        other field details; the stored table is the one to use, if its vectors fit)."""
        assert self.dim is not None
        try:
            return self._db.create_table(GARMENTS, schema=garments_schema(self.dim), exist_ok=True)
        except ValueError:
            table = self._db.open_table(GARMENTS)
            if table.schema.field("vector").type.list_size != self.dim:
                raise StoreError(f"store at {self.path} holds other vectors than {self.dim}-d") from None
            return table

    def _writable(self) -> lancedb.table.Table:
        table = self._open_garments()
        if table is None:
            if self.dim is None:
                raise StoreError(f"store at {self.path} is empty: open it with dim=... to write vectors")
            table = self._table = self._create_garments()
        return table

    # -- writes -------------------------------------------------------------------------------

    def _to_arrow(self, rows: Sequence[VectorRow]) -> pa.Table:
        assert self.dim is not None
        vectors = np.asarray([np.asarray(r.vector, dtype=np.float32).reshape(-1) for r in rows], dtype=np.float32)
        if vectors.shape != (len(rows), self.dim):
            raise ValueError(f"vectors must be {self.dim}-d, got shape {vectors.shape[1:]}")
        vectors = l2_normalise(vectors)
        columns = {
            "row_id": pa.array([r.row_id for r in rows], pa.string()),
            "image_id": pa.array([str(r.image_id) for r in rows], pa.string()),
            "garment": pa.array([int(r.garment) for r in rows], pa.int32()),
            "image": pa.array([str(r.image) for r in rows], pa.string()),
            "product_id": pa.array([str(r.product_id) for r in rows], pa.string()),
            "category": pa.array([str(r.category) for r in rows], pa.string()),
            "label": pa.array([str(r.label) for r in rows], pa.string()),
            "score": pa.array([float(r.score) for r in rows], pa.float32()),
            "box": pa.FixedSizeListArray.from_arrays(
                pa.array(np.asarray([tuple(r.box) for r in rows], np.float32).reshape(-1)), 4
            ),
            "fingerprint": pa.array([str(r.fingerprint) for r in rows], pa.string()),
            "metadata": pa.array(
                [json.dumps(r.metadata or {}, sort_keys=True, default=str) for r in rows], pa.string()
            ),
            "hit": pa.array([_hit_json(r) for r in rows], pa.string()),
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), self.dim),
        }
        schema = garments_schema(self.dim)
        if self._has_filter_columns():
            columns[METADATA_JSON] = pa.array(
                [json.dumps(r.metadata or {}, sort_keys=True, default=str) for r in rows], pa.json_(pa.utf8())
            )
            columns[METADATA_TAGS] = pa.array([metadata_tags(r.metadata or {}) for r in rows], pa.list_(pa.string()))
        else:
            schema = pa.schema([f for f in schema if f.name not in _OPTIONAL_COLUMNS])
        return pa.table(columns, schema=schema)

    def _has_filter_columns(self) -> bool:
        table = self._open_garments()
        return table is None or _OPTIONAL_COLUMNS <= set(table.schema.names)

    def upsert_images(self, rows: Sequence[VectorRow]) -> None:
        """Replace every stored row of the images in ``rows`` by ``rows``, in one commit.

        A merge on ``row_id`` updates the garments that exist and inserts the new ones. Stored
        garments of these images that are absent from ``rows`` (an image that now has fewer
        garments) are deleted by the same merge, so no reader ever sees a half-replaced image.
        That clause makes Lance join against the whole table (seconds at 1M rows, against
        ~20 ms for the plain merge that uses the ``row_id`` index), so it is added only when
        such stale garments exist, which a cheap indexed lookup tells beforehand.
        """
        rows = list(rows)
        if not rows:
            return
        seen: set[str] = set()
        for row in rows:
            if row.row_id in seen:
                # A merge with duplicate keys is undefined in Lance (it may keep both).
                raise ValueError(f"row {row.row_id!r} appears twice in one upsert")
            seen.add(row.row_id)
        table = self._writable()
        data = self._to_arrow(rows)
        image_ids = sorted({str(r.image_id) for r in rows})
        stale = sorted(set(self._row_ids_of(table, image_ids)) - seen)
        merge = table.merge_insert("row_id").when_matched_update_all().when_not_matched_insert_all()
        if stale:
            merge = merge.when_not_matched_by_source_delete(sql_in("row_id", stale))
        merge.execute(data)

    def replace_product(
        self, product_id: str, rows: Sequence[VectorRow], manifest_change: Optional[ProductManifestChange] = None
    ) -> int:
        """One commit: a merge that updates and inserts ``rows`` and deletes the product's
        other rows (or one delete, for empty ``rows``). With ``manifest_change``, under the
        manifest's lock: the changed manifest is written first and put back if the rows fail to
        commit, so that nothing can fail once the rows have landed."""
        rows = list(rows)
        check_product_rows(product_id, rows)
        table = self._open_garments() if not rows else self._writable()
        if table is None:
            return 0
        where = f"product_id = {sql_str(product_id)}"
        with self._manifest_lock() if manifest_change is not None else contextlib.nullcontext():
            before = self.get_product(product_id)
            images_before = len({hit.image_id for hit in before})
            if not rows and not images_before:
                return 0
            stored = changed = None
            if manifest_change is not None:
                stored = self.read_manifest()
                changed = manifest_change(copy.deepcopy(stored), before)
                if changed != stored:
                    self._write_manifest(changed)
            try:
                if not rows:
                    _retrying(lambda: table.delete(where))
                else:
                    merge = table.merge_insert("row_id").when_matched_update_all().when_not_matched_insert_all()
                    if before:
                        merge = merge.when_not_matched_by_source_delete(where)
                    merge.execute(self._to_arrow(rows))
            except BaseException:
                if changed != stored:
                    self._restore_manifest(stored)
                raise
        return images_before

    def _restore_manifest(self, manifest: Optional[dict[str, Any]]) -> None:
        """Put back the manifest a failed product write changed (best effort: a second failure
        leaves the record ahead of the rows until the next index run)."""
        try:
            self._write_manifest(manifest or {})
        except Exception:
            log.exception("%s: could not put back the manifest after a failed product write", self.uri)

    @staticmethod
    def _image_chunks(
        table: "lancedb.table.Table", image_ids: Sequence[str], column: str
    ) -> Iterator[tuple[str, pa.Table]]:
        """``(where, rows)`` per chunk of ``image_ids``: the filter selecting the chunk's images
        and ``column`` of their stored rows."""
        for lo in range(0, len(image_ids), _IN_CHUNK):
            where = sql_in("image_id", image_ids[lo : lo + _IN_CHUNK])
            yield where, table.search().where(where).select([column]).limit(None).to_arrow()

    def _row_ids_of(self, table: "lancedb.table.Table", image_ids: Sequence[str]) -> list[str]:
        return [
            row_id
            for _, data in self._image_chunks(table, image_ids, "row_id")
            for row_id in data.column("row_id").to_pylist()
        ]

    def add_rows_bulk(self, rows: Sequence[VectorRow]) -> None:
        """Append rows of images that are NOT stored yet, in one commit, without the merge.

        For first builds and bulk loads, where the caller knows the images are new: it skips
        the stored-row lookup and the merge join that make :meth:`upsert_images` safe for
        changed images. Appending an image that is already stored duplicates it.
        """
        rows = list(rows)
        if rows:
            self._writable().add(self._to_arrow(rows))

    def delete_images(self, image_ids: Iterable[str]) -> int:
        """Remove all rows of these images; returns how many of them were stored. Each image
        goes in one commit with all its garments (one commit per 5,000 images)."""
        table = self._open_garments()
        ids = sorted({str(i) for i in image_ids})
        if table is None or not ids:
            return 0
        removed = 0
        for where, present in self._image_chunks(table, ids, "image_id"):
            found = len(pc.unique(present.column("image_id"))) if present.num_rows else 0
            if found:
                _retrying(lambda: table.delete(where))  # noqa: B023 (called at once)
                removed += found
        return removed

    # -- reads --------------------------------------------------------------------------------

    def _scan(self, columns: list[str], where: Optional[str] = None) -> pa.Table:
        table = self._open_garments()
        if table is None:
            return garments_schema(self.dim or 1).empty_table().select(columns)
        query = table.search().select(columns).limit(None)
        if where:
            query = query.where(where)
        return query.to_arrow()

    def fingerprints(self) -> dict[str, str]:
        # Two narrow columns only; Lance's columnar files make this cheap even at 1M rows.
        data = self._scan(["image_id", "fingerprint"])
        if not data.num_rows:
            return {}
        per_image = data.group_by("image_id").aggregate([("fingerprint", "max")])
        return dict(zip(per_image.column("image_id").to_pylist(), per_image.column("fingerprint_max").to_pylist()))

    def count(self) -> int:
        table = self._open_garments()
        return 0 if table is None else table.count_rows()

    def categories(self) -> dict[str, int]:
        data = self._scan(["category", "product_id"])
        if not data.num_rows:
            return {}
        per = data.group_by("category").aggregate([("product_id", "count_distinct")])
        return dict(
            sorted(zip(per.column("category").to_pylist(), per.column("product_id_count_distinct").to_pylist()))
        )

    def iter_rows(self, with_vectors: bool = True, batch_size: int = 10_000) -> Iterator[dict[str, Any]]:
        table = self._open_garments()
        if table is None:
            return
        columns = _ROW_FIELDS + (["vector"] if with_vectors else [])
        reader = table.search().select(columns).limit(None).to_batches(batch_size)
        for batch in reader:
            vectors = None
            if with_vectors:
                vectors = batch.column("vector").values.to_numpy(zero_copy_only=False).reshape(-1, self.dim)
            plain = batch.select(_ROW_FIELDS).to_pylist()
            for i, row in enumerate(plain):
                row["box"] = tuple(row["box"])
                row["metadata"] = json.loads(row["metadata"]) if row["metadata"] else {}
                if vectors is not None:
                    row["vector"] = vectors[i].copy()
                yield row

    def get_product(self, product_id: str) -> list[Hit]:
        """All garments of one product, ordered by image and garment; ``score`` is 1.0 as there
        is no query to compare with."""
        data = self._scan(["hit", "garment"], where=f"product_id = {sql_str(product_id)}")
        hits = _hits(data, scores=np.ones(data.num_rows))
        garments = data.column("garment").to_pylist()
        order = sorted(range(len(hits)), key=lambda i: (hits[i].image_id, garments[i]))
        return [hits[i] for i in order]

    def get_vectors(self, row_ids: Sequence[str]) -> dict[str, np.ndarray]:
        ids = sorted({str(r) for r in row_ids})
        out: dict[str, np.ndarray] = {}
        for lo in range(0, len(ids), _IN_CHUNK):
            data = self._scan(["row_id", "vector"], where=sql_in("row_id", ids[lo : lo + _IN_CHUNK]))
            if data.num_rows:
                vectors = data.column("vector").combine_chunks().values.to_numpy(zero_copy_only=False)
                out.update(zip(data.column("row_id").to_pylist(), vectors.reshape(data.num_rows, -1).copy()))
        return out

    def image_path(self, image_id: str) -> Optional[str]:
        table = self._open_garments()
        if table is None:
            return None
        data = table.search().where(f"image_id = {sql_str(image_id)}").select(["image"]).limit(1).to_arrow()
        return data.column("image")[0].as_py() if data.num_rows else None

    # -- search -------------------------------------------------------------------------------

    # Searches go through LanceDB's async API on a private event-loop thread: the whole
    # lookup (version check, filter count, query, fetch) is one hand-off to the loop, where the
    # sync API makes ~7 round trips per query (~2 ms of a ~6 ms search at 1M rows).

    async def _async_table(self) -> Optional["lancedb.AsyncTable"]:
        if self._atable is None:
            if self._adb is None:
                self._adb = await lancedb.connect_async(
                    str(self.path), read_consistency_interval=timedelta(0), session=self._session
                )
            try:
                self._atable = await self._adb.open_table(GARMENTS)
            except (FileNotFoundError, ValueError):
                return None
        return self._atable

    async def _state(self, table: "lancedb.AsyncTable") -> _TableState:
        version = await table.version()
        state = self._table_state
        if state is None or state.version != version:
            names = [i.name for i in await table.list_indices() if "vector" in i.columns]
            name = names[0] if names else None
            state = _TableState(version, name, _partitions_in_name(name) or 1, {})
            self._table_state = state  # one assignment: safe for concurrent searching threads
        return state

    @staticmethod
    async def _count(table: "lancedb.AsyncTable", state: _TableState, where: str) -> int:
        # Counts are answered by the scalar indexes (<1 ms) and cached per table version.
        if where not in state.counts:
            state.counts[where] = await table.count_rows(where)
        return state.counts[where]

    def search(self, vector: np.ndarray, k: int, where: Optional[Filter] = None) -> list[Hit]:
        if k <= 0 or passes_nothing(where) or self.dim is None and self._open_garments() is None:
            return []
        query_vector = l2_normalise(np.asarray(vector, dtype=np.float32).reshape(1, -1))[0]
        if query_vector.shape[0] != self.dim:
            raise ValueError(f"query must be {self.dim}-d, got {query_vector.shape[0]}-d")
        if where is not None and columns_of(where) and not self._has_filter_columns():
            raise FilterError(
                f"the index at {self.path} predates metadata filters: rebuild it "
                "(fashion-search index CATALOG --db ... --rebuild) to filter on metadata"
            )
        narrowing, _ = split_exclusions(where)
        narrow_where = lance_filter(narrowing) if narrowing is not None else ""
        full_where = lance_filter(where) if where is not None else ""
        # Garments as near as the k-th would make the cut in an arbitrary order: fetch past it
        # until a farther one shows, and let hit_order decide among them.
        fetch = k + max(4, k // 4)
        while True:
            data = _run(self._search(query_vector, fetch, narrow_where, full_where))
            if data is None:
                return []
            # Float rounding can push 1 - distance a hair outside [-1, 1].
            scores = np.clip(1.0 - data.column("_distance").to_numpy(zero_copy_only=False), -1.0, 1.0)
            if data.num_rows < fetch or data.num_rows <= k or scores[-1] < scores[k - 1]:
                return sorted(_hits(data, scores=scores), key=hit_order)[:k]
            fetch *= 2

    async def _search(self, vector: np.ndarray, k: int, narrow_where: str, where: str) -> Optional[pa.Table]:
        table = await self._async_table()
        if table is None:
            return None
        state = await self._state(table)
        ann = self.ann
        exact = state.vector_index is None
        nprobes = ann.nprobes
        if not exact and narrow_where:
            passing = await self._count(table, state, narrow_where)
            if passing == 0:
                return None
            if passing <= ann.exact_filter_rows:
                exact = True  # fetching a few thousand vectors by scalar index beats probing
            else:
                # Expect ``min_candidates`` passing rows among the probed partitions.
                wanted = math.ceil(ann.min_candidates * state.partitions / passing)
                nprobes = min(state.partitions, max(ann.filtered_nprobes, wanted))
        data = await self._query(table, vector, k, where, exact, nprobes)
        if not exact and data.num_rows < k and where and await self._count(table, state, where) > data.num_rows:
            # The probed partitions held too few rows passing the filter: rather than return
            # short, search exactly (only reachable for unusually clustered filters).
            data = await self._query(table, vector, k, where, True, nprobes)
        return data

    async def _query(
        self, table: "lancedb.AsyncTable", vector: np.ndarray, k: int, where: str, exact: bool, nprobes: int
    ) -> pa.Table:
        query = (
            table.query()
            .nearest_to(vector)
            .column("vector")
            .distance_type("cosine")
            .select(["hit", "_distance"])
            .limit(k)
        )
        if where:
            # A prefilter (the async API's default): rank only rows that pass, so a narrow
            # filter never costs recall.
            query = query.where(where)
        if exact:
            query = query.bypass_vector_index()
        else:
            # A fixed probe count: with maximum_nprobes above minimum, this Lance version
            # probes up to the maximum on every query (0 = all partitions, 90 ms at 1M).
            query = query.nprobes(nprobes)
            if self.ann.refine_factor:
                query = query.refine_factor(self.ann.refine_factor)
            if "HNSW" in self.ann.index_type.upper():
                query = query.ef(max(self.ann.ef, k * 2))
        return await query.to_arrow()

    # -- manifest -----------------------------------------------------------------------------

    def read_manifest(self) -> dict[str, Any]:
        try:
            # Re-open each time: the manifest is tiny and another process may have rewritten it.
            table = self._db.open_table(MANIFEST)
        except (FileNotFoundError, ValueError):
            return {}
        data = table.search().where("key = 'manifest'").select(["value"]).limit(None).to_arrow()
        return json.loads(data.column("value")[0].as_py()) if data.num_rows else {}

    def update_manifest(self, change: ManifestChange) -> dict[str, Any]:
        """Read, change and write the manifest holding the index folder's manifest lock, so that
        writers in every process of this machine take turns."""
        with self._manifest_lock():
            before = self.read_manifest()
            after = change(copy.deepcopy(before))
            if after != before:
                self._write_manifest(after)
            return after

    @contextmanager
    def _manifest_lock(self) -> Iterator[None]:
        """An exclusive ``flock`` of ``.manifest.lock`` in the index folder (and a thread lock,
        for threads of this process). Lance commits an overwrite atomically but cannot make it
        conditional on the version that was read, so read-modify-write needs a lock."""
        with self._manifest_thread_lock:
            try:
                handle = open(self.path / MANIFEST_LOCK_FILE, "a+b")
            except OSError as exc:
                raise StoreError(f"the index folder {self.path} is not writable: {exc.strerror or exc}") from None
            with handle:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def _write_manifest(self, manifest: dict[str, Any]) -> None:
        data = pa.table(
            {"key": ["manifest"], "value": [json.dumps(manifest, sort_keys=True, default=str)]}, schema=_MANIFEST_SCHEMA
        )
        # An overwrite is one commit: readers see the old or the new manifest, never neither.
        try:
            _retrying(lambda: self._db.open_table(MANIFEST).add(data, mode="overwrite"))
        except (FileNotFoundError, ValueError):
            self._db.create_table(MANIFEST, data=data, exist_ok=True)
            _retrying(lambda: self._db.open_table(MANIFEST).add(data, mode="overwrite"))  # another process won

    def clear(self) -> None:
        """Drop every row and the manifest: the store is as new (its dimension is chosen again
        by the next open with ``dim``)."""
        with self._manifest_lock():
            for name in (GARMENTS, MANIFEST):
                try:
                    self._db.drop_table(name)
                except (FileNotFoundError, ValueError):
                    pass  # never written
        self._table = self._atable = None
        self._table_state = None
        self.dim = None

    # -- maintenance --------------------------------------------------------------------------

    def optimize(self) -> None:
        """Compact files, refresh scalar indexes, and build or refresh the vector index.

        Below ``ann.min_rows`` rows the table keeps exact search. Above it an IVF index is
        built; later calls add new rows to it incrementally, and retrain it from scratch once
        the table has grown (or shrunk) well past what its partition count was chosen for.
        """
        table = self._open_garments()
        if table is None:
            return
        # Compaction first, so that indexes built below cover the compacted files directly.
        table.optimize(cleanup_older_than=self.keep_versions)
        rows = table.count_rows()
        if rows == 0:
            return
        existing = {i.name: i for i in table.list_indices()}
        names = set(table.schema.names)
        for column, kind in _SCALAR_INDEXES.items():
            if column in names and not any(column in i.columns for i in existing.values()):
                table.create_index(column, config=_INDEX_CONFIGS[kind](), replace=True)
        vector_index = next((n for n, i in existing.items() if "vector" in i.columns), None)
        wanted_partitions = self.ann.num_partitions(rows)
        if rows >= self.ann.min_rows:
            built_partitions = _partitions_in_name(vector_index)
            stale = built_partitions is None or not (built_partitions / 2 <= wanted_partitions <= built_partitions * 2)
            if vector_index is None or stale:
                self.build_vector_index(rows)
        self._table_state = None

    def check_writable(self) -> None:
        # A file made and removed: the only test that holds for root and read-only mounts alike.
        try:
            with tempfile.TemporaryFile(dir=self.path, prefix=".write-check-"):
                pass
        except OSError as exc:
            raise StoreError(f"the index folder {self.path} is not writable: {exc.strerror or exc}") from None

    def needs_optimize(self) -> bool:
        table = self._open_garments()
        if table is None:
            return False
        rows = table.count_rows()
        if rows == 0:
            return False
        indexed = {column for i in table.list_indices() for column in i.columns}
        names = set(table.schema.names)
        missing_scalar = any(column not in indexed for column in _SCALAR_INDEXES if column in names)
        return missing_scalar or (rows >= self.ann.min_rows and "vector" not in indexed)

    def build_vector_index(self, rows: Optional[int] = None) -> str:
        """(Re)train the vector index on the current rows; returns its name."""
        table = self._writable()
        rows = table.count_rows() if rows is None else rows
        ann = self.ann
        assert self.dim is not None
        partitions = ann.num_partitions(rows)
        common = dict(
            distance_type="cosine",
            num_partitions=partitions,
            max_iterations=ann.max_iterations,
            sample_rate=ann.sample_rate,
        )
        kind = ann.index_type.upper()
        if kind == "IVF_PQ":
            sub = max(1, self.dim // ann.dims_per_subvector)
            config: Any = lidx.IvfPq(num_sub_vectors=sub, **common)
        elif kind == "IVF_SQ":
            config = lidx.IvfSq(**common)
        elif kind == "IVF_RQ":
            config = lidx.IvfRq(**common)
        elif kind == "IVF_FLAT":
            config = lidx.IvfFlat(**common)
        elif kind == "IVF_HNSW_SQ":
            config = lidx.HnswSq(m=ann.m, ef_construction=ann.ef_construction, **common)
        elif kind == "IVF_HNSW_PQ":
            sub = max(1, self.dim // ann.dims_per_subvector)
            config = lidx.HnswPq(m=ann.m, ef_construction=ann.ef_construction, num_sub_vectors=sub, **common)
        else:
            raise ValueError(f"unknown vector index type {ann.index_type!r}")
        # The partition count is part of the name so that any process can tell what size of
        # table the index was trained for (see optimize).
        name = f"vector_{kind.lower()}_p{partitions}"
        old = [i.name for i in table.list_indices() if "vector" in i.columns and i.name != name]
        # Build the new index before dropping the old, so searches never fall back to a scan.
        table.create_index("vector", config=config, replace=True, name=name)
        for previous in old:
            table.drop_index(previous)
        self._table_state = None
        return name

    def warm(self) -> None:
        """Load the indexes into memory now rather than partition by partition on first use.

        At 1M rows this takes ~1 s and brings the first searches from ~9 ms (p95 ~20 ms)
        to the steady-state ~6 ms; worth calling once in a process that serves searches.
        """

        async def prewarm() -> None:
            table = await self._async_table()
            if table is not None:
                for index in await table.list_indices():
                    await table.prewarm_index(index.name)

        _run(prewarm())

    def close(self) -> None:
        self._table = None
        self._atable = None


T = TypeVar("T")
_loop: Optional[asyncio.AbstractEventLoop] = None
_loop_pid = 0
_loop_lock = threading.Lock()


def _run(coroutine: Awaitable[T]) -> T:
    """Run ``coroutine`` on this module's event-loop thread and wait for it; callable from
    any thread, including one that runs its own event loop."""
    global _loop, _loop_pid
    with _loop_lock:
        if _loop is None or _loop_pid != os.getpid():  # a forked child has no loop thread
            _loop, _loop_pid = asyncio.new_event_loop(), os.getpid()
            threading.Thread(target=_loop.run_forever, name="fashion-search-lancedb", daemon=True).start()
    return asyncio.run_coroutine_threadsafe(coroutine, _loop).result()  # type: ignore[arg-type]


_PARTITIONS = re.compile(r"_p(\d+)$")


def _partitions_in_name(name: Optional[str]) -> Optional[int]:
    match = _PARTITIONS.search(name or "")
    return int(match.group(1)) if match else None


def _retrying(commit: Callable[[], T], attempts: int = 10) -> T:
    """``commit()``, again after a short wait when Lance reports a retryable conflict with a
    concurrent commit (it raises rather than retrying for overwrites and deletes)."""
    for attempt in range(attempts - 1):
        try:
            return commit()
        except RuntimeError as exc:
            if "Retryable commit conflict" not in str(exc):
                raise
            time.sleep(0.02 * (attempt + 1) * (1 + random.random()))
    return commit()


def _hit_json(row: VectorRow) -> str:
    return json.dumps(
        {
            "row_id": row.row_id,
            "image_id": str(row.image_id),
            "image": str(row.image),
            "product_id": str(row.product_id),
            "category": str(row.category),
            "label": str(row.label),
            "box": [float(v) for v in row.box],
            "metadata": row.metadata or {},
        },
        separators=(",", ":"),
        default=str,
    )


def _hits(data: pa.Table, scores: np.ndarray) -> list[Hit]:
    hits = []
    for packed, score in zip(data.column("hit").to_pylist(), scores):
        fields = json.loads(packed)
        fields["box"] = tuple(fields["box"])
        hits.append(Hit(score=float(score), **fields))
    return hits


__all__ = ["AnnParams", "LanceVectorStore", "garments_schema"]
