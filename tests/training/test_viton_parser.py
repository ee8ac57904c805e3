"""VITON's parse maps as parser training data: LIP labels, set-valued targets, the validation
split left out, input scaling, and a run that resumes where it was killed."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fashion_search.garments import Garment
from fashion_search.garments.taxonomy import IGNORE, LIP_LABELS, class_index
from fashion_search.training.datasets import LABEL_SETS, lip_lookup_table, load_viton_photo, viton_ids
from fashion_search.training.parser.evaluate import evaluate_viton

TOP_OR_KNITWEAR = next(code for code, classes in LABEL_SETS.items() if classes == ("top", "knitwear"))
TROUSERS_OR_SHORTS = next(code for code, classes in LABEL_SETS.items() if classes == ("trousers", "shorts"))


def _lip_map(height: int = 64, width: int = 48) -> np.ndarray:
    """A figure: face, upper clothes over arms, pants, shoes, on background."""
    lip = np.zeros((height, width), np.uint8)
    lip[2:10, 18:30] = LIP_LABELS.index("face")
    lip[10:30, 12:36] = LIP_LABELS.index("upper-clothes")
    lip[10:30, 8:12] = LIP_LABELS.index("left-arm")
    lip[30:56, 14:34] = LIP_LABELS.index("pants")
    lip[56:62, 14:22] = LIP_LABELS.index("left-shoe")
    lip[20:24, 36:40] = LIP_LABELS.index("glove")
    return lip


def _viton_folder(root: Path, ids: list[str]) -> Path:
    """A VITON-like folder: palette parse maps whose palette colours differ from the label ids."""
    for sub in ("photos", "parse", "products"):
        (root / sub).mkdir(parents=True)
    lines = ["id,photo,parse,product"]
    rng = np.random.default_rng(0)
    for i in ids:
        Image.fromarray(rng.integers(0, 255, (64, 48, 3), dtype=np.uint8)).save(root / "photos" / f"{i}.jpg")
        parse = Image.fromarray(_lip_map(), "P")
        parse.putpalette([(v * 37) % 256 for v in range(256 * 3)])
        parse.save(root / "parse" / f"{i}.png")
        lines.append(f"{i},photos/{i}.jpg,parse/{i}.png,products/{i}.jpg")
    (root / "pairs.csv").write_text("\n".join(lines) + "\n")
    return root


def test_lip_labels_map_to_parser_classes_with_a_set_where_lip_cannot_tell_two_apart():
    table = lip_lookup_table()
    assert LABEL_SETS[table[LIP_LABELS.index("upper-clothes")]] == ("top", "knitwear")
    assert LABEL_SETS[table[LIP_LABELS.index("pants")]] == ("trousers", "shorts")
    assert table[LIP_LABELS.index("jumpsuit")] == class_index("dress")
    assert table[LIP_LABELS.index("coat")] == class_index("outerwear")
    for limb in ("face", "left-arm", "right-leg"):
        assert table[LIP_LABELS.index(limb)] == class_index("skin")
    assert table[LIP_LABELS.index("right-shoe")] == class_index("footwear")
    assert table[LIP_LABELS.index("glove")] == IGNORE
    # Set values sit between the parser's classes and IGNORE, so no map confuses them.
    assert all(class_index("eyewear") < code < IGNORE for code in LABEL_SETS)


def test_viton_photos_read_label_ids_from_the_palette_and_leave_the_excluded_ids_out(tmp_path):
    root = _viton_folder(tmp_path / "viton", ["000001", "000002", "000003"])
    assert viton_ids(root, {"000002"}) == ["000001", "000003"]
    photo, labels = load_viton_photo(root, "000001", lip_lookup_table())
    values = np.asarray(labels)
    assert photo.size == labels.size == (48, 64)
    assert values[15, 20] == TOP_OR_KNITWEAR and values[40, 20] == TROUSERS_OR_SHORTS
    assert values[5, 20] == class_index("skin") and values[0, 0] == class_index("background")
    assert values[21, 37] == IGNORE


class _TruthDetector:
    """Returns VITON's own labels as garments, the top read as ``top_as``."""

    def __init__(self, root: Path, top_as: str) -> None:
        self.root, self.top_as = root, top_as

    def detect(self, image):
        truth = np.asarray(load_viton_photo(self.root, "000001", lip_lookup_table())[1])
        garments = []
        for value, label in ((TOP_OR_KNITWEAR, self.top_as), (TROUSERS_OR_SHORTS, "trousers")):
            mask = truth == value
            ys, xs = np.nonzero(mask)
            box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
            garments.append(Garment(box=box, label=label, score=1.0, mask=mask))
        return garments


def test_viton_scoring_counts_either_class_of_a_set_and_reports_what_the_top_was_read_as(tmp_path):
    root = _viton_folder(tmp_path / "viton", ["000001"])
    report = evaluate_viton(_TruthDetector(root, "knitwear"), root, ["000001"], min_truth_pixels=1)
    assert report.iou == {"top or knitwear": 1.0, "trousers or shorts": 1.0, "footwear": 0.0}
    assert report.top_found == 1.0 and report.top_read_as == {"knitwear": 1.0}
    as_dress = evaluate_viton(_TruthDetector(root, "dress"), root, ["000001"], min_truth_pixels=1)
    assert as_dress.iou["top or knitwear"] == 0.0 and as_dress.top_found == 0.0
    assert as_dress.top_read_as == {"dress": 1.0}


@pytest.mark.torch
def test_set_cross_entropy_is_torchs_weighted_cross_entropy_when_every_label_is_one_class():
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    from fashion_search.training.parser.train import label_targets, set_cross_entropy

    torch.manual_seed(0)
    weights = torch.rand(17) + 0.2
    logits = torch.randn(2, 17, 8, 6)
    labels = torch.randint(0, 17, (2, 8, 6))
    labels[0, 0, :3] = IGNORE
    ours = set_cross_entropy(logits, labels, *label_targets(weights))
    assert torch.allclose(ours, F.cross_entropy(logits, labels, weight=weights, ignore_index=IGNORE), atol=1e-5)


@pytest.mark.torch
def test_a_set_label_is_met_by_either_of_its_classes_and_missed_by_any_other():
    torch = pytest.importorskip("torch")
    from fashion_search.training.parser.train import label_targets, set_cross_entropy

    targets = label_targets(torch.ones(17))
    labels = torch.full((1, 2, 2), TOP_OR_KNITWEAR)

    def loss_when_sure_of(name: str) -> float:
        logits = torch.full((1, 17, 2, 2), -10.0)
        logits[:, class_index(name)] = 10.0
        return float(set_cross_entropy(logits, labels, *targets))

    assert loss_when_sure_of("top") < 1e-3 and loss_when_sure_of("knitwear") < 1e-3
    assert loss_when_sure_of("dress") > 10


@pytest.mark.torch
def test_the_export_records_the_scaling_the_network_was_trained_with():
    pytest.importorskip("torch")
    from fashion_search.training.parser.train import parser_metadata, to_pixels

    batch = np.array([[[[0, 127, 255]]]], np.uint8)
    assert np.allclose(to_pixels(batch, "backbone").numpy().ravel(), [-127 / 128, 0, 1])
    legacy_expected = (np.array([0, 127, 255]) - 127 / 255) / (128 / 255)
    assert np.allclose(to_pixels(batch, "legacy").numpy().ravel(), legacy_expected, rtol=1e-5)
    # What the loader reads: mean and std on the 0..1 scale of x / 255.
    backbone = parser_metadata((64, 32), "backbone")
    mean = [float(v) for v in next(v for k, v in backbone.items() if k.endswith("mean")).split(",")]
    std = [float(v) for v in next(v for k, v in backbone.items() if k.endswith("std")).split(",")]
    assert np.allclose(mean, 127 / 255) and np.allclose(std, 128 / 255)
    legacy = parser_metadata((64, 32), "legacy")
    mean = [float(v) for v in next(v for k, v in legacy.items() if k.endswith("mean")).split(",")]
    assert np.allclose(mean, 127 / 255 / 255)
    with pytest.raises(ValueError, match="pixel scaling"):
        to_pixels(batch, "imagenet")


def _pack(tmp_path: Path) -> Path:
    """Tiny street, validation and studio examples in a pack, as ``--write-examples`` writes."""
    from fashion_search.training.parser.data import Example, write_examples

    rng = np.random.default_rng(2)

    def example(kind: str, labels: np.ndarray) -> Example:
        pixels = rng.integers(0, 255, (*labels.shape, 3), dtype=np.uint8)
        return Example(Image.fromarray(pixels), Image.fromarray(labels, "L"), kind)

    street = np.zeros((64, 32), np.uint8)
    street[10:40, 5:25] = class_index("top")
    street[40:60, 5:25] = class_index("trousers")
    studio = np.asarray(lip_lookup_table(), np.uint8)[_lip_map(64, 48)]
    pack = tmp_path / "examples.zip"
    write_examples(
        pack,
        {
            "train": [example("street", street) for _ in range(3)],
            "val": [example("street", street)],
            "studio": [example("studio", studio) for _ in range(3)],
        },
    )
    return pack


@pytest.mark.torch
def test_a_run_killed_between_epochs_resumes_and_ends_with_the_weights_of_an_unbroken_run(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    from fashion_search.training.parser import train as train_module
    from fashion_search.training.parser.train import TrainConfig, train_parser

    pack = _pack(tmp_path)

    def config(out: str) -> TrainConfig:
        return TrainConfig(
            ccp_root="",
            kaggle_root=None,
            output=str(tmp_path / out),
            examples=str(pack),
            epochs=3,
            batch_size=2,
            height=64,
            width=64,
            viton_height=64,
            viton_width=64,
            viton_per_epoch=2,
            threads=1,
        )

    unbroken = train_parser(config("unbroken"))
    assert unbroken["studio_examples"] == 3 and unbroken["studio_per_epoch"] == 2

    real = train_module.mixed_batches
    calls = []

    def dies_in_the_second_epoch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(train_module, "mixed_batches", dies_in_the_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        train_parser(config("broken"))
    monkeypatch.setattr(train_module, "mixed_batches", real)
    resumed = train_parser(config("broken"))
    assert [e["epoch"] for e in resumed["history"]] == [1, 2, 3]
    a = torch.load(tmp_path / "unbroken" / "parser.pt")
    b = torch.load(tmp_path / "broken" / "parser.pt")
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)
    # Another recipe in the same folder is refused rather than mixed into this run.
    other = config("broken")
    other.seed = 1
    with pytest.raises(ValueError, match="other options"):
        train_parser(other)
    assert json.loads((tmp_path / "broken" / "training.json").read_text())["config"]["viton_per_epoch"] == 2
