"""``fashion-search train embedder``: pairs -> cached head inputs -> trained garment head -> ONNX.

The run folder holds everything a rerun needs to resume: the feature cache (``cache/``), the
checkpoint after the last finished epoch, and at the end ``garment_head.onnx`` and
``training.json`` (what was trained on, the loss per epoch, the time it took).
"""

from __future__ import annotations

import datetime
import logging
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from fashion_search.embed.garment_head import HEAD_FILENAME, HeadInputs
from fashion_search.errors import UsageError
from fashion_search.runtime import default_threads
from fashion_search.training.embedder.features import pair_features, shot_features
from fashion_search.training.embedder.head import (
    HeadConfig,
    HeadData,
    export_head,
    train_head,
    verify_export,
    write_json,
)
from fashion_search.training.embedder.pairs import kaggle_shots, read_ids, read_pairs_csv, viton_pairs

log = logging.getLogger(__name__)


@dataclass
class EmbedderRun:
    output: Path
    viton: Optional[str] = None
    exclude_ids: Optional[str] = None
    pairs: list[str] = field(default_factory=list)
    kaggle: Optional[str] = None
    detector: str = "parser"
    colour_weight: float = 0.5
    limit: int = 0
    threads: int = 0
    device: str = "cpu"


def train_embedder(run: EmbedderRun, config_options: dict[str, Any]) -> dict[str, Any]:
    """Train a garment head as ``run`` says and export it; returns what ``training.json`` records."""
    started = time.monotonic()
    config = HeadConfig(**config_options)
    output = run.output
    output.mkdir(parents=True, exist_ok=True)
    threads = run.threads or default_threads()
    inputs = HeadInputs(threads=threads, colour_weight=run.colour_weight)
    identity = inputs.identity()
    cache = output / "cache"

    excluded = read_ids(run.exclude_ids) if run.exclude_ids else set()
    detector = None
    if run.detector != "whole-image":
        from fashion_search.garments import create_detector

        detector = create_detector(run.detector, threads=threads)
    worn, product, view, product_ids = [], [], [], []
    sources: dict[str, int] = {}
    if run.viton:
        pairs = viton_pairs(run.viton, excluded)
        if run.limit:
            pairs = pairs[: run.limit]
        part = pair_features(pairs, inputs, cache, identity, seed=config.seed, detector=detector)
        sources["viton"] = int(part.kept.sum())
        for store, values in ((worn, part.worn), (product, part.product), (view, part.product_view)):
            store.append(values[part.kept])
        product_ids += [pid for pid, ok in zip(part.product_ids, part.kept) if ok]
    for csv_path in run.pairs:
        pairs = read_pairs_csv(csv_path)
        if run.limit:
            pairs = pairs[: run.limit]
        part = pair_features(pairs, inputs, cache, identity, seed=config.seed, detector=detector)
        sources[str(csv_path)] = int(part.kept.sum())
        for store, values in ((worn, part.worn), (product, part.product), (view, part.product_view)):
            store.append(values[part.kept])
        # Prefixed, so that two CSVs' product ids never collide.
        product_ids += [f"{csv_path}:{pid}" for pid, ok in zip(part.product_ids, part.kept) if ok]
    if not product_ids:
        raise UsageError("no readable pairs to train on")

    shots_x = np.zeros((0, inputs.dim), np.float32)
    types: list[str] = []
    colours: list[str] = []
    if run.kaggle:
        shots = kaggle_shots(run.kaggle)
        shots_x = shot_features(shots, inputs, cache, identity)
        keep = np.abs(shots_x).sum(axis=1) > 0
        shots_x = shots_x[keep]
        types = [s.article_type for s, ok in zip(shots, keep) if ok]
        colours = [s.colour for s, ok in zip(shots, keep) if ok]
        sources["kaggle_shots"] = int(keep.sum())
    features_minutes = (time.monotonic() - started) / 60

    data = HeadData(
        np.concatenate(worn), np.concatenate(product), np.concatenate(view), product_ids, shots_x, types, colours
    )
    head, summary = train_head(data, config, output, run.device, threads)
    model = output / HEAD_FILENAME
    metadata = {
        "model": "garment-head",
        "colour_weight": repr(run.colour_weight),
        "backbone_sha256": identity["backbone"]["sha256"],
        "dim": str(config.dim),
        "trained": datetime.date.today().isoformat(),
    }
    export_head(head, inputs.dim, model, metadata)
    error = verify_export(head, model, inputs.dim)
    if error > 1e-4:
        raise RuntimeError(f"exported head differs from the trained one by {error:.2e}")
    report = {
        **summary,
        "sources": sources,
        "model": str(model),
        "minutes": round((time.monotonic() - started) / 60, 2),
        "feature_minutes": round(features_minutes, 2),
        "hardware": f"{platform.machine()}, {threads} threads, {run.device}",
        "export_max_abs_error": error,
    }
    write_json(output / "training.json", report)
    return report


def model_record(report: dict[str, Any]) -> dict[str, Any]:
    """What the model card's figures say about a trained head: its file, data and training time."""
    from fashion_search.runtime import model_metadata, onnx_session, sha256_file

    model = Path(report["model"])
    meta = model_metadata(onnx_session(model, 1))
    return {
        "sha256": sha256_file(model),
        "megabytes": round(model.stat().st_size / 1e6, 1),
        "backbone_sha256": meta.get("backbone_sha256", ""),
        "trained": meta.get("trained", ""),
        "pairs": report["pairs"],
        "products": report["products"],
        "labelled_shots": report["labelled_shots"],
        "article_types": report["article_types"],
        "colours": report["colours"],
        "epochs": report["config"]["epochs"],
        "dim": report["config"]["dim"],
        "minutes": report["minutes"],
        "feature_minutes": report["feature_minutes"],
        "hardware": report["hardware"],
        "export_max_abs_error": report["export_max_abs_error"],
    }


__all__ = ["EmbedderRun", "model_record", "train_embedder"]
