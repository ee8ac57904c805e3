"""Search by words: alone, with a photo, in batches, over the CLI and the HTTP API; the shipped
text encoder and what it refuses."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from fashion_search import SearchEngine, load_catalog
from fashion_search.cli import main
from fashion_search.errors import ModelError, TextSearchError, UsageError
from fashion_search.pipeline import Component
from fashion_search.web import create_app
from tests.helpers import make_product

WORDS = ["--text-encoder", "test-words"]


@pytest.fixture
def db(tiny_catalog: Path, tmp_path: Path) -> Path:
    path = tmp_path / "db.lance"
    SearchEngine.create(path, Component("test-pixels"), Component("foreground")).index(
        load_catalog(folder=tiny_catalog)
    )
    return path


@pytest.fixture
def engine(db: Path):
    engine = SearchEngine.open(db, text_encoder=Component("test-words"))
    yield engine
    engine.close()


def png(colour) -> bytes:
    out = io.BytesIO()
    make_product(colour).save(out, "PNG")
    return out.getvalue()


def test_words_alone_find_the_products_they_describe(engine):
    result = engine.search(text="red", k=3)
    assert result.garments == [] and result.results[0].product_id == "red-1"
    assert result.to_dict()["query"] == {"image": None, "text": "red"} and "garments" not in result.to_dict()
    assert set(result.timings_ms) == {"text", "lookup", "total"}
    assert engine.search(text="blue", k=1).results[0].product_id == "blue-1"


def test_words_with_a_photo_move_each_garment_toward_what_they_say(engine, tmp_path):
    photo = tmp_path / "black.png"
    make_product((10, 10, 10)).save(photo)
    alone = {r.product_id: r.score for r in engine.search(photo, k=4).garments[0].results}
    with_words = engine.search(photo, k=4, text="red")
    scores = {r.product_id: r.score for r in with_words.garments[0].results}
    assert scores["red-1"] > alone["red-1"] and scores["black-1"] < alone["black-1"]
    assert with_words.to_dict()["query"] == {"image": str(photo), "text": "red"}


def test_a_search_needs_a_photo_or_words(engine):
    with pytest.raises(UsageError, match="a photo, words, or both"):
        engine.search()
    with pytest.raises(UsageError, match="needs words"):
        engine.search(text="   ")


def test_search_text_on_the_command_line_prints_results(db, capsys):
    assert main(["search", "--db", str(db), "--text", "blue", "-k", "2", "--json", *WORDS]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["query"] == {"image": None, "text": "blue"} and answer["results"][0]["product_id"] == "blue-1"
    assert main(["search", "--db", str(db), "--text", "blue", "-k", "2", *WORDS]) == 0
    assert "blue-1" in capsys.readouterr().out


def test_a_queries_file_is_answered_line_by_line_in_order_with_each_query_echoed(db, tmp_path, capsys):
    folder = tmp_path / "queries"
    folder.mkdir()
    make_product((20, 20, 220)).save(folder / "blue.png")
    lines = [
        '{"text": "red"}',
        '{"image": "blue.png"}',
        '{"image": "blue.png", "text": "red"}',
        "not json",
        '{"image": 5}',
        '{"image": "missing.png"}',
        "",
        '{"text": "black"}',
    ]
    (folder / "q.jsonl").write_text("\n".join(lines) + "\n")
    assert main(["search", "--db", str(db), "--queries", str(folder / "q.jsonl"), *WORDS]) == 1
    answers = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(answers) == 7
    assert answers[0]["query"] == {"image": None, "text": "red"} and answers[0]["results"][0]["product_id"] == "red-1"
    assert answers[1]["query"] == {"image": "blue.png", "text": None} and "garments" in answers[1]
    assert answers[2]["query"] == {"image": "blue.png", "text": "red"} and "garments" in answers[2]
    assert answers[3] == {"query": "not json", "error": "line 4 is not JSON"}
    assert answers[4]["query"] == {"image": 5} and "path" in answers[4]["error"]
    assert answers[5]["query"] == {"image": "missing.png", "text": None} and "error" in answers[5]
    assert answers[6]["results"][0]["product_id"] == "black-1"


def test_photos_or_words_are_needed_and_queries_files_take_neither(db, tmp_path, capsys):
    assert main(["search", "--db", str(db)]) == 2
    assert "needs photos, --text WORDS, or --queries" in capsys.readouterr().err
    assert main(["search", "x.png", "--db", str(db), "--queries", str(tmp_path / "q.jsonl")]) == 2
    assert "--queries takes photos and words from its file" in capsys.readouterr().err


def test_the_api_searches_words_alone_and_with_a_photo(engine):
    with TestClient(create_app(engine)) as client:
        words = client.post("/api/search?k=2", data={"text": "blue"})
        assert words.status_code == 200, words.text
        body = words.json()
        assert body["query"] == {"image": None, "text": "blue"} and body["results"][0]["product_id"] == "blue-1"
        assert body["results"][0]["thumbnail"].startswith("/api/images/")
        both = client.post("/api/search?k=2", data={"text": "red"}, files={"image": ("b.png", png((20, 20, 220)))})
        assert both.status_code == 200 and both.json()["query"] == {"image": "b.png", "text": "red"}
        assert both.json()["garments"][0]["results"]
        for bad in ({}, {"text": "  "}):
            refused = client.post("/api/search", data=bad)
            assert refused.status_code == 422 and refused.json()["error"]["code"] == "invalid_request"
        too_long = client.post("/api/search", data={"text": "red " * 200})
        assert too_long.status_code == 422


def test_words_in_an_index_of_another_embedder_are_refused_in_one_line(db, capsys):
    # The shipped text encoder maps words into the garment head's space, not test-pixels'.
    assert main(["search", "--db", str(db), "--text", "red dress"]) == 2
    err = capsys.readouterr().err
    assert "other than the one this text encoder was trained for" in err and err.count("\n") == 1
    with TestClient(create_app(SearchEngine.open(db))) as client:
        refused = client.post("/api/search", data={"text": "red dress"})
        assert refused.status_code == 422 and refused.json()["error"]["code"] == "text_search_unavailable"


def test_the_shipped_text_encoder_maps_words_into_the_shipped_heads_space():
    from fashion_search.embed import create_embedder
    from fashion_search.embed.text_encoder import TextEncoder

    encoder = TextEncoder()
    head = create_embedder("garment-head")
    assert encoder.dim == head.dim and encoder.embedder_sha256 == head.identity()["sha256"]
    encoder.check_embedder(head.identity(), "here")
    vectors = encoder.encode(["red floral dress", "Quechua Men Sweat Proof Blue T-shirt"] * 20)
    assert vectors.shape == (40, head.dim) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    assert np.allclose(vectors[0], vectors[2]) and not np.allclose(vectors[0], vectors[1])
    with pytest.raises(TextSearchError):
        encoder.check_embedder({"sha256": "0" * 64}, "there")


def test_a_tokenizer_that_is_not_the_models_is_refused(tmp_path):
    from fashion_search.embed.text_encoder import DEFAULT_MODEL, DEFAULT_TOKENIZER, TextEncoder

    shutil.copy(DEFAULT_MODEL, tmp_path / "model.onnx")
    edited = json.loads(DEFAULT_TOKENIZER.read_text())
    edited["truncation"] = None
    (tmp_path / "tokenizer.json").write_text(json.dumps(edited))
    with pytest.raises(ModelError, match="do not belong together"):
        TextEncoder(tmp_path / "model.onnx", tmp_path / "tokenizer.json")


def test_the_shipped_models_find_products_by_words_and_evaluation_measures_it(shared_data, tmp_path):
    import csv

    from fashion_search.catalog import CsvColumns
    from fashion_search.evaluation_text import evaluate_text

    wanted = {"Watches": 12, "Tshirts": 12, "Handbags": 12, "Casual Shoes": 12}
    rows = []
    with open(shared_data / "kaggle" / "labels.csv", newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if wanted.get(row["articleType"], 0) > 0:
                wanted[row["articleType"]] -= 1
                rows.append(row)
    catalog = tmp_path / "catalog.csv"
    with open(catalog, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image", "product_id", "articleType", "baseColour", "productDisplayName"])
        for row in rows:
            writer.writerow(
                [
                    shared_data / "kaggle" / row["image"],
                    row["id"],
                    row["articleType"],
                    row["baseColour"],
                    row["productDisplayName"],
                ]
            )
    engine = SearchEngine.create(tmp_path / "db.lance")
    engine.index(load_catalog(csv_path=catalog, columns=CsvColumns(category="articleType")))
    by_id = {row["id"]: row for row in rows}
    for words, article_type in (
        ("wrist watch", "Watches"),
        ("leather handbag for women", "Handbags"),
        ("t-shirt", "Tshirts"),
    ):
        found = engine.search(text=words, k=5).results
        assert sum(by_id[r.product_id]["articleType"] == article_type for r in found) >= 4, (words, found)
    report = evaluate_text(engine.searcher)
    assert report.figures["gallery_products"] == len(rows) and report.figures["names"]["queries"] > 30
    assert 0 < report.figures["names"]["R@10"] <= 1
