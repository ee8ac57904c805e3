"""Catalog writes from several processes to one index (replicas of a server taking writes): what
each write teaches the index's record survives the others'."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fashion_search.index_record import read_record
from fashion_search.store import open_store
from tests.store.conftest import pg_uri

ROOT = Path(__file__).resolve().parents[2]
PRODUCTS_EACH = 12

# One writer process: PRODUCTS_EACH products of its own category, each with a metadata column
# of its own, written one after the other through the write side with the stand-in models.
WRITER = """
import io, sys
from PIL import Image
import tests.helpers
from fashion_search.catalog.uploads import UploadFolder
from fashion_search.pipeline import Component
from fashion_search.writer import CatalogWriter

uri, category, colour, uploads, count = sys.argv[1], sys.argv[2], tuple(map(int, sys.argv[3].split(","))), sys.argv[4], int(sys.argv[5])
writer = CatalogWriter.create(uri, Component("test-pixels"), Component("test-colour-garments"))
for n in range(count):
    image = tests.helpers.make_product(tuple(max(0, c - n) for c in colour))
    data = io.BytesIO()
    image.save(data, "PNG")
    writer.put_product(f"{category}-{n}", [data.getvalue()], category, {f"{category}_size": n}, UploadFolder(uploads))
"""


@pytest.fixture
def index_uri(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if backend == "postgres":
        return pg_uri(request.getfixturevalue("pg_server"))
    return f"lancedb://{tmp_path / 'shared.lance'}"


def test_two_processes_writing_products_of_different_categories_keep_both_in_the_record(
    index_uri: str, tmp_path: Path
) -> None:
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, index_uri, category, colour, str(tmp_path / "uploads"), str(PRODUCTS_EACH)],
            cwd=ROOT,
            stderr=subprocess.PIPE,
        )
        for category, colour in (("Skirts", "220,20,20"), ("Tops", "20,20,220"))
    ]
    for writer in writers:
        assert writer.wait(timeout=600) == 0, writer.stderr.read().decode()[-3000:]

    store = open_store(index_uri)
    record = read_record(store)
    assert record is not None
    # Every product's vote counted, whichever process wrote it, and both processes' columns.
    assert record.classes.images == {"Skirts": PRODUCTS_EACH, "Tops": PRODUCTS_EACH}
    assert record.classes.main_class("Skirts") == "skirt" and record.classes.main_class("Tops") == "top"
    assert set(record.columns.columns) == {"Skirts_size", "Tops_size"}
    assert all(record.columns.columns[c].products == PRODUCTS_EACH for c in ("Skirts_size", "Tops_size"))
    assert store.categories() == {"Skirts": PRODUCTS_EACH, "Tops": PRODUCTS_EACH}
