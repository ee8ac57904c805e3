"""Recipe files: the options of a training command, kept next to a model card."""

import pytest

from fashion_search.errors import UsageError
from fashion_search.garments.parser import DEFAULT_MODEL
from fashion_search.training.cli import _parse, build_parser, read_recipe, recipe_text


def test_a_recipe_round_trips_strings_numbers_and_booleans(tmp_path):
    options = {"ccp": '../shared/data/ccp "quoted"', "epochs": 20, "lr": 0.002, "cuda": False, "init": None}
    (tmp_path / "r.toml").write_text(recipe_text(options, "A comment\non two lines."))
    assert read_recipe(tmp_path / "r.toml") == {k: v for k, v in options.items() if v is not None}


def test_recipe_options_are_defaults_that_the_command_line_overrides(tmp_path):
    _, commands = build_parser()
    (tmp_path / "r.toml").write_text(recipe_text({"epochs": 7, "hue": 0.25, "ccp": "photos"}))
    args = _parse(commands["parser"], ["--recipe", str(tmp_path / "r.toml"), "--epochs", "9"])
    assert (args.epochs, args.hue, args.ccp, args.frozen_blocks) == (9, 0.25, "photos", 5)


def test_a_recipe_with_an_option_the_command_does_not_take_is_refused(tmp_path):
    _, commands = build_parser()
    (tmp_path / "r.toml").write_text("epochs = 3\nlearning_rate = 0.1\n")
    with pytest.raises(UsageError, match="learning_rate"):
        _parse(commands["parser"], ["--recipe", str(tmp_path / "r.toml")])
    (tmp_path / "bad.toml").write_text("epochs = \n")
    with pytest.raises(UsageError, match="not valid TOML"):
        read_recipe(tmp_path / "bad.toml")


def test_the_shipped_parser_has_both_stages_of_its_recipe_next_to_its_model_card():
    assert DEFAULT_MODEL.with_name("GARMENT_PARSER.md").is_file()
    _, commands = build_parser()
    known = {action.dest for action in commands["parser"]._actions}
    pretrain = read_recipe(DEFAULT_MODEL.with_name("garment_parser.pretrain.recipe.toml"))
    finetune = read_recipe(DEFAULT_MODEL.with_name("garment_parser.recipe.toml"))
    assert set(pretrain) <= known and set(finetune) <= known
    # Stage 1 never trains on the VITON validation split; stage 2 starts from stage 1's output.
    assert pretrain["exclude_ids"] == "splits/viton_validation_ids.txt" and "init" not in pretrain
    assert finetune["init"] == "runs/parser-pretrain/parser.pt" and "viton" not in finetune
    for name in ("garment_parser.pretrain.recipe.toml", "garment_parser.recipe.toml"):
        args = _parse(commands["parser"], ["--recipe", str(DEFAULT_MODEL.with_name(name)), "--output", "run"])
        assert args.pixel_scaling == "backbone" and args.backbone == "efficientnet-lite0"


def test_the_shipped_garment_head_has_its_recipe_next_to_its_model_card():
    from fashion_search.embed.garment_head import DEFAULT_HEAD_PATH

    path = DEFAULT_HEAD_PATH.with_name("garment_head.recipe.toml")
    recipe = read_recipe(path)
    assert DEFAULT_HEAD_PATH.with_name("GARMENT_HEAD.md").is_file()
    _, commands = build_parser()
    known = {action.dest for action in commands["embedder"]._actions}
    assert set(recipe) <= known
    # The validation split is never trained on.
    assert recipe["exclude_ids"] == "splits/viton_validation_ids.txt"
    args = _parse(commands["embedder"], ["--recipe", str(path), "--output", "run"])
    assert (args.dim, args.viton, args.output) == (128, "../shared/data/viton", "run")


def test_a_missing_init_checkpoint_is_refused_before_anything_is_written(tmp_path, monkeypatch, capsys):
    pytest.importorskip("torch")
    from fashion_search.cli import main

    monkeypatch.chdir(tmp_path)
    recipe = str(DEFAULT_MODEL.with_name("garment_parser.recipe.toml"))
    assert main(["train", "parser", "--recipe", recipe, "--init", "runs/stage1/parser.pt", "--output", "run"]) != 0
    assert "--init runs/stage1/parser.pt not found" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
