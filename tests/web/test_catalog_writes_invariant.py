"""Catalog writes never lie: every class of bad input is refused before anything is written, and
nothing that runs after a commit turns it into an error. Per product: a 2xx means it is visible
through GET, search, "more like this" and a filter on its metadata; a 4xx (or a 5xx from a fault
before the commit) means the catalog did not change."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any, Optional

import pytest
from fastapi.testclient import TestClient

from fashion_search import SearchEngine, load_catalog
from fashion_search.catalog.uploads import UploadFolder
from fashion_search.pipeline import Component
from fashion_search.store.lance import LanceVectorStore
from fashion_search.web import Settings, create_app
from tests.helpers import make_product

KEY = "k3y-0123456789abcdef-secret"
AUTH = {"Authorization": f"Bearer {KEY}"}


def png(colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    make_product(colour, size=(80, 100)).save(out, "PNG")
    return out.getvalue()


@pytest.fixture
def engine(tiny_catalog: Path, tmp_path: Path):
    db = tmp_path / "db.lance"
    SearchEngine.create(db, Component("test-pixels"), Component("foreground")).index(load_catalog(folder=tiny_catalog))
    engine = SearchEngine.open(db)
    yield engine
    engine.close()


@pytest.fixture
def client(engine):
    with TestClient(
        create_app(engine, Settings(max_upload_bytes=200_000, api_key=KEY)), raise_server_exceptions=False
    ) as c:
        yield c


def catalog_state(client: TestClient) -> dict[str, Any]:
    """What a client can see of the catalog: categories, filter columns."""
    return {"categories": client.get("/api/categories").json(), "filters": client.get("/api/filters").json()}


def assert_visible(client: TestClient, product_id: str, image: bytes, metadata: Optional[dict] = None) -> None:
    """The invariant of a 2xx: the product answers GET, is found by search and by "more like
    this", and its metadata columns may be filtered on."""
    got = client.get(f"/api/products/{product_id}")
    assert got.status_code == 200, got.text
    found = client.post("/api/search?k=10", files={"image": ("q.png", image)})
    assert product_id in {r["product_id"] for g in found.json()["garments"] for r in g["results"]}
    assert client.post(f"/api/search/product/{product_id}").status_code == 200
    for column, value in (metadata or {}).items():
        shown = json.dumps(value) if not isinstance(value, str) else json.dumps(value)
        filtered = client.post(
            "/api/search", params={"filter": f"`{column}` = {shown}", "k": 10}, files={"image": ("q.png", image)}
        )
        assert filtered.status_code == 200, filtered.text
        assert product_id in {r["product_id"] for g in filtered.json()["garments"] for r in g["results"]}


def put(client: TestClient, product_id: str, image: bytes, category: Any = "Tops", metadata: Optional[str] = None):
    data = {"category": category}
    if metadata is not None:
        data["metadata"] = metadata
    return client.put(f"/api/products/{product_id}", files={"images": ("a.png", image)}, data=data, headers=AUTH)


PATHOLOGICAL_METADATA = {
    "deep array": '{"a": ' + "[" * 5000 + "]" * 5000 + "}",
    "deep object": '{"a": ' + '{"b": ' * 3000 + "1" + "}" * 3000 + "}",
    "integer beyond any float": '{"price": ' + "9" * 400 + "}",
    "integer beyond 2^53": '{"price": 9007199254740993}',
    "integer with too many digits to parse": '{"price": ' + "9" * 5000 + "}",
    "number that overflows to infinity": '{"price": 1e400}',
    "lone surrogate in a value": '{"brand": "\\ud800"}',
    "lone surrogate in a name": '{"\\udfff": "x"}',
    "list where an object is wanted": '["brand", "Nike"]',
    "nested object as a value": '{"brand": {"name": "Nike"}}',
    "text that is not JSON": "{brand: Nike}",
}


@pytest.mark.parametrize("case", PATHOLOGICAL_METADATA)
def test_pathological_metadata_in_a_single_write_is_a_4xx_that_changes_nothing(client, case):
    before = catalog_state(client)
    response = put(client, "new-1", png((230, 220, 20)), metadata=PATHOLOGICAL_METADATA[case])
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "bad_product"
    assert client.get("/api/products/new-1").status_code == 404
    assert catalog_state(client) == before


@pytest.mark.parametrize(
    "entry",
    [
        {"product_id": 7, "category": "Tops", "images": ["f"]},
        {"product_id": ["a"], "category": "Tops", "images": ["f"]},
        {"product_id": "ok-1", "category": None, "images": ["f"]},
        {"product_id": "ok-1", "category": "Tops", "images": "f"},
        {"product_id": "ok-1", "category": "Tops", "images": [1]},
        {"product_id": "ok-1", "category": "Tops", "images": []},
        {"product_id": "ok-1", "category": "Tops", "metadata": "brand", "images": ["f"]},
        {"product_id": "ok-1", "category": "Tops", "metadata": {"price": 2**60}, "images": ["f"]},
        {"product_id": "\ud800", "category": "Tops", "images": ["f"]},
        {"product_id": "ok-1", "category": "Tops", "images": ["no-such-field"]},
        "not an object",
        None,
    ],
)
def test_each_bad_product_of_a_bulk_write_gets_its_own_4xx_and_the_others_are_written(client, entry):
    good = {"product_id": "good-1", "category": "Skirts", "metadata": {"size": 38}, "images": ["f"]}
    listing = json.dumps([entry, good])
    response = client.post(
        "/api/products", data={"products": listing}, files={"f": ("a.png", png((20, 20, 220)))}, headers=AUTH
    )
    assert response.status_code == 200, response.text
    bad, written = response.json()["results"]
    assert bad["status"] == 422 and bad["error"]["code"] == "bad_product"
    assert written["status"] == 201
    assert client.get("/api/products/ok-1").status_code == 404
    assert_visible(client, "good-1", png((20, 20, 220)), {"size": 38})


@pytest.mark.parametrize(
    "field",
    ["[" * 100_000 + "]" * 100_000, '[{"product_id": ' + "1" * 5000 + "}]", '"a list, not"', "[]", "{}"],
)
def test_a_bulk_listing_that_is_not_a_list_of_products_is_a_422_that_writes_nothing(client, field):
    before = catalog_state(client)
    response = client.post(
        "/api/products", data={"products": field}, files={"f": ("a.png", png((20, 20, 220)))}, headers=AUTH
    )
    assert response.status_code == 422 and response.json()["error"]["code"] == "bad_product"
    assert catalog_state(client) == before


def test_one_file_named_by_two_products_and_twice_by_one_is_read_once_and_given_to_each(client):
    image = png((200, 20, 200))
    listing = [
        {"product_id": "twin-1", "category": "Tops", "images": ["shared"]},
        {"product_id": "twin-2", "category": "Tops", "images": ["shared", "shared"]},
    ]
    response = client.post(
        "/api/products", data={"products": json.dumps(listing)}, files={"shared": ("s.png", image)}, headers=AUTH
    )
    results = response.json()["results"]
    assert [r["status"] for r in results] == [201, 201], results
    assert all(r["images"] == 1 and r["garments"] >= 1 for r in results)
    for product_id in ("twin-1", "twin-2"):
        assert_visible(client, product_id, image)


@pytest.mark.parametrize(
    "route", ["GET /api/products/", "PUT /api/products/", "DELETE /api/products/", "POST /api/search/product/"]
)
def test_a_product_id_that_is_not_utf8_once_decoded_is_refused_on_every_route(client, route):
    method, prefix = route.split()
    before = catalog_state(client)
    kwargs: dict[str, Any] = {"headers": AUTH}
    if method == "PUT":
        kwargs.update(files={"images": ("a.png", png((230, 220, 20)))}, data={"category": "Tops"})
    for raw in ("%FF", "red-1%C3", "%ED%A0%80"):  # a stray byte, a cut character, an encoded surrogate
        response = client.request(method, prefix + raw, **kwargs)
        assert response.status_code == 422 and response.json()["error"]["code"] == "bad_product_id", response.text
    assert catalog_state(client) == before
    assert client.get("/api/products/red-1").status_code == 200


def _fail_after_commit_in_uploads(monkeypatch):
    def broken(self, product_id, paths):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(UploadFolder, "keep_only", broken)


def _fail_reading_the_record_back(monkeypatch):
    import sys

    from fashion_search import writer

    real = writer.IndexRecord.from_dict

    def broken(data, where="this location"):
        if sys._getframe(1).f_code.co_name == "_replace":  # the writer's read-back after the commit
            raise RuntimeError("injected: the record could not be read back")
        return real(data, where)

    monkeypatch.setattr(writer.IndexRecord, "from_dict", staticmethod(broken))


@pytest.mark.parametrize("inject", [_fail_after_commit_in_uploads, _fail_reading_the_record_back])
def test_a_fault_after_the_commit_still_answers_2xx_and_the_product_is_visible(client, monkeypatch, inject):
    # First a version of the product, so that the write replaces files (keep_only runs).
    image = png((230, 220, 20))
    assert put(client, "late-1", png((225, 215, 25)), metadata='{"fault": "old"}').status_code == 201
    inject(monkeypatch)
    response = put(client, "late-1", image, metadata='{"fault": "new"}')
    assert response.status_code == 200, response.text
    assert_visible(client, "late-1", image, {"fault": "new"})
    bulk = client.post(
        "/api/products",
        data={
            "products": json.dumps(
                [{"product_id": "late-2", "category": "Tops", "metadata": {"fault": 2}, "images": ["f"]}]
            )
        },
        files={"f": ("a.png", image)},
        headers=AUTH,
    )
    assert [r["status"] for r in bulk.json()["results"]] == [201]
    assert_visible(client, "late-2", image, {"fault": 2})


def test_a_fault_before_the_commit_leaves_the_catalog_as_it_was(client, monkeypatch):
    before = catalog_state(client)

    def full_disk(self, manifest):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(LanceVectorStore, "_write_manifest", full_disk)
    response = put(client, "never-1", png((230, 220, 20)), metadata='{"brand": "Gone"}')
    assert response.status_code == 500
    bulk = client.post(
        "/api/products",
        data={
            "products": json.dumps(
                [{"product_id": "never-2", "category": "Tops", "metadata": {"b": 1}, "images": ["f"]}]
            )
        },
        files={"f": ("a.png", png((230, 220, 20)))},
        headers=AUTH,
    )
    assert [r["status"] for r in bulk.json()["results"]] == [500]  # its status, not a lost answer
    monkeypatch.undo()
    assert client.get("/api/products/never-1").status_code == 404
    assert client.get("/api/products/never-2").status_code == 404
    assert catalog_state(client) == before


def test_the_rows_failing_to_commit_put_the_record_back(client, engine, monkeypatch):
    before = catalog_state(client)
    store = engine.store

    def failing_merge(*args, **kwargs):
        raise OSError(5, "Input/output error")

    table = store._open_garments()
    monkeypatch.setattr(type(table), "merge_insert", failing_merge)
    assert put(client, "never-3", png((230, 220, 20)), metadata='{"brand": "Gone"}').status_code == 500
    monkeypatch.undo()
    assert client.get("/api/products/never-3").status_code == 404
    assert catalog_state(client) == before
    assert "brand" not in {c["name"] for c in client.get("/api/filters").json()["columns"]}


def test_filters_follow_replaced_and_deleted_products(client):
    image = png((230, 220, 20))
    assert put(client, "f-1", image, metadata='{"brand": "Sun", "price": 10}').status_code == 201
    assert put(client, "f-2", image, metadata='{"brand": "Sun", "price": 30}').status_code == 201
    assert put(client, "f-1", image, metadata='{"brand": "Moon", "price": 20}').status_code == 200  # replaced

    columns = {c["name"]: c for c in client.get("/api/filters").json()["columns"]}
    assert columns["brand"]["products"] == 2 and columns["brand"]["values"] == ["Moon", "Sun"]
    assert columns["brand"]["counts"] == {"Moon": 1, "Sun": 1}
    assert (columns["price"]["min"], columns["price"]["max"]) == (20, 30)

    assert client.delete("/api/products/f-2", headers=AUTH).status_code == 200
    columns = {c["name"]: c for c in client.get("/api/filters").json()["columns"]}
    assert columns["brand"]["values"] == ["Moon"] and (columns["price"]["min"], columns["price"]["max"]) == (20, 20)

    assert client.delete("/api/products/f-1", headers=AUTH).status_code == 200
    assert {"brand", "price"} & {c["name"] for c in client.get("/api/filters").json()["columns"]} == set()
    refused = client.post("/api/search", params={"filter": 'brand = "Moon"'}, files={"image": ("q.png", image)})
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "bad_filter"
