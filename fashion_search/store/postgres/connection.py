"""Reaching the server: ``postgresql://`` URIs, connection pools shared per process, and
messages that name the server without its password."""

from __future__ import annotations

import atexit
import os
import re
import threading
import weakref
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Collection, Iterator, Optional
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from fashion_search.errors import StoreError, UsageError

try:
    import psycopg
    from pgvector.psycopg import register_vector
    from psycopg import sql
    from psycopg_pool import ConnectionPool, PoolTimeout
except ImportError as _exc:  # the optional extra is not installed; the store explains on open
    psycopg = None  # type: ignore[assignment]
    sql = None  # type: ignore[assignment]
    IMPORT_ERROR: Optional[ImportError] = _exc
else:
    IMPORT_ERROR = None

INSTALL_HINT = "pip install 'fashion-search[postgres]'"
DEFAULT_TABLE = "garments"
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


def parse_uri(location: str, store_options: Collection[str] = ()) -> _Target:
    """``user:password@host:port/dbname?table=...&key=value`` (what follows ``postgresql://``).

    ``table`` and ``store_options`` (the fields of
    :class:`~fashion_search.store.postgres.planner.HnswParams`) are this store's options; other
    query keys are libpq connection parameters (``sslmode``, ``connect_timeout``, ...).
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
        elif key in store_options:
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


class Connections:
    """How a store reaches its server: its own connections for checks and maintenance, pooled
    ones for reads and writes (part of :class:`~fashion_search.store.postgres.PostgresVectorStore`)."""

    _target: _Target
    _connect_params: dict[str, str]
    _pool: Optional["_SharedPool"]
    _pool_lock: threading.Lock
    pool_size: int
    table: str
    uri: str

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

    def _fetch(self, query: Any, params: Any = (), vectors: bool = False) -> list[tuple]:
        """All rows of one query; none when the table does not exist (never written, or
        cleared by another process)."""
        try:
            with self._conn(vectors=vectors) as conn, conn.cursor(binary=True) as cur:
                return cur.execute(query, params).fetchall()
        except psycopg.errors.UndefinedTable:
            return []


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


__all__ = ["Connections", "DEFAULT_TABLE", "INSTALL_HINT", "IMPORT_ERROR", "parse_uri"]
