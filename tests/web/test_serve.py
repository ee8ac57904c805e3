"""``fashion-search serve``: the command wires the index and the limits into the app."""

from __future__ import annotations

from fastapi.testclient import TestClient

from fashion_search import SearchEngine, load_catalog
from fashion_search.cli import main
from fashion_search.pipeline import Component


def test_serve_opens_the_index_once_and_runs_uvicorn_on_the_given_address(tiny_catalog, tmp_path, monkeypatch, capsys):
    import uvicorn

    db = tmp_path / "db.lance"
    SearchEngine.create(db, embedder=Component("test-pixels", {}), detector=Component("foreground", {})).index(
        load_catalog(folder=tiny_catalog)
    )
    served = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: served.update(app=app, **options))
    assert main(["serve", "--db", str(db), "--port", "8123", "--max-upload-mb", "2", "--threads", "3"]) == 0
    assert served["host"] == "127.0.0.1" and served["port"] == 8123
    assert "http://127.0.0.1:8123/" in capsys.readouterr().err
    app = served["app"]
    assert app.state.settings.max_upload_bytes == 2 * 2**20 and app.state.settings.search_threads == 3
    with TestClient(app) as client:
        assert client.get("/healthz").json()["index_garments"] == 5


def test_serve_without_an_index_says_how_to_build_one(tmp_path, capsys):
    assert main(["serve", "--db", str(tmp_path / "missing.lance")]) == 2
    assert "fashion-search index" in capsys.readouterr().err


def test_serve_takes_its_settings_from_the_environment_and_the_command_line_wins(tiny_catalog, tmp_path, monkeypatch):
    import uvicorn

    db = tmp_path / "db.lance"
    SearchEngine.create(db, embedder=Component("test-pixels"), detector=Component("foreground")).index(
        load_catalog(folder=tiny_catalog)
    )
    served = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: served.update(app=app, **options))
    for name, value in {
        "DB": str(db),
        "HOST": "0.0.0.0",
        "PORT": "9001",
        "MAX_UPLOAD_MB": "3",
        "THREADS": "5",
        "MAX_PIXELS": "1000000",
        "CATEGORIES_TTL_S": "2.5",
    }.items():
        monkeypatch.setenv(f"FASHION_SEARCH_{name}", value)
    assert main(["serve"]) == 0
    settings = served["app"].state.settings
    assert (served["host"], served["port"]) == ("0.0.0.0", 9001)
    assert (settings.max_upload_bytes, settings.search_threads, settings.max_pixels, settings.categories_ttl_s) == (
        3 * 2**20,
        5,
        1_000_000,
        2.5,
    )
    assert main(["serve", "--port", "9002", "--threads", "2"]) == 0
    assert served["port"] == 9002 and served["app"].state.settings.search_threads == 2


def test_a_bad_setting_in_the_environment_is_named(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FASHION_SEARCH_MAX_UPLOAD_MB", "ten")
    assert main(["serve", "--db", str(tmp_path / "db.lance")]) == 2
    assert "FASHION_SEARCH_MAX_UPLOAD_MB='ten'" in capsys.readouterr().err
