"""What a user installs is what serves: the wheel holds no tests, and searching or serving never
imports training code or torch."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # builds a wheel
def test_the_wheel_holds_the_package_and_its_models_but_no_tests(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True,
        timeout=300,
    )
    [wheel] = tmp_path.glob("fashion_search-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert not [n for n in names if Path(n).name.startswith("test_") or n.startswith("tests/")]
    for shipped in (
        "fashion_search/garments/models/garment_parser.onnx",
        "fashion_search/garments/models/GARMENT_PARSER.md",
        "fashion_search/garments/models/garment_parser.recipe.toml",
        "fashion_search/garments/models/garment_parser.pretrain.recipe.toml",
        "fashion_search/embed/models/efficientnet_lite2_features.onnx",
        "fashion_search/embed/models/garment_head.onnx",
        "fashion_search/embed/models/GARMENT_HEAD.md",
        "fashion_search/embed/models/garment_head.recipe.toml",
        "fashion_search/embed/models/text_encoder.onnx",
        "fashion_search/embed/models/text_tokenizer.json",
        "fashion_search/embed/models/text_encoder.recipe.toml",
        "fashion_search/embed/models/TEXT_ENCODER.md",
        "fashion_search/web/static/index.html",
    ):
        assert shipped in names


SERVE_AND_SEARCH = """
import sys
from fashion_search.cli import main
from fashion_search.web import create_app
from tests.helpers import make_product
root = sys.argv[1]
make_product((200, 20, 20)).save(root + "/q.jpg")
import os
os.makedirs(root + "/catalog/Tops/p1")
make_product((200, 30, 30)).save(root + "/catalog/Tops/p1/a.jpg")
assert main(["index", root + "/catalog", "--db", root + "/db"]) == 0
assert main(["search", root + "/q.jpg", "--db", root + "/db"]) == 0
create_app(root + "/db")
loaded = sorted(m for m in sys.modules if m.startswith("fashion_search.training") or m.split(".")[0] == "torch")
print("LOADED", loaded)
# The read side never imports the Ray runner, nor Ray.
ray = sorted(m for m in sys.modules if m == "fashion_search.indexing_ray" or m.split(".")[0] == "ray")
print("RAY", ray)
"""


def test_indexing_searching_and_serving_load_no_training_code_nor_torch(tmp_path):
    run = subprocess.run(
        [sys.executable, "-c", SERVE_AND_SEARCH, str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr
    assert "LOADED []" in run.stdout and "RAY []" in run.stdout
