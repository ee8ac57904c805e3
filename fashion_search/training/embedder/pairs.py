"""Training examples for the garment head: worn-to-shop pairs and labelled product shots.

A pair is a photo of someone wearing a garment and a photo of that product on its own. VITON's
pairs come with parse maps, so the worn top is cropped by its own pixels; a retailer's pairs
(any CSV of photo, product photo) are cropped by the shipped garment parser, as search crops a
shopper's photo.
"""

from __future__ import annotations

import csv
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from fashion_search.errors import CatalogError, UsageError

# LIP label ids in VITON's parse maps (see ../shared/data/README.md): the paired product is
# always the top, which the parsing model calls upper-clothes, or coat/dress when it hesitates.
LIP_UPPER_CLOTHES = 5
LIP_TOP_LIKE = (5, 6, 7)
# Fewer top pixels than this in a 256x192 map means the parse missed the top.
MIN_TOP_PIXELS = 200

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class TrainingPair:
    """A worn photo, the garment's box in it (None: find it with the parser), and its product."""

    photo: Path
    product: Path
    product_id: str
    box: Optional[Box] = None


@dataclass(frozen=True)
class LabelledShot:
    """A product shot with its article type and colour, which keep the head knowing garment kinds."""

    path: Path
    article_type: str
    colour: str


def read_ids(path: str | Path) -> set[str]:
    """Ids listed one per line (blank lines and ``#`` comments ignored)."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise UsageError(f"id list not found: {path}") from None
    return {line.strip() for line in lines if line.strip() and not line.startswith("#")}


def parse_map_box(parse_map: np.ndarray) -> Optional[Box]:
    """Box of the top in a LIP parse map: upper-clothes pixels, else any top-like ones."""
    for labels in ((LIP_UPPER_CLOTHES,), LIP_TOP_LIKE):
        mask = np.isin(parse_map, labels)
        if mask.sum() >= MIN_TOP_PIXELS:
            ys, xs = np.nonzero(mask)
            return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
    return None


def viton_pairs(root: str | Path, exclude_ids: Sequence[str] | set[str] = ()) -> list[TrainingPair]:
    """VITON's pairs (``pairs.csv``: id, photo, parse, product), minus ``exclude_ids`` (the
    validation split), each worn top boxed by its parse map."""
    from PIL import Image

    root = Path(root)
    listing = root / "pairs.csv"
    if not listing.is_file():
        raise UsageError(f"{root} is not a VITON folder: {listing} is missing")
    excluded = set(exclude_ids)
    pairs = []
    with open(listing, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if row["id"] in excluded:
                continue
            with Image.open(root / row["parse"]) as parse:
                box = parse_map_box(np.asarray(parse))
            pairs.append(TrainingPair(root / row["photo"], root / row["product"], row["id"], box))
    return pairs


def read_pairs_csv(path: str | Path) -> list[TrainingPair]:
    """A CSV of ``photo`` (someone wearing the product, or another view of it) and ``product``
    (the product photo), optionally ``product_id`` (rows sharing one are the same product; by
    default the product photo's path). Relative paths are relative to the CSV's folder."""
    path = Path(path).expanduser().resolve()
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            rows = list(reader)
            fields = list(reader.fieldnames or [])
    except FileNotFoundError:
        raise UsageError(f"pairs CSV not found: {path}") from None
    missing = [c for c in ("photo", "product") if c not in fields]
    if missing:
        raise CatalogError(f"pairs CSV {path} lacks column(s) {', '.join(missing)} (columns: {', '.join(fields)})")
    pairs = []
    for row in rows:
        photo, product = (row.get("photo") or "").strip(), (row.get("product") or "").strip()
        if not photo or not product:
            continue
        photo_path, product_path = (p if p.is_absolute() else path.parent / p for p in (Path(photo), Path(product)))
        product_id = (row.get("product_id") or "").strip() or str(product_path)
        pairs.append(TrainingPair(photo_path, product_path, product_id))
    if not pairs:
        raise CatalogError(f"pairs CSV {path} has no rows with both a photo and a product")
    return pairs


def kaggle_training_half(product_id: str) -> bool:
    """Kaggle product shots train the head only on one half of the ids (by a hash of the id);
    the other half (``splits/kaggle_validation_ids.txt``) measures it."""
    return zlib.crc32(product_id.encode("utf-8")) % 2 == 0


def kaggle_shots(root: str | Path, exclude_ids: Sequence[str] | set[str] = ()) -> list[LabelledShot]:
    """Kaggle product shots (``labels.csv``: id, image, articleType, baseColour) of the training
    half, minus ``exclude_ids``."""
    root = Path(root)
    listing = root / "labels.csv"
    if not listing.is_file():
        raise UsageError(f"{root} is not a Kaggle folder: {listing} is missing")
    excluded = set(exclude_ids)
    with open(listing, newline="", encoding="utf-8") as fh:
        return [
            LabelledShot(root / row["image"], row["articleType"], row["baseColour"])
            for row in csv.DictReader(fh)
            if kaggle_training_half(row["id"]) and row["id"] not in excluded
        ]


__all__ = [
    "LabelledShot",
    "TrainingPair",
    "kaggle_shots",
    "kaggle_training_half",
    "parse_map_box",
    "read_ids",
    "read_pairs_csv",
    "viton_pairs",
]
