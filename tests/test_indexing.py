"""Indexing behaviour: incremental, interruptible, failure-tolerant."""

import os
import time

import pytest
from PIL import Image

from fashion_search import SearchEngine, load_catalog
from fashion_search.errors import IndexMismatchError
from fashion_search.pipeline import Component

PIXELS = Component("test-pixels", {})
# These tests are about incremental indexing, not detection: one garment per synthetic shot.
FOREGROUND = Component("foreground", {})


def _engine(db):
    return SearchEngine.create(db, embedder=PIXELS, detector=FOREGROUND)


def test_first_run_indexes_every_image(tiny_catalog, tmp_path):
    engine = _engine(tmp_path / "db.lance")
    report = engine.index(load_catalog(folder=tiny_catalog))
    assert (report.indexed, report.unchanged, report.failed) == (5, 0, [])
    assert engine.store.count() == 5


def test_second_run_only_processes_new_or_changed_images(tiny_catalog, tmp_path):
    db = tmp_path / "db.lance"
    _engine(db).index(load_catalog(folder=tiny_catalog))
    changed = tiny_catalog / "Tops" / "blue-1" / "view0.jpg"
    Image.new("RGB", (30, 30), (0, 0, 90)).save(changed)
    os.utime(changed, (time.time() + 5, time.time() + 5))
    new = tiny_catalog / "Skirts" / "new-1"
    new.mkdir()
    Image.new("RGB", (30, 30), (90, 0, 0)).save(new / "a.webp")
    report = _engine(db).index(load_catalog(folder=tiny_catalog))
    assert (report.indexed, report.unchanged) == (2, 4)
    assert _engine(db).store.count() == 6


def test_removed_images_leave_the_index(tiny_catalog, tmp_path):
    db = tmp_path / "db.lance"
    _engine(db).index(load_catalog(folder=tiny_catalog))
    (tiny_catalog / "Tops" / "red-1" / "VIEW1.PNG").unlink()
    report = _engine(db).index(load_catalog(folder=tiny_catalog))
    assert report.removed == 1 and report.indexed == 0
    assert _engine(db).store.count() == 4


def test_corrupt_and_non_image_files_are_reported_and_skipped(tiny_catalog, tmp_path):
    (tiny_catalog / "Tops" / "blue-1" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (tiny_catalog / "Tops" / "blue-1" / "empty.png").write_bytes(b"")
    good = tiny_catalog / "Tops" / "blue-1" / "view0.jpg"
    (tiny_catalog / "Tops" / "blue-1" / "cut.jpg").write_bytes(good.read_bytes()[:300])
    report = _engine(tmp_path / "db.lance").index(load_catalog(folder=tiny_catalog))
    assert report.indexed == 5
    failed = {os.path.basename(p): reason for p, reason in report.failed}
    assert set(failed) == {"broken.jpg", "empty.png", "cut.jpg"}
    assert all(reason for reason in failed.values())


def test_interrupted_run_is_finished_by_the_next_without_duplicates(tiny_catalog, tmp_path, monkeypatch):
    db = tmp_path / "db.lance"
    engine = _engine(db)
    calls = {"n": 0}
    original = engine.store.upsert_images

    def crash_after_first_batch(rows):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        original(rows)

    monkeypatch.setattr(engine.store, "upsert_images", crash_after_first_batch)
    with pytest.raises(KeyboardInterrupt):
        engine.index(load_catalog(folder=tiny_catalog), batch_size=2)
    assert _engine(db).store.count() == 2
    report = _engine(db).index(load_catalog(folder=tiny_catalog), batch_size=2)
    assert (report.indexed, report.unchanged) == (3, 2)
    store = _engine(db).store
    assert store.count() == 5
    assert len({(row["image_id"], row["garment"]) for row in store.iter_rows(with_vectors=False)}) == 5


def test_an_index_refuses_vectors_from_another_model_until_rebuilt(tiny_catalog, tmp_path):
    db = tmp_path / "db.lance"
    _engine(db).index(load_catalog(folder=tiny_catalog))
    smaller = Component("test-pixels", {"size": 4})
    with pytest.raises(IndexMismatchError, match="--rebuild"):
        SearchEngine.create(db, embedder=smaller, detector=FOREGROUND)
    engine = SearchEngine.create(db, embedder=smaller, detector=FOREGROUND, rebuild=True)
    report = engine.index(load_catalog(folder=tiny_catalog))
    assert (report.indexed, report.unchanged) == (5, 0)
    assert engine.store.count() == 5 and engine.store.dim == 4 * 4 * 3
    assert SearchEngine.open(db).pipeline.embedder.identity()["size"] == 4


def test_indexing_detects_with_the_detectors_copy_for_parallel_use(tiny_catalog, tmp_path):
    engine = _engine(tmp_path / "db.lance")
    calls: list[str] = []
    own = engine.pipeline.detector

    class OneCorePerCall(type(own)):
        def detect(self, image):
            calls.append("parallel copy")
            return own.detect(image)

    engine.pipeline.detector.for_parallel_use = lambda: OneCorePerCall()
    engine.index(load_catalog(folder=tiny_catalog))
    assert calls == ["parallel copy"] * 5


def test_a_rerun_builds_the_indexes_a_killed_run_left_unbuilt(tiny_catalog, tmp_path, monkeypatch):
    engine = _engine(tmp_path / "db.lance")
    store_class = type(engine.store)
    optimize = store_class.optimize

    def killed(self):
        raise KeyboardInterrupt  # the run dies while building the indexes

    monkeypatch.setattr(store_class, "optimize", killed)
    with pytest.raises(KeyboardInterrupt):
        engine.index(load_catalog(folder=tiny_catalog))
    assert engine.store.needs_optimize()
    monkeypatch.setattr(store_class, "optimize", optimize)
    report = _engine(tmp_path / "db.lance").index(load_catalog(folder=tiny_catalog))
    assert (report.indexed, report.unchanged) == (0, 5)
    assert not engine.store.needs_optimize()
