"""Benchmark metadata filters: search latency and recall with a filter against without.

    python benchmarks/bench_filters.py                        # 200,000 x 1280-d, Lance
    python benchmarks/bench_filters.py --stores lance postgres --rows 50000

The rows are bench_store.py's synthetic mixture. Each product gets a brand (20, one of them 5%
of products, like bench_store's 5% category) and a price (5 to 300, as CSV text), drawn
independently of the vectors, so that a filter cannot lean on the vector geometry. Each query
series runs through ``VectorStore.search(where=...)``, the call the engine makes, and recall
is measured against exact search over the rows that pass (numpy).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import results_json  # noqa: E402  (benchmarks/results_json.py)
from bench_store import (  # noqa: E402
    RARE,
    WARMUP,
    Mixture,
    TopK,
    add_data_arguments,
    category_of_products,
    chunks,
    make_rows,
    percentile,
)
from bench_stores import open_stores  # noqa: E402

from fashion_search.store import VectorStore  # noqa: E402
from fashion_search.store.filters import MetadataColumns, all_of, evaluate, one_of, parse_filter  # noqa: E402
from fashion_search.vectors import l2_normalise  # noqa: E402

BRANDS = 20

# (label, category, filter text); the category is the store's own column, for comparison.
QUERIES: list[tuple[str, Optional[str], Optional[str]]] = [
    ("no filter", None, None),
    (f"category = {RARE} (5%, a store column)", RARE, None),
    ('brand = "brand00" (5%)', None, 'brand = "brand00"'),
    ("price < 150 (50%)", None, "price < 150"),
    (
        "brand in 3 brands and price between 20 and 100 (~4%)",
        None,
        'brand in ("brand01", "brand02", "brand03") and price between 20 and 100',
    ),
]


def product_metadata(products: np.ndarray, seed: int) -> list[dict[str, str]]:
    """Brand and price per product id, independent of the vectors; brand00 holds 5%."""
    rng = np.random.default_rng([seed, 5])
    top = int(products.max()) + 1 if len(products) else 1
    rest = rng.lognormal(0.0, 0.5, BRANDS - 1)
    brands = rng.choice(BRANDS, size=top, p=np.r_[0.05, 0.95 * rest / rest.sum()])
    prices = rng.uniform(5, 300, size=top)
    return [{"brand": f"brand{int(brands[p]):02d}", "price": f"{prices[p]:.2f}"} for p in products]


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_arguments(ap)
    ap.set_defaults(rows=200_000, k=[10])
    ap.add_argument("--workdir", default="./.cache/bench_filters")
    ap.add_argument("--stores", nargs="+", default=["lance"], choices=["lance", "postgres"])
    ap.add_argument("--pg-options", default="halfvec=true&maintenance_work_mem=4GB")
    ap.add_argument("--json", default=results_json.default_path("bench_filters"))
    args = ap.parse_args(argv)

    work = Path(args.workdir).resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    server = None
    stores: dict[str, VectorStore] = {}
    try:
        server = open_stores(
            stores, args.stores, work, args.dim, f"table=filters&{args.pg_options}", None, {"shared_buffers": "2GB"}
        )
        print(f"# bench_filters: {args.rows:,} x {args.dim}-d, {args.queries} queries; {', '.join(stores)}", flush=True)

        mixture = Mixture(args.dim, args.centres, args.seed)
        queries = mixture.queries(args.queries)
        k_max = max(args.k)
        parsed: dict[str, Any] = {}
        truths: dict[str, TopK] = {label: TopK(args.queries, k_max) for label, _, _ in QUERIES}
        kept = {label: 0 for label, _, _ in QUERIES}
        write_s = {name: 0.0 for name in stores}
        for index, lo, hi in chunks(args.rows):
            vectors = mixture.chunk(index, lo, hi)
            ids = np.arange(lo, hi)
            cats = category_of_products(ids // 3, args.seed)
            metadata = product_metadata(ids // 3, args.seed)
            if not parsed:
                columns = MetadataColumns.learn(metadata)
                parsed = {label: parse_filter(text, columns) for label, _, text in QUERIES if text}
            sims = queries @ l2_normalise(vectors).T
            for label, category, _ in QUERIES:
                if label in parsed:
                    mask = np.fromiter((bool(evaluate(parsed[label], m)) for m in metadata), bool, len(metadata))
                elif category is not None:
                    mask = cats == int(category[3:])
                else:
                    mask = np.ones(len(ids), bool)
                kept[label] += int(mask.sum())
                truths[label].add(sims[:, mask], ids[mask])
            rows = make_rows(lo, vectors, cats, metadata)
            for b in range(0, len(rows), 10_000):
                for name, store in stores.items():
                    t0 = time.perf_counter()
                    store.add_rows_bulk(rows[b : b + 10_000])  # type: ignore[attr-defined]
                    write_s[name] += time.perf_counter() - t0
            print(f"  wrote {hi:,}/{args.rows:,} rows", flush=True)
        truth = {label: t.ranked() for label, t in truths.items()}
        share = {label: n / args.rows for label, n in kept.items()}

        report: dict[str, dict[str, Any]] = {}
        warmup = mixture.queries(WARMUP, stream=4)
        for name, store in stores.items():
            t0 = time.perf_counter()
            store.optimize()
            print(f"  {name}: optimize() {time.perf_counter() - t0:.1f} s", flush=True)
            store.warm()
            lookups = []
            for label, category, _ in QUERIES:
                where = parsed.get(label)
                for k in args.k:
                    for q in warmup:
                        store.search(q, k, where=all_of(one_of("category", category), where))
                    latencies, recalls = [], []
                    for qi, q in enumerate(queries):
                        t0 = time.perf_counter()
                        hits = store.search(q, k, where=all_of(one_of("category", category), where))
                        latencies.append((time.perf_counter() - t0) * 1e3)
                        exact = set(truth[label][qi, :k].tolist())
                        recalls.append(len({int(h.image_id[3:]) for h in hits} & exact) / k)
                    lookups.append(
                        {
                            "query": label,
                            "rows_passing": round(share[label], 4),
                            "k": k,
                            "p50_ms": round(percentile(latencies, 50), 2),
                            "p95_ms": round(percentile(latencies, 95), 2),
                            "recall": round(float(np.mean(recalls)), 3),
                        }
                    )
            report[name] = {"write_rows_per_s": round(args.rows / write_s[name]), "lookups": lookups}
    finally:
        for store in stores.values():
            store.close()
        if server is not None:
            server.stop()

    print()
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs; {args.rows:,} x {args.dim}-d unit vectors")
    print()
    print("| store | query | rows passing | k | p50 ms | p95 ms | Recall@k |")
    print("|---|---|---|---|---|---|---|")
    for name, r in report.items():
        for lookup in r["lookups"]:
            print(
                f"| {name} | {lookup['query']} | {lookup['rows_passing']:.1%} | {lookup['k']} | "
                f"{lookup['p50_ms']:.1f} | {lookup['p95_ms']:.1f} | {lookup['recall']:.3f} |"
            )
    results_json.write(args.json, {"rows": args.rows, "dim": args.dim, "queries": args.queries, "stores": report})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
