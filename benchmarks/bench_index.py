"""Indexing throughput: one process against Ray workers, into a Lance and a PostgreSQL store.

    python benchmarks/bench_index.py                          # 600 Kaggle photos, all six runs
    python benchmarks/bench_index.py --images 2000 --workers 1 2 4

Each run is a fresh ``fashion-search index`` command into an empty store, as a user would
run it: one process (decoding and detection in threads, the embedder on whole batches), or
``--ray --workers N`` on a local Ray instance (N actors, each with its own models). Reported:
images/s over the run itself (the report's seconds: planning, analysis and writes, Ray's start
included) and the command's wall time (interpreter and model loading included), with the
ratio of each run's images/s to the one-process run into the same store.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import results_json  # noqa: E402
from bench_server import fashion_search  # noqa: E402


def subset_csv(data: Path, images: int, out: Path) -> Path:
    """The first ``images`` rows of the Kaggle labels, image paths made absolute."""
    with open(data / "kaggle" / "labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))[:images]
    with open(out, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["image", "id", "articleType"])
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {"image": str(data / "kaggle" / row["image"]), "id": row["id"], "articleType": row["articleType"]}
            )
    return out


def run_index(catalog: Path, db: str, workers: Optional[int]) -> dict:
    cmd = [*fashion_search(), "index", "--csv", str(catalog), "--product-id-column", "id"]
    cmd += ["--category-column", "articleType", "--db", db, "--json"]
    if workers is not None:
        cmd += ["--ray", "--workers", str(workers)]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return {**report, "wall_s": round(wall, 1)}


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--images", type=int, default=600)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="Ray worker counts to run")
    ap.add_argument("--stores", nargs="+", default=["lance", "postgres"], choices=["lance", "postgres"])
    ap.add_argument("--json", default=results_json.default_path("bench_index"))
    args = ap.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="bench-index-"))
    catalog = subset_csv(Path(args.data), args.images, work / "catalog.csv")
    server = None
    runs = []
    try:
        if "postgres" in args.stores:
            from tests.store.pg_server import start_server

            server = start_server()
            server.sql("postgres", "CREATE DATABASE bench")
        for store in args.stores:
            for workers in [None, *args.workers]:
                name = "one process" if workers is None else f"Ray, {workers} worker{'s' if workers > 1 else ''}"
                table = f"r{len(runs)}"
                db = server.url("bench") + f"?table={table}" if store == "postgres" else str(work / f"{table}.lance")
                result = run_index(catalog, db, workers)
                runs.append({"store": store, "run": name, "workers": workers, **result})
                print(f"  {store}, {name}: {result['images_per_second']:.2f} img/s ({result['wall_s']} s)", flush=True)
    finally:
        if server is not None:
            server.stop()

    print()
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs; {args.images} Kaggle product photos")
    print()
    print("| store | run | images/s | vs one process | run s | command wall s | garments |")
    print("|---|---|---|---|---|---|---|")
    for run in runs:
        base = next(r for r in runs if r["store"] == run["store"] and r["workers"] is None)
        ratio = run["images_per_second"] / base["images_per_second"]
        run["ratio"] = round(ratio, 2)
        print(
            f"| {run['store']} | {run['run']} | {run['images_per_second']:.2f} | {ratio:.2f} | {run['seconds']:.0f} "
            f"| {run['wall_s']:.0f} | {run['garments']} |"
        )
    results_json.write(
        args.json,
        {
            "images": args.images,
            "runs": [
                {
                    k: run[k]
                    for k in ("store", "run", "workers", "images_per_second", "ratio", "seconds", "wall_s", "garments")
                }
                | {"failed": len(run["failed"])}
                for run in runs
            ],
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
