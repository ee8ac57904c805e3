"""Indexing throughput and search latency of the whole pipeline on real catalog photos.

Prints tables and writes the figures as JSON (default ``docs/results/bench_search.json``, from
which the README's speed table is rendered). Usage:
    python benchmarks/bench_search.py [--data ../shared/data] [--limit N] [--queries 100] [--repeat 3]

Indexes the Kaggle product shots (all 9,583 by default) into a fresh index with the default
models, then searches with Kaggle and Zalora photos and reports per-query latency end to end
(decode, detect, embed, store lookups) and for the garment detector alone, on Kaggle product
shots, Zalora photos and CCP street photos (several garments each).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import results_json  # noqa: E402  (benchmarks/results_json.py)

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
    parser.add_argument("--embedder", help="embedder by registry name (default: the default embedder)")
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="search passes; their median p50 is reported with its range (a 2-core machine's load "
        "moves one pass by 10-20%%)",
    )
    parser.add_argument(
        "--json",
        default=results_json.default_path("bench_search"),
        help="where to write the figures ('' for nowhere)",
    )
    args = parser.parse_args()

    data = Path(args.data)
    catalog = load_catalog(csv_path=data / "kaggle" / "labels.csv", columns=CsvColumns("image", "id", "articleType"))
    if args.limit:
        catalog = catalog[: args.limit]
    tmp = tempfile.TemporaryDirectory()
    db = args.db or str(Path(tmp.name) / "bench.lance")

    engine = SearchEngine.create(
        db,
        embedder=Component(args.embedder) if args.embedder else None,
        detector=Component(args.detector) if args.detector else None,
    )
    t0 = time.perf_counter()
    report = engine.index(catalog)
    index_seconds = time.perf_counter() - t0

    engine = SearchEngine.open(db, warm=True)
    rng = np.random.default_rng(0)
    kaggle_queries = [catalog[i].path for i in rng.choice(len(catalog), min(args.queries, len(catalog)), replace=False)]
    zalora = sorted((data / "zalora").glob("*/*/*.jpg"))
    zalora_queries = (
        [zalora[i] for i in rng.choice(len(zalora), min(args.queries, len(zalora)), replace=False)] if zalora else []
    )
    street = sorted((data / "ccp" / "photos").glob("1*.jpg"))  # tag-only photos, never trained on
    street_queries = (
        [street[i] for i in rng.choice(len(street), min(args.queries, len(street)), replace=False)] if street else []
    )
    engine.search(kaggle_queries[0])  # warm-up: first-call allocations are not latency

    query_sets = (
        ("kaggle", "Kaggle 224x224 product shots", kaggle_queries),
        ("zalora", "Zalora 762x1100 and 2362x3410 photos", zalora_queries),
        ("ccp", "CCP ~550x830 street photos", street_queries),
    )
    passes: dict[str, list[dict[str, list[float]]]] = {key: [] for key, _, _ in query_sets}
    for _ in range(max(1, args.repeat)):
        for key, _, queries in query_sets:
            if not queries:
                continue
            timings: dict[str, list[float]] = {"total": [], "lookup": [], "embed": [], "detect": [], "garments": []}
            for path in queries:
                result = engine.search(path, k=12)
                for step in ("total", "lookup", "embed", "detect"):
                    timings[step].append(result.timings_ms[step])
                timings["garments"].append(len(result.garments))
            passes[key].append(timings)

    def median_of(key: str, step: str, q: float) -> float:
        return float(np.median([percentile(p[step], q) for p in passes[key]]))

    search = []
    for key, name, queries in query_sets:
        if not passes[key]:
            continue
        p50s = [percentile(p["total"], 50) for p in passes[key]]
        search.append(
            {
                "photos": key,
                "description": name,
                "queries": len(queries),
                "passes": len(passes[key]),
                "garments_per_query": round(float(np.mean(passes[key][0]["garments"])), 2),
                "p50_ms": round(median_of(key, "total", 50), 1),
                "p50_range_ms": [round(min(p50s), 1), round(max(p50s), 1)],
                "p95_ms": round(median_of(key, "total", 95), 1),
                "detect_p50_ms": round(median_of(key, "detect", 50), 1),
                "embed_p50_ms": round(median_of(key, "embed", 50), 1),
                "lookup_p50_ms": round(median_of(key, "lookup", 50), 1),
            }
        )
    record = {
        "models": {"embedder": engine.pipeline.embedder_spec.name, "detector": engine.pipeline.detector_spec.name},
        "index": {
            "catalog": "kaggle",
            "images": report.indexed,
            "failed": len(report.failed),
            "seconds": round(index_seconds, 1),
            "images_per_s": round(report.indexed / index_seconds, 1),
            "garments": engine.store.count(),
            "garments_per_image": round(engine.store.count() / max(1, report.indexed + report.unchanged), 2),
        },
        "search": search,
    }

    print(f"machine: {results_json.measured()['machine']}; index of {engine.store.count()} garments at {db}")
    print()
    print("| indexing | images | failed | seconds | images/s |")
    print("|---|---|---|---|---|")
    print(
        f"| kaggle | {report.indexed} | {len(report.failed)} | {index_seconds:.1f} | {report.indexed / index_seconds:.1f} |"
    )
    print()
    detector = engine.pipeline.detector_spec.name
    print(
        f"| search (k=12), detector {detector} | queries | garments/query | end-to-end p50 ms (range) | p95 ms | "
        "detect p50 ms | embed p50 ms | store lookups p50 ms |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for row in search:
        lo, hi = row["p50_range_ms"]
        print(
            f"| {row['description']} | {row['queries']} | {row['garments_per_query']:.2f} | {row['p50_ms']:.1f} "
            f"({lo:.1f}-{hi:.1f}) | {row['p95_ms']:.1f} | {row['detect_p50_ms']:.1f} | {row['embed_p50_ms']:.1f} | "
            f"{row['lookup_p50_ms']:.1f} |"
        )
    results_json.write(args.json, record)
    tmp.cleanup()


if __name__ == "__main__":
    main()
