"""The command line, run in-process: exit codes, JSON lines, error reporting."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fashion_search.cli import main
from tests.helpers import make_product


def _index(tiny_catalog, db, capsys, *extra):
    code = main(
        ["index", str(tiny_catalog), "--db", str(db), "--embedder", "test-pixels", "--detector", "foreground", *extra]
    )
    return code, capsys.readouterr()


def test_index_reports_counts_and_failures(tiny_catalog, tmp_path, capsys):
    (tiny_catalog / "Tops" / "red-1" / "bad.jpg").write_bytes(b"garbage")
    code, out = _index(tiny_catalog, tmp_path / "db", capsys)
    assert code == 0
    assert "5 indexed" in out.out and "1 failed" in out.out and "bad.jpg" in out.out
    code, out = _index(tiny_catalog, tmp_path / "db", capsys)
    assert "0 indexed" in out.out and "5 unchanged" in out.out


def test_search_json_prints_one_line_per_query_and_errors_inline(tiny_catalog, tmp_path, capsys):
    _index(tiny_catalog, tmp_path / "db", capsys)
    good = tmp_path / "q.png"
    make_product((20, 20, 200)).save(good)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"nope")
    code = main(["search", str(good), str(bad), str(good), "--db", str(tmp_path / "db"), "-k", "2", "--json"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 1 and len(lines) == 3
    assert lines[0]["garments"][0]["results"][0]["product_id"] == "blue-1"
    assert "error" in lines[1] and lines[1]["query"] == str(bad)
    assert lines[2]["garments"] == lines[0]["garments"]


def test_csv_catalog_with_custom_columns(tmp_path, capsys):
    (tmp_path / "img").mkdir()
    make_product((200, 0, 0)).save(tmp_path / "img" / "1.jpg")
    make_product((0, 0, 200)).save(tmp_path / "img" / "2.jpg")
    (tmp_path / "c.csv").write_text("file,sku,type,colour\nimg/1.jpg,S1,Tops,Red\nimg/2.jpg,S2,Tops,Blue\n")
    assert (
        main(
            [
                "index",
                "--csv",
                str(tmp_path / "c.csv"),
                "--image-column",
                "file",
                "--product-id-column",
                "sku",
                "--category-column",
                "type",
                "--db",
                str(tmp_path / "db"),
                "--embedder",
                "test-pixels",
                "--detector",
                "foreground",
            ]
        )
        == 0
    )
    capsys.readouterr()
    main(["search", str(tmp_path / "img" / "1.jpg"), "--db", str(tmp_path / "db"), "-k", "1", "--json"])
    top = json.loads(capsys.readouterr().out)["garments"][0]["results"][0]
    assert top["product_id"] == "S1" and top["metadata"] == {"colour": "Red"}


def test_unknown_embedder_is_a_clear_error(tiny_catalog, tmp_path, capsys):
    code = main(["index", str(tiny_catalog), "--db", str(tmp_path / "db"), "--embedder", "nope"])
    assert code == 2 and "unknown embedder 'nope'" in capsys.readouterr().err


def test_a_bug_keeps_its_traceback_while_user_errors_are_one_line(tiny_catalog, tmp_path, capsys, monkeypatch):
    from fashion_search import writer

    def broken(*args, **kwargs):
        raise ValueError("a bug, not the user's doing")

    monkeypatch.setattr(writer.CatalogWriter, "create", broken)
    with pytest.raises(ValueError, match="a bug"):
        main(["index", str(tiny_catalog), "--db", str(tmp_path / "db")])
    assert main(["index", str(tiny_catalog), "--db", str(tmp_path / "db"), "--detector-option", "x=1"]) == 2
    assert capsys.readouterr().err.startswith("fashion-search: error: --detector-option needs --detector NAME")


def test_search_without_index_is_a_clear_error(tmp_path, capsys):
    assert main(["search", "x.jpg", "--db", str(tmp_path / "missing")]) == 2
    assert "fashion-search index" in capsys.readouterr().err


def test_weights_without_an_embedder_name_is_refused(tiny_catalog, tmp_path, capsys):
    code = main(["index", str(tiny_catalog), "--db", str(tmp_path / "db"), "--weights", "w.pth"])
    assert code == 2 and "--weights needs --embedder" in capsys.readouterr().err


@pytest.mark.torch
def test_resnet152_index_and_search_from_a_local_checkpoint(tiny_catalog, tmp_path, capsys):
    torch = pytest.importorskip(
        "torch", reason="torch is not installed (optional extra: pip install 'fashion-search[torch]')"
    )
    from fashion_search.embed.resnet import build_resnet152

    torch.manual_seed(0)
    weights = tmp_path / "resnet152.pth"
    torch.save(build_resnet152().state_dict(), weights)
    db = str(tmp_path / "db")
    assert main(["index", str(tiny_catalog), "--db", db, "--embedder", "resnet152", "--weights", str(weights)]) == 0
    capsys.readouterr()
    query = tiny_catalog / "Tops" / "blue-1" / "view0.jpg"
    assert main(["search", str(query), "--db", db, "-k", "1", "--json"]) == 0
    top = json.loads(capsys.readouterr().out)["garments"][0]["results"][0]
    assert top["product_id"] == "blue-1"
    info = json.loads(json.dumps(__import__("fashion_search").SearchEngine.open(db).store.read_manifest()))
    assert info["embedder"]["name"] == "resnet152" and info["dim"] == 2048


def test_missing_resnet_weights_file_is_a_clear_error(tiny_catalog, tmp_path, capsys):
    code = main(
        [
            "index",
            str(tiny_catalog),
            "--db",
            str(tmp_path / "db"),
            "--embedder",
            "resnet152",
            "--weights",
            str(tmp_path / "nope.pth"),
        ]
    )
    assert code == 2 and "nope.pth" in capsys.readouterr().err


def test_eval_writes_per_query_outcomes(tiny_catalog, tmp_path, capsys):
    per_query = tmp_path / "per-query.jsonl"
    args = ["--catalog", str(tiny_catalog), "--db", str(tmp_path / "db"), "--embedder", "test-pixels"]
    code = main(["eval", *args, "--detector", "foreground", "--recall-at", "1", "--per-query", str(per_query)])
    assert code == 0
    rows = [json.loads(line) for line in per_query.read_text().splitlines()]
    # red-1's two views are the recall queries; each of the five images a category precision query.
    assert sorted(row["key"].split("/")[-1] for row in rows if row["metric"] == "R@1") == ["VIEW1.PNG", "view0.jpg"]
    assert sum(row["metric"] == "category P@5" for row in rows) == 5
    assert main(["eval", *args, "--recall-at", "1,x"]) == 2
    assert "--recall-at takes comma-separated whole numbers" in capsys.readouterr().err


def test_eval_pairs_indexes_a_catalog_then_prints_recall_as_json(tmp_path, capsys):
    (tmp_path / "img").mkdir()
    colours = {"P1": (200, 0, 0), "P2": (0, 0, 200), "P3": (0, 160, 0)}
    for pid, colour in colours.items():
        make_product(colour).save(tmp_path / "img" / f"{pid}.png")
    (tmp_path / "catalog.csv").write_text(
        "image,product_id,category\n" + "".join(f"img/{pid}.png,{pid},Tops\n" for pid in colours)
    )
    make_product((0, 0, 190), size=(70, 90)).save(tmp_path / "worn.png")
    (tmp_path / "pairs.csv").write_text("photo,product_id\nworn.png,P2\nworn.png,P9\n")
    db, per_query = str(tmp_path / "db"), tmp_path / "pairs.jsonl"
    common = ["eval-pairs", "--db", db, "--pairs", str(tmp_path / "pairs.csv"), "--recall-at", "1,2", "--json"]
    models = ["--embedder", "test-pixels", "--detector", "foreground"]
    assert main([*common, "--csv", str(tmp_path / "catalog.csv"), *models, "--per-query", str(per_query)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["recall"] == {"R@1": 1.0, "R@2": 1.0} and result["queries"] == 1 and result["skipped"] == 1
    assert result["measured"] and result["models"]["embedder"]["name"] == "test-pixels" and result["same_class"]
    assert [json.loads(line)["metric"] for line in per_query.read_text().splitlines()] == ["R@1", "R@2"]
    # Without a catalog, the index is opened as it is, with the models that built it.
    assert main([*common, "--any-class"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["recall"] == result["recall"] and again["same_class"] is False


def test_search_into_a_closed_pipe_ends_quietly(tiny_catalog, tmp_path):
    db = tmp_path / "db.lance"
    assert (
        main(["index", str(tiny_catalog), "--db", str(db), "--embedder", "test-pixels", "--detector", "foreground"])
        == 0
    )
    photo = next(tiny_catalog.rglob("*.jpg"))
    run = "import sys, tests.helpers; from fashion_search.cli import main; sys.exit(main(sys.argv[1:]))"
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.Popen(
        [sys.executable, "-c", run, "search", str(photo), str(photo), "--db", str(db)],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.close()  # like `| head` that has read what it wanted, before any output
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 141 and b"Traceback" not in err and b"BrokenPipe" not in err, err.decode()


@pytest.mark.parametrize("command", [["search", "photo.jpg"], ["info"], ["serve"]])
def test_reading_a_missing_index_is_an_error_that_leaves_no_folder_behind(tmp_path, capsys, command):
    missing = tmp_path / "no-such-index"
    assert main([*command, "--db", str(missing)]) == 2
    assert "no index at" in capsys.readouterr().err
    assert not missing.exists()


def test_an_index_path_that_is_a_file_or_under_one_is_a_one_line_error(tiny_catalog, tmp_path, capsys):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not an index")
    assert main(["serve", "--db", str(a_file)]) == 2
    assert "is a file, not an index folder" in capsys.readouterr().err
    code, out = _index(tiny_catalog, a_file / "db", capsys)
    assert code == 2 and "cannot create the index folder" in out.err and "Traceback" not in out.err


def test_search_filter_keeps_matching_products_and_a_bad_one_is_a_one_line_error(tiny_catalog, tmp_path, capsys):
    metadata = tmp_path / "metadata.csv"
    metadata.write_text("product_id,brand,price\nred-1,Nike,30\nblue-1,Zara,60\ngreen-1,Nike,80\nblack-1,Zara,15\n")
    _index(tiny_catalog, tmp_path / "db", capsys, "--metadata", str(metadata))
    query = tmp_path / "q.png"
    make_product((20, 20, 200)).save(query)
    db = str(tmp_path / "db")
    assert main(["search", str(query), "--db", db, "--json", "--filter", "brand = 'Nike' and price > 50"]) == 0
    [line] = capsys.readouterr().out.splitlines()
    assert [r["product_id"] for r in json.loads(line)["garments"][0]["results"]] == ["green-1"]
    assert main(["search", str(query), "--db", db, "--filter", "colour = 'Red'"]) == 2
    err = capsys.readouterr().err
    assert "no metadata column 'colour'" in err and "brand, price" in err and "Traceback" not in err
    assert main(["info", "--db", db]) == 0
    assert "price: number, 15 to 80 (4 products)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["index", "CATALOG", "--batch-size", "0"], "--batch-size"),
        (["search", "x.jpg", "-k", "-3"], "-k"),
        (["eval-pairs", "--pairs", "p.csv", "--threads", "two"], "--threads"),
        (["serve", "--max-upload-mb", "nan"], "--max-upload-mb"),
        (["serve", "--max-write-mb", "inf"], "--max-write-mb"),
        (["serve", "--threads", "0"], "--threads"),
        (["duplicates", "--threads", "0"], "--threads"),
    ],
)
def test_a_numeric_option_out_of_range_is_refused_naming_it(argv, option, tmp_path, capsys):
    argv = [str(tmp_path) if a == "CATALOG" else a for a in argv]
    with pytest.raises(SystemExit) as exited:
        main([*argv, "--db", str(tmp_path / "db")])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}" in err and "Traceback" not in err


def test_rebuilding_a_read_only_index_is_a_one_line_error_that_keeps_it(tiny_catalog, tmp_path, capsys, monkeypatch):
    from fashion_search.store import lance, open_store

    db = str(tmp_path / "db.lance")
    assert main(["index", str(tiny_catalog), "--db", db, "--embedder", "test-pixels", "--detector", "foreground"]) == 0
    garments = open_store(db).count()
    capsys.readouterr()

    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / "db.lance"))

    monkeypatch.setattr(lance.tempfile, "TemporaryFile", read_only)  # as a read-only folder answers
    assert main(["index", str(tiny_catalog), "--db", db, "--rebuild"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fashion-search: error: the index folder") and "not writable" in err
    assert err.count("\n") == 1 and "Traceback" not in err
    monkeypatch.undo()
    assert open_store(db).count() == garments


def test_an_io_error_is_one_line_without_a_traceback_unless_verbose(tiny_catalog, tmp_path, capsys, monkeypatch):
    from fashion_search.store.lance import LanceVectorStore

    db = str(tmp_path / "db.lance")
    assert main(["index", str(tiny_catalog), "--db", db, "--embedder", "test-pixels", "--detector", "foreground"]) == 0
    capsys.readouterr()

    def full_disk(self):
        raise OSError(28, "No space left on device", db)

    monkeypatch.setattr(LanceVectorStore, "clear", full_disk)
    assert main(["index", str(tiny_catalog), "--db", db, "--rebuild"]) == 2
    assert capsys.readouterr().err == f"fashion-search: error: No space left on device: {db}\n"
    with pytest.raises(OSError):
        main(["-v", "index", str(tiny_catalog), "--db", db, "--rebuild"])


def test_a_catalog_whose_folder_cannot_be_read_exits_non_zero(tmp_path, capsys, monkeypatch):
    from fashion_search import catalog

    root = tmp_path / "catalog"
    (root / "Tops" / "p1").mkdir(parents=True)
    make_product((200, 20, 20)).save(root / "Tops" / "p1" / "a.jpg")
    real = catalog.Path.iterdir

    def unreadable(self):
        if self == root.resolve():
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(catalog.Path, "iterdir", unreadable)
    db = str(tmp_path / "db.lance")
    assert main(["index", str(root), "--db", db, "--embedder", "test-pixels", "--detector", "foreground"]) == 1
    assert "cannot read folder: Permission denied" in capsys.readouterr().out
