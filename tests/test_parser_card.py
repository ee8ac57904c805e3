"""The model card generator keeps the card's hand-written notes, once, however often it runs."""
import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "evaluate_parser.py"


def _script():
    spec = importlib.util.spec_from_file_location("evaluate_parser", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_notes_start_at_their_heading_not_where_the_regenerate_line_names_it():
    script = _script()
    card = ("# Card\n\nRegenerate: `...` (everything from `## Notes` on is hand-written and kept).\n\n"
            "## Notes\n\nWhy dresses score low.\n")
    notes = script.hand_written_notes(card)
    assert notes == "## Notes\n\nWhy dresses score low.\n"
    regenerated = card.split("## Notes\n\n")[0] + notes
    assert script.hand_written_notes(regenerated) == notes
    assert script.hand_written_notes("# Card without notes\n") == ""


def test_the_card_gives_each_training_stage_the_command_that_reproduces_it(tmp_path):
    import json

    script = _script()
    base = {"epochs": 20, "frozen_blocks": 5, "batch_size": 8, "lr": 0.002, "backbone_lr": 0.0005}
    first = {"config": base, "train_examples": 1317, "minutes": 50.0, "history": [{"val_garment_miou": 0.356}]}
    (tmp_path / "stage1").mkdir()
    (tmp_path / "stage1" / "training.json").write_text(json.dumps(first))
    second = {"config": {**base, "epochs": 8, "lr": 0.001, "backbone_lr": 0.0002, "worn_per_class": 120,
                         "teacher": None, "init": str(tmp_path / "stage1" / "parser.pt")},
              "train_examples": 1778, "minutes": 25.0, "history": [{"val_garment_miou": 0.35}]}

    stages = script.training_stages(second)
    lines = script.training_lines(stages)

    assert [s["train_examples"] for s in stages] == [1317, 1778]
    assert "--lr" not in lines[1] and "--worn-per-class" not in lines[1]
    # No teacher named: the shipped model when the stage ran, which was the previous stage's.
    assert ("--init runs/parser1/parser.pt --worn-per-class 120 --teacher runs/parser1/garment_parser.onnx "
            "--lr 0.001 --backbone-lr 0.0002`") in lines[2]
    assert "In all 75 minutes" in lines[-1]
    assert "--hue" not in lines[1] + lines[2] and "hue" not in lines[1]

    # A stage whose views had garments' hue turned says so, and how far.
    hued = {**first, "config": {**base, "hue": 0.5}}
    assert "--frozen-blocks 5 --hue 0.5`" in script.training_lines([hued])[1]
    assert "garments' hue turned by up to 0.5 of the colour circle" in script.training_lines([hued])[1]

    # Named, the previous stage's export is written as that stage's output; any other by its path.
    first["config"] = {**base, "output": str(tmp_path / "stage1")}
    (tmp_path / "stage1" / "training.json").write_text(json.dumps(first))
    second["config"]["teacher"] = str(tmp_path / "stage1" / "garment_parser.onnx")
    assert "--teacher runs/parser1/garment_parser.onnx " in script.training_lines(script.training_stages(second))[2]
    second["config"]["teacher"] = str(tmp_path / "gpu" / "garment_parser.onnx")
    assert f"--teacher {tmp_path / 'gpu' / 'garment_parser.onnx'} " in script.training_lines(script.training_stages(second))[2]


def test_a_stage_started_from_an_exported_parser_names_that_file_by_its_hash():
    script = _script()
    base = {"epochs": 8, "frozen_blocks": 5, "batch_size": 8, "lr": 0.001, "backbone_lr": 0.0002, "worn_per_class": 120}
    shipped = "fashion_search/garments/models/garment_parser.onnx"
    stage = {"config": {**base, "init": shipped, "teacher": None}, "init_sha256": "f1440a14",
             "examples_source": {"teacher": {"path": "shipped", "sha256": "f1440a14"}},
             "train_examples": 1778, "minutes": 40.0, "history": [{"val_garment_miou": 0.35}]}

    lines = script.training_lines(script.training_stages(stage))

    assert "runs/parser0/garment_parser.onnx" in lines[1] and "f1440a14" in lines[1]
    # Taught by the model it started from: both are that file, not a stage that never ran.
    assert "--init runs/parser0/garment_parser.onnx --worn-per-class 120 --teacher runs/parser0/garment_parser.onnx" in lines[2]
    stage["examples_source"]["teacher"]["sha256"] = "another"
    assert "--teacher <the parser shipped then, sha256 another>" in script.training_lines(script.training_stages(stage))[2]
