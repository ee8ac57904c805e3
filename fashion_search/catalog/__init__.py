"""Catalog ingestion: turning a folder or a CSV of product images into catalog entries.

Two layouts are understood:

* folders, as the seed system's Zalora sample: ``<root>/<Category>/<ProductID>/<image>``;
* a CSV with one row per image (path, product id, category, and any other columns, which are
  kept as product metadata).

Both may be enriched with a metadata CSV joined on product id.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

from fashion_search.errors import CatalogError
from fashion_search.images import is_image_path


@dataclass(frozen=True)
class CatalogItem:
    """One image of one product."""

    path: Path  # absolute
    product_id: str
    category: str
    metadata: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def image_id(self) -> str:
        # Stable across runs and machines for the same file: keyed on the resolved path.
        return hashlib.sha1(str(self.path).encode("utf-8")).hexdigest()[:20]

    def fingerprint(self) -> str:
        """Changes when the file or its catalog entry changes, so re-indexing redoes only those."""
        stat = self.path.stat()
        entry = json.dumps([self.product_id, self.category, self.metadata], sort_keys=True, default=str)
        digest = hashlib.sha1(entry.encode("utf-8")).hexdigest()[:12]
        return f"{stat.st_size}:{stat.st_mtime_ns}:{digest}"


@dataclass
class CsvColumns:
    image: str = "image"
    product_id: str = "product_id"
    category: str = "category"


def _read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            rows = list(reader)
            return list(reader.fieldnames or []), rows
    except FileNotFoundError:
        raise CatalogError(f"CSV not found: {path}") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise CatalogError(f"cannot read CSV {path}: {exc}") from exc


def _clean(value: Optional[str]) -> str:
    return (value or "").strip()


def load_metadata(path: str | os.PathLike, product_id_column: str = "product_id") -> dict[str, dict[str, str]]:
    """Product id -> metadata columns, from a CSV keyed by ``product_id_column``."""
    path = Path(path).expanduser().resolve()
    fields, rows = _read_csv(path)
    if product_id_column not in fields:
        raise CatalogError(f"metadata CSV {path} has no column {product_id_column!r} (columns: {', '.join(fields)})")
    table: dict[str, dict[str, str]] = {}
    for row in rows:
        pid = _clean(row.get(product_id_column))
        if pid:
            table[pid] = {k: _clean(v) for k, v in row.items() if k and k != product_id_column}
    return table


class Catalog(list):
    """A catalog's images (a list of :class:`CatalogItem`), with the entries that could not be
    listed (``problems``: path and reason), which an index run reports as failed."""

    def __init__(self, items: Iterable[CatalogItem] = (), problems: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__(items)
        self.problems: list[tuple[str, str]] = list(problems)


def _entries(folder: Path, problems: list[tuple[str, str]]) -> list[Path]:
    """A folder's entries, sorted; an unreadable folder is a problem, not an abort."""
    try:
        return sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    except OSError as exc:
        problems.append((str(folder), f"cannot read folder: {exc.strerror or exc}"))
        return []


def _odd_entry(path: Path) -> Optional[str]:
    """Why an entry that is neither a folder nor a regular file is skipped (None if it is one)."""
    if path.is_dir() or path.is_file():
        return None
    if path.is_symlink():
        return "broken or looping symbolic link"
    return "not a regular file (a FIFO, socket or device)"


def scan_folder(
    root: str | os.PathLike,
    metadata: Optional[dict[str, dict[str, str]]] = None,
    problems: Optional[list[tuple[str, str]]] = None,
) -> Iterator[CatalogItem]:
    """Walk ``<root>/<Category>/<ProductID>/<image>``, in a stable (sorted) order.

    Images elsewhere (at the root, or directly in a category folder) do not fit the layout and
    are ignored rather than guessed at. Folders that cannot be read, and entries that are
    neither folders nor files (looping links, FIFOs), are added to ``problems`` and skipped.
    """
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise CatalogError(f"catalog folder not found: {root}")
    metadata = metadata or {}
    problems = problems if problems is not None else []
    for category_dir in _entries(root, problems):
        if not category_dir.is_dir():
            continue
        for product_dir in _entries(category_dir, problems):
            if not product_dir.is_dir():
                if _odd_entry(product_dir):
                    problems.append((str(product_dir), _odd_entry(product_dir) or ""))
                continue
            for image in _entries(product_dir, problems):
                if not is_image_path(image):
                    continue
                reason = _odd_entry(image) or ("a folder" if image.is_dir() else None)
                if reason:
                    problems.append((str(image), reason))
                    continue
                yield CatalogItem(
                    path=image,
                    product_id=product_dir.name,
                    category=category_dir.name,
                    metadata=dict(metadata.get(product_dir.name, {})),
                )


def read_csv_catalog(
    csv_path: str | os.PathLike,
    columns: CsvColumns = CsvColumns(),
    metadata: Optional[dict[str, dict[str, str]]] = None,
) -> Iterator[CatalogItem]:
    """Rows of a CSV catalog; relative image paths are relative to the CSV's folder."""
    csv_path = Path(csv_path).expanduser().resolve()
    fields, rows = _read_csv(csv_path)
    missing = [c for c in (columns.image, columns.product_id) if c not in fields]
    if missing:
        raise CatalogError(
            f"CSV {csv_path} lacks column(s) {', '.join(map(repr, missing))} "
            f"(columns: {', '.join(fields)}); name them with --image-column/--product-id-column"
        )
    known = {columns.image, columns.product_id, columns.category}
    metadata = metadata or {}
    for row in rows:
        image = _clean(row.get(columns.image))
        pid = _clean(row.get(columns.product_id))
        if not image or not pid:
            continue
        path = Path(image).expanduser()
        if not path.is_absolute():
            path = csv_path.parent / path
        extra = {k: _clean(v) for k, v in row.items() if k and k not in known}
        extra.update(metadata.get(pid, {}))
        yield CatalogItem(
            path=path.resolve(),
            product_id=pid,
            category=_clean(row.get(columns.category)),
            metadata=extra,
        )


def load_catalog(
    folder: Optional[str | os.PathLike] = None,
    csv_path: Optional[str | os.PathLike] = None,
    columns: CsvColumns = CsvColumns(),
    metadata_csv: Optional[str | os.PathLike] = None,
) -> Catalog:
    """The catalog as a list, from exactly one of ``folder`` or ``csv_path``; entries that
    could not be listed are in its ``problems``.

    The same image listed twice is kept once (the first entry wins), since an image can only
    have one place in the index.
    """
    if (folder is None) == (csv_path is None):
        raise CatalogError("give either a catalog folder or --csv FILE (not both)")
    metadata = load_metadata(metadata_csv, columns.product_id) if metadata_csv else None
    items: Iterable[CatalogItem]
    problems: list[tuple[str, str]] = []
    if folder is not None:
        items = scan_folder(folder, metadata, problems)
    else:
        items = read_csv_catalog(csv_path, columns, metadata)  # type: ignore[arg-type]
    seen: set[Path] = set()
    unique = Catalog()
    for item in items:
        if item.path not in seen:
            seen.add(item.path)
            unique.append(item)
    unique.problems = problems
    return unique


__all__ = [
    "Catalog",
    "CatalogError",
    "CatalogItem",
    "CsvColumns",
    "load_catalog",
    "load_metadata",
    "read_csv_catalog",
    "scan_folder",
]
