"""Indexing throughput and search latency of the whole pipeline on real catalog photos.

Prints a table. Usage:
    python benchmarks/bench_search.py [--data ../shared/data] [--limit N] [--queries 100]

Indexes the Kaggle product shots (all 9,583 by default) into a fresh index with the default
models, then searches with Kaggle and Zalora photos and reports per-query latency end to end
(decode, detect, embed, store lookup) and for the store lookup alone.
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


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--limit", type=int, default=0, help="index only the first N Kaggle images (0 = all)")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--db", help="index location (default: a temporary folder)")
    args = parser.parse_args()

    data = Path(args.data)
    catalog = load_catalog(csv_path=data / "kaggle" / "labels.csv",
                           columns=CsvColumns("image", "id", "articleType"))
    if args.limit:
        catalog = catalog[: args.limit]
    tmp = tempfile.TemporaryDirectory()
    db = args.db or str(Path(tmp.name) / "bench.lance")

    engine = SearchEngine.create(db)
    t0 = time.perf_counter()
    report = engine.index(catalog)
    index_seconds = time.perf_counter() - t0

    engine = SearchEngine.open(db, warm=True)
    rng = np.random.default_rng(0)
    kaggle_queries = [catalog[i].path for i in rng.choice(len(catalog), min(args.queries, len(catalog)), replace=False)]
    zalora = sorted((data / "zalora").glob("*/*/*.jpg"))
    zalora_queries = [zalora[i] for i in rng.choice(len(zalora), min(args.queries, len(zalora)), replace=False)] if zalora else []
    engine.search(kaggle_queries[0])  # warm-up: first-call allocations are not latency

    rows = []
    for name, queries in (("kaggle 224x224 product shots", kaggle_queries), ("zalora 762x1100+ photos", zalora_queries)):
        if not queries:
            continue
        totals, lookups, embeds, decodes = [], [], [], []
        for path in queries:
            timings = engine.search(path, k=12).timings_ms
            totals.append(timings["total"])
            lookups.append(timings["lookup"])
            embeds.append(timings["embed"])
            decodes.append(timings["decode"] + timings["detect"])
        rows.append((name, len(queries), totals, lookups, embeds, decodes))

    print(f"machine: {platform.processor() or platform.machine()}, {__import__('os').cpu_count()} cores; "
          f"index of {engine.store.count()} garments at {db}")
    print()
    print("| indexing | images | failed | seconds | images/s |")
    print("|---|---|---|---|---|")
    print(f"| kaggle | {report.indexed} | {len(report.failed)} | {index_seconds:.1f} | {report.indexed / index_seconds:.1f} |")
    print()
    print("| search (k=12) | queries | end-to-end p50 ms | p95 ms | store lookup p50 ms | p95 ms | embed p50 ms | decode+detect p50 ms |")
    print("|---|---|---|---|---|---|---|---|")
    for name, n, totals, lookups, embeds, decodes in rows:
        print(f"| {name} | {n} | {percentile(totals, 50):.1f} | {percentile(totals, 95):.1f} | "
              f"{percentile(lookups, 50):.2f} | {percentile(lookups, 95):.2f} | {percentile(embeds, 50):.1f} | "
              f"{percentile(decodes, 50):.1f} |")
    tmp.cleanup()


if __name__ == "__main__":
    main()
