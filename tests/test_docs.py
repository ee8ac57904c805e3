"""The docs stay true: figure tables match the measurements they are rendered from, links
resolve, experiment records keep their shape, and the README stays a user's guide."""

import re
import subprocess
from pathlib import Path

import pytest

from tests.helpers import load_script

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = sorted((ROOT / "docs" / "experiments").glob("*.md"))
LINK = re.compile(r"\]\(([^)#\s]+\.(?:md|toml|json|png|py))\)")


def _renderer():
    return load_script("render_figures")


def _tracked(*patterns: str) -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", *patterns],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return [ROOT / name for name in listed if (ROOT / name).is_file()]


@pytest.mark.parametrize("document", _renderer().DOCUMENTS, ids=lambda p: p.name)
def test_every_figure_table_is_the_one_its_json_renders(document):
    renderer = _renderer()
    assert renderer.BLOCK.search(document.read_text()), f"{document.name} has no figure block"
    assert renderer.stale_blocks(document) == [], "run: python scripts/render_figures.py"


def test_a_table_that_disagrees_with_its_json_is_caught(tmp_path, monkeypatch):
    renderer = _renderer()
    readme = tmp_path / "README.md"
    text = (ROOT / "README.md").read_text()
    edited = re.sub(r"(<!-- figures:retrieval -->\n.*?\| )0\.(\d)", r"\g<1>0.9", text, count=1, flags=re.S)
    assert edited != text
    readme.write_text(edited)
    assert renderer.stale_blocks(readme) == ["retrieval"]


@pytest.mark.parametrize("document", _tracked("*.md", "*.toml", "*.py"), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_and_experiment_references_resolve(document):
    text = document.read_text()
    for target in LINK.findall(text):
        if "://" not in target:
            assert (document.parent / target).exists(), f"{document.name} links to missing {target}"
    for name in re.findall(r"docs/experiments/(\d{4}-\d\d-\d\d-[\w-]+\.md)", text):
        assert (ROOT / "docs" / "experiments" / name).is_file(), f"{document.name} cites missing {name}"


def test_the_repository_speaks_of_the_project_not_of_work_sessions():
    # (onnxruntime's sessions are a technical term and stay.)
    word, stop = "sess" + "ion", "st" + "op"  # spelt apart so that this file does not match its own pattern
    pattern = re.compile(
        r"\b((first|second|third|fourth|fifth|sixth|seventh|eighth|this|next|previous|last|earlier|"
        rf"later|one|each|a|every) (work )?{word}s?\b(?! (factory|settings|options|config))|"
        rf"{stop} \d+|this {stop}|{word}s? ago)",
        re.I,
    )
    for path in _tracked("*.md", "*.py", "*.toml"):
        if path.name == "test_docs.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line):
                pytest.fail(f"{path.relative_to(ROOT)}:{number} speaks of how the work went: {line.strip()}")


@pytest.mark.parametrize("record", EXPERIMENTS, ids=lambda p: p.name)
def test_each_experiment_record_is_dated_and_says_outcome_question_command_result_decision(record):
    text = record.read_text()
    assert re.fullmatch(r"\d{4}-\d\d-\d\d-[a-z0-9-]+\.md", record.name)
    assert text.startswith("# ") and record.name[:10] in text.splitlines()[2]
    for part in ("**Outcome.**", "## Question", "## Command", "## Result", "## Decision"):
        assert part in text, f"{record.name} lacks {part}"
    assert text.index("**Outcome.**") < text.index("## Question")


def test_the_readme_is_a_users_guide_of_about_two_thousand_words():
    words = len((ROOT / "README.md").read_text().split())
    assert words <= 2100, f"README.md has {words} words: experiments belong in docs/experiments/"


def test_the_settings_page_lists_every_setting_as_the_settings_class_does():
    from fashion_search.settings import settings_table

    text = (ROOT / "docs" / "settings.md").read_text()
    block = re.search(r"<!-- settings -->\n(.*?)\n<!-- /settings -->", text, re.S)
    assert block is not None and block.group(1) == settings_table(), "regenerate docs/settings.md's table"
