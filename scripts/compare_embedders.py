#!/usr/bin/env python
"""Two embedders side by side on the same queries: the figures that decide the default embedder.

For each embedder (default: today's ``efficientnet-lite2+colour`` against ``garment-head``), with
the same detector, it indexes four catalogs built from ``../shared/data`` and measures through the
evaluation code that ``fashion-search eval`` and ``eval-pairs`` run:

* worn-to-shop: the 1,000 VITON validation photos (``splits/viton_validation_ids.txt``) against
  their 1,000 products: R@1/5/20;
* Zalora: same-product R@1/5 over its multi-view products, category P@5;
* Kaggle, the half of its ids that no head trains on (``splits/kaggle_validation_ids.txt``):
  articleType / baseColour / subCategory P@10; plus "same style, other colour": products whose
  display names differ only by the colour word share one product id, and each of them queries
  the catalog (R@10 of another colour of its style); those few shots come from both halves;
* street-to-shop: the garments of CCP's 200 tag-only street photos searched in that Kaggle
  catalog, precision@10 of article types of the garment's class.

Each measure gets both values and the paired difference (B - A) with a 95% interval bootstrapped
over the queries both answered. Writes JSON (``docs/results/embedder_comparison.json`` for the
shipped models) and prints a table::

    python scripts/compare_embedders.py --work runs/compare --output docs/results/embedder_comparison.json
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from viton_validation import write_validation_set  # noqa: E402

from fashion_search import SearchEngine, load_catalog  # noqa: E402
from fashion_search.catalog import CsvColumns  # noqa: E402
from fashion_search.evaluation import (  # noqa: E402
    evaluate_index,
    evaluate_pairs,
    paired_difference,
    read_query_pairs,
    write_per_query,
)
from fashion_search.garments.taxonomy import ARTICLE_TYPE_TO_CLASS, GARMENT_CLASSES  # noqa: E402
from fashion_search.pipeline import Component  # noqa: E402
from fashion_search.training.embedder.pairs import read_ids  # noqa: E402
from fashion_search.training.parser.evaluate import ccp_tags  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
KAGGLE_IDS = ROOT / "splits" / "kaggle_validation_ids.txt"
VITON_IDS = ROOT / "splits" / "viton_validation_ids.txt"


def style_stem(name: str, colour: str) -> str:
    """A Kaggle display name without its colour word: 'Puma Men Grey Tshirts' -> 'puma men tshirts'."""
    drop = set(colour.lower().split())
    return " ".join(word for word in name.lower().split() if word not in drop)


def kaggle_catalog(data: Path, out: Path) -> tuple[Path, set[str]]:
    """The validation half of Kaggle plus every shot of a style sold in two colours or more, as a
    catalog CSV whose product id is the style for those; returns it and the validation half's ids."""
    validation = read_ids(KAGGLE_IDS)
    with open(data / "labels.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    styles: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        if row["productDisplayName"]:
            styles.setdefault(style_stem(row["productDisplayName"], row["baseColour"]), []).append(row)
    style_of = {
        row["id"]: f"style:{stem}"
        for stem, members in styles.items()
        if len(members) > 1 and len({m["baseColour"] for m in members}) > 1
        for row in members
    }
    out.mkdir(parents=True, exist_ok=True)
    path = out / "kaggle.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image", "product_id", "articleType", "baseColour", "subCategory", "kaggle_id"])
        for row in rows:
            if row["id"] in validation or row["id"] in style_of:
                writer.writerow(
                    [
                        str(data / row["image"]),
                        style_of.get(row["id"], row["id"]),
                        row["articleType"],
                        row["baseColour"],
                        row["subCategory"],
                        row["id"],
                    ]
                )
    return path, validation


def street_to_shop(engine: SearchEngine, ccp: Path, per_query: Path) -> dict[str, Any]:
    """Precision@10 of article types of each street garment's class, per garment."""
    values = []
    with open(per_query, "w", encoding="utf-8") as fh:
        for photo, _ in ccp_tags(ccp):
            for number, garment in enumerate(engine.search(photo, k=10).garments):
                label = garment.garment.label
                if label not in GARMENT_CLASSES or not garment.results:
                    continue
                value = float(np.mean([ARTICLE_TYPE_TO_CLASS.get(r.category) == label for r in garment.results]))
                values.append(value)
                key = f"{photo.name}#{number}:{label}"
                fh.write(json.dumps({"key": key, "metric": "street-to-shop P@10", "value": value}) + "\n")
    return {"garments": len(values), "P@10": round(float(np.mean(values)), 4) if values else None}


def measure(embedder: str, work: Path, data: Path, detector: str) -> dict[str, Any]:
    """Every measure for one embedder; per-query outcomes are written under ``work/embedder``."""
    out = work / embedder.replace("+", "_")
    out.mkdir(parents=True, exist_ok=True)
    chosen = {"embedder": Component(embedder), "detector": Component(detector)}
    results: dict[str, Any] = {}

    viton_catalog, viton_pairs = write_validation_set(work / "viton", data / "viton", sorted(read_ids(VITON_IDS)))
    engine = SearchEngine.create(out / "viton.lance", **chosen)
    indexing = engine.index(load_catalog(csv_path=viton_catalog))
    report = evaluate_pairs(read_query_pairs(viton_pairs), engine.searcher)
    write_per_query(report, out / "viton.jsonl")
    results["worn_to_shop"] = report.to_dict()
    results["index_images_per_second"] = round(indexing.images_per_second, 1)

    engine = SearchEngine.create(out / "zalora.lance", **chosen)
    zalora = load_catalog(folder=data / "zalora")
    engine.index(zalora)
    report = evaluate_index(zalora, engine.searcher, recall_at=(1, 5, 10), labels=("category",), precision_at=(5, 10))
    write_per_query(report, out / "zalora.jsonl")
    results["zalora"] = report.to_dict()

    kaggle_csv, validation = kaggle_catalog(data / "kaggle", work)
    columns = CsvColumns(image="image", product_id="product_id", category="articleType")
    items = load_catalog(csv_path=kaggle_csv, columns=columns)
    engine = SearchEngine.create(out / "kaggle.lance", **chosen)
    engine.index(items)
    labels = ("category", "baseColour", "subCategory")
    # One evaluation over the whole catalog (its results' labels come from the items given): its
    # multi-view products are exactly the styles; precision is kept for the held-out half only.
    report = evaluate_index(items, engine.searcher, recall_at=(1, 10), labels=labels, precision_at=(10,))
    held_out = {str(it.path) for it in items if it.metadata["kaggle_id"] in validation}
    precision_rows = [r for r in report.per_query_rows() if "P@" in r["metric"] and r["key"] in held_out]
    recall_rows = [r for r in report.per_query_rows() if r["metric"].startswith("R@")]
    for name, rows in (("kaggle", precision_rows), ("styles", recall_rows)):
        with open(out / f"{name}.jsonl", "w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(row) + "\n" for row in rows)
    results["kaggle"] = {
        "images": len(held_out),
        "precision": {
            label: {
                "P@10": round(float(np.mean([r["value"] for r in precision_rows if r["metric"] == f"{label} P@10"])), 4)
            }
            for label in labels
        },
    }
    whole = report.to_dict()
    results["same_style_other_colour"] = {
        "queries": whole["multi_view_queries"],
        "recall": whole["recall"],
        "recall_95ci": whole["recall_95ci"],
    }

    garments = engine.store.count()
    on_disk = sum(f.stat().st_size for f in (out / "kaggle.lance").rglob("*") if f.is_file())
    results["kaggle_index"] = {
        "garments": garments,
        "megabytes": round(on_disk / 1e6, 1),
        "megabytes_per_1000_garments": round(on_disk / 1e6 / garments * 1000, 2),
    }
    results["street_to_shop"] = street_to_shop(engine, data / "ccp", out / "street.jsonl")
    results["embedder_identity"] = engine.pipeline.record().embedder.identity
    return results


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--a", default="efficientnet-lite2+colour", help="the embedder compared against")
    parser.add_argument("--b", default="garment-head", help="the candidate embedder")
    parser.add_argument("--detector", default="parser")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "compare", help="indexes and per-query files")
    parser.add_argument("--output", type=Path, help="write the JSON here")
    args = parser.parse_args(argv)

    runs = {name: measure(name, args.work, args.data, args.detector) for name in (args.a, args.b)}
    paired: dict[str, Any] = {}
    for part in ("viton", "zalora", "kaggle", "styles", "street"):
        a = args.work / args.a.replace("+", "_") / f"{part}.jsonl"
        b = args.work / args.b.replace("+", "_") / f"{part}.jsonl"
        for metric, result in paired_difference(a, b).items():
            paired[f"{part} {metric}"] = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in result.items()}
            if "95ci" in result:
                paired[f"{part} {metric}"]["95ci"] = [round(v, 4) for v in result["95ci"]]
    result = {"measured": datetime.date.today().isoformat(), "a": args.a, "b": args.b, "runs": runs, "paired": paired}
    print("| measure | queries | " + args.a + " | " + args.b + " | difference (95% interval) |")
    print("|---|---|---|---|---|")
    for metric, r in paired.items():
        lo, hi = r["95ci"]
        print(
            f"| {metric} | {r['queries']} | {r['a']:.3f} | {r['b']:.3f} | {r['difference']:+.3f} ({lo:+.3f} to {hi:+.3f}) |"
        )
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
        print(f"wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
