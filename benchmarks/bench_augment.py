"""How fast the parser's training views are made: in line, on threads, in worker processes.

Prints a table and writes it as JSON (``--json``, default ``docs/results/bench_augment.json``). Usage:
    python benchmarks/bench_augment.py [--data ../shared/data] [--photos 80] [--views 640] [--workers 2]

On a GPU the training step takes less than augmenting its batch, so these rates bound how many
epochs fit in a GPU lease (`train parser --loader-threads` / `--loader-processes`). Each mode is
timed three times over the same CCP street photos; the median is reported, with the speed-up over
in-line augmentation measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import results_json  # noqa: E402  (benchmarks/results_json.py)

from fashion_search.training.datasets import ccp_ids  # noqa: E402
from fashion_search.training.parser import data  # noqa: E402

SIZE = (448, 288)  # the parser's training canvas


def views_per_second(
    examples: list[data.Example], views: int, threads: int = 0, pool: data.AugmentPool | None = None
) -> float:
    order = np.arange(views) % len(examples)
    started = time.perf_counter()
    made = sum(
        len(batch)
        for batch in data.augmented_batches(examples, order, 8, SIZE, np.random.default_rng(0), threads, pool)
    )
    return made / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--photos", type=int, default=80)
    parser.add_argument("--views", type=int, default=640)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--json",
        default=results_json.default_path("bench_augment"),
        help="where to write the figures ('' for nowhere)",
    )
    args = parser.parse_args()
    ccp = Path(args.data) / "ccp"
    if not ccp.is_dir():
        raise SystemExit(f"no CCP photos at {ccp}: pass --data")
    examples = data.load_ccp(ccp, ccp_ids("train")[: args.photos], int(SIZE[0] * data.MAX_ZOOM))
    rates: dict[str, list[float]] = {"in line": [], f"{args.workers} threads": [], f"{args.workers} processes": []}
    with data.AugmentPool(examples, args.workers, 8, SIZE) as pool:
        for _ in range(3):
            rates["in line"].append(views_per_second(examples, args.views))
            rates[f"{args.workers} threads"].append(views_per_second(examples, args.views, threads=args.workers))
            rates[f"{args.workers} processes"].append(views_per_second(examples, args.views, pool=pool))
    base = statistics.median(rates["in line"])
    print(
        f"training views, {SIZE[0]}x{SIZE[1]}, {args.views} views of {len(examples)} CCP photos, "
        f"{os.cpu_count()} cores, median of 3\n"
    )
    print("| mode | views/s | ms per view | speed-up |")
    print("|---|---|---|---|")
    for mode, values in rates.items():
        rate = statistics.median(values)
        print(f"| {mode} | {rate:.0f} | {1000 / rate:.2f} | {rate / base:.2f}x |")
    results_json.write(
        args.json,
        {
            "views": args.views,
            "photos": len(examples),
            "modes": [
                {
                    "mode": mode,
                    "views_per_s": round(statistics.median(v), 1),
                    "speed_up": round(statistics.median(v) / base, 2),
                }
                for mode, v in rates.items()
            ],
        },
    )


if __name__ == "__main__":
    main()
