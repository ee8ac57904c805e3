"""Behaviour of the PostgreSQL store that the Lance store does not share: URIs, concurrent
writers, the HNSW index and filtered recall, and the errors a user can act on."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import quote

import numpy as np
import pytest

from fashion_search.cli import main
from fashion_search.errors import MissingDependencyError, StoreError, UsageError
from fashion_search.store import VectorStore, open_store
from fashion_search.store.filters import one_of
from tests.helpers import make_product
from tests.store.conftest import DATABASE, pg_uri
from tests.store.pg_server import PASSWORD, PASSWORD_USER, PostgresServer
from tests.store.rows import DIM, errors_of_threads, exact_top, random_rows, row, vector_indexes

psycopg = pytest.importorskip("psycopg", reason="the postgres extra is not installed (pip install -e '.[postgres]')")
postgres = pytest.importorskip("fashion_search.store.postgres")


@pytest.fixture
def opened() -> Iterator[list[VectorStore]]:
    """Stores a test opens, closed at its end."""
    stores: list[VectorStore] = []
    yield stores
    for s in stores:
        s.close()


@pytest.fixture
def pg_open(pg_server: PostgresServer, opened: list[VectorStore]) -> Any:
    def open_(uri: str | None = None, dim: int | None = DIM, **options: Any) -> Any:
        s = open_store(uri or pg_uri(pg_server), dim=dim, **options)
        assert isinstance(s, postgres.PostgresVectorStore)
        opened.append(s)
        return s

    return open_


def recall(hits: list[Any], truth: list[str]) -> float:
    return len({h.row_id for h in hits} & set(truth)) / len(truth)


# -- opening ----------------------------------------------------------------------------------


def test_postgresql_and_postgres_schemes_open_the_same_table(pg_server: PostgresServer, pg_open: Any) -> None:
    a = pg_open(pg_uri(pg_server, table="scheme_twins"))
    a.upsert_images([row("a")])
    b = pg_open(a.uri.replace("postgresql://", "postgres://", 1), dim=None)
    assert b.count() == 1 and b.dim == DIM and b.table == "scheme_twins"
    assert a.uri == f"postgresql://postgres@127.0.0.1:{pg_server.port}/{DATABASE}?table=scheme_twins"


def test_default_table_is_garments_and_uri_options_reach_the_store(pg_server: PostgresServer, pg_open: Any) -> None:
    s = pg_open(pg_server.url(DATABASE) + "?ef_search=250&iterative_scan=false&sslmode=disable")
    assert s.table == "garments" and s.ann.ef_search == 250 and s.iterative_scan is False
    assert "sslmode=disable" in s.uri  # libpq parameters are kept, to reopen alike
    with pytest.raises(UsageError, match="table name"):
        pg_open(pg_uri(pg_server, table="Robert'); DROP TABLE x;--"))
    with pytest.raises(UsageError, match="ef_search"):
        pg_open(pg_server.url(DATABASE) + "?ef_search=many")
    with pytest.raises(UsageError, match="nprobes"):
        pg_open(ann={"nprobes": 3})


def test_several_connections_creating_one_store_at_once_agree_on_one_table(
    pg_server: PostgresServer, pg_open: Any
) -> None:
    uri = pg_uri(pg_server)
    errors: list[BaseException] = []
    stores: list[Any] = []

    def create() -> None:
        try:
            stores.append(pg_open(uri))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=create) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(stores) == 4
    stores[0].upsert_images([row("a")])
    assert all(s.count() == 1 and s.dim == DIM for s in stores)


def test_without_the_postgres_extra_opening_names_the_install_command(
    pg_server: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(postgres, "psycopg", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'fashion-search\[postgres\]'"):
        open_store(pg_uri(pg_server), dim=DIM)


def test_the_command_line_indexes_searches_and_describes_a_postgresql_db(
    pg_server: PostgresServer, tiny_catalog: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    db = pg_uri(pg_server)
    index = ["index", str(tiny_catalog), "--db", db, "--embedder", "test-pixels", "--detector", "foreground"]
    assert main(index) == 0
    assert "5 indexed" in capsys.readouterr().out
    assert main(index) == 0  # incremental: nothing changed
    assert "0 indexed" in capsys.readouterr().out
    query = tmp_path / "q.png"
    make_product((20, 20, 200)).save(query)
    assert main(["search", str(query), "--db", db, "-k", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["garments"][0]["results"][0]["product_id"] == "blue-1"
    assert main(["info", "--db", db, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["garments"] == 5 and info["categories"] == {"Skirts": 2, "Tops": 2}
    assert main([*index, "--rebuild"]) == 0
    assert "5 indexed" in capsys.readouterr().out


def test_the_command_line_reports_a_wrong_password_on_one_line_without_it(
    pg_server: PostgresServer, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    db = pg_uri(pg_server, user=PASSWORD_USER, password="not-the-password")
    assert main(["search", str(tmp_path / "q.png"), "--db", db]) == 2
    err = capsys.readouterr().err
    assert "authentication failed" in err and "not-the-password" not in err and len(err.strip().splitlines()) == 1


# -- concurrent writers -------------------------------------------------------------------------


def test_two_writers_of_different_images_at_once_both_land(pg_server: PostgresServer, pg_open: Any) -> None:
    uri = pg_uri(pg_server)
    writers = [pg_open(uri), pg_open(uri, pool_size=2)]  # two pools: two connections at once
    rows = {n: random_rows(300, seed=n) for n in range(2)}
    for n, batch in rows.items():
        for r in batch:
            r.image_id = f"w{n}-{r.image_id}"

    def write(n: int) -> None:
        for lo in range(0, 300, 10):
            writers[n].upsert_images(rows[n][lo : lo + 10])

    assert errors_of_threads(write, 2) == []
    assert writers[0].count() == 600 and len(writers[1].fingerprints()) == 600


def test_writers_of_the_same_image_leave_one_whole_version_never_a_mix(pg_server: PostgresServer, pg_open: Any) -> None:
    uri = pg_uri(pg_server)
    a, b, reader = pg_open(uri), pg_open(uri, pool_size=2), pg_open(uri, pool_size=3)
    # Writer a stores the image with three garments, writer b with one: a reader must only
    # ever see three rows fingerprinted "a" or one row fingerprinted "b".
    versions = {
        "a": [row("shared", g, fingerprint="a") for g in range(3)],
        "b": [row("shared", 0, fingerprint="b", seed=1)],
    }
    seen: set[tuple[str, ...]] = set()
    errors: list[BaseException] = []
    done = threading.Event()

    def write(store: Any, name: str) -> None:
        try:
            for _ in range(40):
                store.upsert_images(versions[name])
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    def read() -> None:
        while not done.is_set():
            seen.add(tuple(sorted(r["fingerprint"] for r in reader.iter_rows(with_vectors=False))))

    threads = [threading.Thread(target=write, args=(a, "a")), threading.Thread(target=write, args=(b, "b"))]
    watcher = threading.Thread(target=read)
    watcher.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    watcher.join()
    assert errors == []
    assert seen <= {("a", "a", "a"), ("b",), ()}
    assert tuple(sorted(r["fingerprint"] for r in reader.iter_rows(with_vectors=False))) in {("a", "a", "a"), ("b",)}


def test_a_batch_failing_midway_leaves_nothing_of_that_batch(pg_open: Any) -> None:
    s = pg_open()
    s.upsert_images([row("a", 0, fingerprint="old"), row("a", 1, fingerprint="old")])
    bad = row("c")
    bad.image = "/catalog/nul\x00byte.jpg"  # PostgreSQL text cannot hold NUL: the copy fails at this row
    batch = [row("a", 0, fingerprint="new"), row("b"), bad, row("d")]
    with pytest.raises(psycopg.DataError):
        s.upsert_images(batch)
    # The old version of a is intact (its delete was rolled back) and nothing of b, c, d landed.
    assert s.fingerprints() == {"a": "old"} and s.count() == 2
    s.upsert_images([r for r in batch if r is not bad])
    assert s.fingerprints() == {"a": "new", "b": "fp1", "d": "fp1"}


def test_writes_recreate_a_table_that_another_process_cleared(pg_server: PostgresServer, pg_open: Any) -> None:
    uri = pg_uri(pg_server)
    writer, other = pg_open(uri), pg_open(uri)
    writer.upsert_images([row("a")])
    other.clear()
    assert writer.count() == 0 and writer.search(np.ones(DIM), 3) == [] and writer.read_manifest() == {}
    writer.upsert_images([row("b")])  # the writer still knows its dimension
    assert writer.fingerprints() == {"b": "fp1"}


# -- the HNSW index and filtered recall -----------------------------------------------------------


@pytest.fixture(scope="module")
def indexed_rows() -> list:
    # 4,000 rows; "rare" is a 5% category spread over the table.
    rows = random_rows(4000, seed=11, categories=tuple(f"c{i}" for i in range(10)))
    for r in rows[::20]:
        r.category = "rare"
    return rows


@pytest.fixture(scope="module")
def indexed_table(pg_server: PostgresServer, indexed_rows: list) -> str:
    """A table of ``indexed_rows`` with its HNSW index built, once for the module: how it is
    searched is chosen per handle."""
    s = open_store(pg_uri(pg_server), dim=DIM, ann={"min_rows": 1000})
    s.add_rows_bulk(indexed_rows)
    s.optimize()
    assert vector_indexes(s) == [f"{s.table}_vector_hnsw"]
    s.close()
    return s.uri


@pytest.mark.parametrize(
    "strategy",
    [
        "exact-for-small-filters",  # 200 rare rows <= exact_filter_rows: ranked exactly
        "iterative-scan",  # pgvector 0.8+: hnsw.iterative_scan walks on until k rows pass
        "raised-ef-search",  # older pgvector: a wider candidate list, filtered
    ],
)
def test_filtered_search_after_optimize_matches_exact_search(
    pg_open: Any, indexed_table: str, indexed_rows: list, strategy: str
) -> None:
    ann: dict[str, Any] = {}
    if strategy != "exact-for-small-filters":
        ann["exact_filter_rows"] = 0
    if strategy == "raised-ef-search":
        ann["iterative_scan"] = False
    s = pg_open(indexed_table, dim=None, ann=ann)
    assert s.iterative_scan is (strategy != "raised-ef-search")
    queries = np.random.default_rng(12).standard_normal((20, DIM))
    recalls = []
    for q in queries:
        hits = s.search(q, 10, where=one_of("category", "rare"))
        assert len(hits) == 10 and {h.category for h in hits} == {"rare"}
        recalls.append(recall(hits, exact_top(indexed_rows, q, 10, lambda r: r.category == "rare")))
    assert np.mean(recalls) >= 0.95
    if strategy == "exact-for-small-filters":
        assert min(recalls) == 1.0
    unfiltered = [recall(s.search(q, 10), exact_top(indexed_rows, q, 10)) for q in queries]
    assert np.mean(unfiltered) >= 0.95


def test_filtered_search_that_comes_back_short_is_repeated_exactly(pg_open: Any) -> None:
    rows = random_rows(3000, seed=13)
    for r in rows[::250]:  # 12 rows scattered over the whole table
        r.category = "rare"
    # Older-pgvector strategy, a tiny candidate list and no exact shortcut: the graph walk
    # meets only a few "rare" rows.
    s = pg_open(ann={"min_rows": 1000, "exact_filter_rows": 0, "iterative_scan": False, "candidate_factor": 0.001})
    s.add_rows_bulk(rows)
    s.optimize()
    q = rows[0].vector
    hits = s.search(q, 10, where=one_of("category", "rare"))
    assert [h.row_id for h in hits] == exact_top(rows, q, 10, lambda r: r.category == "rare")
    assert len(s.search(q, 50, where=one_of("category", "rare"))) == 12


def test_rows_written_after_optimize_are_found_through_the_index(pg_open: Any) -> None:
    s = pg_open(ann={"min_rows": 1000})
    s.add_rows_bulk(random_rows(1500, seed=14))
    s.optimize()
    probe = np.random.default_rng(15).standard_normal(DIM)
    s.upsert_images([row("late", vector=probe, category="shoes")])
    assert s.search(probe, 1)[0].image_id == "late"
    assert s.search(probe, 1, where=one_of("category", "shoes"))[0].image_id == "late"
    s.optimize()  # the index exists: kept, not rebuilt
    assert vector_indexes(s) == [f"{s.table}_vector_hnsw"] and s.count() == 1501


def test_search_for_more_rows_than_hnsw_can_return_is_exact(pg_open: Any) -> None:
    rows = random_rows(1200, seed=16)
    s = pg_open(ann={"min_rows": 1000})
    s.add_rows_bulk(rows)
    s.optimize()
    q = rows[3].vector
    assert [h.row_id for h in s.search(q, 1100)] == exact_top(rows, q, 1100)


def test_vectors_wider_than_2000_dimensions_are_indexed_at_half_precision(pg_open: Any) -> None:
    dim = 2048
    rows = random_rows(300, seed=17, dim=dim)
    s = pg_open(dim=dim, ann={"min_rows": 100})
    s.add_rows_bulk(rows)
    s.optimize()
    assert vector_indexes(s) == [f"{s.table}_vector_hnsw"]
    q = rows[42].vector
    hits = s.search(q, 5)
    assert hits[0].row_id == rows[42].row_id and hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert recall(hits, exact_top(rows, q, 5)) >= 0.8


# -- errors -------------------------------------------------------------------------------------


def test_an_unreachable_server_is_a_clear_error(pg_server: PostgresServer, pg_open: Any) -> None:
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(StoreError, match=f"cannot reach PostgreSQL at 127.0.0.1:{port}"):
        pg_open(f"postgresql://postgres@127.0.0.1:{port}/{DATABASE}?table=t")


def test_a_missing_database_is_a_clear_error(pg_server: PostgresServer, pg_open: Any) -> None:
    with pytest.raises(StoreError, match="database 'no_such_db' does not exist"):
        pg_open(pg_uri(pg_server, database="no_such_db"))


def test_a_wrong_password_is_a_clear_error_that_never_shows_it(
    pg_server: PostgresServer, pg_open: Any, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "Wr0ng/p@ss:word%"
    caplog.set_level(logging.DEBUG)
    with pytest.raises(StoreError, match=f"authentication failed for user '{PASSWORD_USER}'") as raised:
        pg_open(pg_uri(pg_server, user=PASSWORD_USER, password=quote(wrong, safe="")))
    shown = str(raised.value) + repr(raised.value.__cause__) + caplog.text
    assert wrong not in shown and quote(wrong, safe="") not in shown


def test_the_password_never_appears_in_the_uri_or_in_errors(
    pg_server: PostgresServer, pg_open: Any, caplog: pytest.LogCaptureFixture
) -> None:
    pg_server.sql(DATABASE, f"GRANT CREATE ON SCHEMA public TO {PASSWORD_USER}")
    caplog.set_level(logging.DEBUG)
    s = pg_open(pg_uri(pg_server, user=PASSWORD_USER, password=quote(PASSWORD, safe="")))
    s.upsert_images([row("a")])
    assert s.count() == 1 and s.search(row("a").vector, 1)[0].image_id == "a"
    assert s.uri.startswith(f"postgresql://{PASSWORD_USER}@")
    assert PASSWORD not in s.uri + repr(s) + repr(s._target) and quote(PASSWORD, safe="") not in s.uri
    with pytest.raises(StoreError) as raised:
        pg_open(pg_uri(pg_server, database="missing", user=PASSWORD_USER, password=quote(PASSWORD, safe="")))
    assert "missing" in str(raised.value)
    for text in (str(raised.value), caplog.text):
        assert PASSWORD not in text and quote(PASSWORD, safe="") not in text


def test_pgvector_that_this_user_may_not_enable_is_a_clear_error(pg_server: PostgresServer, pg_open: Any) -> None:
    pg_server.sql("postgres", "CREATE DATABASE without_vector")
    url = pg_server.url("without_vector", user=PASSWORD_USER, password=quote(PASSWORD, safe="")) + "?table=t"
    with pytest.raises(StoreError, match="pgvector extension is not enabled .* ask an administrator"):
        pg_open(url)
    assert pg_open(url, dim=None).count() == 0  # reading an absent store needs no extension
    # A superuser's first open enables it; then the user may create stores of its own.
    assert pg_open(pg_uri(pg_server, database="without_vector")).vector_version is not None
    pg_server.sql("without_vector", f"GRANT CREATE ON SCHEMA public TO {PASSWORD_USER}")
    pg_open(url).upsert_images([row("a")])


def test_pgvector_missing_from_the_server_is_a_clear_error(
    pg_server: PostgresServer, pg_open: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    pg_server.sql("postgres", "CREATE DATABASE vector_not_installed")
    # The bundled server has pgvector; asking for an extension it lacks takes the same path.
    monkeypatch.setattr(postgres.schema, "EXTENSION", "vector_not_on_this_server")
    with pytest.raises(StoreError, match="pgvector extension is not installed on the PostgreSQL server"):
        pg_open(pg_uri(pg_server, database="vector_not_installed"))


def test_a_schema_made_by_another_version_is_refused(pg_server: PostgresServer, pg_open: Any) -> None:
    s = pg_open()
    s.upsert_images([row("a")])
    pg_server.sql(DATABASE, f"UPDATE {s.table}_meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(StoreError, match="schema version 99.*this one reads version 1"):
        pg_open(s.uri, dim=None)
    pg_server.sql(DATABASE, "CREATE TABLE not_ours (id int)")
    with pytest.raises(StoreError, match="not made by fashion-search"):
        pg_open(pg_uri(pg_server, table="not_ours"))


def test_a_user_who_may_only_read_the_table_is_told_before_an_index_run(
    pg_server: PostgresServer, pg_open: Any
) -> None:
    owner = pg_open(ann={"min_rows": 100})
    owner.upsert_images([row("a")])
    pg_server.sql(DATABASE, f"GRANT SELECT ON {owner.table}, {owner.table}_meta TO {PASSWORD_USER}")
    reader = pg_open(
        pg_uri(pg_server, table=owner.table, user=PASSWORD_USER, password=quote(PASSWORD, safe="")), dim=None
    )
    assert reader.count() == 1
    with pytest.raises(StoreError, match="may not write"):
        reader.check_writable()
    owner.check_writable()
