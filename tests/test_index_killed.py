"""A real interruption: the index command is SIGKILLed mid-run, then run again."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fashion_search.store import open_store
from tests.helpers import make_product

pytestmark = pytest.mark.slow  # crash tests: an index run killed mid-way

ROOT = Path(__file__).resolve().parent.parent
RUN = "import sys, tests.helpers; from fashion_search.cli import main; sys.exit(main(sys.argv[1:]))"


def _run(args, **kw):
    return subprocess.Popen(
        [sys.executable, "-c", RUN, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw
    )


def test_killed_index_run_is_completed_by_the_next_run_without_duplicates(tmp_path):
    catalog = tmp_path / "catalog"
    for n in range(24):
        folder = catalog / ("Tops" if n % 2 else "Skirts") / f"p{n:02d}"
        folder.mkdir(parents=True)
        make_product(((n * 37) % 255, (n * 91) % 255, (n * 53) % 255)).save(folder / "front.jpg")
    db = tmp_path / "db.lance"
    args = [
        "index",
        str(catalog),
        "--db",
        str(db),
        "--embedder",
        "test-slow-pixels",
        "--detector",
        "foreground",
        "--batch-size",
        "4",
    ]

    proc = _run(args)
    deadline = time.monotonic() + 60
    stored = 0
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
        try:
            stored = open_store(str(db)).count()
        except Exception:
            stored = 0
        if stored >= 8:
            break
    assert proc.poll() is None, "the run finished before it could be interrupted"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = open_store(str(db)).count()
    assert 0 < partial < 24

    finish = _run(args)
    out, err = finish.communicate(timeout=120)
    assert finish.returncode == 0, err.decode()
    assert f"{24 - partial} indexed" in out.decode() and f"{partial} unchanged" in out.decode()
    store = open_store(str(db))
    rows = list(store.iter_rows(with_vectors=False))
    assert len(rows) == 24 and len({r["image_id"] for r in rows}) == 24
