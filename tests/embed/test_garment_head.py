"""The garment head embedder: backbone features and colour through a trained head, checked
against the backbone it was trained on."""

import numpy as np
import pytest
from PIL import Image

from fashion_search.embed import create_embedder
from fashion_search.embed.garment_head import (
    DEFAULT_HEAD_PATH,
    HEAD_INPUT,
    HEAD_OUTPUT,
    GarmentHeadEmbedder,
    HeadInputs,
)
from fashion_search.embed.onnx_cnn import DEFAULT_MODEL_PATH
from fashion_search.errors import ModelError, ModelNotFoundError
from fashion_search.runtime import sha256_file


def write_head(path, in_dim: int, out_dim: int, backbone_sha256: str, colour_weight: float = 0.5, seed: int = 0):
    """A linear head as an ONNX file, with the metadata the exporter writes."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    weight = np.random.default_rng(seed).standard_normal((in_dim, out_dim)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", [HEAD_INPUT, "w"], [HEAD_OUTPUT])],
        "head",
        [helper.make_tensor_value_info(HEAD_INPUT, TensorProto.FLOAT, ["batch", in_dim])],
        [helper.make_tensor_value_info(HEAD_OUTPUT, TensorProto.FLOAT, ["batch", out_dim])],
        [numpy_helper.from_array(weight, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    for key, value in {"colour_weight": repr(colour_weight), "backbone_sha256": backbone_sha256}.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = "fashion_search." + key, value
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def backbone_sha256() -> str:
    return sha256_file(DEFAULT_MODEL_PATH)


def test_head_embedder_returns_unit_vectors_of_the_heads_size(tmp_path, backbone_sha256):
    head = write_head(tmp_path / "head.onnx", 1280 + 72, 16, backbone_sha256)
    embedder = create_embedder("garment-head", model_path=str(head))
    images = [Image.new("RGB", (60, 90), colour) for colour in ((200, 30, 30), (30, 30, 200), (240, 240, 240))]
    vectors = embedder.embed(images)
    assert embedder.dim == 16 and vectors.shape == (3, 16) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    assert embedder.embed([]).shape == (0, 16)


def test_head_input_is_unit_backbone_features_then_weighted_colour(backbone_sha256):
    inputs = HeadInputs(colour_weight=0.25)
    rows = inputs([Image.new("RGB", (50, 50), (10, 120, 200))])
    assert rows.shape == (1, 1352)
    assert np.linalg.norm(rows[0, :1280]) == pytest.approx(1, abs=1e-5)
    assert np.linalg.norm(rows[0, 1280:]) == pytest.approx(0.25, abs=1e-5)


def test_head_embedder_refuses_a_head_trained_on_another_backbone(tmp_path):
    head = write_head(tmp_path / "head.onnx", 1352, 8, "0" * 64)
    with pytest.raises(ModelError, match="trained on backbone features"):
        GarmentHeadEmbedder(model_path=head)


def test_head_embedder_refuses_a_head_of_the_wrong_input_width(tmp_path, backbone_sha256):
    head = write_head(tmp_path / "head.onnx", 1280, 8, backbone_sha256)
    with pytest.raises(ModelError, match="width 1352"):
        GarmentHeadEmbedder(model_path=head)


def test_missing_head_names_the_command_that_regenerates_it(tmp_path):
    with pytest.raises(ModelNotFoundError, match="train embedder"):
        GarmentHeadEmbedder(model_path=tmp_path / "nothing.onnx")


def test_identity_names_the_head_and_the_backbone_by_sha256(tmp_path, backbone_sha256):
    head = write_head(tmp_path / "head.onnx", 1352, 8, backbone_sha256, colour_weight=0.3)
    identity = GarmentHeadEmbedder(model_path=head).identity()
    assert identity["sha256"] == sha256_file(head) and identity["backbone"]["sha256"] == backbone_sha256
    assert identity["colour_weight"] == 0.3 and identity["dim"] == 8
    other = write_head(tmp_path / "other.onnx", 1352, 8, backbone_sha256, colour_weight=0.3, seed=1)
    assert GarmentHeadEmbedder(model_path=other).identity() != identity


@pytest.mark.skipif(not DEFAULT_HEAD_PATH.exists(), reason="the shipped garment head is not built")
def test_shipped_head_puts_a_mirrored_crop_nearer_than_another_colour():
    embedder = GarmentHeadEmbedder()
    rng = np.random.default_rng(0)
    stripes = np.zeros((120, 80, 3), np.uint8)
    stripes[::8] = (200, 30, 30)
    stripes[4::8] = (240, 240, 240)
    stripes += rng.integers(0, 10, stripes.shape, dtype=np.uint8)
    red = Image.fromarray(stripes)
    blue = Image.fromarray(stripes[..., ::-1].copy())
    a, mirrored, other = embedder.embed([red, red.transpose(Image.Transpose.FLIP_LEFT_RIGHT), blue])
    assert float(a @ mirrored) > float(a @ other)


def test_the_default_embedder_is_the_shipped_garment_head():
    embedder = create_embedder()
    assert embedder.name == "garment-head" and embedder.dim == 128
    assert embedder.identity()["sha256"] == sha256_file(DEFAULT_HEAD_PATH)
