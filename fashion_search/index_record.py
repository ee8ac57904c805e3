"""What an index records about itself, typed: the models that built it, what indexing learned.

A store keeps the record as one JSON document (its manifest) and changes it atomically
(:meth:`VectorStore.update_manifest`); this module is the only reader and writer of that
document's fields. :meth:`IndexRecord.from_dict` validates it on load, so a damaged record or one
written by a newer fashion-search is refused with a clear message instead of misread.

Formats: 1, indexes that did not record which weights made their vectors (search refuses them
and names the rebuild); 2, each model's identity recorded (today). Slots for further models
(a text encoder, an attribute tagger) are optional fields of format 2: absent from every index
built so far, and ignored by versions that do not know them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional

from fashion_search.category_classes import CategoryClasses
from fashion_search.errors import StoreError
from fashion_search.store.filters import MetadataColumns

if TYPE_CHECKING:
    from fashion_search.store import VectorStore

# The newest format this version writes and reads.
RECORD_FORMAT = 2
# Optional models an index may record beside its embedder and detector (none is built yet).
MODEL_SLOTS = ("text_encoder", "tagger")
DEFAULT_CROP = "box"


class IndexRecordError(StoreError):
    """An index record that cannot be read: damaged, or written by a newer fashion-search."""


@dataclass(frozen=True)
class ModelRecord:
    """One model as an index records it: its registry name, the options it was created with
    (enough to create it again) and its identity (what makes its output: weights by sha256,
    classes, input size, preprocessing)."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)
    identity: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "options": dict(self.options), "identity": dict(self.identity)}

    @classmethod
    def from_dict(cls, data: Any, role: str, where: str) -> "ModelRecord":
        if not isinstance(data, Mapping) or not isinstance(data.get("name"), str) or not data["name"]:
            raise IndexRecordError(f"the index at {where} records no {role} name: it is damaged; rebuild it")
        options, identity = data.get("options") or {}, data.get("identity") or {}
        if not isinstance(options, Mapping) or not isinstance(identity, Mapping):
            raise IndexRecordError(f"the index at {where} records its {role} unreadably: it is damaged; rebuild it")
        return cls(data["name"], dict(options), dict(identity))


@dataclass(frozen=True)
class IndexRecord:
    """The models an index was built with and what its index runs and catalog writes learned.

    ``category_classes`` and ``metadata_columns`` are None until an index run learned them (a
    run then learns them even when no image changed)."""

    embedder: ModelRecord
    detector: ModelRecord
    dim: int
    crop: str = DEFAULT_CROP
    format: int = RECORD_FORMAT
    category_classes: Optional[CategoryClasses] = None
    metadata_columns: Optional[MetadataColumns] = None
    text_encoder: Optional[ModelRecord] = None
    tagger: Optional[ModelRecord] = None
    # Fields written by a later version of the same format: kept as they are on every update.
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def classes(self) -> CategoryClasses:
        """The learned category classes (empty before any was learned)."""
        return self.category_classes or CategoryClasses()

    @property
    def columns(self) -> MetadataColumns:
        """The learned metadata columns (none before any was learned)."""
        return self.metadata_columns or MetadataColumns()

    def models(self) -> dict[str, ModelRecord]:
        """Every model the index records, by role."""
        slots = {role: getattr(self, role) for role in MODEL_SLOTS}
        return {"embedder": self.embedder, "detector": self.detector, **{r: m for r, m in slots.items() if m}}

    def replace(self, **changes: Any) -> "IndexRecord":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            **self.extra,
            "format": self.format,
            "embedder": self.embedder.to_dict(),
            "detector": self.detector.to_dict(),
            "dim": self.dim,
            "crop": self.crop,
        }
        if self.format < 2:  # an index from before identities stays recognisable as one
            for role in ("embedder", "detector"):
                data[role].pop("identity")
        if self.category_classes is not None:
            data["category_classes"] = self.category_classes.to_dict()
        if self.metadata_columns is not None:
            data["metadata_columns"] = self.metadata_columns.to_dict()
        for role in MODEL_SLOTS:
            model = getattr(self, role)
            if model is not None:
                data[role] = model.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "this location") -> "IndexRecord":
        """The record in a stored manifest, validated; :class:`IndexRecordError` names what is
        wrong with the index at ``where``."""
        if not isinstance(data, Mapping):
            raise IndexRecordError(f"the index at {where} has an unreadable record: it is damaged; rebuild it")
        fmt = data.get("format", 1)
        if not isinstance(fmt, int) or isinstance(fmt, bool) or fmt < 1:
            raise IndexRecordError(f"the index at {where} records an unknown format {fmt!r}: it is damaged; rebuild it")
        if fmt > RECORD_FORMAT:
            raise IndexRecordError(
                f"the index at {where} was written by a newer fashion-search (record format {fmt}; this version "
                f"reads up to {RECORD_FORMAT}): upgrade fashion-search, or rebuild the index with this one"
            )
        dim = data.get("dim")
        if not isinstance(dim, int) or isinstance(dim, bool) or dim <= 0:
            raise IndexRecordError(f"the index at {where} records no vector size: it is damaged; rebuild it")
        crop = data.get("crop", DEFAULT_CROP)
        if not isinstance(crop, str):
            raise IndexRecordError(f"the index at {where} records an unreadable crop mode {crop!r}")
        try:
            classes = (
                None if data.get("category_classes") is None else CategoryClasses.from_dict(data["category_classes"])
            )
            columns = (
                None if data.get("metadata_columns") is None else MetadataColumns.from_dict(data["metadata_columns"])
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise IndexRecordError(
                f"the index at {where} records what it learned unreadably ({exc}): re-run index"
            ) from None
        slots = {
            role: ModelRecord.from_dict(data[role], role, where) if data.get(role) is not None else None
            for role in MODEL_SLOTS
        }
        known = {"format", "embedder", "detector", "dim", "crop", "category_classes", "metadata_columns", *MODEL_SLOTS}
        return cls(
            embedder=ModelRecord.from_dict(data.get("embedder"), "embedder", where),
            detector=ModelRecord.from_dict(data.get("detector"), "detector", where),
            dim=dim,
            crop=crop,
            format=fmt,
            category_classes=classes,
            metadata_columns=columns,
            extra={key: value for key, value in data.items() if key not in known},
            **slots,
        )


def read_record(store: "VectorStore", where: Optional[str] = None) -> Optional[IndexRecord]:
    """The store's record, or None when nothing was recorded yet (a new or emptied index)."""
    manifest = store.read_manifest()
    return IndexRecord.from_dict(manifest, where or store.uri) if manifest else None


def update_record(
    store: "VectorStore", change: Callable[[Optional[IndexRecord]], Optional[IndexRecord]]
) -> Optional[IndexRecord]:
    """Apply ``change`` to the store's record in one atomic update (writers in other processes
    take turns with it); the record as stored afterwards. ``change`` receives None when the
    index records nothing yet, and returning None leaves the record as it was."""
    where = store.uri

    def apply(manifest: dict[str, Any]) -> dict[str, Any]:
        before = IndexRecord.from_dict(manifest, where) if manifest else None
        after = change(before)
        return manifest if after is None else after.to_dict()

    stored = store.update_manifest(apply)
    return IndexRecord.from_dict(stored, where) if stored else None


__all__ = [
    "DEFAULT_CROP",
    "IndexRecord",
    "IndexRecordError",
    "MODEL_SLOTS",
    "ModelRecord",
    "RECORD_FORMAT",
    "read_record",
    "update_record",
]
