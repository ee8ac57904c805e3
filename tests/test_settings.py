"""One settings class: defaults, then the environment, then options; bad values named."""

import pytest

from fashion_search.cli import main
from fashion_search.errors import UsageError
from fashion_search.settings import MEGABYTE, Settings


def test_the_environment_overrides_defaults_and_options_override_the_environment():
    environ = {"FASHION_SEARCH_PORT": "8100", "FASHION_SEARCH_MAX_UPLOAD_MB": "2.5", "FASHION_SEARCH_DB": "a.lance"}
    settings = Settings.load(environ)
    assert (settings.port, settings.max_upload_bytes, settings.db) == (8100, int(2.5 * MEGABYTE), "a.lance")
    assert settings.host == "127.0.0.1" and settings.body_timeout_s == 60.0
    assert Settings.load(environ, port=9000, db=None).port == 9000
    assert Settings.load(environ, port=9000, db=None).db == "a.lance"  # None: not given


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("PORT", "70000", "from 1 to 65535"),
        ("PORT", "0", "from 1 to 65535"),
        ("PORT", "80.5", "not a whole number"),
        ("BODY_TIMEOUT_S", "nan", "not a finite number"),
        ("MAX_UPLOAD_MB", "inf", "not a finite number"),
        ("MAX_WRITE_MB", "-1", "a positive number"),
        ("THREADS", "0", "at least 1"),
        ("PROTECT_READS", "maybe", "true or false"),
    ],
)
def test_a_bad_value_in_the_environment_is_refused_naming_its_variable(name, text, message):
    with pytest.raises(UsageError, match=message) as caught:
        Settings.load({f"FASHION_SEARCH_{name}": text})
    assert f"FASHION_SEARCH_{name}" in str(caught.value)


def test_a_bad_option_is_refused_naming_the_option():
    with pytest.raises(UsageError, match=r"--port \(FASHION_SEARCH_PORT\) must be from 1 to 65535, not 65536"):
        Settings.load({}, port=65536)
    with pytest.raises(UsageError, match="--max-upload-mb"):
        Settings.load({}, max_upload_bytes=float("nan"))


def test_reads_protected_without_a_key_are_refused():
    with pytest.raises(UsageError, match="--protect-reads needs an API key"):
        Settings.load({"FASHION_SEARCH_PROTECT_READS": "yes"})


def test_serve_refuses_an_out_of_range_port_in_one_line(tmp_path, capsys, monkeypatch):
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: pytest.fail("served with a bad port"))
    assert main(["serve", "--db", str(tmp_path / "db"), "--port", "99999"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fashion-search: error: --port (FASHION_SEARCH_PORT) must be") and err.count("\n") == 1


def test_every_command_takes_its_index_from_the_environment(tiny_catalog, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FASHION_SEARCH_DB", str(tmp_path / "env.lance"))
    assert main(["index", str(tiny_catalog), "--embedder", "test-pixels", "--detector", "foreground"]) == 0
    assert main(["info", "--json"]) == 0
    assert '"images": 5' in capsys.readouterr().out
    monkeypatch.delenv("FASHION_SEARCH_DB")
    assert main(["info"]) == 2
    assert "info needs --db (or FASHION_SEARCH_DB)" in capsys.readouterr().err
