"""Searching through the Python API."""

import json

import pytest

from fashion_search import ImageError, SearchEngine, load_catalog
from fashion_search.errors import EmptyIndexError
from fashion_search.pipeline import Component
from tests.helpers import make_product


@pytest.fixture
def engine(tiny_catalog, tmp_path):
    db = tmp_path / "db.lance"
    SearchEngine.create(db, embedder=Component("test-pixels", {}), detector=Component("foreground", {})).index(
        load_catalog(folder=tiny_catalog)
    )
    return SearchEngine.open(db)


def test_search_returns_the_matching_product_first(engine):
    result = engine.search(make_product((215, 25, 25), size=(100, 120)), k=3)
    [garment] = result.garments
    assert garment.results[0].product_id == "red-1"
    assert garment.results[0].category == "Tops"


def test_a_product_appears_once_represented_by_its_best_view(engine):
    results = engine.search(make_product((215, 25, 25)), k=10).garments[0].results
    ids = [r.product_id for r in results]
    assert len(ids) == len(set(ids)) == 4
    scores = [r.score for r in results]
    assert scores == sorted(scores, reverse=True)


def test_category_filter_only_returns_that_category(engine):
    results = engine.search(make_product((215, 25, 25)), k=10, category="Skirts").garments[0].results
    assert {r.category for r in results} == {"Skirts"} and len(results) == 2


def test_same_photo_gives_the_same_results(engine):
    query = make_product((100, 120, 30))
    first = engine.search(query, k=4).to_dict()
    second = engine.search(query, k=4).to_dict()
    assert first["garments"] == second["garments"]


def test_json_schema_has_query_garments_and_timings(engine, tmp_path):
    path = tmp_path / "q.png"
    make_product((20, 20, 200)).save(path)
    data = json.loads(json.dumps(engine.search(path, k=2).to_dict()))
    assert data["query"] == str(path)
    garment = data["garments"][0]
    assert set(garment) == {"label", "score", "box", "mask", "results"} and len(garment["box"]) == 4
    assert set(garment["results"][0]) == {"product_id", "category", "image", "score", "metadata"}
    assert {"decode", "detect", "embed", "lookup", "total"} <= set(data["timings_ms"])


def test_unreadable_query_raises_image_error(engine):
    with pytest.raises(ImageError):
        engine.search(b"definitely not an image")


def test_opening_a_missing_index_says_how_to_build_it(tmp_path):
    with pytest.raises(EmptyIndexError, match="fashion-search index"):
        SearchEngine.open(tmp_path / "none.lance")


def test_more_like_this_uses_the_products_stored_vectors_and_excludes_it(engine):
    result = engine.search_product("red-1", k=10)
    [garment] = result.garments
    ids = [r.product_id for r in garment.results]
    assert "red-1" not in ids and len(ids) == 3
    assert result.query == "product:red-1" and result.timings_ms["total"] >= 0


def test_more_like_this_matches_a_photo_search_with_the_same_vector(engine):
    # The stored vector of the product's first view is what a search by that view computes.
    view = engine.store.get_product("blue-1")[0]
    by_photo = engine.search(view.image, k=4).garments[0].results
    by_product = engine.search_product("blue-1", k=3).garments[0].results
    assert [r.product_id for r in by_photo if r.product_id != "blue-1"] == [r.product_id for r in by_product]


def test_more_like_this_respects_the_category_filter(engine):
    results = engine.search_product("red-1", k=10, category="Skirts").garments[0].results
    assert {r.category for r in results} == {"Skirts"}


def test_more_like_this_for_an_unknown_product_says_so(engine):
    from fashion_search.errors import UnknownProductError

    with pytest.raises(UnknownProductError, match="no-such"):
        engine.search_product("no-such")
    with pytest.raises(KeyError):  # callers may catch it as a plain lookup miss
        engine.search_product("no-such")


def test_results_carry_the_image_id_of_their_view(engine):
    result = engine.search(make_product((215, 25, 25)), k=2).garments[0].results[0]
    assert engine.store.image_path(result.image_id) == result.image


def test_python_api_filters_by_metadata_text_and_rejects_unknown_columns(tiny_catalog, tmp_path):
    from fashion_search.store.filters import FilterError

    metadata = tmp_path / "metadata.csv"
    metadata.write_text("product_id,brand\nred-1,Nike\nblue-1,Zara\ngreen-1,Nike\nblack-1,Zara\n")
    db = tmp_path / "db.lance"
    engine = SearchEngine.create(db, embedder=Component("test-pixels", {}), detector=Component("foreground", {}))
    engine.index(load_catalog(folder=tiny_catalog, metadata_csv=metadata))
    query = make_product((20, 20, 200))
    results = engine.search(query, k=10, where="brand = 'Nike'").garments[0].results
    assert {r.product_id for r in results} == {"red-1", "green-1"}
    with pytest.raises(FilterError, match="no metadata column 'price'"):
        engine.search(query, where="price < 3")


def test_an_index_run_with_nothing_to_do_records_metadata_columns_it_lacks(tiny_catalog, tmp_path):
    db = tmp_path / "db.lance"
    engine = SearchEngine.create(db, embedder=Component("test-pixels", {}), detector=Component("foreground", {}))
    items = load_catalog(folder=tiny_catalog)
    for item in items:
        item.metadata["season"] = "Summer" if item.product_id.startswith("red") else "Winter"
    engine.index(items)
    manifest = engine.store.read_manifest()
    manifest.pop("metadata_columns")  # as an index built before filters existed
    engine.store.write_manifest(manifest)
    assert SearchEngine.open(db).searcher.metadata_columns.columns == {}
    assert engine.index(items).indexed == 0
    assert SearchEngine.open(db).searcher.metadata_columns.columns["season"].values == ["Summer", "Winter"]


def test_results_group_equally_near_views_by_product_then_image_whatever_the_stores_order():
    from fashion_search.search import best_per_product
    from fashion_search.store import Hit

    def hit(product, image, score):
        return Hit(f"{image}#0", image, f"/{image}.jpg", product, "Tops", "top", score, (0, 0, 1, 1))

    # The same photo under products b and a, twice under c, and a nearer product d, shuffled.
    hits = [hit("c", "c2", 0.9), hit("b", "b1", 0.9), hit("d", "d1", 0.95), hit("c", "c1", 0.9), hit("a", "a1", 0.9)]
    ranked = best_per_product(hits, 3)
    assert [(r.product_id, r.image_id) for r in ranked] == [("d", "d1"), ("a", "a1"), ("b", "b1")]
    assert [(r.product_id, r.image_id) for r in best_per_product(reversed(hits), 5)][-1] == ("c", "c1")
