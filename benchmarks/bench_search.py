"""Indexing throughput and search latency of the whole pipeline on real catalog photos.

Prints a table. Usage:
    python benchmarks/bench_search.py [--data ../shared/data] [--limit N] [--queries 100]

Indexes the Kaggle product shots (all 9,583 by default) into a fresh index with the default
models, then searches with Kaggle and Zalora photos and reports per-query latency end to end
(decode, detect, embed, store lookups) and for the garment detector alone, on Kaggle product
shots, Zalora photos and CCP street photos (several garments each).
"""
from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fashion_search import CsvColumns, SearchEngine, load_catalog  # noqa: E402
from fashion_search.pipeline import Component  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--limit", type=int, default=0, help="index only the first N Kaggle images (0 = all)")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--db", help="index location (default: a temporary folder)")
    parser.add_argument("--detector", help="garment detector by registry name (default: the default detector)")
    args = parser.parse_args()

    data = Path(args.data)
    catalog = load_catalog(csv_path=data / "kaggle" / "labels.csv",
                           columns=CsvColumns("image", "id", "articleType"))
    if args.limit:
        catalog = catalog[: args.limit]
    tmp = tempfile.TemporaryDirectory()
    db = args.db or str(Path(tmp.name) / "bench.lance")

    engine = SearchEngine.create(db, detector=Component(args.detector, {}) if args.detector else None)
    t0 = time.perf_counter()
    report = engine.index(catalog)
    index_seconds = time.perf_counter() - t0

    engine = SearchEngine.open(db, warm=True)
    rng = np.random.default_rng(0)
    kaggle_queries = [catalog[i].path for i in rng.choice(len(catalog), min(args.queries, len(catalog)), replace=False)]
    zalora = sorted((data / "zalora").glob("*/*/*.jpg"))
    zalora_queries = [zalora[i] for i in rng.choice(len(zalora), min(args.queries, len(zalora)), replace=False)] if zalora else []
    street = sorted((data / "ccp" / "photos").glob("1*.jpg"))  # tag-only photos, never trained on
    street_queries = [street[i] for i in rng.choice(len(street), min(args.queries, len(street)), replace=False)] if street else []
    engine.search(kaggle_queries[0])  # warm-up: first-call allocations are not latency

    rows = []
    query_sets = (("kaggle 224x224 product shots", kaggle_queries), ("zalora 762x1100+ photos", zalora_queries),
                  ("ccp ~550x830 street photos", street_queries))
    for name, queries in query_sets:
        if not queries:
            continue
        totals, lookups, embeds, detects, garments = [], [], [], [], []
        for path in queries:
            result = engine.search(path, k=12)
            timings = result.timings_ms
            totals.append(timings["total"])
            lookups.append(timings["lookup"])
            embeds.append(timings["embed"])
            detects.append(timings["detect"])
            garments.append(len(result.garments))
        rows.append((name, len(queries), totals, lookups, embeds, detects, garments))

    print(f"machine: {platform.processor() or platform.machine()}, {__import__('os').cpu_count()} cores; "
          f"index of {engine.store.count()} garments at {db}")
    print()
    print("| indexing | images | failed | seconds | images/s |")
    print("|---|---|---|---|---|")
    print(f"| kaggle | {report.indexed} | {len(report.failed)} | {index_seconds:.1f} | {report.indexed / index_seconds:.1f} |")
    print()
    detector = engine.pipeline.detector_spec.name
    print(f"| search (k=12), detector {detector} | queries | garments/query | end-to-end p50 ms | p95 ms | "
          "detect p50 ms | p95 ms | embed p50 ms | store lookups p50 ms |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, n, totals, lookups, embeds, detects, garments in rows:
        print(f"| {name} | {n} | {np.mean(garments):.2f} | {percentile(totals, 50):.1f} | {percentile(totals, 95):.1f} | "
              f"{percentile(detects, 50):.1f} | {percentile(detects, 95):.1f} | {percentile(embeds, 50):.1f} | "
              f"{percentile(lookups, 50):.2f} |")
    tmp.cleanup()


if __name__ == "__main__":
    main()
