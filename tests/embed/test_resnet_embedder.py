from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fashion_search.embed import create_embedder
from fashion_search.embed.resnet import INSTALL_HINT, MissingDependencyError, ResNetEmbedder

HAS_TORCH = importlib.util.find_spec("torch") is not None
NEEDS_TORCH = "torch is not installed (optional extra: pip install 'fashion-search[torch]')"


def test_weights_are_required() -> None:
    with pytest.raises(ValueError, match="weights"):
        ResNetEmbedder()


def test_missing_weights_file(tmp_path: Path) -> None:
    missing = tmp_path / "resnet152.pth"
    with pytest.raises(FileNotFoundError, match="resnet152.pth"):
        create_embedder("resnet152", weights=str(missing))


@pytest.mark.skipif(HAS_TORCH, reason="checks the message shown when torch is absent")
def test_without_torch_says_what_to_install(tmp_path: Path) -> None:
    weights = tmp_path / "resnet152.pth"
    weights.write_bytes(b"not really")
    with pytest.raises(MissingDependencyError, match=INSTALL_HINT.replace("[", r"\[").replace("]", r"\]")):
        ResNetEmbedder(weights=weights)


# ---- with torch ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch", reason=NEEDS_TORCH)


@pytest.fixture(scope="module")
def state_dict(torch):
    from fashion_search.embed.resnet import build_resnet152

    torch.manual_seed(0)
    return build_resnet152().state_dict()


@pytest.fixture(scope="module")
def checkpoint(torch, state_dict, tmp_path_factory) -> Path:
    """A randomly initialised ResNet-152, saved the way torchvision users save weights."""
    path = tmp_path_factory.mktemp("weights") / "resnet152.pth"
    torch.save(state_dict, path)
    return path


@pytest.fixture(scope="module")
def embedder(checkpoint: Path) -> ResNetEmbedder:
    return create_embedder("resnet152", weights=str(checkpoint), batch_size=2)


def images() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [
        Image.fromarray(rng.integers(0, 256, (300, 200, 3), dtype=np.uint8)),
        Image.new("RGB", (1, 1), (200, 30, 30)),
        Image.new("RGB", (3000, 2), (30, 30, 200)),
    ]


def test_state_dict_layout_is_torchvision(state_dict) -> None:
    # Figures published for torchvision.models.resnet152
    buffers = ("running_mean", "running_var", "num_batches_tracked")
    params = sum(v.numel() for k, v in state_dict.items() if not k.endswith(buffers))
    assert params == 60_192_808
    expected_shapes = {
        "conv1.weight": (64, 3, 7, 7),
        "layer1.0.downsample.0.weight": (256, 64, 1, 1),
        "layer2.0.conv2.weight": (128, 128, 3, 3),
        "layer2.7.bn3.running_var": (512,),
        "layer3.35.conv3.weight": (1024, 256, 1, 1),
        "layer4.0.downsample.1.weight": (2048,),
        "layer4.2.conv1.weight": (512, 2048, 1, 1),
        "fc.weight": (1000, 2048),
    }
    for key, shape in expected_shapes.items():
        assert tuple(state_dict[key].shape) == shape, key
    assert "layer3.36.conv1.weight" not in state_dict and "layer2.8.conv1.weight" not in state_dict


def test_in_repo_definition_matches_torchvision(torch) -> None:
    models = pytest.importorskip("torchvision.models", reason="torchvision is not installed")
    from fashion_search.embed.resnet import build_resnet152

    ours = build_resnet152(use_torchvision=False).state_dict()
    theirs = models.resnet152(weights=None).state_dict()
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in theirs.items()}


def test_embeds_unit_vectors(embedder: ResNetEmbedder) -> None:
    assert (embedder.name, embedder.dim) == ("resnet152", 2048)
    vectors = embedder.embed(images())
    assert vectors.shape == (3, 2048) and vectors.dtype == np.float32
    assert np.isfinite(vectors).all()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert embedder.embed([]).shape == (0, 2048)


def test_deterministic(embedder: ResNetEmbedder) -> None:
    first = embedder.embed(images())
    assert np.array_equal(first, embedder.embed(images()))
    np.testing.assert_allclose(first[:1], embedder.embed(images()[:1]), atol=1e-5)


def test_identity_names_the_weights_by_hash(embedder: ResNetEmbedder, checkpoint: Path) -> None:
    import hashlib

    identity = embedder.identity()
    assert identity["name"] == "resnet152" and identity["dim"] == 2048 and identity["input_size"] == 224
    assert identity["sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()


def test_loads_wrapped_checkpoints(torch, state_dict, embedder, tmp_path: Path) -> None:
    # DataParallel prefix, training-loop wrapper, and a fine-tuned head with other class count
    wrapped = {f"module.{k}": v for k, v in state_dict.items()}
    wrapped["module.fc.weight"] = torch.zeros(7, 2048)
    wrapped["module.fc.bias"] = torch.zeros(7)
    path = tmp_path / "checkpoint.pt"
    torch.save({"epoch": 3, "state_dict": wrapped}, path)
    other = ResNetEmbedder(weights=path)
    np.testing.assert_allclose(other.embed(images()[:1]), embedder.embed(images()[:1]), atol=1e-5)


def test_rejects_wrong_architecture(torch, state_dict, tmp_path: Path) -> None:
    from fashion_search.embed.resnet import CheckpointError

    path = tmp_path / "resnet50ish.pth"
    torch.save({k: v for k, v in state_dict.items() if not k.startswith("layer3.20")}, path)
    with pytest.raises(CheckpointError, match="missing keys"):
        ResNetEmbedder(weights=path)
    path.write_bytes(b"this is not a checkpoint")
    with pytest.raises(CheckpointError, match="state_dict"):
        ResNetEmbedder(weights=path)
