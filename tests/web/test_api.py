"""The HTTP API through the ASGI test client, on a tiny index with the fast test embedder."""

from __future__ import annotations

import io
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from fashion_search import SearchEngine, load_catalog
from fashion_search.pipeline import Component
from fashion_search.web import Settings, create_app
from tests.helpers import eventually, make_product


def png(image: Image.Image, fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    image.save(out, fmt)
    return out.getvalue()


RED = png(make_product((215, 25, 25), size=(100, 120)))
BLUE = png(make_product((25, 25, 215), size=(100, 120)))


@pytest.fixture
def db(tiny_catalog: Path, tmp_path: Path) -> Path:
    path = tmp_path / "db.lance"
    metadata = tmp_path / "metadata.csv"
    metadata.write_text(
        "product_id,brand,price\nred-1,Nike,30\nblue-1,Zara,60.5\ngreen-1,Nike,80\nblack-1,,15\n", encoding="utf-8"
    )
    SearchEngine.create(path, embedder=Component("test-pixels", {}), detector=Component("foreground", {})).index(
        load_catalog(folder=tiny_catalog, metadata_csv=metadata)
    )
    return path


@pytest.fixture
def engine(db: Path) -> SearchEngine:
    return SearchEngine.open(db)


@pytest.fixture
def client(engine: SearchEngine):
    with TestClient(create_app(engine, Settings(max_upload_bytes=200_000, max_pixels=1_000_000))) as c:
        yield c


def upload(client: TestClient, data: bytes, name: str = "photo.png", **params):
    return client.post("/api/search", files={"image": (name, data, "application/octet-stream")}, params=params)


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["code"] == code and body["error"]["message"]
    assert "Traceback" not in response.text
    return body


# -- search ---------------------------------------------------------------------------------------


def test_search_by_photo_returns_the_cli_schema_with_image_urls(client):
    response = upload(client, RED, k=3)
    assert response.status_code == 200
    data = response.json()
    assert data["query"] == "photo.png" and data["query_image"] is None
    [garment] = data["garments"]
    assert {"label", "score", "box", "results"} <= set(garment) and len(garment["box"]) == 4
    first = garment["results"][0]
    assert first["product_id"] == "red-1" and first["category"] == "Tops"
    assert first["image"] == f"/api/images/{first['image_id']}"
    assert first["thumbnail"] == f"/api/images/{first['image_id']}/thumbnail"
    assert len(garment["results"]) == 3
    assert {"decode", "detect", "embed", "lookup", "total"} <= set(data["timings_ms"])


def test_search_results_match_the_python_api(client, engine):
    expected = engine.search(BLUE, k=4).to_dict()["garments"][0]["results"]
    got = upload(client, BLUE, k=4).json()["garments"][0]["results"]
    assert [(r["product_id"], r["score"]) for r in got] == [(r["product_id"], r["score"]) for r in expected]


def test_search_category_filter(client):
    results = upload(client, RED, k=10, category="Skirts").json()["garments"][0]["results"]
    assert {r["category"] for r in results} == {"Skirts"}


def test_an_empty_category_means_no_filter(client):
    assert len(upload(client, RED, k=10, category="").json()["garments"][0]["results"]) == 4


def test_unknown_category_is_a_clear_422(client):
    assert_error(upload(client, RED, category="Hats"), 422, "unknown_category")


def test_metadata_filter_keeps_only_passing_products(client):
    results = upload(client, RED, k=10, filter='brand = "Nike" and price < 50').json()["garments"][0]["results"]
    assert [r["product_id"] for r in results] == ["red-1"]
    results = upload(client, RED, k=10, filter="price >= 15 and not brand in ('Zara')").json()["garments"][0]
    # black-1 has no brand: a condition on it is unknown, and so is its negation.
    assert {r["product_id"] for r in results["results"]} == {"red-1", "green-1"}


def test_metadata_filter_combines_with_category_and_more_like_this(client):
    results = upload(client, RED, k=10, category="Skirts", filter="price > 20").json()["garments"][0]["results"]
    assert [r["product_id"] for r in results] == ["green-1"]
    similar = client.post("/api/search/product/red-1", params={"filter": "brand = 'Zara'"}).json()
    assert {r["product_id"] for g in similar["garments"] for r in g["results"]} <= {"blue-1"}


@pytest.mark.parametrize(
    "text, message",
    [
        ("material = 'silk'", "no metadata column 'material'"),
        ("brand < 'N'", "needs a number column"),
        ("brand = 'Nike' or", "expected a column name"),
        ("price < 1; DROP TABLE garments", "unexpected"),
    ],
)
def test_a_bad_filter_is_a_422_that_says_why(client, text, message):
    body = assert_error(upload(client, RED, filter=text), 422, "bad_filter")
    assert message in body["error"]["message"]


def test_filters_lists_the_columns_with_values_and_ranges(client):
    columns = {c["name"]: c for c in client.get("/api/filters").json()["columns"]}
    assert columns["brand"]["type"] == "text" and columns["brand"]["values"] == ["Nike", "Zara"]
    assert columns["brand"]["products"] == 3
    assert (columns["price"]["type"], columns["price"]["min"], columns["price"]["max"]) == ("number", 15, 80)


def test_content_is_checked_by_decoding_not_by_the_file_name(client):
    assert_error(upload(client, b"just some text, not a picture", name="photo.jpg"), 415, "not_an_image")
    # ... and a real image under a misleading name is fine.
    assert upload(client, RED, name="notes.txt").status_code == 200


def test_formats_outside_the_photo_list_are_refused(client):
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"
    assert_error(upload(client, eps, name="x.eps"), 415, "not_an_image")


def test_truncated_image_is_a_422(client):
    jpeg = png(make_product((10, 200, 10), size=(120, 160)), "JPEG")
    assert_error(upload(client, jpeg[: len(jpeg) // 2]), 422, "corrupt_image")


def test_empty_upload_is_a_422(client):
    assert_error(upload(client, b""), 422, "empty_file")


def test_pixel_count_is_capped_against_decompression_bombs(client):
    # 2000x2000 of one colour compresses to a few KB but would decode to 4 MP (limit here: 1 MP).
    bomb = png(Image.new("L", (2000, 2000)))
    assert len(bomb) < 20_000
    body = assert_error(upload(client, bomb), 422, "too_many_pixels")
    assert "2000x2000" in body["error"]["message"]


def test_upload_over_the_size_limit_is_a_413(client):
    big = png(Image.frombytes("RGB", (300, 300), os.urandom(300 * 300 * 3)))  # noise: > 200 kB as PNG
    assert len(big) > 200_000
    assert_error(upload(client, big), 413, "upload_too_large")


def test_a_huge_declared_body_is_refused_before_it_is_read(client):
    response = client.post(
        "/api/search",
        content=b"x" * 10,
        headers={"content-type": "multipart/form-data; boundary=x", "content-length": str(50 * 2**20)},
    )
    assert_error(response, 413, "upload_too_large")


def test_a_streamed_body_over_the_limit_is_a_413(client):
    def chunks():
        for _ in range(40):
            yield b"x" * 10_000

    response = client.post("/api/search", content=chunks(), headers={"content-type": "multipart/form-data; boundary=x"})
    assert_error(response, 413, "upload_too_large")


def test_missing_file_field_and_bad_parameters_are_422(client):
    assert_error(client.post("/api/search"), 422, "invalid_request")
    assert_error(upload(client, RED, k=0), 422, "invalid_request")
    body = assert_error(upload(client, RED, k=1000), 422, "invalid_request")
    assert "k" in body["error"]["message"]


# -- more like this, catalog ----------------------------------------------------------------------


def test_more_like_this_excludes_the_product_and_shows_its_image(client):
    response = client.post("/api/search/product/red-1", params={"k": 10})
    assert response.status_code == 200
    data = response.json()
    ids = [r["product_id"] for r in data["garments"][0]["results"]]
    assert "red-1" not in ids and len(ids) == 3
    assert data["query_image"].startswith("/api/images/")
    assert client.get(data["query_image"]).status_code == 200


def test_unknown_product_is_a_404_everywhere(client):
    assert_error(client.post("/api/search/product/nope"), 404, "unknown_product")
    assert_error(client.get("/api/products/nope"), 404, "unknown_product")


def test_product_has_metadata_and_its_images(client):
    data = client.get("/api/products/red-1").json()
    assert data["product_id"] == "red-1" and data["category"] == "Tops"
    assert len(data["images"]) == 2
    for image in data["images"]:
        assert client.get(image["thumbnail"]).status_code == 200
        assert image["garments"] and len(image["garments"][0]["box"]) == 4


def test_categories_count_products(client):
    assert client.get("/api/categories").json() == {
        "categories": [{"name": "Skirts", "products": 2}, {"name": "Tops", "products": 2}]
    }


def test_healthz_reports_store_models_and_index_size(client):
    data = client.get("/healthz").json()
    assert data["status"] == "ok" and data["store_reachable"] and data["models_loaded"]
    assert data["index_garments"] == 5 and data["embedder"] == "test-pixels"


def test_healthz_says_unavailable_when_the_store_fails(engine, monkeypatch):
    def broken() -> int:
        raise OSError("disk gone")

    monkeypatch.setattr(engine.store, "count", broken)
    with TestClient(create_app(engine)) as c:
        response = c.get("/healthz")
    assert response.status_code == 503 and response.json()["store_reachable"] is False


def test_health_categories_and_cached_thumbnails_answer_while_every_search_thread_is_busy(engine, monkeypatch):
    entered, release = threading.Semaphore(0), threading.Event()
    search = engine.searcher.search

    def held_search(*args, **kwargs):
        entered.release()
        release.wait(60)
        return search(*args, **kwargs)

    with TestClient(create_app(engine, Settings(threads=2))) as c:
        image = upload(c, RED, k=1).json()["garments"][0]["results"][0]["thumbnail"]
        assert c.get(image).status_code == 200  # now cached
        monkeypatch.setattr(engine.searcher, "search", held_search)
        with ThreadPoolExecutor(8) as pool:
            searches = [pool.submit(upload, c, RED) for _ in range(4)]
            try:
                for _ in range(2):  # both search threads are taken; two more searches wait
                    assert entered.acquire(timeout=20)
                for path in ("/healthz", "/api/categories", image, "/api/products/red-1"):
                    # Before the fix these waited for a search thread, i.e. until release.
                    answer = pool.submit(c.get, path).result(timeout=20)
                    assert answer.status_code == 200, path
            finally:
                release.set()
            assert all(s.result().status_code == 200 for s in searches)


# -- images ----------------------------------------------------------------------------------------


def test_a_thumbnail_of_a_catalog_file_replaced_by_a_bomb_is_refused_by_the_pixel_cap(client, engine):
    result = upload(client, RED, k=1).json()["garments"][0]["results"][0]
    # The client's cap is 1 MP; a 1500x1000 PNG of one colour is a few KB.
    path = Path(engine.store.image_path(result["image_id"]))
    path.write_bytes(png(Image.new("RGB", (1500, 1000), (215, 25, 25))))
    assert_error(client.get(result["thumbnail"] + "?size=64"), 422, "corrupt_image")


def test_catalog_images_are_served_by_id_with_cache_headers(client):
    result = upload(client, RED, k=1).json()["garments"][0]["results"][0]
    full = client.get(result["image"])
    assert full.status_code == 200 and full.headers["content-type"] in ("image/jpeg", "image/png")
    assert "max-age" in full.headers["cache-control"]
    thumb = client.get(result["thumbnail"], params={"size": 40})
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert max(Image.open(io.BytesIO(thumb.content)).size) == 40
    again = client.get(result["thumbnail"], params={"size": 40}, headers={"if-none-match": thumb.headers["etag"]})
    assert again.status_code == 304


def test_images_are_never_served_by_client_supplied_paths(client):
    assert_error(client.get("/api/images/0123456789abcdef0123"), 404, "unknown_image")
    for probe in (
        "/api/images/..%2F..%2Fetc%2Fpasswd",
        "/api/images/../../etc/passwd",
        "/api/images/%2Fetc%2Fpasswd/thumbnail",
        "/static/../../../../etc/passwd",
    ):
        response = client.get(probe)
        assert response.status_code == 404, probe
        assert b"root:" not in response.content


def test_a_catalog_file_deleted_after_indexing_is_a_404(tmp_path):
    root = tmp_path / "catalog" / "Tops" / "p1"
    root.mkdir(parents=True)
    make_product((1, 2, 3)).save(root / "a.png")
    db = tmp_path / "db.lance"
    SearchEngine.create(db, embedder=Component("test-pixels", {}), detector=Component("foreground", {})).index(
        load_catalog(folder=tmp_path / "catalog")
    )
    with TestClient(create_app(db)) as c:
        image_id = c.get("/api/products/p1").json()["images"][0]["image_id"]
        (root / "a.png").unlink()
        assert_error(c.get(f"/api/images/{image_id}/thumbnail"), 404, "image_file_missing")


# -- the service ----------------------------------------------------------------------------------


def test_page_docs_and_openapi_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and "<html" in page.text.lower()
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {
        "/api/search",
        "/api/search/product/{product_id}",
        "/api/categories",
        "/api/products/{product_id}",
        "/healthz",
        "/api/images/{image_id}",
        "/api/images/{image_id}/thumbnail",
    } <= set(paths)


def test_unknown_route_is_a_json_404(client):
    assert_error(client.get("/api/nothing-here"), 404, "not_found")


def test_an_unexpected_error_is_a_bare_500_logged_once(engine, monkeypatch, caplog):
    def explode(*args, **kwargs):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(engine.searcher, "search", explode)
    with TestClient(create_app(engine), raise_server_exceptions=False) as c, caplog.at_level(logging.WARNING):
        response = upload(c, RED)
    body = assert_error(response, 500, "internal_error")
    assert "secret" not in response.text and "RuntimeError" not in body["error"]["message"]
    logged = [r for r in caplog.records if r.exc_info]
    assert len(logged) == 1 and "secret internal detail" in str(logged[0].exc_info[1])


def test_every_client_error_is_logged_once(client, caplog):
    with caplog.at_level(logging.WARNING, logger="fashion_search.web"):
        upload(client, b"not an image")
    assert [r.getMessage() for r in caplog.records].count([r.getMessage() for r in caplog.records][0]) == 1 and len(
        caplog.records
    ) == 1
    assert "415" in caplog.records[0].getMessage()


def test_concurrent_searches_each_get_their_own_results(client):
    colours = {"red-1": (215, 25, 25), "blue-1": (25, 25, 215), "green-1": (20, 200, 20), "black-1": (10, 10, 10)}
    queries = [(pid, png(make_product(c, size=(90 + n, 110)))) for n in range(6) for pid, c in colours.items()]

    def one(query):
        pid, data = query
        response = upload(client, data, name=f"{pid}.png", k=2)
        assert response.status_code == 200
        body = response.json()
        return pid, body["query"], body["garments"][0]["results"][0]["product_id"]

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(one, queries))
    for pid, query, top in answers:
        assert query == f"{pid}.png"
        if pid != "green-1":  # striped: the tiny embedder ranks it less surely
            assert top == pid


def test_a_running_search_does_not_block_other_requests(engine, monkeypatch):
    started, release = threading.Event(), threading.Event()
    real_search = engine.searcher.search

    def held_search(*args, **kwargs):
        started.set()
        release.wait(60)
        return real_search(*args, **kwargs)

    monkeypatch.setattr(engine.searcher, "search", held_search)
    with TestClient(create_app(engine)) as c, ThreadPoolExecutor(2) as pool:
        pending = pool.submit(upload, c, RED)
        try:
            assert started.wait(20)
            # Answered while the search is still held: it did not wait for it.
            assert pool.submit(c.get, "/api/categories").result(timeout=20).status_code == 200
            assert not pending.done()
        finally:
            release.set()
        assert pending.result().status_code == 200


def test_a_wrong_method_is_a_405_that_names_the_allowed_ones(client):
    response = client.delete("/api/search")
    assert_error(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "POST"


def test_a_path_with_an_encoded_newline_cannot_forge_a_log_line(client, caplog):
    with caplog.at_level(logging.WARNING, logger="fashion_search.web"):
        client.get("/api/products/x%0AWARNING%20forged%20line")
    lines = [line for record in caplog.records for line in record.getMessage().splitlines()]
    assert len(lines) == len(caplog.records) == 1 and "\\nWARNING forged line" in lines[0]


def test_catalog_images_are_served_with_the_type_of_their_content_not_their_name(client, engine):
    result = upload(client, RED, k=1).json()["garments"][0]["results"][0]
    path = Path(engine.store.image_path(result["image_id"]))
    path.write_bytes(png(Image.new("RGB", (40, 50), (215, 25, 25))))  # a PNG, whatever its name
    served = client.get(result["image"])
    assert served.headers["content-type"] == "image/png" and served.headers["x-content-type-options"] == "nosniff"
    path.write_bytes(b"<html><script>alert(1)</script></html>")
    assert_error(client.get(result["image"]), 422, "corrupt_image")


@pytest.mark.parametrize(("budget_images", "most_at_once"), [(1, 1), (2, 2)])
def test_searches_in_flight_hold_at_most_the_decode_budget_of_pixels(engine, monkeypatch, budget_images, most_at_once):
    pixels = 100 * 120  # RED's
    running, peak, changed = 0, 0, threading.Lock()
    release = threading.Event()
    search = engine.searcher.search

    def counted_search(*args, **kwargs):
        nonlocal running, peak
        with changed:
            running += 1
            peak = max(peak, running)
        release.wait(60)
        try:
            return search(*args, **kwargs)
        finally:
            with changed:
                running -= 1

    monkeypatch.setattr(engine.searcher, "search", counted_search)
    settings = Settings(threads=4, decode_pixels=budget_images * pixels + pixels // 2)
    app = create_app(engine, settings)
    budget = app.state.pixel_budget
    with TestClient(app) as c, ThreadPoolExecutor(4) as pool:
        answers = [pool.submit(upload, c, RED) for _ in range(4)]
        try:
            # Every search has either taken its pixels and started, or waits for them.
            assert eventually(lambda: running + budget.waiting == 4 and running == most_at_once)
        finally:
            release.set()
        assert all(a.result().status_code == 200 for a in answers)
    assert peak == most_at_once


def test_a_client_that_sends_its_body_too_slowly_gets_a_408(engine):
    import asyncio

    import httpx

    app = create_app(engine, Settings(max_upload_bytes=200_000, body_timeout_s=0.5))
    body_ended = False

    async def stalled_body():
        nonlocal body_ended
        yield b'--b\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\n'
        await asyncio.Event().wait()  # the rest never comes
        body_ended = True
        yield b"x\r\n--b--\r\n"

    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            headers = {"content-type": "multipart/form-data; boundary=b"}
            request = client.post("/api/search", content=stalled_body(), headers=headers)
            return await asyncio.wait_for(request, 30)  # a server that waited for the body would hang

    response = asyncio.run(send())
    assert response.status_code == 408 and response.json()["error"]["code"] == "request_timeout"
    assert not body_ended  # answered at the deadline, with the body still unsent
