"""Measure a garment parser: ``fashion-search train evaluate-parser``.

    fashion-search train evaluate-parser --data ../shared/data [--model runs/parser/garment_parser.onnx]
        [--kaggle-db .cache/kaggle-parser.lance] [--output docs/results/garment_parser.json]

Measures (one JSON document; the shipped model's is ``docs/results/garment_parser.json``, from which
its model card's and the README's tables are rendered by ``scripts/render_figures.py``):
- CCP validation photos 701-800: per-class IoU, garment mean IoU, box recall at IoU 0.5, and the
  same for a perfect label map on the parser's canvas through its garment extraction (the ceiling);
- held-out Kaggle product shots: exactly one garment of the right class;
- VITON validation photos (``--viton-ids``, when ``DATA/viton`` is there): garment IoU against
  their parse maps (made by a model), how often their top is found and which class it is given;
- CCP tag-only photos 1005-1204: share of tagged garments found, and street-to-shop precision@10:
  searching the Kaggle catalog (indexed with the parser into ``--kaggle-db``), the share of each
  detected garment's 10 results whose article type belongs to the garment's class;
- parser latency on this CPU (p50 over 60 validation photos, the median of ``--latency-runs`` runs).
"""

from __future__ import annotations

import datetime
import platform
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Optional

import numpy as np

from fashion_search import CsvColumns, SearchEngine, load_catalog
from fashion_search.garments.parser import DEFAULT_MODEL, GarmentParser
from fashion_search.garments.taxonomy import ARTICLE_TYPE_TO_CLASS, GARMENT_CLASSES
from fashion_search.pipeline import Component
from fashion_search.runtime import default_threads, sha256_file
from fashion_search.training.parser.evaluate import (
    ccp_tags,
    evaluate_product_shots,
    evaluate_segmentation,
    evaluate_tags,
    evaluate_viton,
    segmentation_ceiling,
)

TARGET_CLASSES = ("top", "trousers", "dress", "skirt", "footwear", "bag")


def machine() -> str:
    """The machine a figure was measured on, as results files record it."""
    return f"{platform.machine()}, {default_threads()} CPU cores, Python {platform.python_version()}"


def street_to_shop(data: Path, db: str, model: Path, limit: int | None) -> dict:
    """Precision@10 of article types compatible with each detected garment's class."""
    catalog = load_catalog(csv_path=data / "kaggle" / "labels.csv", columns=CsvColumns("image", "id", "articleType"))
    # The shipped model by name, so that indexes built by the CLI and benchmarks are reused.
    options = {} if model.resolve() == DEFAULT_MODEL.resolve() else {"model_path": str(model.resolve())}
    engine = SearchEngine.create(db, detector=Component("parser", options))
    report = engine.index(catalog)
    print(
        f"kaggle index: {report.indexed} new, {report.unchanged} unchanged, {len(report.failed)} failed",
        file=sys.stderr,
    )
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
    return {
        "parse_p50_ms": round(float(np.median(network_p50)), 1),
        "detect_p50_ms": round(float(np.median(detect_p50)), 1),
        "detect_p50_runs_ms": [round(v, 1) for v in detect_p50],
        "detect_p95_ms": round(float(np.median(detect_p95)), 1),
        "photos": len(photos),
        "runs": runs,
    }


def viton_validation(parser: GarmentParser, data: Path, ids_file: Optional[Path]) -> dict[str, Any]:
    """``{"viton_validation": ...}`` on the ids listed in ``ids_file``; empty without VITON's folder."""
    from fashion_search.training.embedder.pairs import read_ids

    if ids_file is None or not (data / "viton" / "pairs.csv").is_file():
        return {}
    ids = sorted(read_ids(ids_file))
    return {"viton_validation": {**evaluate_viton(parser, data / "viton", ids).to_dict(), "ids": str(ids_file)}}


def measure_parser(
    data: Path,
    model: Path,
    kaggle_db: str,
    tag_limit: Optional[int] = None,
    latency_runs: int = 5,
    viton_ids: Optional[Path] = None,
) -> dict[str, Any]:
    """Every figure of the parser at ``model``, with what was measured and when."""
    parser = GarmentParser(model_path=model)
    extraction = {
        "min_area": parser.min_area,
        "merge_distance": parser.merge_distance,
        "max_garments": parser.max_garments,
    }
    results: dict[str, Any] = {
        "model": {
            "file": model.name,
            "sha256": sha256_file(model),
            "megabytes": round(model.stat().st_size / 1e6, 1),
            "input_size": list(parser.input_size),
        },
        "measured": {"date": datetime.date.today().isoformat(), "machine": machine()},
        "target_classes": list(TARGET_CLASSES),
        "segmentation": evaluate_segmentation(parser, data / "ccp").to_dict(),
        "segmentation_ceiling": {
            **segmentation_ceiling(data / "ccp", **extraction).to_dict(),
            "extraction": extraction,
        },
        "product_shots": evaluate_product_shots(parser, data / "kaggle").to_dict(),
        "tags": evaluate_tags(parser, data / "ccp", tag_limit),
        **viton_validation(parser, data, viton_ids),
        "latency": latency(parser, data, latency_runs),
    }
    results["street_to_shop"] = street_to_shop(data, kaggle_db, model, tag_limit)
    return results
