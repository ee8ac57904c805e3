"""Behaviour of the embedded LanceDB store that other stores do not share (its commits, paths
and IVF index), on tiny data; the common contract is in test_store_contract.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fashion_search.store import VectorRow, open_store
from fashion_search.store.filters import one_of
from fashion_search.store.lance import LanceVectorStore
from tests.store.rows import DIM, errors_of_threads, exact_top, random_rows, row


@pytest.fixture
def store(tmp_path: Path) -> LanceVectorStore:
    s = open_store(f"lancedb://{tmp_path / 'db'}", dim=DIM)
    assert isinstance(s, LanceVectorStore)
    return s


# -- opening ----------------------------------------------------------------------------------


def test_plain_path_and_lancedb_uri_open_the_same_store(tmp_path: Path) -> None:
    a = open_store(str(tmp_path / "db"), dim=DIM)
    a.upsert_images([row("a")])
    b = open_store(f"lancedb://{tmp_path / 'db'}")
    assert isinstance(b, LanceVectorStore)
    assert b.count() == 1 and b.dim == DIM


# -- writes -----------------------------------------------------------------------------------


def test_upsert_is_a_single_commit_with_or_without_stale_garments(store: LanceVectorStore) -> None:
    store.upsert_images([row("a", 0), row("a", 1)])
    table = store._open_garments()
    before = table.version
    store.upsert_images([row("a", 0), row("a", 1), row("b", 0)])  # nothing to remove
    assert table.version == before + 1
    store.upsert_images([row("a", 0), row("c", 0), row("c", 1)])  # a#1 must go
    assert table.version == before + 2
    assert sorted(r["image_id"] + "#" + str(r["garment"]) for r in store.iter_rows(with_vectors=False)) == [
        "a#0",
        "b#0",
        "c#0",
        "c#1",
    ]


# -- persistence --------------------------------------------------------------------------------


def test_reopen_from_a_different_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "work").mkdir()
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    s = open_store("lancedb://./db", dim=DIM)  # relative: must be pinned to an absolute path
    s.upsert_images([row("a"), row("b")])
    s.write_manifest({"k": 1})
    monkeypatch.chdir(tmp_path / "elsewhere")
    # The handle keeps working after the cwd changes...
    assert s.count() == 2 and s.search(row("a").vector, 1)[0].image_id == "a"
    # ...and its uri reopens the same files from anywhere.
    again = open_store(s.uri)
    assert again.count() == 2 and again.read_manifest() == {"k": 1}
    assert not (tmp_path / "elsewhere" / "db").exists()


# -- optimize -----------------------------------------------------------------------------------


def ann_store(tmp_path: Path, rows: list[VectorRow], **ann) -> LanceVectorStore:
    """A store past its ANN threshold, with the index built."""
    params = {"min_rows": 1000, "partition_size": 100, **ann}
    s = open_store(str(tmp_path / "db"), dim=DIM, ann=params)
    assert isinstance(s, LanceVectorStore)
    s.add_rows_bulk(rows)
    s.optimize()
    return s


def vector_indexes(s: LanceVectorStore) -> list[str]:
    return [i.name for i in s._open_garments().list_indices() if "vector" in i.columns]


def test_optimize_builds_an_ann_index_past_the_threshold_with_high_recall(tmp_path: Path) -> None:
    rows = random_rows(1500)
    s = ann_store(tmp_path, rows)
    assert vector_indexes(s) == ["vector_ivf_sq_p15"]
    queries = np.random.default_rng(3).standard_normal((20, DIM))
    recall = np.mean([len({h.row_id for h in s.search(q, 10)} & set(exact_top(rows, q, 10))) / 10 for q in queries])
    assert recall >= 0.9
    assert all(-1.0 <= h.score <= 1.0 for h in s.search(queries[0], 10))


def test_filters_hold_with_the_ann_index_on_both_search_paths(tmp_path: Path) -> None:
    rows = random_rows(1500, categories=tuple(f"c{i}" for i in range(30)))  # 50 rows per category
    queries = np.random.default_rng(4).standard_normal((5, DIM))
    # exact_filter_rows decides the path: 100 -> the 50 rows of c7 are ranked exactly; 0 -> IVF.
    for exact_filter_rows, name in ((100, "exact"), (0, "ivf")):
        s = ann_store(tmp_path / name, rows, exact_filter_rows=exact_filter_rows)
        for q in queries:
            hits = s.search(q, 10, where=one_of("category", "c7"))
            assert len(hits) == 10 and {h.category for h in hits} == {"c7"}
            if name == "exact":
                assert [h.row_id for h in hits] == exact_top(rows, q, 10, lambda r: r.category == "c7")


def test_filtered_ann_search_that_comes_back_short_falls_back_to_exact(tmp_path: Path) -> None:
    rows = random_rows(1500)
    for r in rows[::125]:  # 12 rows scattered over the whole table
        r.category = "rare"
    # One probed partition and no exact shortcut: the IVF pass finds only a few "rare" rows.
    s = ann_store(tmp_path, rows, nprobes=1, filtered_nprobes=1, min_candidates=1, exact_filter_rows=0)
    q = rows[0].vector
    hits = s.search(q, 10, where=one_of("category", "rare"))
    assert [h.row_id for h in hits] == exact_top(rows, q, 10, lambda r: r.category == "rare")
    assert len(s.search(q, 50, where=one_of("category", "rare"))) == 12


def test_optimize_keeps_a_fitting_index_and_new_rows_are_searchable(tmp_path: Path) -> None:
    rows = random_rows(1500)
    s = ann_store(tmp_path, rows)
    names = vector_indexes(s)
    probe = np.random.default_rng(5).standard_normal(DIM)
    s.upsert_images([row("extra", vector=probe)])
    assert s.search(probe, 1)[0].image_id == "extra"  # unindexed rows are searched too
    s.optimize()
    assert vector_indexes(s) == names  # no retraining for a table that still fits the index
    assert s.search(probe, 1)[0].image_id == "extra"
    assert s.count() == 1501


def test_optimize_retrains_the_index_when_the_table_outgrows_it(tmp_path: Path) -> None:
    s = ann_store(tmp_path, random_rows(1000))
    assert vector_indexes(s) == ["vector_ivf_sq_p10"]
    s.add_rows_bulk(
        [row(f"more{i:04d}", vector=v) for i, v in enumerate(np.random.default_rng(6).standard_normal((2000, DIM)))]
    )
    s.optimize()
    assert vector_indexes(s) == ["vector_ivf_sq_p30"]


def test_a_table_from_before_metadata_filters_is_still_written_but_refuses_them(tmp_path: Path) -> None:
    import lancedb
    import pyarrow as pa

    from fashion_search.store.filters import FilterError, MetadataColumns, parse_filter
    from fashion_search.store.lance import GARMENTS, METADATA_JSON, METADATA_TAGS, garments_schema

    old = pa.schema([f for f in garments_schema(DIM) if f.name not in (METADATA_JSON, METADATA_TAGS)])
    lancedb.connect(str(tmp_path / "old")).create_table(GARMENTS, schema=old)
    store = open_store(str(tmp_path / "old"))
    rows = random_rows(10)
    store.upsert_images(rows)
    assert [h.row_id for h in store.search(rows[0].vector, 3)] == exact_top(rows, rows[0].vector, 3)
    where = parse_filter("price < 50", MetadataColumns.learn(r.metadata for r in rows))
    with pytest.raises(FilterError, match="predates metadata filters: rebuild"):
        store.search(rows[0].vector, 3, where=where)


def test_manifests_written_at_once_by_two_writers_both_commit(tmp_path: Path) -> None:
    # An index run and a catalog write may overwrite the manifest together; Lance refuses the
    # later commit as a retryable conflict, which the store retries.
    store = open_store(str(tmp_path / "db"), dim=DIM)

    def write(n: int) -> None:
        other = open_store(str(tmp_path / "db"))
        for i in range(25):
            other.write_manifest({"writer": n, "i": i})

    assert errors_of_threads(write, 3) == []
    assert store.read_manifest()["i"] == 24


@pytest.mark.slow  # starts 24 processes
def test_processes_creating_one_new_store_at_once_all_open_it(tmp_path: Path) -> None:
    # Two index runs (or replicas taking their first writes) may create the table together.
    import subprocess
    import sys

    code = "import sys; from fashion_search.store import open_store; open_store(sys.argv[1], dim=16)"
    for round_ in range(8):
        db = str(tmp_path / f"db{round_}")
        processes = [subprocess.Popen([sys.executable, "-c", code, db], stderr=subprocess.PIPE) for _ in range(3)]
        for process in processes:
            assert process.wait(timeout=120) == 0, process.stderr.read().decode()[-1000:]
