"""The parser's training loss terms."""

import pytest

torch = pytest.importorskip("torch", reason="training needs the train extra: pip install -e '.[train]'")
pytestmark = pytest.mark.torch

from fashion_search.garments.parser import DEFAULT_MODEL  # noqa: E402
from fashion_search.garments.taxonomy import IGNORE  # noqa: E402
from fashion_search.runtime import sha256_file  # noqa: E402
from fashion_search.training.parser.train import (  # noqa: E402
    TrainConfig,
    epochs_within,
    examples_source,
    soft_jaccard_loss,
    train_parser,
    training_environment,
)


def _logits_for(labels: torch.Tensor, classes: int, confidence: float = 30.0) -> torch.Tensor:
    logits = torch.zeros(labels.shape[0], classes, *labels.shape[1:])
    known = labels.clamp(max=classes - 1)
    return logits.scatter_(1, known[:, None], confidence)


def test_soft_jaccard_is_zero_for_a_perfect_prediction_and_ignores_unknown_pixels():
    labels = torch.tensor([[[0, 1, 1], [2, IGNORE, 1]]])
    logits = _logits_for(labels, 3)
    logits[0, :, 1, 1] = torch.tensor([0.0, 0.0, 30.0])  # whatever is predicted on an unknown pixel
    assert soft_jaccard_loss(logits, labels).item() == pytest.approx(0.0, abs=1e-3)


def test_soft_jaccard_punishes_a_missed_small_class_far_more_than_cross_entropy():
    labels = torch.zeros(1, 10, 10, dtype=torch.long)
    labels[0, 0, 0] = 1  # one pixel of class 1 ("a belt") among 99 of class 0
    missed_small = _logits_for(torch.zeros_like(labels), 2, confidence=5.0)
    jaccard = soft_jaccard_loss(missed_small, labels).item()
    cross_entropy = torch.nn.functional.cross_entropy(missed_small, labels).item()
    # Half of the mean IoU is lost (class 1 scores ~0.4 with smoothing); cross-entropy averages
    # the one bad pixel over a hundred.
    assert jaccard > 0.25
    assert jaccard > 4 * cross_entropy


def test_soft_jaccard_only_counts_classes_present_in_the_batch():
    labels = torch.zeros(1, 4, 4, dtype=torch.long)
    right = _logits_for(labels, 5)  # classes 1-4 are absent and never predicted
    assert soft_jaccard_loss(right, labels).item() == pytest.approx(0.0, abs=1e-3)


def test_a_time_budget_keeps_the_epochs_that_fit_and_never_more_than_asked():
    # Two epochs done in 1.0 min, the second in 0.2: 9 min are left, 0.9 of them for training.
    assert epochs_within(minutes=10, elapsed=1.0, epoch_minutes=0.2, done=2, most=100) == 2 + 40
    assert epochs_within(minutes=10, elapsed=1.0, epoch_minutes=0.2, done=2, most=30) == 30
    # Over budget already: stop where it is, never below what has run.
    assert epochs_within(minutes=1, elapsed=3.0, epoch_minutes=1.0, done=2, most=30) == 2


def test_the_examples_source_names_the_teacher_only_where_worn_photos_were_labelled(tmp_path):
    plain = examples_source(TrainConfig(ccp_root="ccp", kaggle_root="kaggle", output="out"))
    assert plain["worn_per_class"] == 0 and "teacher" not in plain
    worn = examples_source(TrainConfig(ccp_root="ccp", kaggle_root="kaggle", output="out", worn_per_class=120))
    assert worn["teacher"]["path"] == "shipped"
    assert worn["teacher"]["sha256"] == sha256_file(DEFAULT_MODEL)
    other = tmp_path / "teacher.onnx"
    other.write_bytes(b"another model")
    named = examples_source(
        TrainConfig(ccp_root="ccp", kaggle_root="kaggle", output="out", worn_per_class=120, teacher=str(other))
    )
    assert named["teacher"] == {"path": str(other), "sha256": sha256_file(other)}


def test_a_run_records_the_library_versions_its_arithmetic_went_through():
    import numpy
    import PIL

    env = training_environment()
    assert env["torch"] == torch.__version__ and env["numpy"] == numpy.__version__ and env["pillow"] == PIL.__version__
    assert env["python"].count(".") == 2


def test_a_hue_turn_beyond_half_the_colour_circle_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(ValueError, match="0 to 0.5"):
        train_parser(TrainConfig(ccp_root=str(tmp_path), kaggle_root=None, output=str(tmp_path / "run"), hue=0.7))
    assert not (tmp_path / "run").exists()
