"""An index records which models made it (weights by sha256, classes, input size, preprocessing)
and is never mixed with, or searched by, other ones: indexing, search and serve refuse it with
the command that rebuilds it, and ``index --rebuild`` re-embeds every image."""

import json
import shutil

import pytest

from fashion_search.cli import main
from fashion_search.garments.parser import DEFAULT_MODEL
from fashion_search.runtime import sha256_file


def _retrained(path):
    """The shipped parser with one weight changed, written over ``path``: what a user who
    retrains at the same path, or an upgrade that ships a new model, leaves behind."""
    onnx = pytest.importorskip("onnx", reason="editing an ONNX file needs the train extra")
    from onnx import numpy_helper

    model = onnx.load(str(path))
    bias = next(t for t in model.graph.initializer if t.name.endswith("bias") and len(t.dims) == 1)
    values = numpy_helper.to_array(bias).copy()
    values[0] += 0.5
    bias.CopyFrom(numpy_helper.from_array(values, bias.name))
    onnx.save_model(model, str(path))


def test_swapping_the_parser_file_is_refused_everywhere_until_rebuilt(tiny_catalog, tmp_path, capsys, monkeypatch):
    import uvicorn

    model = tmp_path / "garment_parser.onnx"
    shutil.copy(DEFAULT_MODEL, model)
    db = str(tmp_path / "db.lance")
    index = [
        "index",
        str(tiny_catalog),
        "--db",
        db,
        "--embedder",
        "test-pixels",
        "--detector",
        "parser",
        "--detector-option",
        f"model_path={model}",
    ]
    assert main(index) == 0
    capsys.readouterr()
    info = json.loads((main(["info", "--db", db, "--json"]), capsys.readouterr().out)[1])
    before = info["models"]["detector"]["identity"]["sha256"]
    assert before == sha256_file(model) and info["models_match"] and info["images"] == 5

    _retrained(model)
    after = sha256_file(model)
    assert main(["search", str(next(tiny_catalog.rglob("*.jpg"))), "--db", db]) == 2
    err = capsys.readouterr().err
    assert f"detector parser: sha256 {before[:12]}... in the index, {after[:12]}... here" in err and "--rebuild" in err
    assert main(index) == 2
    err = capsys.readouterr().err
    assert "Re-embed its 5 images" in err and "--rebuild" in err
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: pytest.fail("served an index built with other weights"))
    assert main(["serve", "--db", db]) == 2
    assert "not comparable" in capsys.readouterr().err
    assert main(["info", "--db", db, "--check"]) == 1
    assert "sha256" in capsys.readouterr().err

    assert main([*index, "--rebuild", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["indexed"], report["unchanged"]) == (5, 0)
    info = json.loads((main(["info", "--db", db, "--json"]), capsys.readouterr().out)[1])
    assert info["models"]["detector"]["identity"]["sha256"] == after and info["models_match"]
    assert info["garments"] >= 5
    assert main(["search", str(next(tiny_catalog.rglob("*.jpg"))), "--db", db]) == 0


def test_an_index_from_before_model_identities_is_refused_with_the_rebuild_command(tiny_catalog, tmp_path, capsys):
    from fashion_search.store import open_store

    db = str(tmp_path / "db.lance")
    assert main(["index", str(tiny_catalog), "--db", db, "--embedder", "test-pixels", "--detector", "foreground"]) == 0
    store = open_store(db)
    old = {key: value for key, value in store.read_manifest().items() if key != "format"}
    for role in ("embedder", "detector"):
        old[role].pop("identity")
    store.write_manifest(old)
    capsys.readouterr()
    assert main(["search", str(next(tiny_catalog.rglob("*.jpg"))), "--db", db]) == 2
    err = capsys.readouterr().err
    assert "did not record which model weights" in err and f"--db {db} --rebuild" in err


def test_an_index_built_with_the_previous_default_embedder_keeps_searching_with_it(tiny_catalog, tmp_path, capsys):
    db = str(tmp_path / "old.lance")
    previous = ["--embedder", "efficientnet-lite2+colour", "--detector", "whole-image"]
    assert main(["index", str(tiny_catalog), "--db", db, *previous]) == 0
    capsys.readouterr()
    # Search, info --check and a re-index without model options use the models the index records.
    assert main(["info", "--db", db, "--check"]) == 0
    assert main(["index", str(tiny_catalog), "--db", db]) == 0
    capsys.readouterr()
    assert main(["search", str(tiny_catalog / "Tops" / "red-1" / "view0.jpg"), "--db", db, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["garments"][0]["results"][0]["product_id"] == "red-1"
    assert json.loads(_info(db, capsys))["models"]["embedder"]["name"] == "efficientnet-lite2+colour"


def _info(db, capsys):
    assert main(["info", "--db", db, "--json"]) == 0
    return capsys.readouterr().out
