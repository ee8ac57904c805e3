"""Throughput and latency of ``fashion-search serve`` under concurrent search requests.

Prints a markdown table. Usage:
    python benchmarks/bench_server.py [--data ../shared/data] [--catalog zalora|kaggle]
                                      [--concurrency 1,4,16] [--requests 96] [--seconds 60]

Builds (or reuses, cached under the ignored ``.cache/``) an index of the catalog with the real
default models, starts ``fashion-search serve`` as a subprocess on a free loopback port, then
sends ``POST /api/search`` uploads of the catalog's own photos from another process: at each
concurrency, that many client threads (one HTTP connection each) share a bounded number of
requests and a time limit. Server memory is read from /proc before and after. Loopback only;
every loop is bounded in count and time, and the server is stopped at the end.
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


def start_server(db: Path, log: object = subprocess.DEVNULL) -> tuple[subprocess.Popen, str]:
    """``fashion-search serve`` on a free loopback port; returns the process and its URL."""
    port = free_port()
    server = subprocess.Popen(
        [*fashion_search(), "serve", "--db", str(db), "--port", str(port), "--no-access-log"],
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


def run_clients(url: str, photos: list[str], concurrency: int, requests: int, seconds: float) -> dict:
    """Runs in a separate process: ``concurrency`` threads share ``requests`` searches, stopping
    at ``seconds`` too. Returns per-request latencies (ms), errors, and the wall time."""
    import httpx

    payloads = [(Path(p).name, Path(p).read_bytes()) for p in photos]
    lock = threading.Lock()
    issued = 0
    latencies: list[float] = []
    errors: list[str] = []
    deadline = time.monotonic() + seconds

    def client(worker: int) -> None:
        nonlocal issued
        with httpx.Client(base_url=url, timeout=120) as http:
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
    with cf.ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(client, range(concurrency)))
    return {"latencies": latencies, "errors": errors, "wall": time.perf_counter() - t0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--catalog", choices=["zalora", "kaggle"], default="zalora")
    parser.add_argument("--concurrency", default="1,4,16")
    parser.add_argument("--requests", type=int, default=96, help="searches per concurrency level")
    parser.add_argument("--seconds", type=float, default=60.0, help="time limit per concurrency level")
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
    db = CACHE / f"{args.catalog}.lance"
    t0 = time.perf_counter()
    # Incremental: a cached index is checked and reused, only changed images are re-embedded; one
    # built with other models is rebuilt.
    stale = (
        db.exists()
        and subprocess.run([*fashion_search(), "info", "--db", str(db), "--check"], capture_output=True).returncode != 0
    )
    subprocess.run(
        [*fashion_search(), "index", *index_args, "--db", str(db), *(["--rebuild"] if stale else [])],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    index_seconds = time.perf_counter() - t0

    log = open(CACHE / "server.log", "w")
    server, url = start_server(db, log)
    rows = []
    try:
        t0 = time.perf_counter()
        health = wait_healthy(url, server, timeout=180)
        startup = time.perf_counter() - t0
        memory_start = memory_mb(server.pid)
        context = multiprocessing.get_context("spawn")
        with cf.ProcessPoolExecutor(1, mp_context=context) as clients:
            clients.submit(run_clients, url, [str(p) for p in photos], 2, 6, 60).result()  # warm-up
            memory_before = memory_mb(server.pid)
            for concurrency in [int(c) for c in args.concurrency.split(",")]:
                result = clients.submit(
                    run_clients, url, [str(p) for p in photos], concurrency, args.requests, args.seconds
                ).result()
                rows.append((concurrency, result, memory_mb(server.pid)))
        memory_after = memory_mb(server.pid)
    finally:
        stop_server(server)
        log.close()

    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"{args.catalog} index of {health['index_garments']} garments ({health['embedder']} + {health['detector']}), "
        f"index step {index_seconds:.1f} s, server ready in {startup:.1f} s"
    )
    print(f"{len(photos)} query photos from the catalog, uploaded as files, k = 12; clients in another process")
    print()
    print("| concurrent clients | requests | errors | requests/s | p50 ms | p95 ms | p99 ms | server RSS after, MB |")
    print("|---|---|---|---|---|---|---|---|")
    for concurrency, result, memory in rows:
        lat = np.asarray(result["latencies"]) if result["latencies"] else np.asarray([float("nan")])
        done = len(result["latencies"])
        print(
            f"| {concurrency} | {done + len(result['errors'])} | {len(result['errors'])} | "
            f"{done / result['wall']:.1f} | {np.percentile(lat, 50):.0f} | {np.percentile(lat, 95):.0f} | "
            f"{np.percentile(lat, 99):.0f} | {memory['VmRSS']:.0f} |"
        )
    print()
    print(
        f"server memory: {memory_start['VmRSS']:.0f} MB RSS at start, {memory_before['VmRSS']:.0f} MB after "
        f"warm-up, {memory_after['VmRSS']:.0f} MB after the runs (peak {memory_after['VmHWM']:.0f} MB)"
    )
    failed = [e for _, r, _ in rows for e in r["errors"]]
    results_json.write(
        args.json,
        {
            "catalog": args.catalog,
            "index_garments": health["index_garments"],
            "photos": len(photos),
            "models": {"embedder": health["embedder"], "detector": health["detector"]},
            "runs": [
                {
                    "clients": concurrency,
                    "requests": len(r["latencies"]) + len(r["errors"]),
                    "errors": len(r["errors"]),
                    "requests_per_s": round(len(r["latencies"]) / r["wall"], 1),
                    **{
                        f"p{q}_ms": round(float(np.percentile(r["latencies"], q)), 0) if r["latencies"] else None
                        for q in (50, 95, 99)
                    },
                    "rss_mb": round(memory["VmRSS"]),
                }
                for concurrency, r, memory in rows
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
