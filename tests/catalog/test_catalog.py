import csv

import pytest
from PIL import Image

from fashion_search.catalog import CatalogError, CsvColumns, load_catalog


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
