"""Indexing on a local Ray instance gives the index a one-process run gives, and resumes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from fashion_search import SearchEngine, load_catalog
from fashion_search.cli import main
from fashion_search.store import open_store

pytest.importorskip("ray", reason="indexing on Ray needs the distributed extra (pip install '.[distributed]')")

from fashion_search.indexing_ray import RayRunner, RaySettings  # noqa: E402

pytestmark = pytest.mark.slow  # Ray workers on real photos

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def zalora_catalog(shared_data: Path, tmp_path: Path) -> Path:
    """24 Zalora photos of 3 categories as a CSV catalog (real photos: the shipped models run)."""
    rows = ["image,product_id,category"]
    for category in ("Atasan", "KnitWear___Cardigan", "Swimwear___Beachwear"):
        for path in sorted((shared_data / "zalora" / category).rglob("*.jpg"))[:8]:
            rows.append(f"{path},{path.parent.name},{category}")
    csv = tmp_path / "catalog.csv"
    csv.write_text("\n".join(rows) + "\n")
    return csv


def _rows(db: Path) -> dict[tuple[str, int], dict]:
    return {(r["image_id"], r["garment"]): r for r in open_store(str(db)).iter_rows(with_vectors=True)}


def test_ray_run_stores_the_rows_of_a_one_process_run(zalora_catalog, tmp_path):
    items = load_catalog(csv_path=zalora_catalog)
    local = SearchEngine.create(tmp_path / "local.lance")
    local_report = local.index(items, all_garments=True)
    on_ray = SearchEngine.create(tmp_path / "ray.lance")
    ray_report = on_ray.index(items, all_garments=True, runner=RayRunner(RaySettings(workers=2)), batch_size=5)

    assert (ray_report.indexed, ray_report.failed) == (local_report.indexed, local_report.failed) == (24, [])
    expected, got = _rows(tmp_path / "local.lance"), _rows(tmp_path / "ray.lance")
    assert got.keys() == expected.keys()
    for key, row in expected.items():
        assert (got[key]["label"], got[key]["product_id"], got[key]["fingerprint"]) == (
            row["label"],
            row["product_id"],
            row["fingerprint"],
        )
        # Other thread counts in onnxruntime round differently in the last bits.
        assert np.allclose(got[key]["vector"], row["vector"], atol=1e-4)
    assert on_ray.searcher.category_classes.to_dict() == local.searcher.category_classes.to_dict()

    again = on_ray.index(items, all_garments=True, runner=RayRunner(RaySettings(workers=2)))
    assert (again.indexed, again.unchanged) == (0, 24)


def test_killed_ray_run_is_finished_by_the_next_without_duplicates(zalora_catalog, tmp_path):
    db = tmp_path / "db.lance"
    args = ["index", "--csv", str(zalora_catalog), "--db", str(db), "--ray", "--workers", "1", "--batch-size", "2"]
    run = [sys.executable, "-m", "fashion_search.cli", *args]
    # A process group of its own, so that the kill takes the local Ray instance's processes with it.
    proc = subprocess.Popen(run, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    deadline, stored = time.monotonic() + 240, 0
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.5)
        try:
            stored = len(open_store(str(db)).fingerprints())
        except Exception:
            stored = 0
        if stored >= 4:
            break
    assert proc.poll() is None, f"the run ended before it could be killed: {proc.communicate()[1].decode()[-2000:]}"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = len(open_store(str(db)).fingerprints())
    assert 4 <= partial < 24

    finish = subprocess.run(run + ["--json"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert finish.returncode == 0, finish.stderr[-2000:]
    rows = list(open_store(str(db)).iter_rows(with_vectors=False))
    keys = [(r["image_id"], r["garment"]) for r in rows]
    assert len(keys) == len(set(keys)), "an image was stored twice"
    assert len({r["image_id"] for r in rows}) == 24


def test_workers_without_ray_is_a_usage_error(tiny_catalog, tmp_path, capsys):
    assert main(["index", str(tiny_catalog), "--db", str(tmp_path / "db"), "--workers", "2"]) == 2
    assert "use it with --ray" in capsys.readouterr().err
    assert not (tmp_path / "db").exists()
