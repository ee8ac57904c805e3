#!/usr/bin/env python
"""Write the VITON worn-to-shop validation set: a catalog of in-shop product photos of tops and
the photos of models wearing them, as the CSVs that ``fashion-search`` reads.

VITON pairs each studio photo of a model (``photos/ID.jpg``) with the in-shop photo of the top
she wears (``products/ID.jpg``). For the ids of ``splits/viton_validation_ids.txt`` (1,000 ids
kept apart from any training), this writes

* ``OUT_DIR/catalog.csv``: ``image`` (absolute path of ``products/ID.jpg``), ``product_id`` (ID),
  ``category`` (``tops``): the catalog to index;
* ``OUT_DIR/pairs.csv``: ``photo`` (absolute path of ``photos/ID.jpg``), ``product_id`` (ID): the
  queries, each of which should find its own top among the 1,000.

The images stay where they are (the CSVs point into the data folder); they are for evaluation
only and never belong in the repository. Then measure:

    python scripts/viton_validation.py runs/viton
    fashion-search index --csv runs/viton/catalog.csv --db runs/viton/catalog.lance
    fashion-search eval-pairs --db runs/viton/catalog.lance --pairs runs/viton/pairs.csv --json

or index and measure in one command (it indexes only new or changed images):

    fashion-search eval-pairs --csv runs/viton/catalog.csv --db runs/viton/catalog.lance \\
        --pairs runs/viton/pairs.csv --per-query runs/viton/per-query.jsonl
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path
from typing import Optional, Sequence

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "viton"
DEFAULT_IDS = ROOT / "splits" / "viton_validation_ids.txt"
CATEGORY = "tops"  # VITON's paired product is always the top the model wears


def read_ids(path: Path) -> list[str]:
    """The ids of an id list, one a line; blank lines and ``#`` comments are skipped."""
    ids = [line.split("#")[0].strip() for line in path.read_text().splitlines()]
    return [i for i in ids if i]


def write_validation_set(out_dir: Path, data: Path, ids: Sequence[str]) -> tuple[Path, Path]:
    """Write ``catalog.csv`` and ``pairs.csv`` for ``ids`` into ``out_dir``; refuses (ValueError)
    ids whose product or model photo the data folder lacks, naming them."""
    data = data.expanduser().resolve()
    missing = [
        str(data / sub / f"{i}.jpg")
        for i in ids
        for sub in ("products", "photos")
        if not (data / sub / f"{i}.jpg").is_file()
    ]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise ValueError(f"{len(missing)} image(s) of the id list are not in {data}: {shown}")
    out_dir.mkdir(parents=True, exist_ok=True)
    catalog, pairs = out_dir / "catalog.csv", out_dir / "pairs.csv"
    with open(catalog, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image", "product_id", "category"])
        writer.writerows([str(data / "products" / f"{i}.jpg"), i, CATEGORY] for i in ids)
    with open(pairs, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["photo", "product_id"])
        writer.writerows([str(data / "photos" / f"{i}.jpg"), i] for i in ids)
    return catalog, pairs


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path, help="folder to write catalog.csv and pairs.csv to")
    parser.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help="the VITON folder (default: ../shared/data/viton)"
    )
    parser.add_argument(
        "--ids", type=Path, default=DEFAULT_IDS, help="id list, one a line (default: splits/viton_validation_ids.txt)"
    )
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        print(f"viton_validation: error: VITON data not found at {args.data} (give --data)", file=sys.stderr)
        return 2
    if not args.ids.is_file():
        print(f"viton_validation: error: id list not found: {args.ids}", file=sys.stderr)
        return 2
    ids = read_ids(args.ids)
    try:
        catalog, pairs = write_validation_set(args.out_dir, args.data, ids)
    except ValueError as exc:
        print(f"viton_validation: error: {exc}", file=sys.stderr)
        return 2
    print(f"{len(ids)} products: {catalog} (catalog to index), {pairs} (photos to search with)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
