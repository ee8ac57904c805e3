import csv
import os
from pathlib import Path

import pytest
from PIL import Image

from fashion_search import SearchEngine
from fashion_search.catalog import CatalogError, CsvColumns, load_catalog
from fashion_search.pipeline import Component


def refuse_to_list(monkeypatch, locked: Path) -> None:
    """Make ``locked`` unreadable. Tests run as root in CI, where chmod 000 does not stop
    reading: refuse the way the kernel would."""
    real_iterdir = Path.iterdir

    def iterdir(self):
        if self == locked:
            raise PermissionError(13, "Permission denied", str(self))
        return real_iterdir(self)

    monkeypatch.setattr(Path, "iterdir", iterdir)


def test_folder_layout_yields_category_and_product_from_folders(tiny_catalog):
    items = load_catalog(folder=tiny_catalog)
    assert len(items) == 5
    red = [i for i in items if i.product_id == "red-1"]
    assert len(red) == 2 and {i.category for i in red} == {"Tops"}
    assert all(i.path.is_absolute() for i in items)


def test_folder_layout_accepts_any_extension_case_and_ignores_stray_files(tiny_catalog):
    (tiny_catalog / "Tops" / "red-1" / "notes.txt").write_text("x")
    Image.new("RGB", (4, 4)).save(tiny_catalog / "stray.jpg")  # not in the layout
    Image.new("RGB", (4, 4)).save(tiny_catalog / "Tops" / "loose.jpg")
    names = sorted(i.path.name for i in load_catalog(folder=tiny_catalog))
    assert "VIEW1.PNG" in names and "notes.txt" not in names
    assert "stray.jpg" not in names and "loose.jpg" not in names


def test_metadata_csv_is_joined_on_product_id(tiny_catalog, tmp_path):
    meta = tmp_path / "meta.csv"
    meta.write_text("product_id,brand,price\nred-1,Acme,9.99\n")
    items = load_catalog(folder=tiny_catalog, metadata_csv=meta)
    red = next(i for i in items if i.product_id == "red-1")
    assert red.metadata == {"brand": "Acme", "price": "9.99"}
    assert next(i for i in items if i.product_id == "blue-1").metadata == {}


def test_csv_catalog_resolves_relative_paths_and_keeps_other_columns(tmp_path):
    (tmp_path / "imgs").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "imgs" / "a.jpg")
    absolute = tmp_path / "b.png"
    Image.new("RGB", (4, 4)).save(absolute)
    with open(tmp_path / "cat.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "sku", "type", "colour"])
        w.writerow(["imgs/a.jpg", "A", "Skirts", "Red"])
        w.writerow([str(absolute), "B", "Tops", "Blue"])
        w.writerow(["", "C", "Tops", "x"])  # no image: skipped
    items = load_catalog(csv_path=tmp_path / "cat.csv", columns=CsvColumns("file", "sku", "type"))
    assert [i.product_id for i in items] == ["A", "B"]
    assert items[0].path == (tmp_path / "imgs" / "a.jpg").resolve()
    assert items[0].category == "Skirts" and items[0].metadata == {"colour": "Red"}


def test_csv_without_required_columns_names_them(tmp_path):
    (tmp_path / "c.csv").write_text("path,id\nx.jpg,1\n")
    with pytest.raises(CatalogError, match="'image'"):
        load_catalog(csv_path=tmp_path / "c.csv")


def test_missing_catalog_folder_is_a_clear_error(tmp_path):
    with pytest.raises(CatalogError, match="not found"):
        load_catalog(folder=tmp_path / "nope")


def test_fingerprint_changes_when_file_or_entry_changes(tiny_catalog):
    item = next(i for i in load_catalog(folder=tiny_catalog) if i.product_id == "blue-1")
    before = item.fingerprint()
    assert item.fingerprint() == before
    Image.new("RGB", (9, 9), (1, 2, 3)).save(item.path)
    assert item.fingerprint() != before


def test_unreadable_folders_looping_links_and_fifos_are_reported_not_fatal(tiny_catalog, monkeypatch):
    locked = tiny_catalog / "Skirts"
    (tiny_catalog / "Tops" / "red-1" / "loop.jpg").symlink_to("loop.jpg")
    os.mkfifo(tiny_catalog / "Tops" / "blue-1" / "pipe.jpg")
    refuse_to_list(monkeypatch, locked)
    catalog = load_catalog(folder=tiny_catalog)
    assert {item.product_id for item in catalog} == {"red-1", "blue-1"}
    reasons = dict(catalog.problems)
    assert reasons[str(locked)] == "cannot read folder: Permission denied"
    assert reasons[str(tiny_catalog / "Tops" / "red-1" / "loop.jpg")] == "broken or looping symbolic link"
    assert "FIFO" in reasons[str(tiny_catalog / "Tops" / "blue-1" / "pipe.jpg")]


def test_an_unreadable_folder_is_reported_by_the_index_run_and_its_images_are_kept(tiny_catalog, tmp_path, monkeypatch):
    engine = SearchEngine.create(
        tmp_path / "db.lance", embedder=Component("test-pixels"), detector=Component("foreground")
    )
    assert engine.index(load_catalog(folder=tiny_catalog)).indexed == 5
    locked = tiny_catalog / "Skirts"
    refuse_to_list(monkeypatch, locked)
    report = engine.index(load_catalog(folder=tiny_catalog))
    assert report.failed == [(str(locked), "cannot read folder: Permission denied")]
    assert (report.removed, engine.store.count()) == (0, 5)
