"""End to end on the Zalora sample: the same catalog indexed through the engine into a Lance
store and into a PostgreSQL store (by URI, as ``--db`` takes it) answers searches alike."""

from __future__ import annotations

from pathlib import Path

import pytest

from fashion_search import SearchEngine, load_catalog
from fashion_search.engine import ProductResult, describe_index
from fashion_search.images import load_image
from tests.store.conftest import pg_uri
from tests.store.pg_server import PostgresServer
from tests.store.rows import vector_indexes


def same_up_to_ties(a: list[ProductResult], b: list[ProductResult], tolerance: float = 1e-5) -> bool:
    """The same top products, by the same scores; products tied with the last one may differ
    (the sample holds the same photo under two product ids, and stores break ties their own way)."""
    if len(a) != len(b) or any(abs(x.score - y.score) > tolerance for x, y in zip(a, b)):
        return False
    edge = a[-1].score + tolerance if a else 0.0
    return {p.product_id for p in a if p.score > edge} == {p.product_id for p in b if p.score > edge}


@pytest.mark.timeout(900)
def test_zalora_in_lance_and_in_postgres_gives_the_same_top_5_products(
    shared_data: Path, tmp_path: Path, pg_server: PostgresServer
) -> None:
    catalog = load_catalog(folder=shared_data / "zalora")
    lance = SearchEngine.create(tmp_path / "zalora.lance")
    assert lance.index(catalog).indexed == len(catalog)
    # A low min_rows and no exact shortcut for filters: searches go through the HNSW index,
    # filtered ones by its graph walk, as on a catalog of millions.
    uri = pg_uri(pg_server, table="zalora") + "&min_rows=50&exact_filter_rows=0"
    postgres = SearchEngine.create(uri)
    report = postgres.index(catalog)
    assert report.failed == [] and report.indexed == len(catalog)
    try:
        assert vector_indexes(postgres.store) == ["zalora_vector_hnsw"]
        assert postgres.store.count() == lance.store.count()
        assert postgres.store.categories() == lance.store.categories()
        assert postgres.searcher.category_classes.to_dict() == lance.searcher.category_classes.to_dict()

        # Each garment of every third catalog photo is looked up in both stores with the same
        # vector, class-aware (category and label filters) as search does it.
        same, identical, differing = 0, 0, []
        for item in catalog[::3]:
            picture = load_image(item.path)
            garments = lance.pipeline.detect(picture)
            vectors = lance.pipeline.embed_garments([picture], [garments])[0]
            for garment, vector in zip(garments, vectors):
                expected = lance.searcher.lookup(vector, garment.label, k=5)
                found = postgres.searcher.lookup(vector, garment.label, k=5)
                identical += [p.product_id for p in found] == [p.product_id for p in expected]
                if same_up_to_ties(found, expected):
                    same += 1
                else:
                    ids = [[(p.product_id, round(p.score, 6)) for p in r] for r in (expected, found)]
                    differing.append((str(item.path), garment.label, *ids))
        total = same + len(differing)
        assert total >= 60
        assert same / total >= 0.95, (
            f"{same}/{total} lookups agree ({identical} in the same order); first differences: {differing[:3]}"
        )

        # The whole path by photo, and reopening by URI as `search` and `info` do.
        reopened = SearchEngine.open(uri)
        for item in catalog[:3]:
            a = lance.search(item.path, k=5)
            b = reopened.search(item.path, k=5)
            assert len(a.garments) == len(b.garments)
            assert all(same_up_to_ties(x.results, y.results) for x, y in zip(a.garments, b.garments))
            assert item.product_id in {r.product_id for g in b.garments for r in g.results}
        reopened.close()
        info = describe_index(uri)
        assert info["models_match"] and info["garments"] == lance.store.count()
    finally:
        postgres.close()
        lance.close()
