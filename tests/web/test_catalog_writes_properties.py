"""Property-based tests of what schemathesis cannot generate: the contents of a write's
``metadata`` and of a bulk write's ``products`` JSON, and the file names they refer to."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fashion_search import SearchEngine, load_catalog
from fashion_search.catalog.validation import MAX_EXACT_INTEGER, WriteRequestError, check_product_fields, parse_json
from fashion_search.errors import CatalogError
from fashion_search.pipeline import Component
from fashion_search.store.filters import MetadataColumns
from fashion_search.web import Settings, create_app
from tests.helpers import make_product

KEY = "k3y-0123456789abcdef-secret"
AUTH = {"Authorization": f"Bearer {KEY}"}

# Text as JSON can carry it: with lone surrogates ("\ud800" decodes to one) besides the rest.
surrogates = st.text(alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=3)
texts = st.one_of(st.text(max_size=12), surrogates, st.text(max_size=3).map(lambda t: t + "\ud83d"))
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    texts,
)
values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3), max_leaves=12
)
metadata_values = st.one_of(st.dictionaries(texts, values, max_size=6), values)


@settings(max_examples=400, deadline=None)
@given(metadata=metadata_values)
def test_metadata_that_passes_the_check_is_storable_and_counted_back_exactly(metadata):
    try:
        checked = check_product_fields("p-1", "Tops", metadata)
    except CatalogError:
        return
    json.dumps(checked, ensure_ascii=False).encode("utf-8")  # every store holds it as UTF-8 JSON
    for value in checked.values():
        if isinstance(value, float):
            assert math.isfinite(value)
        elif isinstance(value, int) and not isinstance(value, bool):
            assert abs(value) <= MAX_EXACT_INTEGER
    once, twice = MetadataColumns.learn([checked]), MetadataColumns.learn([checked, checked])
    assert twice.updated(removed=[checked]).to_dict() == once.to_dict()
    assert once.updated(removed=[checked]).columns == {}


nested = st.integers(min_value=0, max_value=200).map(lambda n: "[" * n + "]" * n)
json_texts = st.one_of(st.text(max_size=60), nested, metadata_values.map(json.dumps), st.binary(max_size=40))


@settings(max_examples=400, deadline=None)
@given(text=json_texts)
def test_request_json_is_parsed_or_refused_with_a_write_request_error(text):
    try:
        parse_json(text, "metadata")
    except WriteRequestError:
        pass


def png(colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    make_product(colour, size=(60, 80)).save(out, "PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    root = tmp_path_factory.mktemp("properties")
    catalog = root / "catalog" / "Tops" / "seed-1"
    catalog.mkdir(parents=True)
    make_product((200, 30, 30)).save(catalog / "view.png")
    db = root / "db.lance"
    SearchEngine.create(db, Component("test-pixels"), Component("foreground")).index(
        load_catalog(folder=root / "catalog")
    )
    engine = SearchEngine.open(db)
    app = create_app(engine, Settings(max_upload_bytes=200_000, api_key=KEY))
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c
    engine.close()


FILES = {"f1": png((30, 30, 200)), "f2": png((30, 200, 30)), "tiny": b"not an image"}
file_names = st.sampled_from([*FILES, "missing", "f1\n", ""])
# Mostly products that may well pass (to see 2xx answers stored as sent), with arbitrary ones
# among them.
plain_metadata = st.dictionaries(
    st.sampled_from(["brand", "price", "size", "colour name"]),
    st.one_of(st.text(max_size=8), st.integers(-(2**53), 2**53), st.floats(allow_nan=False, allow_infinity=False)),
    max_size=3,
)
likely_entries = st.fixed_dictionaries(
    {
        "product_id": st.sampled_from(["p-1", "p-2", "ünï-3", "with space", "a/b?c#d"]),
        "category": st.sampled_from(["Tops", "Skirts"]),
        "metadata": st.one_of(st.none(), plain_metadata, metadata_values),
        "images": st.lists(st.sampled_from(["f1", "f2", "tiny", "missing"]), min_size=1, max_size=3),
    }
)
entries = st.one_of(
    likely_entries,
    likely_entries,
    st.fixed_dictionaries(
        {
            "product_id": st.one_of(texts, st.integers(), st.none()),
            "category": st.one_of(st.sampled_from(["Tops", "Skirts"]), texts, st.none()),
            "metadata": st.one_of(st.none(), metadata_values),
            "images": st.one_of(st.lists(file_names, max_size=3), texts, st.none()),
        }
    ),
    values,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(listing=st.lists(entries, min_size=1, max_size=4))
def test_every_product_of_a_bulk_write_gets_a_status_and_a_2xx_one_is_stored_as_sent(client, listing):
    response = client.post(
        "/api/products",
        data={"products": json.dumps(listing)},
        files={name: (f"{name}.png", data) for name, data in FILES.items()},
        headers=AUTH,
    )
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert len(results) == len(listing)
    written: dict[str, dict] = {}
    for entry, result in zip(listing, results):
        assert result["status"] in (200, 201, 413, 422), result
        if result["status"] < 300:
            written[entry["product_id"]] = entry  # a later entry of one id replaces an earlier
    for product_id, entry in written.items():
        got = client.get("/api/products/" + _quoted(product_id))
        assert got.status_code == 200, got.text
        assert got.json()["metadata"] == (entry["metadata"] or {})
        assert got.json()["category"] == entry["category"]


def _quoted(product_id: str) -> str:
    from urllib.parse import quote

    return quote(product_id, safe="")


def test_the_property_files_are_what_they_claim(tmp_path: Path):
    # The bulk test's names point at two real photos and one file that is not an image.
    assert FILES["f1"][:4] == b"\x89PNG" and FILES["tiny"] == b"not an image"
