"""Every file of the robustness corpus through every entry point, with the shipped models: a
correct result or the documented error, never a crash, a hang or a stack trace to a client.

The outcome of each file at each entry point is written to ``artifacts/robustness/outcomes.md``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from fashion_search import SearchEngine, load_catalog
from fashion_search.cli import main
from fashion_search.web import Settings, create_app
from tests.helpers import make_product
from tests.robustness.corpus import Entry, write_corpus

ROOT = Path(__file__).resolve().parents[2]
OUTCOMES = ROOT / "artifacts" / "robustness" / "outcomes.md"
# Documented answers to a file that is not a photo this server reads.
REFUSALS = {413: {"upload_too_large"}, 415: {"not_an_image"}, 422: {"corrupt_image", "empty_file", "too_many_pixels"}}
outcomes: dict[str, dict[str, str]] = {}


# A hang fails the test (pytest-timeout) instead of holding CI.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]  # the shipped models over the robustness corpus


@pytest.fixture(scope="module", autouse=True)
def outcome_table():
    yield
    if outcomes:
        OUTCOMES.parent.mkdir(parents=True, exist_ok=True)
        points = ["index", "search", "detect", "http"]
        lines = ["| file | what | expected | " + " | ".join(points) + " |", "|---" * (3 + len(points)) + "|"]
        for entry in ENTRIES:
            got = outcomes.get(entry.name, {})
            lines.append(
                f"| `{entry.name}` | {entry.what} | {entry.expect} | "
                + " | ".join(got.get(p, "") for p in points)
                + " |"
            )
        OUTCOMES.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("corpus")


ENTRIES: list[Entry] = []


@pytest.fixture(scope="module")
def entries(corpus: Path) -> list[Entry]:
    ENTRIES[:] = write_corpus(corpus)
    return ENTRIES


@pytest.fixture(scope="module")
def indexed(corpus: Path, entries: list[Entry], tmp_path_factory):
    """A catalog of every corpus file (each its own product) and four good photos, indexed with
    the default models; the run's report and the index."""
    catalog = tmp_path_factory.mktemp("catalog")
    for entry in entries:
        folder = catalog / "Corpus" / Path(entry.name).stem
        folder.mkdir(parents=True)
        shutil.copy(corpus / entry.name, folder / entry.name)
    for n, colour in enumerate([(200, 30, 30), (30, 30, 200), (30, 160, 40), (20, 20, 20)]):
        folder = catalog / "Good" / f"good-{n}"
        folder.mkdir(parents=True)
        make_product(colour, size=(160, 200)).save(folder / "view.jpg")
    db = tmp_path_factory.mktemp("index") / "db.lance"
    engine = SearchEngine.create(db)
    report = engine.index(load_catalog(folder=catalog))
    return report, db


def test_an_index_run_over_the_corpus_indexes_every_photo_and_reports_the_rest(entries, indexed):
    report, db = indexed
    failed = {Path(path).name: reason for path, reason in report.failed}
    photos = [e for e in entries if e.expect == "photo"]
    assert report.indexed == len(photos) + 4
    for entry in entries:
        outcome = f"failed: {failed[entry.name][:60]}" if entry.name in failed else "indexed"
        outcomes.setdefault(entry.name, {})["index"] = outcome
        assert (entry.name in failed) == (entry.expect == "refused"), (entry.name, outcome)
    products = {r["product_id"] for r in SearchEngine.open(db).store.iter_rows(with_vectors=False)}
    assert {f"good-{n}" for n in range(4)} <= products


def test_search_answers_each_file_with_results_or_its_error(corpus, entries, indexed, capsys):
    _, db = indexed
    code = main(["search", *[str(corpus / e.name) for e in entries], "--db", str(db), "-k", "3", "--json"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 1 and len(lines) == len(entries)
    for entry, line in zip(entries, lines):
        outcome = f"error: {line['error'][:60]}" if "error" in line else f"{len(line['garments'])} garments"
        outcomes.setdefault(entry.name, {})["search"] = outcome
        assert ("error" in line) == (entry.expect == "refused"), (entry.name, line)
        if "error" not in line:
            # Results may be empty for a garment whose class no category holds (class-aware).
            assert line["garments"] and all("results" in g for g in line["garments"])


def test_detect_answers_each_file_with_garments_or_its_error(corpus, entries, capsys):
    code = main(["detect", *[str(corpus / e.name) for e in entries], "--json"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 1 and len(lines) == len(entries)
    for entry, line in zip(entries, lines):
        outcome = f"error: {line['error'][:60]}" if "error" in line else f"{len(line['garments'])} garments"
        outcomes.setdefault(entry.name, {})["detect"] = outcome
        assert ("error" in line) == (entry.expect == "refused"), (entry.name, line)


def test_the_http_api_answers_each_upload_with_results_or_a_documented_4xx(corpus, entries, indexed):
    _, db = indexed
    with TestClient(create_app(db, Settings(max_pixels=40_000_000))) as client:
        for entry in entries:
            data = (corpus / entry.name).read_bytes()
            response = client.post("/api/search", files={"image": (entry.name, data, "image/jpeg")}, params={"k": 3})
            assert response.status_code < 500 and "Traceback" not in response.text, (entry.name, response.text)
            if response.status_code == 200:
                outcome = f"200, {len(response.json()['garments'])} garments"
            else:
                code = response.json()["error"]["code"]
                assert code in REFUSALS.get(response.status_code, set()), (entry.name, response.status_code, code)
                outcome = f"{response.status_code} {code}"
            outcomes.setdefault(entry.name, {})["http"] = outcome
            assert (response.status_code == 200) == (entry.expect == "photo"), (entry.name, outcome)
        assert client.get("/healthz").status_code == 200
