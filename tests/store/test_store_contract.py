"""The contract every vector store keeps, checked on each kind (``backend``: lance, postgres),
on tiny data."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fashion_search.errors import UsageError
from fashion_search.store import Hit, VectorRow, VectorStore, open_store
from fashion_search.store.filters import MetadataColumns, all_of, evaluate, excluding, one_of, parse_filter
from tests.store.conftest import StoreFactory
from tests.store.rows import DIM, exact_top, random_rows, row, unit, vector_indexes

# -- opening ----------------------------------------------------------------------------------


def test_empty_store_without_dim_reads_as_empty_but_refuses_writes(new_store: StoreFactory) -> None:
    s = new_store(dim=None)
    assert s.count() == 0
    assert s.fingerprints() == {}
    assert s.read_manifest() == {}
    assert s.search(np.ones(DIM), 5) == []
    assert s.categories() == {}
    assert list(s.iter_rows()) == []
    with pytest.raises(ValueError, match="dim"):
        s.upsert_images([row("a")])


def test_dim_of_existing_store_comes_from_the_table_and_a_mismatch_is_refused(store: VectorStore) -> None:
    store.upsert_images([row("a")])
    assert open_store(store.uri).dim == DIM
    with pytest.raises(ValueError, match="16-d"):
        open_store(store.uri, dim=DIM * 2)


def test_unknown_option_is_an_error(new_store: StoreFactory) -> None:
    with pytest.raises(UsageError, match="nprobe"):
        new_store(nprobe=3)


# -- writes -----------------------------------------------------------------------------------


def test_upsert_then_search_finds_nearest(store: VectorStore) -> None:
    rows = random_rows(50)
    store.upsert_images(rows)
    target = rows[17]
    query = unit(target.vector) + 0.05 * np.random.default_rng(1).standard_normal(DIM).astype(np.float32)
    hits = store.search(query, 5)
    assert hits[0].row_id == target.row_id
    assert [h.row_id for h in hits] == exact_top(rows, query, 5)


def test_search_returns_cosine_similarity_and_display_fields(store: VectorStore) -> None:
    v = np.arange(1, DIM + 1, dtype=np.float32)
    store.upsert_images([row("a", vector=v), row("b", vector=-v)])
    hits = store.search(v * 3.0, 2)  # magnitude must not matter
    assert isinstance(hits[0], Hit)
    assert hits[0].image_id == "a" and hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert hits[1].image_id == "b" and hits[1].score == pytest.approx(-1.0, abs=1e-5)
    assert hits[0].box == pytest.approx((0.1, 0.2, 0.9, 1.0))
    assert hits[0].metadata == {"title": "title of a", "price": 10}
    assert hits[0].image == "/catalog/a.jpg" and hits[0].product_id == "prod-a"


def test_upsert_replaces_all_rows_of_an_image(store: VectorStore) -> None:
    store.upsert_images([row("a", 0), row("a", 1), row("a", 2), row("b", 0)])
    assert store.count() == 4
    new_vector = np.ones(DIM, np.float32)
    store.upsert_images([row("a", 0, vector=new_vector, fingerprint="fp2")])
    # Garments 1 and 2 of the old version are gone, garment 0 is replaced, b is untouched.
    rows = {r["image_id"] + "#" + str(r["garment"]): r for r in store.iter_rows()}
    assert sorted(rows) == ["a#0", "b#0"]
    assert rows["a#0"]["fingerprint"] == "fp2"
    np.testing.assert_allclose(rows["a#0"]["vector"], unit(new_vector), atol=1e-6)
    assert store.fingerprints() == {"a": "fp2", "b": "fp1"}


def test_reupserting_the_same_image_never_duplicates_it(store: VectorStore) -> None:
    for _ in range(3):
        store.upsert_images([row("a", 0), row("a", 1)])
    assert store.count() == 2
    assert len(store.search(np.ones(DIM), 10)) == 2


def test_upsert_after_optimize_still_replaces_using_the_indexes(store: VectorStore) -> None:
    store.upsert_images(random_rows(40))
    store.upsert_images([row("img0003", 0), row("img0003", 1), row("img0003", 2)])
    store.optimize()  # scalar indexes on row_id / image_id now serve the lookups
    store.upsert_images([row("img0003", 0, fingerprint="new"), row("img0005", 0, fingerprint="new")])
    assert store.count() == 40
    fps = store.fingerprints()
    assert fps["img0003"] == fps["img0005"] == "new" and len(fps) == 40


def test_upsert_rejects_the_same_garment_twice_in_one_call(store: VectorStore) -> None:
    with pytest.raises(ValueError, match="twice"):
        store.upsert_images([row("a", 0), row("a", 0, seed=1)])
    assert store.count() == 0


def test_upsert_handles_quotes_in_ids(store: VectorStore) -> None:
    store.upsert_images([row("it's", 0), row("it's", 1), row("x' OR '1'='1", 0)])
    store.upsert_images([row("it's", 0)])
    assert sorted(store.fingerprints()) == ["it's", "x' OR '1'='1"]
    assert store.count() == 2
    assert [h.image_id for h in store.get_product("prod-it's")] == ["it's"]
    assert store.delete_images(["it's"]) == 1
    assert store.count() == 1


def test_zero_vector_is_refused(store: VectorStore) -> None:
    with pytest.raises(ValueError, match="zero"):
        store.upsert_images([row("a", vector=np.zeros(DIM))])
    with pytest.raises(ValueError, match="16-d"):
        store.upsert_images([row("a", vector=np.ones(DIM + 1))])


def test_add_rows_bulk_appends_new_images(store: VectorStore) -> None:
    rows = random_rows(30)
    store.add_rows_bulk(rows[:20])
    store.upsert_images(rows[20:])
    assert store.count() == 30
    assert store.search(rows[3].vector, 1)[0].row_id == rows[3].row_id


def test_delete_images_removes_every_garment_and_counts_images(store: VectorStore) -> None:
    store.upsert_images([row("a", 0), row("a", 1), row("b", 0), row("c", 0)])
    assert store.delete_images(["a", "c", "never-stored"]) == 2
    assert store.count() == 1
    assert store.fingerprints() == {"b": "fp1"}
    assert store.delete_images([]) == 0


def test_replace_product_leaves_exactly_the_new_rows_of_that_product(store: VectorStore) -> None:
    store.upsert_images(
        [row("a1", 0, product_id="P"), row("a1", 1, product_id="P"), row("a2", 0, product_id="P"), row("b", 0)]
    )
    new_vector = np.ones(DIM, np.float32)
    before = store.replace_product("P", [row("a2", 0, product_id="P", vector=new_vector), row("a3", 0, product_id="P")])
    assert before == 2
    rows = {f"{r['image_id']}#{r['garment']}": r for r in store.iter_rows()}
    assert sorted(rows) == ["a2#0", "a3#0", "b#0"]
    np.testing.assert_allclose(rows["a2#0"]["vector"], unit(new_vector), atol=1e-6)
    assert store.replace_product("new", [row("n1", 0, product_id="new")]) == 0
    assert [h.image_id for h in store.get_product("new")] == ["n1"]


def test_replace_product_with_no_rows_deletes_it_and_refuses_other_products_rows(store: VectorStore) -> None:
    store.upsert_images([row("a1", 0, product_id="P"), row("b", 0)])
    assert store.replace_product("P", []) == 1
    assert store.get_product("P") == [] and store.count() == 1
    assert store.replace_product("P", []) == 0
    with pytest.raises(ValueError, match="of product 'Q', not 'P'"):
        store.replace_product("P", [row("x", 0, product_id="Q")])
    assert store.count() == 1


def test_fingerprints_have_one_entry_per_image(store: VectorStore) -> None:
    store.upsert_images([row("a", 0, fingerprint="x"), row("a", 1, fingerprint="x"), row("b", 0, fingerprint="y")])
    assert store.fingerprints() == {"a": "x", "b": "y"}


# -- filtered search ----------------------------------------------------------------------------


def test_category_filter_returns_only_that_category_and_still_k(store: VectorStore) -> None:
    rows = random_rows(90)
    store.upsert_images(rows)
    query = rows[0].vector  # a "tops" row: most of its neighbours are other categories
    hits = store.search(query, 10, where=one_of("category", "shoes"))
    assert len(hits) == 10
    assert {h.category for h in hits} == {"shoes"}
    assert [h.row_id for h in hits] == exact_top(rows, query, 10, lambda r: r.category == "shoes")


def test_label_filter_returns_only_that_label_and_combines_with_category(store: VectorStore) -> None:
    rows = random_rows(90)
    store.upsert_images(rows)
    query = rows[5].vector
    hits = store.search(query, 10, where=one_of("label", "boot"))
    assert len(hits) == 10 and {h.label for h in hits} == {"boot"}
    assert [h.row_id for h in hits] == exact_top(rows, query, 10, lambda r: r.label == "boot")
    both = store.search(query, 100, where=all_of(one_of("category", "bags"), one_of("label", "boot")))
    assert both and all(h.category == "bags" and h.label == "boot" for h in both)
    assert len(both) == sum(1 for r in rows if r.category == "bags" and r.label == "boot")


def test_label_filter_accepts_several_labels(store: VectorStore) -> None:
    rows = random_rows(90, labels=("shirt", "boot", "hat"))
    store.upsert_images(rows)
    query = rows[7].vector
    hits = store.search(
        query, 20, where=all_of(one_of("category", ["tops", "bags"]), one_of("label", ["shirt", "hat"]))
    )
    wanted = lambda r: r.category in ("tops", "bags") and r.label in ("shirt", "hat")  # noqa: E731
    assert len(hits) == 20 and [h.row_id for h in hits] == exact_top(rows, query, 20, wanted)
    assert store.search(query, 5, where=one_of("label", [])) == []


def test_filter_on_an_unknown_category_returns_nothing(store: VectorStore) -> None:
    store.upsert_images(random_rows(10))
    assert store.search(np.ones(DIM), 5, where=one_of("category", "no such")) == []
    assert store.search(np.ones(DIM), 5, where=one_of("category", "it's")) == []


BRANDS = ("Nike", "Zara", "O'Neill", 'say "hi"', "x' OR 1=1 --")


def metadata_rows(n: int, seed: int = 0) -> list[VectorRow]:
    """Rows whose products carry brand, price (as CSV text, sometimes a JSON number) and, for
    some, no colour at all."""
    rows = random_rows(n, seed)
    for i, r in enumerate(rows):
        r.metadata = {"brand": BRANDS[i % len(BRANDS)], "price": f"{(i * 7) % 100}.5" if i % 4 else (i * 7) % 100}
        if i % 3:
            r.metadata["colour"] = ("Red", "Blue")[i % 2]
        elif i % 2:
            r.metadata["colour"] = ""  # a blank CSV cell: as if absent
    return rows


FILTERS = [
    'brand = "Nike"',
    "brand != 'Nike' and price < 40",
    "price between 20 and 60.5 or brand in ('Zara', \"O'Neill\")",
    "not colour = 'Red'",
    "colour not in ('Red')",
    'brand = "say \\"hi\\""',
    'brand = "x\' OR 1=1 --"',
    "price >= 99",
]


@pytest.mark.parametrize("text", FILTERS)
def test_metadata_filter_ranks_exactly_the_products_that_pass_it(store: VectorStore, text: str) -> None:
    rows = metadata_rows(120)
    store.upsert_images(rows)
    columns = MetadataColumns.learn(r.metadata for r in rows)
    where = parse_filter(text, columns)
    query = rows[3].vector
    passing = [r for r in rows if evaluate(where, r.metadata)]
    hits = store.search(query, 10, where=where)
    # Applied before ranking: k hits while enough rows pass, the nearest of those that do.
    assert len(hits) == min(10, len(passing))
    assert [h.row_id for h in hits] == exact_top(passing, query, 10)
    both = store.search(query, 200, where=all_of(one_of("category", "shoes"), where))
    assert {h.row_id for h in both} == {r.row_id for r in passing if r.category == "shoes"}


def test_metadata_filter_keeps_its_recall_on_an_indexed_table(new_store: StoreFactory) -> None:
    store = new_store(ann={"min_rows": 100})
    rows = metadata_rows(600)
    store.upsert_images(rows)
    store.optimize()
    assert vector_indexes(store)
    where = parse_filter('brand = "Zara" and price < 50', MetadataColumns.learn(r.metadata for r in rows))
    passing = [r for r in rows if evaluate(where, r.metadata)]
    found = 0
    for query in (rows[i].vector for i in range(0, 100, 10)):
        hits = store.search(query, 10, where=where)
        assert len(hits) == 10 and all(evaluate(where, h.metadata) for h in hits)
        found += len({h.row_id for h in hits} & set(exact_top(passing, query, 10)))
    assert found >= 95


def test_exclude_product_drops_every_garment_of_that_product(store: VectorStore) -> None:
    v = unit(np.ones(DIM))
    near = v + 0.01
    store.upsert_images(
        [
            row("a1", 0, vector=v, product_id="P"),
            row("a1", 1, vector=near, product_id="P"),
            row("a2", 0, vector=near, product_id="P"),
            row("b", 0, vector=-v, product_id="Q"),
        ]
    )
    hits = store.search(v, 3, where=excluding("product_id", "P"))
    assert [h.product_id for h in hits] == ["Q"]
    assert len(store.search(v, 3)) == 3


# -- catalog views ------------------------------------------------------------------------------


def test_categories_counts_distinct_products(store: VectorStore) -> None:
    store.upsert_images(
        [
            row("a1", 0, product_id="P1", category="tops"),
            row("a1", 1, product_id="P1", category="tops"),
            row("a2", 0, product_id="P1", category="tops"),
            row("b", 0, product_id="P2", category="tops"),
            row("c", 0, product_id="P3", category="shoes"),
        ]
    )
    assert store.categories() == {"shoes": 1, "tops": 2}


def test_get_product_returns_all_its_garments(store: VectorStore) -> None:
    store.upsert_images(
        [
            row("a2", 0, product_id="P"),
            row("a1", 1, product_id="P"),
            row("a1", 0, product_id="P"),
            row("b", 0, product_id="Q"),
        ]
    )
    hits = store.get_product("P")
    assert [h.row_id for h in hits] == ["a1#0", "a1#1", "a2#0"]
    assert store.get_product("unknown") == []


def test_get_vectors_returns_the_stored_unit_vectors_of_known_rows_only(store: VectorStore) -> None:
    rows = random_rows(12)
    store.upsert_images(rows)
    wanted = [rows[3].row_id, rows[7].row_id, "nope#0"]
    vectors = store.get_vectors(wanted)
    assert set(vectors) == {rows[3].row_id, rows[7].row_id}
    np.testing.assert_allclose(vectors[rows[7].row_id], unit(rows[7].vector), atol=1e-6)
    assert store.get_vectors([]) == {}
    # The ABC's scanning fallback, for stores that do not override it, agrees.
    fallback = VectorStore.get_vectors(store, wanted)
    assert set(fallback) == set(vectors)
    np.testing.assert_allclose(fallback[rows[3].row_id], vectors[rows[3].row_id], atol=1e-6)


def test_image_path_is_known_only_for_indexed_images(store: VectorStore) -> None:
    store.upsert_images([row("a", 0), row("a", 1), row("q'uote", 0)])
    assert store.image_path("a") == "/catalog/a.jpg"
    assert store.image_path("q'uote") == "/catalog/q'uote.jpg"
    assert store.image_path("../../etc/passwd") is None
    assert VectorStore.image_path(store, "a") == "/catalog/a.jpg"
    assert VectorStore.image_path(store, "missing") is None


def test_iter_rows_yields_vector_row_fields(store: VectorStore) -> None:
    rows = random_rows(25)
    store.upsert_images(rows)
    seen = list(store.iter_rows(batch_size=7))
    assert len(seen) == 25
    back = VectorRow(**seen[0])  # the dicts are exactly VectorRow's fields
    original = next(r for r in rows if r.row_id == back.row_id)
    assert back.metadata == original.metadata and back.box == pytest.approx(original.box)
    np.testing.assert_allclose(back.vector, unit(original.vector), atol=1e-6)  # stored normalised
    assert all("vector" not in r for r in store.iter_rows(with_vectors=False))


# -- manifest -----------------------------------------------------------------------------------


def test_manifest_round_trip(store: VectorStore) -> None:
    assert store.read_manifest() == {}
    manifest = {"embedder": {"name": "efficientnet-lite2", "dim": 1280}, "dim": 1280, "schema": 1}
    store.write_manifest(manifest)
    assert store.read_manifest() == manifest
    store.write_manifest({"schema": 2})
    assert store.read_manifest() == {"schema": 2}
    assert open_store(store.uri).read_manifest() == {"schema": 2}


def test_manifest_updates_from_two_processes_at_once_are_all_kept(store: VectorStore, tmp_path: Path) -> None:
    # Each process counts its own key up and a shared one: a read, then a write, loses counts.
    store.write_manifest({"shared": 0})
    script = (
        "import sys\n"
        "from fashion_search.store import open_store\n"
        "s = open_store(sys.argv[1])\n"
        "for _ in range(40):\n"
        "    s.update_manifest(lambda m: {**m, 'shared': m['shared'] + 1, sys.argv[2]: m.get(sys.argv[2], 0) + 1})\n"
    )
    workers = [
        subprocess.Popen([sys.executable, "-c", script, store.uri, name], cwd=tmp_path, stderr=subprocess.PIPE)
        for name in ("a", "b")
    ]
    for worker in workers:
        assert worker.wait(timeout=300) == 0, worker.stderr.read().decode()[-2000:]
    assert store.read_manifest() == {"shared": 80, "a": 40, "b": 40}


def test_a_product_write_changes_the_manifest_given_the_products_previous_garments(store: VectorStore) -> None:
    store.write_manifest({"seen": []})
    seen = lambda manifest, previous: {"seen": manifest["seen"] + [sorted(h.row_id for h in previous)]}  # noqa: E731
    store.replace_product("p", [row("a", product_id="p"), row("a", 1, product_id="p")], seen)
    store.replace_product("p", [row("b", product_id="p")], seen)
    store.replace_product("p", [], seen)
    assert store.read_manifest() == {"seen": [[], ["a#0", "a#1"], ["b#0"]]}


# -- ties ---------------------------------------------------------------------------------------


def test_equally_near_garments_come_by_product_then_image_at_the_cut_and_after(store: VectorStore) -> None:
    # The same photo filed under several products (and twice under one), written in an order
    # that is neither: every store ranks such ties by product id, then image id.
    same = unit(np.ones(DIM))
    other = unit(np.arange(DIM, dtype=np.float32))
    store.upsert_images(
        [
            row("img-9", vector=same, product_id="p2"),
            row("img-3", vector=same, product_id="p3"),
            row("img-7", vector=same, product_id="p1"),
            row("img-1", vector=same, product_id="p2"),
            row("far", vector=other, product_id="p0"),
        ]
    )
    order = [(h.product_id, h.image_id) for h in store.search(same, 5)]
    assert order[:4] == [("p1", "img-7"), ("p2", "img-1"), ("p2", "img-9"), ("p3", "img-3")]
    assert [(h.product_id, h.image_id) for h in store.search(same, 2)] == order[:2]
    assert [(h.product_id, h.image_id) for h in store.search(same, 1, where=excluding("product_id", "p1"))] == [
        ("p2", "img-1")
    ]


# -- persistence --------------------------------------------------------------------------------


def test_reopen_from_another_process_sees_writes_both_ways(store: VectorStore, tmp_path: Path) -> None:
    store.upsert_images([row("a")])
    store.write_manifest({"written": "here"})
    script = (
        "import sys, json, numpy as np\n"
        "from fashion_search.store import open_store, VectorRow\n"
        "s = open_store(sys.argv[1])\n"
        "hit = s.search(np.ones(s.dim), 1)[0]\n"
        "s.upsert_images([VectorRow('b', 0, 'b.jpg', 'pb', 'tops', 'shirt', 1.0, (0, 0, 1, 1), 'fp', {}, np.ones(s.dim))])\n"
        "print(json.dumps({'count': s.count(), 'hit': hit.image_id, 'manifest': s.read_manifest()}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, store.uri],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen == {"count": 2, "hit": "a", "manifest": {"written": "here"}}
    # This long-lived handle sees the other process's write without reopening.
    assert store.count() == 2
    assert store.search(np.ones(DIM), 1)[0].image_id == "b"


# -- optimize -----------------------------------------------------------------------------------


def test_optimize_on_a_small_table_keeps_exact_results(store: VectorStore) -> None:
    rows = random_rows(200)
    for lo in range(0, 200, 20):  # many small commits, as an indexer makes them
        store.upsert_images(rows[lo : lo + 20])
    queries = np.random.default_rng(7).standard_normal((10, DIM))
    before = [[h.row_id for h in store.search(q, 10)] for q in queries]
    store.optimize()
    assert vector_indexes(store) == []  # below the threshold: exact search
    after = [[h.row_id for h in store.search(q, 10)] for q in queries]
    assert after == before == [exact_top(rows, q, 10) for q in queries]
    assert [h.row_id for h in store.search(queries[0], 5, where=one_of("category", "bags"))] == exact_top(
        rows, queries[0], 5, lambda r: r.category == "bags"
    )
    # Writes after optimize are searchable before the next optimize.
    store.upsert_images([row("late", vector=queries[1])])
    assert store.search(queries[1], 1)[0].image_id == "late"


def test_a_store_whose_index_build_never_ran_says_so_until_optimized(new_store: StoreFactory) -> None:
    # What a run killed during its final optimize() leaves: rows written, no index built.
    store = new_store(ann={"min_rows": 100})
    assert not store.needs_optimize()  # nothing stored yet
    store.add_rows_bulk(random_rows(150))
    assert store.needs_optimize()
    store.optimize()
    assert vector_indexes(store) and not store.needs_optimize()
