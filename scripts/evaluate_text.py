#!/usr/bin/env python
"""Text search figures on the Kaggle text-validation products, through the search code.

    python scripts/evaluate_text.py --work runs/text-eval [--text-encoder-option model_path=...] \
        [--output docs/results/text_search.json] [--per-query runs/text-eval/per-query.jsonl]

Indexes the 3,379 text-validation product shots (``splits/kaggle_text_validation_ids.txt``) with the
default models into ``WORK/gallery.lance`` (once; later runs reuse it), then measures name,
attribute and paraphrase queries (:mod:`fashion_search.evaluation_text`).
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fashion_search import load_catalog  # noqa: E402
from fashion_search.catalog import CsvColumns  # noqa: E402
from fashion_search.evaluation_text import evaluate_text  # noqa: E402
from fashion_search.pipeline import Component  # noqa: E402
from fashion_search.search import Searcher  # noqa: E402
from fashion_search.training.embedder.pairs import read_ids  # noqa: E402
from fashion_search.writer import CatalogWriter  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "kaggle"
IDS = ROOT / "splits" / "kaggle_text_validation_ids.txt"
PARAPHRASES = ROOT / "splits" / "kaggle_text_paraphrases.csv"


def gallery_csv(data: Path, out: Path) -> Path:
    ids = read_ids(IDS)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "gallery.csv"
    with (
        open(data / "labels.csv", newline="", encoding="utf-8") as fh,
        open(path, "w", newline="", encoding="utf-8") as out_fh,
    ):
        writer = csv.writer(out_fh)
        writer.writerow(["image", "product_id", "articleType", "baseColour", "productDisplayName", "gender"])
        for row in csv.DictReader(fh):
            if row["id"] in ids:
                writer.writerow(
                    [
                        str(data / row["image"]),
                        row["id"],
                        row["articleType"],
                        row["baseColour"],
                        row["productDisplayName"],
                        row["gender"],
                    ]
                )
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "text-eval")
    parser.add_argument("--text-encoder-option", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--output", type=Path)
    parser.add_argument("--per-query", type=Path)
    args = parser.parse_args()

    catalog = load_catalog(csv_path=gallery_csv(args.data, args.work), columns=CsvColumns(category="articleType"))
    db = args.work / "gallery.lance"
    writer = CatalogWriter.create(db)
    writer.index(catalog, prune=False)
    options = dict(option.split("=", 1) for option in args.text_encoder_option)
    searcher = Searcher(writer.store, writer.pipeline, text_encoder=Component("minilm-tower", options))
    report = evaluate_text(searcher, PARAPHRASES)
    identity = searcher.text_encoder.identity()
    result = {"measured": datetime.date.today().isoformat(), "text_encoder": identity, **report.to_dict()}
    summary = {k: v for k, v in result.items() if k not in ("text_encoder",)}
    summary["paraphrases"] = {k: v for k, v in result["paraphrases"].items() if k != "each"}
    print(json.dumps(summary, indent=1))
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    if args.per_query:
        args.per_query.write_text("".join(json.dumps(row) + "\n" for row in report.per_query))
    return 0


if __name__ == "__main__":
    sys.exit(main())
