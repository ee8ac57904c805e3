"""Catalog writes through the Python API: add, replace and delete products one at a time."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from fashion_search import SearchEngine, load_catalog
from fashion_search.catalog.uploads import UploadFolder
from fashion_search.errors import CatalogError, ImageError, UnknownProductError
from fashion_search.pipeline import Component
from tests.helpers import make_product


def encoded(colour: tuple[int, int, int], fmt: str = "JPEG", **kwargs) -> bytes:
    out = io.BytesIO()
    make_product(colour, **kwargs).save(out, fmt)
    return out.getvalue()


@pytest.fixture
def engine(tiny_catalog: Path, tmp_path: Path) -> SearchEngine:
    db = tmp_path / "db.lance"
    engine = SearchEngine.create(db, embedder=Component("test-pixels", {}), detector=Component("foreground", {}))
    engine.index(load_catalog(folder=tiny_catalog))
    return engine


@pytest.fixture
def uploads(tmp_path: Path) -> UploadFolder:
    return UploadFolder(tmp_path / "uploads")


def test_a_new_product_is_stored_under_server_names_and_found_by_the_next_search(engine, uploads):
    write = engine.put_product(
        "yellow-1", [encoded((230, 220, 20)), encoded((220, 210, 30), "PNG")], "Tops", {"brand": "Sun"}, uploads
    )
    assert write.created and write.images == 2 and write.garments >= 2
    files = sorted(p.name for p in uploads.product_dir("yellow-1").iterdir())
    assert len(files) == 2 and {Path(f).suffix for f in files} == {".jpg", ".png"}
    assert all(len(Path(f).stem) == 40 for f in files)  # content digests, not client names
    results = engine.search(make_product((230, 220, 20)), k=1).garments[0].results
    assert results[0].product_id == "yellow-1" and results[0].metadata == {"brand": "Sun"}
    assert engine.search(make_product((230, 220, 20)), k=3, where="brand = 'Sun'").garments[0].results


def test_replacing_a_product_keeps_only_its_new_images_and_the_same_call_twice_changes_nothing(engine, uploads):
    engine.put_product("p", [encoded((230, 220, 20)), encoded((20, 220, 230))], "Tops", None, uploads)
    write = engine.put_product("p", [encoded((200, 100, 50))], "Skirts", {"size": "M"}, uploads)
    assert not write.created and write.images == 1
    stored = engine.store.get_product("p")
    assert {h.category for h in stored} == {"Skirts"} and len({h.image_id for h in stored}) == 1
    assert len(list(uploads.product_dir("p").iterdir())) == 1
    rows_before = sorted(
        (r["image_id"], r["garment"], r["fingerprint"]) for r in engine.store.iter_rows(with_vectors=False)
    )
    again = engine.put_product("p", [encoded((200, 100, 50))], "Skirts", {"size": "M"}, uploads)
    assert (again.created, again.images) == (False, 1)
    assert (
        sorted((r["image_id"], r["garment"], r["fingerprint"]) for r in engine.store.iter_rows(with_vectors=False))
        == rows_before
    )


def test_deleting_a_product_removes_its_rows_and_files_and_an_unknown_one_says_so(engine, uploads):
    engine.put_product("gone", [encoded((230, 220, 20))], "Tops", None, uploads)
    assert engine.delete_product("gone", uploads) == 1
    assert engine.store.get_product("gone") == [] and not uploads.product_dir("gone").exists()
    with pytest.raises(UnknownProductError):
        engine.delete_product("gone", uploads)


def test_a_bad_image_or_field_is_refused_before_anything_is_written(engine, uploads):
    count = engine.store.count()
    with pytest.raises(ImageError, match="image 2: "):
        engine.put_product("x", [encoded((1, 2, 3)), b"<html>not a photo</html>"], "Tops", None, uploads)
    truncated = encoded((9, 9, 9))[:300]
    with pytest.raises(ImageError, match="image 1: "):
        engine.put_product("x", [truncated], "Tops", None, uploads)
    for product_id, category, metadata, message in [
        ("", "Tops", None, "needs a product id"),
        ("x", " ", None, "needs a category"),
        ("x\n", "Tops", None, "printable"),
        ("x", "Tops", ["a"], "JSON object"),
        ("x", "Tops", {"a": {"b": 1}}, "values must be text"),
    ]:
        with pytest.raises(CatalogError, match=message):
            engine.put_product(product_id, [encoded((1, 2, 3))], category, metadata, uploads)
    with pytest.raises(CatalogError, match="at least one image"):
        engine.put_product("x", [], "Tops", None, uploads)
    assert engine.store.count() == count and not uploads.product_dir("x").exists()


def test_an_index_run_over_the_catalog_folder_keeps_products_written_through_the_api(engine, uploads, tiny_catalog):
    engine.put_product("api-1", [encoded((230, 220, 20))], "Tops", None, uploads)
    report = engine.index(load_catalog(folder=tiny_catalog))
    assert report.removed == 0 and engine.store.get_product("api-1")


def test_writes_keep_metadata_columns_current(engine, uploads):
    engine.put_product("hat-1", [encoded((10, 10, 10))], "Hats", {"price": "12.5", "brand": "Cap"}, uploads)
    engine.put_product("hat-2", [encoded((12, 10, 10))], "Hats", {"price": 30, "brand": "Lid"}, uploads)
    columns = SearchEngine.open(engine.store.local_folder()).searcher.metadata_columns.columns
    assert (columns["price"].kind, columns["price"].min, columns["price"].max) == ("number", 12.5, 30.0)
    assert columns["brand"].values == ["Cap", "Lid"]


def test_category_classes_count_a_writes_votes_and_take_back_a_removed_products():
    from fashion_search.category_classes import CategoryClasses

    def rows(image_id: str, category: str, label: str) -> list[dict]:
        return [{"image_id": image_id, "category": category, "label": label, "box": (0, 0, 10, 10)}]

    learned = CategoryClasses.learn(rows("a", "Tops", "top") + rows("b", "Tops", "top") + rows("c", "Tops", "dress"))
    added = learned.updated(added=rows("d", "Tops", "dress") + rows("e", "Hats", "hat"))
    assert added.images == {"Tops": 4, "Hats": 1} and added.shares["Tops"] == {"top": 0.5, "dress": 0.5}
    assert added.updated(removed=rows("e", "Hats", "hat")).images == {"Tops": 4}
    relearned = CategoryClasses.learn(
        rows("a", "Tops", "top") + rows("b", "Tops", "top") + rows("c", "Tops", "dress") + rows("d", "Tops", "dress")
    )
    assert added.updated(removed=rows("e", "Hats", "hat")).shares == relearned.shares


def test_a_photo_with_transparency_or_frames_is_kept_as_sent(engine, uploads):
    frames = [Image.new("RGBA", (60, 80), (200, 30, 30, 128)), Image.new("RGBA", (60, 80), (30, 200, 30, 255))]
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:])
    write = engine.put_product("anim", [out.getvalue()], "Tops", None, uploads)
    assert write.images == 1 and next(uploads.product_dir("anim").iterdir()).suffix == ".gif"


def test_writes_while_an_index_run_writes_the_same_index_lose_nothing(tmp_path, uploads):
    import threading

    folder = tmp_path / "catalog"
    for n in range(40):
        product = folder / ("Tops" if n % 2 else "Skirts") / f"cat-{n:02d}"
        product.mkdir(parents=True)
        make_product((n * 6, 255 - n * 6, (n * 37) % 255)).save(product / "view.jpg")
    db = tmp_path / "db.lance"
    models = {"embedder": Component("test-pixels", {}), "detector": Component("foreground", {})}
    indexer = SearchEngine.create(db, **models)
    indexer.put_product("seed", [encoded((1, 1, 1))], "Tops", None, uploads)  # the table exists
    writer = SearchEngine.open(db)
    errors: list[BaseException] = []

    def run_index() -> None:
        try:
            indexer.index(load_catalog(folder=folder), batch_size=2)
        except BaseException as exc:  # reported below
            errors.append(exc)

    thread = threading.Thread(target=run_index)
    thread.start()
    for n in range(12):
        writer.put_product(f"api-{n}", [encoded((200, n * 20, 40))], "Tops", {"n": n}, uploads)
    thread.join()
    assert not errors
    products = {r["product_id"] for r in writer.store.iter_rows(with_vectors=False)}
    assert {f"cat-{n:02d}" for n in range(40)} | {f"api-{n}" for n in range(12)} | {"seed"} == products
    again = indexer.index(load_catalog(folder=folder))
    assert (again.indexed, again.removed) == (0, 0)
