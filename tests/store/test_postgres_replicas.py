"""Stateless serving replicas: two ``fashion-search serve`` processes over one PostgreSQL store
answer alike, and see another process's index runs without a restart."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from fashion_search import SearchEngine, load_catalog
from fashion_search.pipeline import Component
from tests.helpers import make_product, start_serving
from tests.store.conftest import pg_uri
from tests.store.pg_server import PostgresServer

PIXELS, FOREGROUND = Component("test-pixels", {}), Component("foreground", {})
TTL_S = 1.0  # how often the replicas re-read the index's manifest and category list


@pytest.fixture
def index_uri(pg_server: PostgresServer, tiny_catalog: Path) -> str:
    uri = pg_uri(pg_server, table="replicas")
    SearchEngine.create(uri, embedder=PIXELS, detector=FOREGROUND).index(load_catalog(folder=tiny_catalog))
    return uri


@pytest.fixture
def replicas(index_uri: str) -> Iterator[list[str]]:
    env = {**os.environ, "FASHION_SEARCH_CATEGORIES_TTL_S": str(TTL_S)}
    procs, urls = [], []
    try:
        for _ in range(2):
            proc, url = start_serving(index_uri, "--no-access-log", env=env, stderr=subprocess.PIPE)
            procs.append(proc)
            urls.append(url)
        yield urls
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def _search(url: str, photo: bytes) -> list:
    reply = httpx.post(f"{url}/api/search", files={"image": ("q.jpg", photo, "image/jpeg")}, timeout=30)
    assert reply.status_code == 200, reply.text
    return [[(p["product_id"], round(p["score"], 5)) for p in g["results"]] for g in reply.json()["garments"]]


def _categories(url: str) -> set[str]:
    return {c["name"] for c in httpx.get(f"{url}/api/categories").json()["categories"]}


def _health_status(url: str) -> int:
    return httpx.get(f"{url}/healthz").status_code


def _eventually(check, seconds: float = 10 * TTL_S) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "not visible in time"
        time.sleep(0.1)


def test_replicas_answer_alike_and_see_index_runs_without_a_restart(replicas, index_uri, tiny_catalog, tmp_path):
    photo_path = tmp_path / "query.jpg"
    make_product((215, 25, 25)).save(photo_path)
    photo = photo_path.read_bytes()
    first = _search(replicas[0], photo)
    assert first and first == _search(replicas[1], photo)

    # Another process (here, this test) adds a product of a new category...
    folder = tiny_catalog / "Dresses" / "purple-1"
    folder.mkdir(parents=True)
    make_product((150, 20, 160), shape="stripes").save(folder / "front.jpg")
    engine = SearchEngine.open(index_uri)
    report = engine.index(load_catalog(folder=tiny_catalog))
    assert report.indexed == 1
    # ...which every replica serves at once (rows are read live from the store)...
    for url in replicas:
        assert httpx.get(f"{url}/api/products/purple-1").status_code == 200
    # ...and whose category each lists within the re-read interval.
    for url in replicas:
        _eventually(lambda url=url: "Dresses" in _categories(url))
    assert _search(replicas[0], photo) == _search(replicas[1], photo)

    # A removed product is gone from every replica as soon as the run ends.
    for image in (tiny_catalog / "Tops" / "blue-1").iterdir():
        image.unlink()
    assert engine.index(load_catalog(folder=tiny_catalog)).removed == 1
    for url in replicas:
        assert httpx.get(f"{url}/api/products/blue-1").status_code == 404
        assert "blue-1" not in {p for g in _search(url, photo) for p, _ in g}


def test_replicas_report_an_index_rebuilt_with_other_models(replicas, index_uri, tiny_catalog, tmp_path):
    other = Component("test-pixels", {"size": 4})
    rebuilt = SearchEngine.create(index_uri, embedder=other, detector=FOREGROUND, rebuild=True)
    rebuilt.index(load_catalog(folder=tiny_catalog))
    photo_path = tmp_path / "query.jpg"
    make_product((215, 25, 25)).save(photo_path)
    for url in replicas:
        _eventually(lambda url=url: _health_status(url) == 503)
        health = httpx.get(f"{url}/healthz").json()
        assert health["index_models_changed"] is True
        reply = httpx.post(
            f"{url}/api/search", files={"image": ("q.jpg", photo_path.read_bytes(), "image/jpeg")}, timeout=30
        )
        assert reply.status_code == 503 and reply.json()["error"]["code"] == "index_models_changed"
