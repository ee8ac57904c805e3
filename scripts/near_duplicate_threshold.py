"""How similar are a catalog image and its copies, against distinct products? Sets the default
threshold of ``fashion-search duplicates``.

    python scripts/near_duplicate_threshold.py --kaggle ../shared/data/kaggle --images 400 --copies 200

Takes Kaggle product shots of the half no model is validated on (splits/README.md), makes
copies of some of them as a catalog gets them (re-encoded JPEG, resized, lightly cropped,
PNG), each under a new product id. It indexes all of them with the shipped models, then runs
``find_duplicates`` at several thresholds. It reports the planted copies found, and groups
that join other products.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import tempfile
import zlib
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fashion_search import SearchEngine  # noqa: E402
from fashion_search.catalog import CatalogItem  # noqa: E402
from fashion_search.duplicates import find_duplicates  # noqa: E402


def copies_of(image: Image.Image) -> dict[str, tuple[bytes, str]]:
    """How one photo comes back to a catalog: encoded bytes and their extension, per kind."""
    out: dict[str, tuple[bytes, str]] = {}
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=60)
    out["jpeg-q60"] = (buf.getvalue(), "jpg")
    w, h = image.size
    buf = io.BytesIO()
    image.resize((max(1, int(w * 0.6)), max(1, int(h * 0.6))), Image.LANCZOS).save(buf, "JPEG", quality=85)
    out["resized-60%"] = (buf.getvalue(), "jpg")
    buf = io.BytesIO()
    dx, dy = int(w * 0.04), int(h * 0.04)
    image.crop((dx, dy, w - dx, h - dy)).save(buf, "JPEG", quality=90)
    out["cropped-4%"] = (buf.getvalue(), "jpg")
    buf = io.BytesIO()
    image.save(buf, "PNG")
    out["png"] = (buf.getvalue(), "png")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kaggle", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "kaggle"))
    ap.add_argument("--images", type=int, default=400, help="original product shots")
    ap.add_argument("--copies", type=int, default=200, help="of them, how many get one copy each")
    ap.add_argument("--thresholds", type=float, nargs="+", default=[0.90, 0.93, 0.95, 0.97, 0.98, 0.99])
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)

    root = Path(args.kaggle)
    with open(root / "labels.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if zlib.crc32(r["id"].encode()) % 2 == 0]  # not validation
    rows = rows[: args.images]
    work = Path(tempfile.mkdtemp(prefix="near-dup-"))
    items = [CatalogItem((root / r["image"]).resolve(), r["id"], r["articleType"]) for r in rows]
    planted: dict[str, str] = {}  # copy's product id -> original's
    kinds = ["jpeg-q60", "resized-60%", "cropped-4%", "png"]
    for n, r in enumerate(rows[: args.copies]):
        kind = kinds[n % len(kinds)]
        data, ext = copies_of(Image.open(root / r["image"]).convert("RGB"))[kind]
        path = work / "copies" / f"{r['id']}-{kind}.{ext}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        copy_id = f"copy-{r['id']}-{kind}"
        items.append(CatalogItem(path.resolve(), copy_id, r["articleType"]))
        planted[copy_id] = r["id"]
    engine = SearchEngine.create(work / "index.lance")
    engine.index(items, batch_size=32)
    results = []
    for threshold in sorted(args.thresholds):
        report = find_duplicates(engine.store, threshold)
        found = set()
        other = 0
        for group in report.groups:
            products = set(group.products)
            pairs = {(c, o) for c, o in planted.items() if c in products and o in products}
            found |= pairs
            if products - {p for pair in pairs for p in pair}:
                other += 1
        by_kind = {
            kind: sum(1 for c, o in found if c.endswith(kind)) / max(1, sum(1 for c in planted if c.endswith(kind)))
            for kind in kinds
        }
        results.append(
            {
                "threshold": threshold,
                "copies_found": round(len(found) / len(planted), 3),
                "by_kind": {k: round(v, 3) for k, v in by_kind.items()},
                "groups": len(report.groups),
                "groups_joining_other_products": other,
                "seconds": round(report.seconds, 1),
            }
        )
        print(json.dumps(results[-1]), flush=True)
    print(f"images: {len(items)} ({len(planted)} copies); work folder {work}")
    if args.json:
        Path(args.json).write_text(
            json.dumps({"images": len(items), "copies": len(planted), "results": results}, indent=2)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
