#!/usr/bin/env python
"""Try each class of bad catalog write against a fresh index and say what happened to each input:
the HTTP status, and whether the product was committed anyway. A write "lies" when it answers
5xx (or 4xx) with the product stored, or 2xx without it.

    python scripts/probe_catalog_writes.py [--json OUT.json]

It builds a small index with the tests' stand-in models, serves it in-process (Starlette's test
client) and writes through the HTTP API only, so it runs against any version of fashion-search
that has the catalog write routes (docs/experiments/2026-12-06-catalog-writes-never-lie.md).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import tests.helpers  # noqa: E402  (registers the stand-in models)
from fashion_search import SearchEngine, load_catalog  # noqa: E402
from fashion_search.pipeline import Component  # noqa: E402

KEY = "probe-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}

SINGLE = {
    "deep array": '{"a": ' + "[" * 5000 + "]" * 5000 + "}",
    "deep object": '{"a": ' + '{"b": ' * 3000 + "1" + "}" * 3000 + "}",
    "integer of 400 digits": '{"price": ' + "9" * 400 + "}",
    "integer beyond 2^53": '{"price": 9007199254740993}',
    "integer of 5000 digits": '{"price": ' + "9" * 5000 + "}",
    "1e400": '{"price": 1e400}',
    "lone surrogate in a value": '{"brand": "\\ud800"}',
    "lone surrogate in a name": '{"\\udfff": "x"}',
    "a list for metadata": '["brand", "Nike"]',
    "an object as a value": '{"brand": {"name": "Nike"}}',
}
BULK = {
    "product_id a number": {"product_id": 7, "category": "Tops", "images": ["f"]},
    "product_id a list": {"product_id": ["a"], "category": "Tops", "images": ["f"]},
    "images a text": {"product_id": "b-1", "category": "Tops", "images": "f"},
    "images of numbers": {"product_id": "b-2", "category": "Tops", "images": [1]},
    "metadata a text": {"product_id": "b-3", "category": "Tops", "metadata": "brand", "images": ["f"]},
    "integer beyond any float": {"product_id": "b-4", "category": "Tops", "metadata": {"p": 10**400}, "images": ["f"]},
    "lone surrogate in the id": {"product_id": "b-\ud800", "category": "Tops", "images": ["f"]},
}


def png(colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    tests.helpers.make_product(colour, size=(60, 80)).save(out, "PNG")
    return out.getvalue()


def client_for(folder: Path) -> Any:
    from fastapi.testclient import TestClient

    from fashion_search.web import Settings, create_app

    catalog = folder / "catalog" / "Tops" / "seed-1"
    catalog.mkdir(parents=True)
    tests.helpers.make_product((200, 30, 30)).save(catalog / "view.png")
    db = folder / "db.lance"
    SearchEngine.create(db, Component("test-pixels"), Component("foreground")).index(
        load_catalog(folder=folder / "catalog")
    )
    return TestClient(create_app(SearchEngine.open(db), Settings(api_key=KEY)), raise_server_exceptions=False)


def stored(client: Any, product_id: str) -> bool:
    from urllib.parse import quote

    return client.get("/api/products/" + quote(product_id.encode("utf-8", "surrogatepass"), safe="")).status_code == 200


def outcome(status: int, committed: bool) -> str:
    if status >= 500:
        return "500, committed anyway" if committed else "500, nothing written"
    if status >= 300:
        return f"{status}, committed anyway" if committed else f"{status}, nothing written"
    return f"{status}, stored" if committed else f"{status}, NOT stored"


def probe(client: Any) -> list[dict[str, Any]]:
    rows = []
    image = png((30, 30, 200))
    for n, (name, metadata) in enumerate(SINGLE.items()):
        product_id = f"single-{n}"
        response = client.put(
            f"/api/products/{product_id}",
            files={"images": ("a.png", image)},
            data={"category": "Tops", "metadata": metadata},
            headers=AUTH,
        )
        rows.append(
            {
                "class": "JSON in a single write",
                "input": name,
                "status": response.status_code,
                "result": outcome(response.status_code, stored(client, product_id)),
            }
        )
    for name, entry in BULK.items():
        response = client.post(
            "/api/products", data={"products": json.dumps([entry])}, files={"f": ("a.png", image)}, headers=AUTH
        )
        try:
            statuses = [r["status"] for r in response.json()["results"]]
        except (ValueError, KeyError, TypeError):
            statuses = []
        product_id = entry["product_id"] if isinstance(entry["product_id"], str) else ""
        committed = bool(product_id) and stored(client, product_id)
        shown = f"{response.status_code}, statuses {statuses}" if statuses else f"{response.status_code}, no statuses"
        rows.append(
            {
                "class": "JSON in a bulk write",
                "input": name,
                "status": response.status_code,
                "result": shown + (", committed" if committed else ""),
            }
        )

    listing = [
        {"product_id": "twin-1", "category": "Tops", "images": ["shared"]},
        {"product_id": "twin-2", "category": "Tops", "images": ["shared", "shared"]},
    ]
    response = client.post(
        "/api/products", data={"products": json.dumps(listing)}, files={"shared": ("s.png", image)}, headers=AUTH
    )
    results = response.json().get("results", []) if response.status_code == 200 else []
    rows.append(
        {
            "class": "one file named twice",
            "input": "by two products, twice by one",
            "status": response.status_code,
            "result": ", ".join(
                f"{r.get('product_id')}: {r['status']}" + (f" {r['error']['code']}" if r.get("error") else "")
                for r in results
            ),
        }
    )

    for raw in ("%FF", "x%C3", "%ED%A0%80"):
        put = client.put(
            f"/api/products/{raw}", files={"images": ("a.png", image)}, data={"category": "Tops"}, headers=AUTH
        )
        got = client.get(f"/api/products/{raw}")
        rows.append(
            {
                "class": "ids not UTF-8",
                "input": raw,
                "status": put.status_code,
                "result": f"PUT {put.status_code}, then GET {got.status_code}",
            }
        )

    client.put(
        "/api/products/facet-1",
        files={"images": ("a.png", image)},
        data={"category": "Tops", "metadata": '{"shade": "Sun"}'},
        headers=AUTH,
    )
    client.put(
        "/api/products/facet-1",
        files={"images": ("a.png", image)},
        data={"category": "Tops", "metadata": '{"shade": "Moon"}'},
        headers=AUTH,
    )
    column = next((c for c in client.get("/api/filters").json()["columns"] if c["name"] == "shade"), None)
    rows.append(
        {
            "class": "stale facets",
            "input": "a product replaced",
            "status": 200,
            "result": f"shade: {column and (column['values'], column['products'])}",
        }
    )
    client.delete("/api/products/facet-1", headers=AUTH)
    column = next((c for c in client.get("/api/filters").json()["columns"] if c["name"] == "shade"), None)
    rows.append(
        {
            "class": "stale facets",
            "input": "then deleted",
            "status": 200,
            "result": f"shade: {column and (column['values'], column['products'])}",
        }
    )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="also write the rows as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        rows = probe(client_for(Path(folder)))
    print("| class | input | outcome |\n|---|---|---|")
    for row in rows:
        print(f"| {row['class']} | {row['input']} | {row['result']} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
