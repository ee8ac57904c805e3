"""The typed index record: what today's indexes hold reads back unchanged, what cannot be read is
refused with a clear message, and updates go through the store atomically."""

import pytest

from fashion_search.category_classes import CategoryClasses
from fashion_search.cli import main
from fashion_search.index_record import IndexRecord, IndexRecordError, ModelRecord, read_record, update_record
from fashion_search.store import open_store

# A format-2 record as fashion-search wrote it before the record was typed (2026-12-02).
WRITTEN_BEFORE = {
    "format": 2,
    "embedder": {"name": "garment-head", "options": {}, "identity": {"name": "garment-head", "dim": 256}},
    "detector": {"name": "parser", "options": {"min_area": 0.004}, "identity": {"name": "parser", "sha256": "ab"}},
    "dim": 256,
    "crop": "box",
    "category_classes": {
        "shares": {"Tops": {"top": 0.8, "knitwear": 0.2}},
        "images": {"Tops": 10},
        "min_share": 0.15,
        "min_share_unrelated": 0.25,
    },
    "metadata_columns": {"brand": {"name": "brand", "type": "text", "products": 3, "values": ["A", "B"]}},
}


def test_a_record_written_before_reads_back_as_it_was_written():
    record = IndexRecord.from_dict(WRITTEN_BEFORE)
    assert record.to_dict() == WRITTEN_BEFORE
    assert record.classes.classes_of("Tops") == {"top", "knitwear"}
    assert record.columns.columns["brand"].values == ["A", "B"]
    assert record.text_encoder is None and set(record.models()) == {"embedder", "detector"}


def test_fields_of_a_later_version_are_kept_and_model_slots_are_typed():
    data = {**WRITTEN_BEFORE, "something_new": [1, 2], "tagger": {"name": "tags", "identity": {"sha256": "cd"}}}
    record = IndexRecord.from_dict(data)
    assert record.tagger == ModelRecord("tags", {}, {"sha256": "cd"})
    assert record.to_dict()["something_new"] == [1, 2]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format": 3}, "written by a newer fashion-search"),
        ({"format": "two"}, "unknown format"),
        ({"dim": None}, "records no vector size"),
        ({"embedder": {"options": {}}}, "records no embedder name"),
        ({"category_classes": {"shares": "not a table"}}, "records what it learned unreadably"),
    ],
)
def test_a_record_that_cannot_be_read_is_refused_with_what_is_wrong(change, message):
    with pytest.raises(IndexRecordError, match=message):
        IndexRecord.from_dict({**WRITTEN_BEFORE, **change}, "db.lance")


def test_an_index_written_by_a_newer_version_is_a_one_line_error_on_the_command_line(tmp_path, capsys):
    db = str(tmp_path / "db.lance")
    open_store(db).write_manifest({**WRITTEN_BEFORE, "format": 9})
    assert main(["search", "photo.jpg", "--db", db]) == 2
    assert "record format 9; this version reads up to 2" in capsys.readouterr().err


def test_update_record_changes_the_stored_record_atomically_and_returns_it(tmp_path):
    store = open_store(str(tmp_path / "db.lance"))
    assert read_record(store) is None
    first = IndexRecord.from_dict(WRITTEN_BEFORE)
    assert update_record(store, lambda record: first if record is None else None) == first
    learned = CategoryClasses({"Skirts": {"skirt": 1.0}}, {"Skirts": 4})
    after = update_record(store, lambda record: record.replace(category_classes=learned))
    assert read_record(store) == after and after.classes.classes_of("Skirts") == {"skirt"}
    assert update_record(store, lambda record: None) == after  # None: left as it was
