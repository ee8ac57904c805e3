"""The fuzz targets of scripts/fuzz.py, run briefly: each must finish its time without a finding."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # fuzzers

ROOT = Path(__file__).resolve().parents[2]
SECONDS = 15


@pytest.mark.timeout(300)
@pytest.mark.parametrize("target", ["images", "filters", "writes"])
def test_fuzzing_finds_nothing_in_a_short_run(target, tmp_path):
    pytest.importorskip("atheris", reason="atheris is installed by the dev extra on x86_64 Linux only")
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "fuzz.py"), target, "--seconds", str(SECONDS)]
        + ["--artifacts", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    # libFuzzer's closing statistics: proof that it ran inputs, not that it exited early.
    executed = [line for line in run.stderr.splitlines() if "stat::number_of_executed_units" in line]
    assert executed and int(executed[0].split(":")[-1]) > 100, run.stderr[-2000:]
