#!/usr/bin/env python
"""Compare two evaluation runs query by query: is B better than A, or is the change noise?

    fashion-search eval-pairs ... --per-query A.jsonl      # or: fashion-search eval ... --per-query
    fashion-search eval-pairs ... --per-query B.jsonl      # the same queries, another setup
    python scripts/compare_runs.py A.jsonl B.jsonl [--json]

For each metric both files hold, it prints the number of queries they share, each run's mean,
B - A, and a 95% interval of B - A bootstrapped over those queries (seeded). Pairing the queries
takes out how hard each one is, so an interval that excludes 0 says that the change is real even
where the runs' own intervals overlap.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fashion_search.errors import FashionSearchError  # noqa: E402
from fashion_search.evaluation import paired_difference  # noqa: E402


def table(comparison: dict[str, dict[str, Any]]) -> str:
    lines = ["| metric | queries | A | B | B-A | 95% interval |", "|---|---|---|---|---|---|"]
    for metric, row in comparison.items():
        lo, hi = row["95ci"]
        lines.append(
            f"| {metric} | {row['queries']} | {row['a']:.3f} | {row['b']:.3f} | {row['difference']:+.3f} "
            f"| {lo:+.3f} to {hi:+.3f} |"
        )
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("a", help="per-query JSON lines of the baseline run")
    parser.add_argument("b", help="per-query JSON lines of the run compared with it")
    parser.add_argument("--rounds", type=int, default=2000, help="bootstrap rounds (default 2000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print the comparison as one JSON object")
    args = parser.parse_args(argv)
    try:
        comparison = paired_difference(args.a, args.b, rounds=args.rounds, seed=args.seed)
    except FashionSearchError as exc:
        print(f"compare_runs: error: {exc}", file=sys.stderr)
        return 2
    if not comparison:
        print(f"compare_runs: {args.a} and {args.b} share no query and metric", file=sys.stderr)
        return 1
    print(json.dumps(comparison) if args.json else table(comparison))
    return 0


if __name__ == "__main__":
    sys.exit(main())
