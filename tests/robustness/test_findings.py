"""Inputs that fuzzing once found to crash a reader (scripts/fuzz.py), kept as regression tests:
each must now decode, or be refused with the documented error."""

from __future__ import annotations

from pathlib import Path

import pytest

from fashion_search.images import ImageError, load_image

FINDINGS = sorted((Path(__file__).parent / "findings").glob("*.bin"))


@pytest.mark.parametrize("path", FINDINGS, ids=[p.stem for p in FINDINGS])
def test_a_past_fuzzing_finding_decodes_or_is_refused_cleanly(path):
    try:
        assert load_image(path.read_bytes(), max_pixels=4_000_000).mode == "RGB"
    except ImageError:
        pass


def test_findings_are_kept():
    assert FINDINGS, "tests/robustness/findings/ holds the fuzzers' past findings"
