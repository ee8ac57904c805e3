"""Catalog writes over HTTP: the API key, add/replace/delete, the bulk form, what is refused."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from fashion_search import SearchEngine, load_catalog
from fashion_search.pipeline import Component
from fashion_search.web import Settings, create_app
from tests.helpers import make_product

KEY = "k3y-0123456789abcdef-secret"
AUTH = {"Authorization": f"Bearer {KEY}"}


def jpeg(colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    make_product(colour, size=(80, 100)).save(out, "JPEG")
    return out.getvalue()


@pytest.fixture
def db(tiny_catalog: Path, tmp_path: Path) -> Path:
    path = tmp_path / "db.lance"
    SearchEngine.create(path, embedder=Component("test-pixels", {}), detector=Component("foreground", {})).index(
        load_catalog(folder=tiny_catalog)
    )
    return path


def client_for(db: Path, **settings) -> TestClient:
    return TestClient(create_app(SearchEngine.open(db), Settings(max_upload_bytes=200_000, **settings)))


@pytest.fixture
def client(db: Path):
    with client_for(db, api_key=KEY) as c:
        yield c


def put(client: TestClient, product_id: str, images: list[bytes], headers=AUTH, **fields):
    files = [("images", (f"client-name-{n}.jpg", data, "image/jpeg")) for n, data in enumerate(images)]
    data = {"category": fields.pop("category", "Tops"), **fields}
    return client.put(f"/api/products/{product_id}", files=files, data=data, headers=headers)


def error_code(response) -> str:
    assert "Traceback" not in response.text
    return response.json()["error"]["code"]


def test_without_a_configured_key_writes_are_off(db):
    with client_for(db) as c:
        response = put(c, "new-1", [jpeg((230, 220, 20))])
        assert response.status_code == 405 and error_code(response) == "writes_disabled"
        assert response.headers["allow"] == "GET" and "--api-key-file" in response.json()["error"]["message"]
        assert c.delete("/api/products/red-1").status_code == 405
        assert c.get("/api/products/red-1").status_code == 200


def test_writes_need_the_key_401_without_and_403_with_another(client):
    response = put(client, "new-1", [jpeg((230, 220, 20))], headers={})
    assert response.status_code == 401 and error_code(response) == "missing_api_key"
    assert response.headers["www-authenticate"] == "Bearer"
    response = put(client, "new-1", [jpeg((230, 220, 20))], headers={"Authorization": "Bearer " + "x" * len(KEY)})
    assert response.status_code == 403 and error_code(response) == "wrong_api_key"
    assert client.delete("/api/products/red-1", headers={"Authorization": "Basic abc"}).status_code == 401
    assert client.get("/api/products/new-1").status_code == 404


def test_a_product_put_is_searchable_at_once_replaced_by_the_next_and_deleted(client):
    response = put(client, "yellow-1", [jpeg((230, 220, 20)), jpeg((225, 215, 25))], metadata='{"brand": "Sun"}')
    assert response.status_code == 201, response.text
    assert response.json() | {"garments": 0} == {
        "product_id": "yellow-1",
        "category": "Tops",
        "images": 2,
        "garments": 0,
        "created": True,
    }
    product = client.get("/api/products/yellow-1").json()
    assert product["metadata"] == {"brand": "Sun"} and len(product["images"]) == 2
    assert client.get(product["images"][0]["thumbnail"]).status_code == 200
    query = {"image": ("q.jpg", jpeg((230, 220, 20)), "image/jpeg")}
    results = client.post("/api/search", files=query, params={"k": 1}).json()["garments"][0]["results"]
    assert results[0]["product_id"] == "yellow-1"
    assert client.get("/api/filters").json()["columns"][0]["name"] == "brand"

    response = put(client, "yellow-1", [jpeg((20, 20, 20))], category="Skirts")
    assert response.status_code == 200 and response.json()["created"] is False
    assert response.json()["images"] == 1
    assert {"name": "Skirts", "products": 3} in client.get("/api/categories").json()["categories"]
    assert put(client, "yellow-1", [jpeg((20, 20, 20))], category="Skirts").status_code == 200  # idempotent

    response = client.delete("/api/products/yellow-1", headers=AUTH)
    assert response.status_code == 200 and response.json() == {"product_id": "yellow-1", "images": 1}
    assert client.get("/api/products/yellow-1").status_code == 404
    assert error_code(client.delete("/api/products/yellow-1", headers=AUTH)) == "unknown_product"


@pytest.mark.parametrize(
    "images, fields, code",
    [
        ([jpeg((1, 2, 3)), b"<svg xmlns='http://www.w3.org/2000/svg'/>"], {}, "bad_image"),
        ([jpeg((1, 2, 3))[:200]], {}, "bad_image"),
        ([jpeg((1, 2, 3))], {"metadata": "{not json"}, "bad_product"),
        ([jpeg((1, 2, 3))], {"metadata": '["a list"]'}, "bad_product"),
        ([jpeg((1, 2, 3))], {"category": " "}, "bad_product"),
        ([jpeg((1, 2, 3))], {"category": ""}, "invalid_request"),
    ],
)
def test_a_bad_write_is_a_422_and_writes_nothing(client, images, fields, code):
    response = put(client, "bad-1", images, **fields)
    assert response.status_code == 422 and error_code(response) == code, response.text
    assert client.get("/api/products/bad-1").status_code == 404


def test_a_product_id_with_a_line_break_is_a_documented_404_and_writes_nothing(client):
    response = put(client, "a%0Ab", [jpeg((1, 2, 3))])
    assert response.status_code == 404 and error_code(response) == "not_found", response.text
    documented = client.get("/openapi.json").json()["paths"]["/api/products/{product_id}"]["put"]["responses"]
    assert "404" in documented
    assert client.get("/api/products/a").status_code == 404


def test_bulk_writes_each_product_on_its_own(client):
    products = [
        {"product_id": "b-1", "category": "Tops", "metadata": {"brand": "A"}, "images": ["f1"]},
        {"product_id": "b-2", "category": "Skirts", "images": ["f2", "f3"]},
        {"product_id": "b-3", "category": "Tops", "images": ["missing"]},
        {"product_id": "b-4", "category": "Tops", "images": ["f4"]},
    ]
    files = [
        ("f1", ("a.jpg", jpeg((200, 10, 10)), "image/jpeg")),
        ("f2", ("b.jpg", jpeg((10, 200, 10)), "image/jpeg")),
        ("f3", ("c.jpg", jpeg((10, 10, 200)), "image/jpeg")),
        ("f4", ("d.jpg", b"not an image", "image/jpeg")),
    ]
    response = client.post("/api/products", data={"products": json.dumps(products)}, files=files, headers=AUTH)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["status"] for r in results] == [201, 201, 422, 422]
    assert results[1]["images"] == 2 and results[3]["error"]["code"] == "bad_image"
    assert client.get("/api/products/b-2").status_code == 200 and client.get("/api/products/b-3").status_code == 404
    no_list = client.post("/api/products", data={"products": "{}"}, files=files[:1], headers=AUTH)
    assert no_list.status_code == 422 and error_code(no_list) == "bad_product"


def test_protected_reads_need_the_key_but_health_checks_do_not(db):
    with client_for(db, api_key=KEY, protect_reads=True) as c:
        assert c.get("/api/categories").status_code == 401
        assert c.get("/api/categories", headers=AUTH).status_code == 200
        assert c.get("/healthz").status_code == 200


def test_an_unauthenticated_body_is_refused_before_it_is_read_and_a_large_write_gets_413(db):
    with client_for(db, api_key=KEY, max_write_bytes=300_000) as c:
        big = {"images": ("a.jpg", b"x" * 400_000, "image/jpeg")}
        assert c.put("/api/products/p", files=big, data={"category": "Tops"}).status_code == 401
        response = c.put("/api/products/p", files=big, data={"category": "Tops"}, headers=AUTH)
        assert response.status_code == 413 and error_code(response) == "upload_too_large"


def test_the_key_never_reaches_the_log(client, caplog):
    with caplog.at_level(logging.DEBUG):
        put(client, "log-1", [jpeg((230, 220, 20))])
        put(client, "log-1", [jpeg((230, 220, 20))], headers={"Authorization": f"Bearer {KEY}x"})
        client.delete("/api/products/nope", headers=AUTH)
    assert caplog.records and KEY not in caplog.text


def test_a_key_file_that_is_too_short_is_refused(tmp_path):
    from fashion_search.errors import UsageError
    from fashion_search.settings import read_api_key

    (tmp_path / "key").write_text("short\n")
    with pytest.raises(UsageError, match="at least 16"):
        read_api_key(tmp_path / "key")
    (tmp_path / "key").write_text(KEY + "\n")
    assert read_api_key(tmp_path / "key") == KEY
