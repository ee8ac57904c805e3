"""Crash safety of catalog writes: the server is killed (SIGKILL) in the middle of a product write
and of a bulk write; after a restart the index holds whole products only (the old version or
the new one), and the retried write completes."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from fashion_search import SearchEngine, load_catalog
from fashion_search.pipeline import Component
from tests.helpers import make_product, start_serving

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]  # crash tests: processes killed mid-write
KEY = "crash-test-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}


def jpeg(seed: int) -> bytes:
    out = io.BytesIO()
    make_product(((seed * 53) % 256, (seed * 97) % 256, (seed * 31) % 256), size=(1200, 1500)).save(out, "JPEG")
    return out.getvalue()


class Server:
    """A ``serve`` process with catalog writes on, over ``db``."""

    def __init__(self, db: Path, key_file: Path) -> None:
        self.process, self.url = start_serving(
            str(db),
            "--api-key-file",
            str(key_file),
            "--no-access-log",
            env={"FASHION_SEARCH_THREADS": "1"},
        )

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def index(tiny_catalog: Path, tmp_path: Path) -> tuple[Path, Path]:
    db = tmp_path / "db.lance"
    SearchEngine.create(db, embedder=Component("test-pixels", {}), detector=Component("foreground", {})).index(
        load_catalog(folder=tiny_catalog)
    )
    key_file = tmp_path / "api.key"
    key_file.write_text(KEY + "\n")
    return db, key_file


def stored_products(db: Path) -> dict[str, tuple[int, set[str]]]:
    """Product id -> (its stored images, the categories its rows carry), read from disk."""
    found: dict[str, tuple[set[str], set[str]]] = {}
    for row in SearchEngine.open(db).store.iter_rows(with_vectors=False):
        images, categories = found.setdefault(row["product_id"], (set(), set()))
        images.add(row["image_id"])
        categories.add(row["category"])
    return {p: (len(images), categories) for p, (images, categories) in found.items()}


def send_then_kill(server: Server, request, delay: float) -> None:
    """Start ``request(client)`` and SIGKILL the server ``delay`` seconds later, mid-request."""

    def call() -> None:
        try:
            with httpx.Client(base_url=server.url, timeout=60, headers=AUTH) as client:
                request(client)
        except httpx.HTTPError:
            pass  # the connection dies with the server

    thread = threading.Thread(target=call)
    thread.start()
    time.sleep(delay)
    server.kill()
    thread.join(60)


@pytest.mark.parametrize("delay", [0.2, 0.6, 1.5])
def test_a_product_killed_mid_write_is_the_old_version_or_the_new_one_and_a_retry_completes(index, delay):
    db, key_file = index
    server = Server(db, key_file)
    try:
        old = [("images", (f"{n}.jpg", jpeg(n), "image/jpeg")) for n in range(2)]
        response = httpx.put(f"{server.url}/api/products/P-1", files=old, data={"category": "Tops"}, headers=AUTH)
        assert response.status_code == 201
        new = [("images", (f"{n}.jpg", jpeg(10 + n), "image/jpeg")) for n in range(8)]
        send_then_kill(server, lambda c: c.put("/api/products/P-1", files=new, data={"category": "Skirts"}), delay)
    finally:
        server.stop()
    outcome = stored_products(db)["P-1"]
    assert outcome in [(2, {"Tops"}), (8, {"Skirts"})]
    print(f"killed {delay} s into the write: the index holds the {'new' if outcome[0] == 8 else 'old'} product")
    server = Server(db, key_file)
    try:
        response = httpx.put(f"{server.url}/api/products/P-1", files=new, data={"category": "Skirts"}, headers=AUTH)
        assert response.status_code == 200 and response.json()["images"] == 8
        assert httpx.get(f"{server.url}/api/products/red-1").status_code == 200  # the rest is intact
    finally:
        server.stop()
    assert stored_products(db)["P-1"] == (8, {"Skirts"})


@pytest.mark.parametrize("delay", [0.5, 1.5])
def test_a_bulk_write_killed_midway_leaves_whole_products_and_a_retry_writes_them_all(index, delay):
    db, key_file = index
    listing = [
        {"product_id": f"B-{n}", "category": "Tops", "images": [f"f{n}-{m}" for m in range(3)]} for n in range(8)
    ]
    files = [(f"f{n}-{m}", (f"{m}.jpg", jpeg(n * 3 + m), "image/jpeg")) for n in range(8) for m in range(3)]

    def bulk(client: httpx.Client) -> httpx.Response:
        return client.post("/api/products", data={"products": json.dumps(listing)}, files=files)

    server = Server(db, key_file)
    try:
        send_then_kill(server, bulk, delay)
    finally:
        server.stop()
    products = stored_products(db)
    written = {p: products[p] for p in products if p.startswith("B-")}
    assert all(value == (3, {"Tops"}) for value in written.values()), written
    print(f"killed {delay} s into the bulk write: {len(written)} of 8 products written, each whole")
    server = Server(db, key_file)
    try:
        with httpx.Client(base_url=server.url, timeout=120, headers=AUTH) as client:
            results = bulk(client).json()["results"]
        assert [r["status"] for r in results].count(201) == 8 - len(written)
        assert all(r["status"] in (200, 201) for r in results)
    finally:
        server.stop()
    assert {p: v for p, v in stored_products(db).items() if p.startswith("B-")} == {
        f"B-{n}": (3, {"Tops"}) for n in range(8)
    }
