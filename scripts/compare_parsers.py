#!/usr/bin/env python
"""Two garment parsers side by side, paired photo by photo: is the new one better, or is it noise?

    fashion-search eval --catalog ../shared/data/zalora --db za.lance --detector parser \\
        --detector-option model_path=A.onnx --per-query za.jsonl                # and zb.jsonl for B
    python scripts/compare_parsers.py A.onnx B.onnx --zalora za.jsonl zb.jsonl \\
        --output docs/results/parser_comparison.json

It parses CCP's validation photos (0701-0800) with both models and bootstraps B - A over the photos
(seeded): garment mean IoU and box recall of the target classes, each with a 95% interval. Held-out
Kaggle product shots are paired photo by photo; Zalora same-product recall, and worn-to-shop
recall given ``--worn-to-shop`` (per-query files of ``fashion-search eval-pairs`` on the VITON
validation pairs), query by query from the ``--per-query`` files. The VITON validation photos
(``splits/viton_validation_ids.txt``) are parsed by both, side by side. Street-to-shop and latency
come from ``fashion-search train evaluate-parser``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fashion_search.evaluation import paired_difference  # noqa: E402
from fashion_search.garments.parser import GarmentParser  # noqa: E402
from fashion_search.garments.taxonomy import ccp_lookup_table  # noqa: E402
from fashion_search.training.datasets import ccp_ids, ccp_names, load_ccp_photo  # noqa: E402
from fashion_search.training.embedder.pairs import read_ids  # noqa: E402
from fashion_search.training.parser.evaluate import (  # noqa: E402
    ProductShotReport,
    SegmentationReport,
    _SegmentationScore,
    evaluate_product_shots,
    evaluate_viton,
)
from fashion_search.training.parser.report import TARGET_CLASSES  # noqa: E402


def per_photo_scores(parser: GarmentParser, ccp_root: Path) -> list[_SegmentationScore]:
    """One score (confusion matrix, boxes found and labelled) per CCP validation photo."""
    table = ccp_lookup_table(ccp_names(ccp_root))
    scores = []
    for photo_id in ccp_ids("val"):
        photo, labels = load_ccp_photo(ccp_root, photo_id, table)
        score = _SegmentationScore()
        score.add(np.asarray(labels), parser.detect(photo))
        scores.append(score)
    return scores


def pooled(scores: Sequence[_SegmentationScore], idx: np.ndarray) -> SegmentationReport:
    """The report of the photos ``idx`` (repeats counted), as the evaluation would give it."""
    total = _SegmentationScore()
    total.matrix = np.sum([scores[i].matrix for i in idx], axis=0)
    for i in idx:
        for cls, count in scores[i].total.items():
            total.total[cls] += count
            total.found[cls] += scores[i].found[cls]
    total.photos = len(idx)
    return total.report()


def paired_segmentation(
    a: list[_SegmentationScore], b: list[_SegmentationScore], rounds: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """B - A in garment mean IoU and target-class box recall, 95% intervals over photos resampled
    with replacement (the same photos for both models in each round)."""
    rng = np.random.default_rng(seed)
    n = len(a)

    def measures(idx: np.ndarray) -> dict[str, tuple[float, float]]:
        ra, rb = pooled(a, idx), pooled(b, idx)
        nan = float("nan")
        return {
            "garment mean IoU": (ra.mean_iou, rb.mean_iou),
            **{f"box recall {c}": (ra.box_recall.get(c, nan), rb.box_recall.get(c, nan)) for c in TARGET_CLASSES},
        }

    full = measures(np.arange(n))
    rounds_diff: dict[str, list[float]] = {k: [] for k in full}
    for _ in range(rounds):
        for key, (va, vb) in measures(rng.integers(0, n, n)).items():
            if not (np.isnan(va) or np.isnan(vb)):
                rounds_diff[key].append(vb - va)
    result = {}
    for key, (va, vb) in full.items():
        lo, hi = np.percentile(rounds_diff[key], [2.5, 97.5])
        result[key] = {
            "a": round(va, 4),
            "b": round(vb, 4),
            "difference": round(vb - va, 4),
            "95ci": [round(float(lo), 4), round(float(hi), 4)],
        }
    result["boxes"] = {c: sum(s.total[c] for s in a) for c in TARGET_CLASSES}
    return result


def paired_product_shots(
    a: ProductShotReport, b: ProductShotReport, rounds: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """B - A on the same held-out product shots, per group and measure, with 95% intervals over
    photos resampled with replacement."""
    if [(p.id, p.group) for p in a.photos] != [(p.id, p.group) for p in b.photos]:
        raise ValueError("the two reports hold different photos")
    rng = np.random.default_rng(seed)
    result: dict[str, Any] = {}
    for group in ("all", "no person", "worn"):
        rows = [i for i, p in enumerate(a.photos) if group in ("all", p.group)]
        if not rows:
            continue
        for measure, name in (
            ("exactly_one_right", "exactly one garment, right class"),
            ("largest_is_right", "largest garment right"),
        ):
            va = np.array([getattr(a.photos[i], measure) for i in rows], np.float64)
            vb = np.array([getattr(b.photos[i], measure) for i in rows], np.float64)
            draws = rng.integers(0, len(rows), (rounds, len(rows)))
            lo, hi = np.percentile((vb[draws] - va[draws]).mean(1), [2.5, 97.5])
            result[f"{group}: {name}"] = {
                "photos": len(rows),
                "a": round(float(va.mean()), 4),
                "b": round(float(vb.mean()), 4),
                "difference": round(float(vb.mean() - va.mean()), 4),
                "95ci": [round(float(lo), 4), round(float(hi), 4)],
            }
    return result


def unpaired(
    parser: GarmentParser, data: Path, viton_ids: Path, product_shots: Optional[ProductShotReport] = None
) -> dict[str, Any]:
    """Product-shot and VITON validation figures of one parser."""
    shots = product_shots or evaluate_product_shots(parser, data / "kaggle")
    return {
        "model": parser.model_path.name,
        "product_shots": shots.to_dict()["groups"],
        "viton_validation": evaluate_viton(parser, data / "viton", sorted(read_ids(viton_ids))).to_dict(),
    }


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_a", type=Path)
    parser.add_argument("model_b", type=Path)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--zalora", nargs=2, type=Path, metavar=("A_JSONL", "B_JSONL"), required=True)
    parser.add_argument(
        "--worn-to-shop",
        nargs=2,
        type=Path,
        metavar=("A_JSONL", "B_JSONL"),
        help="per-query files of `fashion-search eval-pairs` on the VITON validation pairs, one per parser",
    )
    parser.add_argument("--viton-ids", type=Path, default=ROOT / "splits" / "viton_validation_ids.txt")
    parser.add_argument("--output", type=Path, help="write the JSON here (default: print it)")
    args = parser.parse_args(argv)

    parsers = [GarmentParser(model_path=args.model_a), GarmentParser(model_path=args.model_b)]
    scores_a, scores_b = (per_photo_scores(p, args.data / "ccp") for p in parsers)
    shots_a, shots_b = (evaluate_product_shots(p, args.data / "kaggle") for p in parsers)
    result = {
        "measured": datetime.date.today().isoformat(),
        "ccp_validation_paired": paired_segmentation(scores_a, scores_b),
        "product_shots_paired": paired_product_shots(shots_a, shots_b),
        "zalora_paired": paired_difference(*args.zalora),
        **({"worn_to_shop_paired": paired_difference(*args.worn_to_shop)} if args.worn_to_shop else {}),
        "a": unpaired(parsers[0], args.data, args.viton_ids, shots_a),
        "b": unpaired(parsers[1], args.data, args.viton_ids, shots_b),
    }
    text = json.dumps(result, indent=1)
    if args.output:
        args.output.write_text(text + "\n")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
