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

import atexit
import json
import logging
import math
import os
import re
import threading
import time
import typing
import weakref
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Optional, Sequence
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

import numpy as np

from fashion_search.errors import MissingDependencyError, StoreError, UsageError
from fashion_search.registry import STORES, _parse_value
from fashion_search.store import ROW_FIELDS, Hit, VectorRow, VectorStore, check_product_rows
from fashion_search.store.filters import (
    NUMBER_PATTERN,
    Condition,
    Filter,
    Junction,
    Not,
    negation_normal_form,
)
from fashion_search.vectors import l2_normalise

try:
    import psycopg
    from pgvector.psycopg import register_vector
    from psycopg import sql
    from psycopg_pool import ConnectionPool, PoolTimeout
except ImportError as _exc:  # the optional extra is not installed; the store explains on open
    psycopg = None  # type: ignore[assignment]
    _IMPORT_ERROR: Optional[ImportError] = _exc
else:
    _IMPORT_ERROR = None

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'fashion-search[postgres]'"
SCHEMA_VERSION = 1
DEFAULT_TABLE = "garments"
EXTENSION = "vector"
# Lower-case names need no quoting anywhere; 48 characters leave room for the suffixes of the
# meta table and the indexes within PostgreSQL's 63.
_TABLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,47}$")
# pgvector's HNSW indexes ``vector`` up to 2,000 dimensions and ``halfvec`` up to 4,000; wider
# stores are indexed as half precision, and past that searched exactly.
_HNSW_MAX_DIM = 2_000
_HALFVEC_MAX_DIM = 4_000
# hnsw.ef_search accepts at most 1,000: a search for more rows than that is exact.
_MAX_EF_SEARCH = 1_000
# Writers lock image ids by bucket: at most this many advisory locks per transaction, however
# large the batch, so a bulk load never exhausts the server's lock table.
_LOCK_BUCKETS = 256
# Advisory lock keys: one for all schema changes in a database, one per table for index builds.
_SCHEMA_LOCK = zlib.crc32(b"fashion-search schema") - 2**31
_OPTIMIZE_LOCK = -1

_COLUMNS = ["row_id", *ROW_FIELDS, "vector"]
_COPY_TYPES = ["text", "text", "int4", "text", "text", "text", "text", "float4", "float4[]", "text", "text", "vector"]
_HIT_COLUMNS = ["row_id", "image_id", "image", "product_id", "category", "label", "box", "metadata"]
_ROW_FIELDS = list(ROW_FIELDS)
# Libpq's messages for the failures a user can fix, and what to tell them.
_CONNECT_FAILURES = [
    (
        re.compile(r'database "(?P<name>[^"]*)" does not exist'),
        "database {name!r} does not exist on {server}: create it (createdb {name})",
    ),
    (
        re.compile(r"password authentication failed|no password supplied|authentication failed"),
        "authentication failed for user {user!r} at {server}: check the password (in the URI, PGPASSWORD or ~/.pgpass)",
    ),
    (re.compile(r'role "(?P<name>[^"]*)" does not exist'), "user {name!r} does not exist on {server}"),
    (
        re.compile(
            r"Connection refused|could not connect|No such file or directory|timeout expired"
            r"|could not translate host name|Network is unreachable|server closed the connection"
        ),
        "cannot reach PostgreSQL at {server}: is the server running and accepting connections there?",
    ),
]


def postgres_filter(node: Filter, params: dict[str, Any]) -> sql.Composable:
    """A parsed metadata filter as SQL on the ``metadata`` column (JSON text); column names and
    values become query parameters, added to ``params``. Text equality and ``in`` also carry a
    containment test that the GIN index on the metadata answers (it implies the exact test)."""
    return _postgres_filter(negation_normal_form(node), params)


_JSON_NUMBER = re.compile(r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$")


def _json_forms(column: str, text: str) -> list[str]:
    """``{column: value}`` as JSON for each stored value whose text (``->>``) is ``text``: the
    string, and the number or boolean that prints so."""
    forms = [json.dumps({column: text})]
    if _JSON_NUMBER.match(text) or text in ("true", "false"):
        forms.append(json.dumps({column: None})[:-5] + text + "}")
    return forms


def _postgres_filter(node: Filter, params: dict[str, Any]) -> sql.Composable:
    # After negation_normal_form everything is monotone: "unknown" may read as "fails".
    if isinstance(node, Junction):
        return sql.SQL("({})").format(
            sql.SQL(f" {node.op.upper()} ").join(_postgres_filter(p, params) for p in node.parts)
        )

    def placeholder(value: Any) -> sql.Composable:
        name = f"filter_{len([n for n in params if n.startswith('filter_')])}"
        params[name] = value
        return sql.Placeholder(name)

    negated = isinstance(node, Not)
    condition = node.part if isinstance(node, Not) else node
    assert isinstance(condition, Condition)
    text = sql.SQL("NULLIF(metadata::jsonb ->> {}, '')").format(placeholder(condition.column))
    value: sql.Composable = text
    if condition.numeric:
        # A value that is not a number compares as NULL, as in the Lance store.
        value = sql.SQL("(CASE WHEN {t} ~ {pattern} THEN {t}::float8 END)").format(
            t=text, pattern=placeholder(NUMBER_PATTERN)
        )
    values = [float(v) if condition.numeric else str(v) for v in condition.values]
    if condition.op == "in":
        test = sql.SQL("{} = ANY({})").format(value, placeholder(values))
    else:
        test = sql.SQL("{} {} {}").format(value, sql.SQL(condition.op), placeholder(values[0]))
    if negated:
        return sql.SQL("(NOT ({}))").format(test)
    if condition.numeric or condition.op not in ("=", "in"):
        return sql.SQL("({})").format(test)
    contains = sql.SQL(" OR ").join(
        sql.SQL("metadata::jsonb @> {}::jsonb").format(placeholder(form))
        for v in values
        for form in _json_forms(condition.column, str(v))
    )
    return sql.SQL("(({}) AND {})").format(contains, test)


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


_PARAM_TYPES = typing.get_type_hints(HnswParams)


@dataclass(repr=False)  # the generated repr would show the password
class _Target:
    """A parsed ``postgresql://`` URI: libpq connection parameters and this store's options."""

    params: dict[str, str]
    table: Optional[str]
    options: dict[str, str]

    def __repr__(self) -> str:
        return f"_Target({self.uri(self.table or DEFAULT_TABLE)!r})"

    @property
    def password(self) -> Optional[str]:
        return self.params.get("password")

    @property
    def server(self) -> str:
        host = self.params.get("host") or "the local socket"
        return f"{host}:{self.params['port']}" if self.params.get("port") else host

    def uri(self, table: str) -> str:
        """The URI without the password, to show and to reopen (with the password from
        ``PGPASSWORD`` or ``~/.pgpass``)."""
        user = quote(self.params["user"], safe="") + "@" if self.params.get("user") else ""
        host = self.params.get("host", "")
        host = f"[{host}]" if ":" in host else quote(host, safe="")
        port = f":{self.params['port']}" if self.params.get("port") else ""
        database = quote(self.params.get("dbname", ""), safe="")
        extra = {k: v for k, v in self.params.items() if k not in ("user", "password", "host", "port", "dbname")}
        query = urlencode({"table": table, **extra})
        return f"postgresql://{user}{host}{port}/{database}?{query}"


def parse_uri(location: str) -> _Target:
    """``user:password@host:port/dbname?table=...&key=value`` (what follows ``postgresql://``).

    ``table`` and the fields of :class:`HnswParams` are this store's options; other query
    keys are libpq connection parameters (``sslmode``, ``connect_timeout``, ...).
    """
    try:
        parts = urlsplit("postgresql://" + location)
        port = parts.port
    except ValueError:
        # The message of urllib may quote the URI, password included.
        raise UsageError("invalid postgresql:// URI: expected postgresql://user@host:port/dbname?table=name") from None
    params: dict[str, str] = {}
    if parts.username:
        params["user"] = unquote(parts.username)
    if parts.password is not None:
        params["password"] = unquote(parts.password)
    # Not parts.hostname: it lower-cases, and a socket folder (%2Frun%2Fpostgresql) keeps its case.
    host = parts.netloc.rsplit("@", 1)[-1]
    host = host[1 : host.find("]")] if host.startswith("[") else host.split(":", 1)[0]
    if host:
        params["host"] = unquote(host)
    if port:
        params["port"] = str(port)
    if parts.path.strip("/"):
        params["dbname"] = unquote(parts.path.lstrip("/"))
    table = None
    options: dict[str, str] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key == "table":
            table = value
        elif key in _PARAM_TYPES:
            options[key] = value
        else:
            params[key] = value
    return _Target(params, table, options)


def _scrub(text: str, password: Optional[str]) -> str:
    """``text`` without the password, in any spelling it may have been given."""
    if password:
        for spelling in {password, quote(password, safe=""), quote(password)}:
            text = text.replace(spelling, "***")
    return text


@dataclass
class _Plan:
    """How one search runs: the settings of its transaction and whether it may come back short."""

    exact: bool
    settings: dict[str, str]
    fetch_factor: float = 1.0  # rows the walk fetches, as a multiple of k (re-ranked exactly)


def _as_array(value: Any) -> np.ndarray:
    """A loaded vector as a float32 array of its own (pgvector's loaders return ``Vector``
    objects from 0.4 on, NumPy arrays before)."""
    array = value.to_numpy() if hasattr(value, "to_numpy") else value
    return np.array(array, dtype=np.float32)


# Exact search: pgvector's advice is to turn index scans off, so that the rows passing the
# filter (found through a bitmap of the column indexes) are all ranked; sorting is back on in
# case a graph walk of the same transaction turned it off.
_EXACT = {"enable_indexscan": "off", "enable_sort": "on"}


def _walk(settings: dict[str, str], fetch_factor: float = 1.0) -> _Plan:
    """A search through the HNSW index. The counts already chose it over ranking every passing
    row, so the planner's alternative (a sort of the rows a category index finds) is ruled out:
    its costs guess poorly how far a filtered graph walk goes."""
    return _Plan(exact=False, settings={**settings, "enable_sort": "off"}, fetch_factor=fetch_factor)


@STORES.register("postgresql", "postgres")
class PostgresVectorStore(VectorStore):
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
            raise MissingDependencyError(f"the postgresql:// store needs its extra: {INSTALL_HINT} ({_IMPORT_ERROR})")
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
            wrong = sorted(set(given) - set(_PARAM_TYPES))
            if wrong:
                raise UsageError(f"unknown postgresql ann options: {', '.join(wrong)}")
            params = HnswParams(**given)
        for key, text in target.options.items():
            setattr(params, key, _parse_value(text, _PARAM_TYPES[key], key))
        self.ann = params
        self._target = target
        self._connect_params = {"connect_timeout": str(connect_timeout), **target.params}
        self.uri = target.uri(self.table)
        self.pool_size = max(1, int(pool_size))
        self._meta = f"{self.table}_meta"
        self._hnsw_name = f"{self.table}_vector_hnsw"
        self._metadata_index = f"{self.table}_metadata_gin"
        self._lock_key = zlib.crc32(f"fashion-search table {self.table}".encode()) - 2**31
        self._pool: Optional[_SharedPool] = None
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

    # -- connections ----------------------------------------------------------------------------

    def _message(self, exc: BaseException) -> str:
        return _scrub(str(exc).strip(), self._target.password)

    def _connect_error(self, exc: Exception) -> StoreError:
        text = self._message(exc)
        for pattern, message in _CONNECT_FAILURES:
            match = pattern.search(text)
            if match:
                names = {
                    "server": self._target.server,
                    "user": self._target.params.get("user", ""),
                    **match.groupdict(),
                }
                return StoreError(message.format(**names) + f" ({self.uri})")
        return StoreError(f"cannot connect to PostgreSQL for {self.uri}: {text}")

    @contextmanager
    def _direct(self, autocommit: bool = True) -> Iterator["psycopg.Connection"]:
        """A connection of its own (not from the pool): for opening checks and maintenance."""
        try:
            conn = psycopg.connect(autocommit=autocommit, prepare_threshold=None, **self._connect_params)
        except psycopg.Error as exc:
            # Raised without the original: libpq's text is scrubbed here, not in a traceback.
            raise self._connect_error(exc) from None
        with conn:
            yield conn

    def _get_pool(self) -> "ConnectionPool":
        with self._pool_lock:
            if self._pool is None or self._pool.pid != os.getpid():  # a forked child opens its own
                self._pool = _SharedPool.acquire(self._connect_params, self.pool_size)
            return self._pool.pool

    @contextmanager
    def _conn(self, vectors: bool = False) -> Iterator["psycopg.Connection"]:
        """A pooled autocommit connection; ``vectors``: with pgvector's types registered."""
        try:
            with self._get_pool().connection() as conn:
                if vectors and conn not in _REGISTERED:
                    try:
                        register_vector(conn)
                        _REGISTERED.add(conn)
                    except psycopg.ProgrammingError:
                        # No extension yet, so no table either: the query finds none.
                        pass
                yield conn
        except PoolTimeout:
            raise StoreError(f"no connection to PostgreSQL for {self.uri} within 30 s: is the server up?") from None
        except psycopg.OperationalError as exc:
            raise StoreError(f"PostgreSQL failed for {self.uri}: {self._message(exc)}") from None

    def _ident(self, name: Optional[str] = None) -> "sql.Identifier":
        return sql.Identifier(name or self.table)

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

    # -- writes ---------------------------------------------------------------------------------

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

    def replace_product(self, product_id: str, rows: Sequence[VectorRow]) -> int:
        """One transaction: the product's rows are deleted and ``rows`` copied in, under the
        locks of its old and new images (so an index run writing one of them waits)."""
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
            old = [
                r[0]
                for r in conn.execute(
                    sql.SQL("SELECT DISTINCT image_id FROM {} WHERE product_id = %s").format(self._ident()),
                    [product_id],
                ).fetchall()
            ]
            self._lock_images(conn, sorted(set(old) | {r.image_id for r in rows}))
            conn.execute(sql.SQL("DELETE FROM {} WHERE product_id = %s").format(self._ident()), [product_id])
            if data:
                self._copy(conn, data)
            return len(old)

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

    # -- reads ----------------------------------------------------------------------------------

    def _fetch(self, query: Any, params: Sequence[Any] = (), vectors: bool = False) -> list[tuple]:
        """All rows of one query; none when the table does not exist (never written, or
        cleared by another process)."""
        try:
            with self._conn(vectors=vectors) as conn, conn.cursor(binary=True) as cur:
                return cur.execute(query, params).fetchall()
        except psycopg.errors.UndefinedTable:
            return []

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
        hits = []
        for n, values in enumerate(rows):
            fields_ = dict(zip(_HIT_COLUMNS, values))
            fields_["box"] = tuple(fields_["box"])
            fields_["metadata"] = json.loads(fields_["metadata"]) if fields_["metadata"] else {}
            hits.append(Hit(score=float(scores[n]) if scores is not None else 1.0, **fields_))
        return hits

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

    # -- search ---------------------------------------------------------------------------------

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

    def _search_query(self, where: Any) -> Any:
        assert self.dim is not None
        if not self._half_index():
            order = sql.SQL("vector <=> %(q)s")
        else:  # the index is on the half-precision copy; the final order is by full precision
            half = sql.SQL("halfvec({})").format(sql.Literal(self.dim))
            order = sql.SQL("vector::{h} <=> %(q)s::vector::{h}").format(h=half)
        return sql.SQL(
            "WITH hits AS MATERIALIZED (SELECT {cols}, vector <=> %(q)s AS distance FROM {t} WHERE {where} "
            "ORDER BY {order} LIMIT %(fetch)s) SELECT {cols}, distance FROM hits ORDER BY distance, row_id LIMIT %(k)s"
        ).format(cols=sql.SQL(", ").join(map(sql.Identifier, _HIT_COLUMNS)), t=self._ident(), where=where, order=order)

    def search(
        self,
        vector: np.ndarray,
        k: int,
        category: Optional[str | Sequence[str]] = None,
        label: Optional[str | Sequence[str]] = None,
        exclude_product: Optional[str] = None,
        exclude_image: Optional[str] = None,
        where: Optional[Filter] = None,
    ) -> list[Hit]:
        if k <= 0:
            return []
        if self.dim is None:
            with self._direct() as conn:  # another process may have created the table since
                self.dim = self._inspect(conn)
            if self.dim is None:
                return []
        query_vector = l2_normalise(np.asarray(vector, dtype=np.float32).reshape(1, -1))[0]
        if query_vector.shape[0] != self.dim:
            raise ValueError(f"query must be {self.dim}-d, got {query_vector.shape[0]}-d")
        narrow: list[Any] = []
        params: dict[str, Any] = {"q": query_vector, "k": int(k)}
        key: list[Any] = []
        for column, value in (("category", category), ("label", label)):
            if value is None:
                continue
            values = [value] if isinstance(value, str) else sorted({str(v) for v in value})
            if not values:
                return []
            narrow.append(sql.SQL("{} = ANY({})").format(sql.Identifier(column), sql.Placeholder(column)))
            params[column] = values
            key.append((column, tuple(values)))
        if where is not None:
            narrow.append(postgres_filter(where, params))
            key.append(("where", where))
        conditions = list(narrow)
        if exclude_product is not None:
            conditions.append(sql.SQL("product_id <> %(exclude_product)s"))
            params["exclude_product"] = str(exclude_product)
        if exclude_image is not None:
            conditions.append(sql.SQL("image_id <> %(exclude_image)s"))
            params["exclude_image"] = str(exclude_image)
        where = sql.SQL(" AND ").join(conditions) if conditions else sql.SQL("true")
        narrow_where = sql.SQL(" AND ").join(narrow) if narrow else None
        narrow_params = {name: value for name, value in params.items() if name not in ("q", "k")}
        try:
            with self._conn(vectors=True) as conn, conn.transaction(), conn.cursor(binary=True) as cur:
                plan = self._plan(conn, int(k), tuple(key) or None, narrow_where, narrow_params, bool(conditions))
                query = self._search_query(where)
                fetch = int(k) if plan.exact else max(int(k), min(_MAX_EF_SEARCH, math.ceil(plan.fetch_factor * k)))
                params["fetch"] = fetch
                rows = self._run_search(cur, query, params, plan.settings)
                if not plan.exact and len(rows) < k:
                    # The walk ran out before k rows passed: rank every passing row instead.
                    rows = self._run_search(cur, query, {**params, "fetch": int(k)}, _EXACT)
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

    # -- manifest -------------------------------------------------------------------------------

    def read_manifest(self) -> dict[str, Any]:
        rows = self._fetch(sql.SQL("SELECT value FROM {} WHERE key = 'manifest'").format(self._ident(self._meta)))
        return json.loads(rows[0][0]) if rows else {}

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        value = json.dumps(manifest, sort_keys=True, default=str)
        statement = sql.SQL(
            "INSERT INTO {} (key, value) VALUES ('manifest', %s) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"
        ).format(self._ident(self._meta))
        try:
            with self._conn() as conn:
                conn.execute(statement, [value])
            return
        except psycopg.errors.UndefinedTable:
            pass
        # A manifest before any vector (or after clear): the meta table alone is created.
        with self._direct() as conn:
            with self._schema_change(conn):
                self._ensure_meta(conn)
            conn.execute(statement, [value])

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

    def close(self) -> None:
        with self._pool_lock:
            shared, self._pool = self._pool, None
        if shared is not None:
            shared.release()


# Connections with pgvector's types registered (a connection lives in one pool for its life).
_REGISTERED: "weakref.WeakSet[Any]" = weakref.WeakSet()


class _SharedPool:
    """One connection pool per server, database and user in a process, shared by the store
    handles that use it and closed when the last one closes (or at exit).

    Held here rather than by each handle because a pool that is only garbage-collected may be
    collected on one of its own worker threads, which cannot stop itself.
    """

    _pools: dict[Any, "_SharedPool"] = {}
    _lock = threading.Lock()

    def __init__(self, key: Any, pool: "ConnectionPool") -> None:
        self.key, self.pool, self.users, self.pid = key, pool, 0, os.getpid()

    @classmethod
    def acquire(cls, params: dict[str, str], size: int) -> "_SharedPool":
        key = (os.getpid(), tuple(sorted(params.items())), size)
        with cls._lock:
            shared = cls._pools.get(key)
            if shared is None:
                pool = ConnectionPool(
                    kwargs={"autocommit": True, "prepare_threshold": None, **params},
                    min_size=1,
                    max_size=size,
                    open=True,
                    # One round trip per checkout, so a restarted server costs no failed search.
                    check=ConnectionPool.check_connection,
                    name=f"fashion-search {params.get('dbname', '')}",
                    timeout=30.0,
                )
                shared = cls._pools[key] = cls(key, pool)
            shared.users += 1
            return shared

    def release(self) -> None:
        with self._lock:
            self.users -= 1
            if self.users > 0 or self.pid != os.getpid():
                return
            self._pools.pop(self.key, None)
        self.pool.close()

    @classmethod
    def close_all(cls) -> None:
        with cls._lock:
            pools = [p for p in cls._pools.values() if p.pid == os.getpid()]
            cls._pools.clear()
        for shared in pools:
            shared.pool.close()


atexit.register(_SharedPool.close_all)


__all__ = ["HnswParams", "PostgresVectorStore", "parse_uri"]
