#!/usr/bin/env python
"""Text query latency at scale: the shipped text encoder and a Lance index of N garment vectors.

    python benchmarks/bench_text.py [--rows 100000] [--queries 200] [--output docs/results/bench_text.json]

The index holds N random unit vectors of the garment head's size (latency does not depend on what
they are), with the IVF index built as an index run builds it. Each query is a product-style phrase
searched through :meth:`Searcher.search_text` (encode, then the store lookup, k = 12); p50 and p95
of each part over the queries, after a warm-up.
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
sys.path.insert(0, str(ROOT / "benchmarks"))

import results_json  # noqa: E402

from fashion_search.pipeline import GarmentPipeline  # noqa: E402
from fashion_search.search import Searcher  # noqa: E402
from fashion_search.store import VectorRow, open_store  # noqa: E402

WORDS = ["black", "red", "navy", "white", "leather", "cotton", "floral", "striped", "slim", "casual", "sports"]
KINDS = ["shirt", "dress", "sneakers", "handbag", "watch", "jeans", "t-shirt for men", "heels", "jacket", "skirt"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--output", default=results_json.default_path("bench_text"))
    args = ap.parse_args()

    pipeline = GarmentPipeline()
    dim = pipeline.dim
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        store = open_store(str(Path(folder) / "db.lance"), dim=dim)
        started = time.perf_counter()
        for lo in range(0, args.rows, 20_000):
            n = min(20_000, args.rows - lo)
            vectors = rng.standard_normal((n, dim)).astype(np.float32)
            store.add_rows_bulk(
                [
                    VectorRow(
                        f"i{lo + j}",
                        0,
                        f"/c/{lo + j}.jpg",
                        f"p{(lo + j) // 2}",
                        "c",
                        "top",
                        1.0,
                        (0, 0, 1, 1),
                        "f",
                        {},
                        vectors[j],
                    )
                    for j in range(n)
                ]
            )
        store.optimize()
        built = time.perf_counter() - started
        store.write_manifest(pipeline.record().to_dict())
        searcher = Searcher.open(Path(folder) / "db.lance", warm=True)
        phrases = [f"{rng.choice(WORDS)} {rng.choice(KINDS)}" for _ in range(args.queries)]
        for phrase in phrases[:10]:
            searcher.search_text(phrase)  # warm-up: first-call allocations are not latency
        timings = [searcher.search_text(phrase).timings_ms for phrase in phrases]
        searcher.close()
    figures = {
        part: {
            "p50_ms": round(float(np.percentile([t[part] for t in timings], 50)), 2),
            "p95_ms": round(float(np.percentile([t[part] for t in timings], 95)), 2),
        }
        for part in ("text", "lookup", "total")
    }
    record = {
        "rows": args.rows,
        "dim": dim,
        "queries": args.queries,
        "k": 12,
        "index_build_s": round(built, 1),
        "latency": figures,
    }
    print("| part | p50 ms | p95 ms |\n|---|---|---|")
    for part, f in figures.items():
        print(f"| {part} | {f['p50_ms']} | {f['p95_ms']} |")
    results_json.write(args.output, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
