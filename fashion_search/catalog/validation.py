"""What a catalog write may hold, checked completely before anything is written.

A product written through the API (or the Python API) is refused here, with a
:class:`~fashion_search.errors.CatalogError` naming what is wrong, unless every field is within
the documented limits (docs/http-api.md, "Limits of a write"):

* ids and categories: text of 1 to 256 printable characters, valid Unicode;
* metadata: a JSON object of at most 100 columns, at most 64 KB as JSON; column names as ids;
  values text (valid Unicode), whole numbers within +-2^53 (what a float, and so every store,
  holds exactly), finite numbers, true/false or null;
* JSON text: valid UTF-8, nested at most :data:`MAX_JSON_DEPTH` deep (deeper text would exhaust
  the parser's stack before any limit above is checked).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Optional

from fashion_search.errors import CatalogError

MAX_ID_CHARS = 256
MAX_METADATA_COLUMNS = 100
MAX_METADATA_CHARS = 64 * 1024
MAX_PRODUCT_IMAGES = 20
MAX_JSON_DEPTH = 32
# Whole numbers a float holds exactly: beyond them, two different numbers compare equal.
MAX_EXACT_INTEGER = 2**53


class WriteRequestError(CatalogError):
    """A write request that is not valid JSON, or not of the shape a write takes; ``code`` is
    what the HTTP API answers with."""

    def __init__(self, message: str, code: str = "bad_product") -> None:
        super().__init__(message)
        self.code = code


def is_valid_text(value: str) -> bool:
    """Whether ``value`` is text every store can hold: no lone surrogates (JSON's ``"\\ud800"``
    decodes to one; it has no UTF-8 form)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def json_depth(text: str) -> int:
    """How deep arrays and objects nest in ``text``, read without parsing it (brackets inside
    strings do not count)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def parse_json(text: str | bytes, what: str) -> Any:
    """``text`` (a request's field ``what``) as JSON, or :class:`WriteRequestError`: not UTF-8,
    nested deeper than :data:`MAX_JSON_DEPTH`, or not JSON."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise WriteRequestError(f"{what} is not UTF-8 text") from None
    if json_depth(text) > MAX_JSON_DEPTH:
        raise WriteRequestError(f"{what} nests arrays or objects more than {MAX_JSON_DEPTH} deep")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:  # int digits beyond Python's limit are a ValueError
        raise WriteRequestError(f"{what} is not JSON: {exc}") from None


def check_name(value: Any, what: str) -> str:
    """An id or a category: printable text of 1 to :data:`MAX_ID_CHARS` characters."""
    if not isinstance(value, str) or not value.strip():
        raise CatalogError(f"a product needs a {what}")
    if not is_valid_text(value):
        raise CatalogError(f"the {what} is not valid Unicode text (it holds a lone surrogate)")
    if len(value) > MAX_ID_CHARS or not value.isprintable():
        raise CatalogError(f"the {what} must be printable text of at most {MAX_ID_CHARS} characters")
    return value


def check_column_name(value: Any) -> str:
    """A metadata column's name, as :func:`check_name` checks an id."""
    if (
        not isinstance(value, str)
        or not value.strip()
        or len(value) > MAX_ID_CHARS
        or not is_valid_text(value)
        or not value.isprintable()
    ):
        raise CatalogError(f"metadata column names must be printable text of 1 to {MAX_ID_CHARS} characters")
    return value


def check_metadata_value(column: str, value: Any) -> None:
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, str):
        if not is_valid_text(value):
            raise CatalogError(f"metadata column {column!r}: the text is not valid Unicode (a lone surrogate)")
        return
    if isinstance(value, int):
        if abs(value) > MAX_EXACT_INTEGER:
            raise CatalogError(f"metadata column {column!r}: whole numbers must be within +-2^53")
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise CatalogError(f"metadata column {column!r}: numbers must be finite")
        return
    raise CatalogError(f"metadata column {column!r}: values must be text, numbers, true/false or null")


def check_product_fields(product_id: Any, category: Any, metadata: Any) -> dict[str, Any]:
    """Refuse (:class:`CatalogError`) what cannot be a catalog product; its metadata."""
    check_name(product_id, "product id")
    check_name(category, "category")
    metadata = {} if metadata is None else metadata
    if not isinstance(metadata, dict):
        raise CatalogError("metadata must be a JSON object of column names to values")
    if len(metadata) > MAX_METADATA_COLUMNS:
        raise CatalogError(f"metadata has more than {MAX_METADATA_COLUMNS} columns")
    for key, value in metadata.items():
        check_column_name(key)
        check_metadata_value(key, value)
    if len(json.dumps(metadata, ensure_ascii=False)) > MAX_METADATA_CHARS:
        raise CatalogError(f"metadata is longer than {MAX_METADATA_CHARS:,} characters")
    return metadata


@dataclass(frozen=True)
class BulkEntry:
    """One product of a bulk write, its fields checked; ``images`` names file fields."""

    product_id: str
    category: str
    metadata: dict[str, Any]
    images: tuple[str, ...]


def check_bulk_entry(entry: Any) -> BulkEntry:
    """One element of a bulk write's ``products`` list, checked whole (:class:`CatalogError`)."""
    if not isinstance(entry, dict):
        raise CatalogError("each product is a JSON object with product_id, category, metadata and images")
    names = entry.get("images")
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise CatalogError("each product needs `images`: a list of the names of its file fields")
    if not names:
        raise CatalogError("a product needs at least one image")
    if len(names) > MAX_PRODUCT_IMAGES:
        raise CatalogError(f"a product has at most {MAX_PRODUCT_IMAGES} images, not {len(names)}")
    metadata = check_product_fields(entry.get("product_id"), entry.get("category"), entry.get("metadata"))
    return BulkEntry(entry["product_id"], entry["category"], metadata, tuple(names))


def bulk_product_id(entry: Any) -> Optional[str]:
    """A bulk entry's product id when it is one a status can name (valid text), else None."""
    product_id = entry.get("product_id") if isinstance(entry, dict) else None
    return product_id if isinstance(product_id, str) and is_valid_text(product_id) else None


__all__ = [
    "MAX_EXACT_INTEGER",
    "MAX_ID_CHARS",
    "MAX_JSON_DEPTH",
    "MAX_METADATA_CHARS",
    "MAX_METADATA_COLUMNS",
    "MAX_PRODUCT_IMAGES",
    "BulkEntry",
    "WriteRequestError",
    "bulk_product_id",
    "check_bulk_entry",
    "check_column_name",
    "check_name",
    "check_product_fields",
    "is_valid_text",
    "json_depth",
    "parse_json",
]
