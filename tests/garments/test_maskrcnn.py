from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fashion_search.embed.resnet import INSTALL_HINT, CheckpointError, MissingDependencyError
from fashion_search.garments import create_detector
from fashion_search.garments.maskrcnn import DEEPFASHION2_CLASSES, MaskRCNNDetector, parse_classes
from fashion_search.registry import DETECTORS

HAS_TORCH = importlib.util.find_spec("torch") is not None
NEEDS_TORCH = "torch is not installed (optional extra: pip install 'fashion-search[torch]')"
SMALL = {"min_size": 128, "max_size": 192}  # keeps a detection well under a second on 2 cores
GARMENT_CLASS = 8  # "trousers": the class the test checkpoint favours


def test_weights_and_classes_are_required(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="weights"):
        MaskRCNNDetector(classes="deepfashion2")
    with pytest.raises(ValueError, match="classes"):
        MaskRCNNDetector(weights=tmp_path / "x.pth")


def test_missing_weights_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="maskrcnn.pth"):
        create_detector("maskrcnn", weights=str(tmp_path / "maskrcnn.pth"), classes="deepfashion2")


@pytest.mark.skipif(HAS_TORCH, reason="checks the message shown when torch is absent")
def test_without_torch_says_what_to_install(tmp_path: Path) -> None:
    weights = tmp_path / "maskrcnn.pth"
    weights.write_bytes(b"not really")
    with pytest.raises(MissingDependencyError, match=INSTALL_HINT.replace("[", r"\[").replace("]", r"\]")):
        MaskRCNNDetector(weights=weights, classes="deepfashion2")


def test_class_lists(tmp_path: Path) -> None:
    assert parse_classes("deepfashion2") == list(DEEPFASHION2_CLASSES)
    assert parse_classes("top, skirt,dress") == ["top", "skirt", "dress"]
    assert parse_classes(("top", "skirt")) == ["top", "skirt"]
    (tmp_path / "classes.txt").write_text("top\nskirt\n\n")
    assert parse_classes(tmp_path / "classes.txt") == ["top", "skirt"]
    (tmp_path / "classes.json").write_text(json.dumps(["top", "skirt"]))
    assert parse_classes(str(tmp_path / "classes.json")) == ["top", "skirt"]
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        parse_classes(str(tmp_path / "nope.txt"))
    with pytest.raises(ValueError, match="empty class name"):
        parse_classes("top,,skirt")


# ---- with torch ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch", reason=NEEDS_TORCH)


def random_state_dict(torch, use_torchvision: bool | None = None) -> dict:
    """A randomly initialised 13-class Mask R-CNN whose box classifier is biased towards one
    class, so that detections pass a 0.5 threshold, and whose mask logits are biased so that
    masks fill their boxes."""
    from fashion_search.garments.maskrcnn import build_maskrcnn

    torch.manual_seed(0)
    state = build_maskrcnn(len(DEEPFASHION2_CLASSES) + 1, use_torchvision).state_dict()
    state["roi_heads.box_predictor.cls_score.bias"][0] -= 4.0
    state["roi_heads.box_predictor.cls_score.bias"][GARMENT_CLASS] += 5.0
    state["roi_heads.mask_predictor.mask_fcn_logits.bias"] += 3.0
    return state


@pytest.fixture(scope="module")
def state_dict(torch) -> dict:
    return random_state_dict(torch)


@pytest.fixture(scope="module")
def checkpoint(torch, state_dict, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("weights") / "maskrcnn.pth"
    torch.save(state_dict, path)
    return path


@pytest.fixture(scope="module")
def detector(checkpoint: Path) -> MaskRCNNDetector:
    return create_detector("maskrcnn", weights=str(checkpoint), classes=list(DEEPFASHION2_CLASSES), **SMALL)


def photo(width: int = 150, height: int = 110) -> Image.Image:
    rng = np.random.default_rng(1)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def test_detects_garments_with_masks_deterministically(detector: MaskRCNNDetector) -> None:
    image = photo()
    garments = detector.detect(image)
    assert 1 <= len(garments) <= 20
    assert [g.score for g in garments] == sorted((g.score for g in garments), reverse=True)
    for g in garments:
        assert g.label in DEEPFASHION2_CLASSES and 0.5 < g.score <= 1.0
        x1, y1, x2, y2 = g.box
        assert all(isinstance(v, int) for v in g.box)
        assert 0 <= x1 < x2 <= image.width and 0 <= y1 < y2 <= image.height
        assert g.mask.dtype == bool and g.mask.shape == (image.height, image.width)
        assert g.mask.any()
        # Masks fill their boxes (mask logits are biased up) and do not spill beyond them.
        ys, xs = np.nonzero(g.mask)
        assert xs.min() >= x1 - 2 and xs.max() < x2 + 2 and ys.min() >= y1 - 2 and ys.max() < y2 + 2
        assert g.crop(image).size == (x2 - x1, y2 - y1)
    assert garments[0].label == DEEPFASHION2_CLASSES[GARMENT_CLASS - 1]

    again = detector.detect(photo())
    assert [(g.label, g.score, g.box) for g in again] == [(g.label, g.score, g.box) for g in garments]
    assert all(np.array_equal(a.mask, b.mask) for a, b in zip(again, garments))


def test_odd_images(detector: MaskRCNNDetector) -> None:
    for image in (Image.new("L", (40, 300), 128), Image.new("RGB", (1, 1), (200, 30, 30))):
        for g in detector.detect(image):
            assert 0 <= g.box[0] < g.box[2] <= image.width and 0 <= g.box[1] < g.box[3] <= image.height
            assert g.mask.shape == (image.height, image.width)


def test_identity_names_weights_by_hash_and_classes(detector: MaskRCNNDetector, checkpoint: Path) -> None:
    import hashlib

    info = detector.identity()
    assert info["name"] == "maskrcnn" and info["model"] == checkpoint.name
    assert info["sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert info["classes"] == list(DEEPFASHION2_CLASSES)


def test_wrapped_checkpoint_and_options_given_as_text(torch, state_dict, tmp_path: Path) -> None:
    # A training-loop wrapper with a DataParallel prefix; options as the command line gives them,
    # converted once by the registry from the detector's declared types.
    path = tmp_path / "checkpoint.pt"
    torch.save({"epoch": 12, "model": {f"module.{k}": v for k, v in state_dict.items()}}, path)
    (tmp_path / "classes.txt").write_text("\n".join(DEEPFASHION2_CLASSES))
    options = DETECTORS.parse_options(
        "maskrcnn",
        {
            "weights": str(path),
            "classes": str(tmp_path / "classes.txt"),
            "score_threshold": "1.0",
            "min_size": "128",
            "max_size": "192",
            "threads": "2",
        },
    )
    assert options["score_threshold"] == 1.0 and options["min_size"] == 128 and options["threads"] == 2
    strict = create_detector("maskrcnn", **options)
    assert strict.detect(photo()) == []  # nothing scores above 1: the pipeline uses the whole image


def test_legacy_key_names_are_upgraded(state_dict) -> None:
    from fashion_search.garments.maskrcnn_model import upgrade_legacy_keys

    legacy = {}
    for key, value in state_dict.items():
        key = key.replace("rpn.head.conv.0.0.", "rpn.head.conv.")
        for block in ("inner_blocks", "layer_blocks"):
            for i in range(4):
                key = key.replace(f"fpn.{block}.{i}.0.", f"fpn.{block}.{i}.")
        for i in range(4):
            key = key.replace(f"mask_head.{i}.0.", f"mask_head.mask_fcn{i + 1}.")
        legacy[key] = value
    assert len(set(legacy) - set(state_dict)) == 26  # 2 rpn + 16 fpn + 8 mask head tensors
    assert upgrade_legacy_keys(legacy).keys() == state_dict.keys()


def test_wrong_class_count(checkpoint: Path) -> None:
    with pytest.raises(CheckpointError, match=r"maskrcnn.pth predicts 13 classes .* 2 class names"):
        create_detector("maskrcnn", weights=str(checkpoint), classes="top,skirt")


def test_corrupt_and_foreign_checkpoints(torch, tmp_path: Path) -> None:
    path = tmp_path / "broken.pth"
    path.write_bytes(b"this is not a checkpoint")
    with pytest.raises(CheckpointError, match="broken.pth"):
        create_detector("maskrcnn", weights=str(path), classes="deepfashion2")
    torch.save({"fc.weight": torch.zeros(14, 8)}, path)
    with pytest.raises(CheckpointError, match="not a torchvision-format Mask R-CNN"):
        create_detector("maskrcnn", weights=str(path), classes="deepfashion2")


def test_truncated_checkpoint(torch, state_dict, tmp_path: Path) -> None:
    path = tmp_path / "partial.pth"
    torch.save({k: v for k, v in state_dict.items() if not k.startswith("roi_heads.mask_head.")}, path)
    with pytest.raises(CheckpointError, match="8 missing keys"):
        create_detector("maskrcnn", weights=str(path), classes="deepfashion2")


def test_command_line_round_trip(checkpoint: Path, tiny_catalog: Path, tmp_path: Path, capsys) -> None:
    from fashion_search.cli import main

    db = str(tmp_path / "db")
    options = [f"weights={checkpoint}", "classes=deepfashion2", "min_size=128", "max_size=192", "max_detections=2"]
    args = ["--detector", "maskrcnn", *[a for o in options for a in ("--detector-option", o)]]
    assert main(["index", str(tiny_catalog), "--db", db, "--embedder", "test-pixels", *args]) == 0
    capsys.readouterr()
    query = tiny_catalog / "Tops" / "blue-1" / "view0.jpg"
    assert main(["search", str(query), "--db", db, "-k", "1", "--json"]) == 0
    garments = json.loads(capsys.readouterr().out)["garments"]
    assert 1 <= len(garments) <= 2 and all(g["label"] in DEEPFASHION2_CLASSES for g in garments)
    assert main(["index", str(tiny_catalog), "--db", db, "--detector-option", "min_size=1"]) == 2
    assert "--detector-option needs --detector" in capsys.readouterr().err


# ---- against torchvision ---------------------------------------------------------------------


def test_parity_with_torchvision(torch) -> None:
    pytest.importorskip("torchvision", reason="torchvision is not installed; the in-repo model runs alone")
    from torchvision.models import resnet50
    from torchvision.models.detection import MaskRCNN
    from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
    from torchvision.ops import FrozenBatchNorm2d

    from fashion_search.garments.maskrcnn import build_maskrcnn

    num_classes = len(DEEPFASHION2_CLASSES) + 1
    # Checkpoints fine-tuned from pretrained weights have torchvision's frozen-BN layout.
    frozen = MaskRCNN(_resnet_fpn_extractor(resnet50(norm_layer=FrozenBatchNorm2d), 3), num_classes)
    ours = build_maskrcnn(num_classes, use_torchvision=False, min_size=320, max_size=533)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in frozen.state_dict().items()}

    state = random_state_dict(torch, use_torchvision=True)
    theirs = build_maskrcnn(num_classes, use_torchvision=True, min_size=320, max_size=533)
    theirs.load_state_dict(state)
    ours.load_state_dict(state)  # strict: BatchNorm's batch counters are dropped by the frozen twin
    rng = np.random.default_rng(0)
    for h, w in ((240, 320), (400, 150)):
        image = torch.from_numpy(rng.random((3, h, w), dtype=np.float32))
        with torch.inference_mode():
            a, b = theirs.eval()([image])[0], ours.eval()([image])[0]
        assert len(a["boxes"]) == len(b["boxes"]) > 0
        # Detections whose scores tie to float precision may come out in either order.
        match = torch.cdist(b["boxes"], a["boxes"], p=float("inf")).argmin(dim=1)
        assert sorted(match.tolist()) == list(range(len(match)))
        swapped = match != torch.arange(len(match))
        assert torch.all((a["scores"][swapped] - b["scores"][swapped]).abs() < 1e-5)
        assert torch.equal(a["labels"][match], b["labels"])
        torch.testing.assert_close(b["boxes"], a["boxes"][match], rtol=1e-3, atol=1e-2)
        torch.testing.assert_close(b["scores"], a["scores"][match], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(b["masks"], a["masks"][match], rtol=0, atol=1e-3)
        assert ((a["masks"][match] > 0.5) != (b["masks"] > 0.5)).float().mean() < 1e-3
