"""Benchmark the LanceDB vector store: write throughput, index build, lookup latency, recall.

    python benchmarks/bench_store.py                      # 1M x 1280-d (slow the first time)
    python benchmarks/bench_store.py --rows 20000         # quick check

The store is built once per (rows, dim, seed) under ``--workdir`` and reused by later runs,
together with the queries and their exact neighbours; ``--rebuild`` starts over and
``--reindex`` retrains only the vector index (e.g. after changing ``--partition-size``).

Synthetic data that behaves like image embeddings rather than uniform noise: unit vectors
drawn from a two-level Gaussian mixture (a few thousand cluster centres grouped under 100
"styles"), each cluster spreading along its own low-dimensional subspace plus isotropic noise,
with lognormal cluster sizes. Queries are held-out draws from the same mixture, perturbed.
Every row has its own image; products group 3 consecutive images. The catalog category is
drawn per product INDEPENDENTLY of the clusters, one category holding 5% of products, so the
filtered search cannot lean on the vector geometry: the nearest rows of that category are
scattered through many IVF partitions (a hard case for an IVF index).
Exact neighbours are computed with numpy over the very vectors that were written (the
generator is deterministic per chunk, and the store's own normalisation is re-applied).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

os.environ.setdefault("LANCEDB_LOG", "error")  # Lance's per-partition build warnings
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import results_json  # noqa: E402  (benchmarks/results_json.py)

from fashion_search.store import VectorRow, open_store  # noqa: E402
from fashion_search.store.filters import all_of, excluding, one_of
from fashion_search.store.lance import AnnParams, LanceVectorStore  # noqa: E402
from fashion_search.vectors import l2_normalise as normalize  # noqa: E402

CHUNK = 50_000
N_STYLES = 100
CATEGORIES = 20
RARE = "cat00"  # the 5% category
LABELS = ["top", "bottom", "dress", "outerwear", "shoes", "bag"]
WARMUP = 50  # untimed queries before each timed series
SUBSPACE = 24  # intrinsic dimensions of each cluster
# Relative sizes: centre 1, within-cluster subspace spread, isotropic noise, query perturbation.
SPREAD, NOISE, QUERY_NOISE = 0.6, 0.35, 0.15


class Mixture:
    """The generating distribution; chunk ``i`` is always the same vectors for a given seed."""

    def __init__(self, dim: int, centres: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.dim, self.seed = dim, seed
        styles = normalize(rng.standard_normal((N_STYLES, dim), dtype=np.float32))
        parent = rng.integers(0, N_STYLES, centres)
        self.centres = normalize(styles[parent] + normalize(rng.standard_normal((centres, dim), dtype=np.float32)))
        # Each cluster's own subspace; columns are ~unit and ~orthogonal in high dimension.
        self.bases = (rng.standard_normal((centres, dim, SUBSPACE), dtype=np.float32) / np.sqrt(dim)).astype(np.float32)
        weights = rng.lognormal(0.0, 1.0, centres)
        self.weights = weights / weights.sum()

    def draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        cluster = rng.choice(len(self.weights), size=n, p=self.weights)
        out = np.empty((n, self.dim), np.float32)
        order = np.argsort(cluster, kind="stable")
        bounds = np.flatnonzero(np.r_[True, np.diff(cluster[order]) != 0, True])
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            rows = order[lo:hi]
            c = cluster[rows[0]]
            z = rng.standard_normal((len(rows), SUBSPACE), dtype=np.float32) * (SPREAD / np.sqrt(SUBSPACE))
            out[rows] = self.centres[c] + z @ self.bases[c].T
        out += rng.standard_normal(out.shape, dtype=np.float32) * (NOISE / np.sqrt(self.dim))
        return normalize(out)

    def chunk(self, index: int, start: int, stop: int) -> np.ndarray:
        return self.draw(stop - start, np.random.default_rng([self.seed, 1, index]))

    def queries(self, n: int, stream: int = 2) -> np.ndarray:
        rng = np.random.default_rng([self.seed, stream])
        held_out = self.draw(n, rng)
        return normalize(
            held_out + rng.standard_normal(held_out.shape, dtype=np.float32) * (QUERY_NOISE / np.sqrt(self.dim))
        )


def category_of_products(products: np.ndarray, seed: int) -> np.ndarray:
    """Category index per product id, independent of the vectors: cat00 gets 5%, the other 19
    share the rest unevenly (like a real catalog)."""
    rng = np.random.default_rng([seed, 3])
    rest = rng.lognormal(0.0, 0.5, CATEGORIES - 1)
    p = np.r_[0.05, 0.95 * rest / rest.sum()]
    # Hash-free and deterministic per product id: draw a table once for all possible ids.
    table = rng.choice(CATEGORIES, size=int(products.max()) + 1 if len(products) else 1, p=p)
    return table[products]


def chunks(rows: int) -> Iterator[tuple[int, int, int]]:
    for i, lo in enumerate(range(0, rows, CHUNK)):
        yield i, lo, min(rows, lo + CHUNK)


def make_rows(
    lo: int, vectors: np.ndarray, cats: np.ndarray, metadata: Optional[list[dict[str, str]]] = None
) -> list[VectorRow]:
    return [
        VectorRow(
            image_id=f"img{lo + i:08d}",
            garment=0,
            image=f"/catalog/img{lo + i:08d}.jpg",
            product_id=f"p{(lo + i) // 3:08d}",
            category=f"cat{int(cats[i]):02d}",
            label=LABELS[(lo + i) % len(LABELS)],
            score=0.9,
            box=(0.0, 0.0, 1.0, 1.0),
            fingerprint=f"fp{lo + i}",
            metadata={"title": f"item {lo + i}"} if metadata is None else metadata[i],
            vector=vectors[i],
        )
        for i in range(len(vectors))
    ]


class TopK:
    """Running exact top-k over chunks (largest similarity first)."""

    def __init__(self, queries: int, k: int) -> None:
        self.k = k
        self.sims = np.full((queries, 0), -np.inf, np.float32)
        self.ids = np.zeros((queries, 0), np.int64)

    def add(self, sims: np.ndarray, ids: np.ndarray) -> None:
        if sims.shape[1] == 0:
            return
        all_sims = np.concatenate([self.sims, sims], axis=1)
        all_ids = np.concatenate([self.ids, np.broadcast_to(ids, sims.shape)], axis=1)
        keep = np.argpartition(-all_sims, min(self.k, all_sims.shape[1]) - 1, axis=1)[:, : self.k]
        self.sims = np.take_along_axis(all_sims, keep, 1)
        self.ids = np.take_along_axis(all_ids, keep, 1)

    def ranked(self) -> np.ndarray:
        order = np.argsort(-self.sims, axis=1)
        return np.take_along_axis(self.ids, order, 1)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def add_data_arguments(ap: argparse.ArgumentParser) -> None:
    """The synthetic data's size and the queries' (shared with bench_stores.py)."""
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=1280)
    ap.add_argument("--centres", type=int, default=4000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument(
        "--k",
        type=int,
        nargs="+",
        default=[10, 48],
        help="result sizes to time (recall is reported for each; 48 is what the engine asks for k=12)",
    )
    ap.add_argument("--seed", type=int, default=0)


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_arguments(ap)
    ap.add_argument("--workdir", default="./.cache/bench_store")
    ap.add_argument("--batch", type=int, default=10_000, help="rows per write call")
    ap.add_argument(
        "--upsert-rows",
        type=int,
        default=20_000,
        help="the last rows go through upsert_images (merge) rather than add_rows_bulk; "
        "equal to --rows writes everything through upsert_images",
    )
    ap.add_argument("--rebuild", action="store_true", help="delete and rebuild the store")
    ap.add_argument("--reindex", action="store_true", help="retrain the vector index")
    ap.add_argument("--index-type")
    ap.add_argument("--partition-size", type=int)
    ap.add_argument("--dims-per-subvector", type=int)
    ap.add_argument("--nprobes", type=int)
    ap.add_argument("--filtered-nprobes", type=int)
    ap.add_argument("--refine-factor", type=int)
    ap.add_argument("--ef", type=int)
    ap.add_argument("--min-rows", type=int, help="ANN threshold (default: the store's)")
    ap.add_argument(
        "--json",
        default=results_json.default_path("bench_store"),
        help="where to write the figures ('' for nowhere)",
    )
    args = ap.parse_args(argv)

    overrides = {
        "index_type": args.index_type,
        "partition_size": args.partition_size,
        "dims_per_subvector": args.dims_per_subvector,
        "nprobes": args.nprobes,
        "filtered_nprobes": args.filtered_nprobes,
        "refine_factor": args.refine_factor,
        "ef": args.ef,
        "min_rows": args.min_rows,
    }
    ann = AnnParams(**{k: v for k, v in overrides.items() if v is not None})
    k_max = max(args.k)
    root = Path(args.workdir).resolve() / f"r{args.rows}_d{args.dim}_c{args.centres}_s{args.seed}"
    db_path = root / "db"
    meta_path = root / "bench.json"
    truth_path = root / "truth.npz"
    if args.rebuild and root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}

    def save_meta() -> None:
        meta_path.write_text(json.dumps(meta, indent=2))

    print(f"# bench_store: {args.rows:,} x {args.dim}-d, {args.queries} queries, store {db_path}", flush=True)
    mixture = Mixture(args.dim, args.centres, args.seed)
    queries = mixture.queries(args.queries)
    try:
        store = open_store(f"lancedb://{db_path}", dim=args.dim, ann=ann)
    except ValueError as exc:  # a store cached by an older version of the store code
        print(f"  cached store unusable ({exc}); rebuilding", flush=True)
        shutil.rmtree(root)
        root.mkdir(parents=True)
        meta = {}
        store = open_store(f"lancedb://{db_path}", dim=args.dim, ann=ann)
    assert isinstance(store, LanceVectorStore)

    # -- write ------------------------------------------------------------------------------
    if meta.get("written") != args.rows or store.count() != args.rows:
        if store.count():
            shutil.rmtree(db_path)
            store = open_store(f"lancedb://{db_path}", dim=args.dim, ann=ann)
            assert isinstance(store, LanceVectorStore)
        meta = {}
        bulk_until = max(0, args.rows - args.upsert_rows)
        truth_all, truth_rare = TopK(args.queries, k_max), TopK(args.queries, k_max)
        timed = {"bulk": [0.0, 0], "upsert": [0.0, 0]}
        started = time.perf_counter()
        for index, lo, hi in chunks(args.rows):
            vectors = mixture.chunk(index, lo, hi)
            ids = np.arange(lo, hi)
            cats = category_of_products(ids // 3, args.seed)
            # Exact neighbours, on the vectors exactly as the store keeps them.
            stored = normalize(vectors)
            sims = queries @ stored.T
            truth_all.add(sims, ids)
            rare = cats == 0
            truth_rare.add(sims[:, rare], ids[rare])
            for b in range(lo, hi, args.batch):
                e = min(hi, b + args.batch)
                rows = make_rows(b, vectors[b - lo : e - lo], cats[b - lo : e - lo])
                # Split a batch that straddles the bulk/upsert boundary.
                for path, part in (
                    ("bulk", rows[: max(0, bulk_until - b)]),
                    ("upsert", rows[max(0, bulk_until - b) :]),
                ):
                    if not part:
                        continue
                    t0 = time.perf_counter()
                    if path == "bulk":
                        store.add_rows_bulk(part)
                    else:
                        store.upsert_images(part)
                    timed[path][0] += time.perf_counter() - t0
                    timed[path][1] += len(part)
            done = hi
            rate = done / (time.perf_counter() - started)
            print(f"  wrote {done:,}/{args.rows:,} rows ({rate:,.0f} rows/s incl. generation)", flush=True)
        # Replacing images that already exist is the indexer's common case: time it too, at
        # full table size, by re-upserting the first images with their own vectors.
        replace_n = min(args.rows, 5_000)
        vectors = mixture.chunk(0, 0, min(args.rows, CHUNK))[:replace_n]
        rows = make_rows(0, vectors, category_of_products(np.arange(replace_n) // 3, args.seed))
        t0 = time.perf_counter()
        for b in range(0, replace_n, 1000):
            store.upsert_images(rows[b : b + 1000])
        replace_s = time.perf_counter() - t0
        assert store.count() == args.rows, (store.count(), args.rows)
        np.savez(truth_path, queries=queries, all=truth_all.ranked(), rare=truth_rare.ranked())
        meta = {
            "written": args.rows,
            "bulk_rows": timed["bulk"][1],
            "bulk_s": timed["bulk"][0],
            "upsert_rows": timed["upsert"][1],
            "upsert_s": timed["upsert"][0],
            "replace_rows": replace_n,
            "replace_s": replace_s,
        }
        save_meta()
    truth = np.load(truth_path)
    if truth["all"].shape[1] < k_max or not np.allclose(truth["queries"], queries):
        raise SystemExit(f"cached exact neighbours in {truth_path} do not match; rerun with --rebuild")

    # -- optimize / index -------------------------------------------------------------------
    wanted = f"{ann.index_type}/ps{ann.partition_size}/min{ann.min_rows}" + (
        f"/dps{ann.dims_per_subvector}" if "PQ" in ann.index_type.upper() else ""
    )
    table = store._open_garments()

    def vector_indexes() -> list[str]:
        return [i.name for i in table.list_indices() if "vector" in i.columns]

    cached = " (measured when built)"
    if args.reindex or meta.get("index") != wanted or (args.rows >= ann.min_rows and not vector_indexes()):
        builds: list[float] = []
        build = store.build_vector_index

        def timed_build(*a, **kw):  # time the index build apart from compaction
            t0 = time.perf_counter()
            try:
                return build(*a, **kw)
            finally:
                builds.append(time.perf_counter() - t0)

        store.build_vector_index = timed_build  # type: ignore[method-assign]
        t0 = time.perf_counter()
        store.optimize()
        if args.rows >= ann.min_rows and not builds and (args.reindex or meta.get("index") not in (None, wanted)):
            # optimize() keeps an index that fits the table; a changed configuration must retrain.
            store.build_vector_index()
        meta["optimize_s"] = time.perf_counter() - t0
        meta["index_build_s"] = sum(builds)
        meta["index"] = wanted
        save_meta()
        cached = ""
    t0 = time.perf_counter()
    store.warm()  # what a serving process does once at start
    warm_s = time.perf_counter() - t0
    indexes = {i.name: i.index_type for i in table.list_indices()}
    vector_index = next(iter(vector_indexes()), None)

    # -- queries ----------------------------------------------------------------------------
    # exclude_product drops the product of the query's true nearest neighbour (the engine's
    # "more like this" case), so the exclusion always bites; its exact answer is the exact
    # top list minus that product's rows (products are 3 consecutive images).
    warmup = mixture.queries(WARMUP, stream=4)
    excluded = [f"p{int(truth['all'][qi, 0]) // 3:08d}" for qi in range(len(queries))]

    def exact_excluding(qi: int, k: int) -> list[int]:
        return [i for i in truth["all"][qi].tolist() if i // 3 != int(truth["all"][qi, 0]) // 3][:k]

    cases = [("no filter", None, False), (f"category={RARE} (5%)", RARE, False), ("exclude_product", None, True)]
    results: list[tuple[str, int, float, float, float]] = []
    for label, category, exclude in cases:
        for k in args.k:
            if exclude and k + 3 > k_max:
                continue  # the cached exact lists are too short to remove a product and keep k

            def one(qi: int, q: np.ndarray, k: int = k, category=category, exclude: bool = exclude) -> list:
                return store.search(
                    q,
                    k,
                    where=all_of(
                        one_of("category", category), excluding("product_id", excluded[qi] if exclude else None)
                    ),
                )

            for q in warmup:  # other queries from the same distribution; not timed
                store.search(q, k, where=one_of("category", category))
            latencies, recalls = [], []
            for qi, q in enumerate(queries):
                t0 = time.perf_counter()
                hits = one(qi, q)
                latencies.append((time.perf_counter() - t0) * 1e3)
                got = {int(h.image_id[3:]) for h in hits}
                if category is not None:
                    assert all(h.category == category for h in hits)
                if exclude:
                    assert all(h.product_id != excluded[qi] for h in hits)
                    exact = exact_excluding(qi, k)
                else:
                    exact = truth["rare" if category else "all"][qi, :k].tolist()
                recalls.append(len(got & set(exact)) / k)
            results.append((label, k, percentile(latencies, 50), percentile(latencies, 95), float(np.mean(recalls))))
    rare_share = len(store._scan(["category"], where=f"category = '{RARE}'")) / args.rows
    views = []
    for name, call in (
        ("count()", store.count),
        ("fingerprints()", store.fingerprints),
        ("categories()", store.categories),
    ):
        t0 = time.perf_counter()
        call()
        views.append((name, time.perf_counter() - t0))

    # -- upserts into the full, optimized table, as an incremental index run makes them -----
    # 64 images per call like the indexer; the same vectors go back, so the data is unchanged.
    sample = list(range(0, min(args.rows, 64 * 5)))
    base = mixture.chunk(0, 0, min(args.rows, CHUNK))[: len(sample)]
    same = make_rows(0, base, category_of_products(np.arange(len(sample)) // 3, args.seed))
    upsert_calls = []
    for b in range(0, len(same), 64):
        t0 = time.perf_counter()
        store.upsert_images(same[b : b + 64])
        upsert_calls.append(time.perf_counter() - t0)
    # An image that loses a garment takes the merge's delete-by-source path: give 3 images a
    # second garment, then upsert them back with one.
    grown = same[:3] + [VectorRow(**{**r.__dict__, "garment": 1}) for r in same[:3]]
    store.upsert_images(grown)
    t0 = time.perf_counter()
    store.upsert_images(same[:3])
    shrink_s = time.perf_counter() - t0
    assert store.count() == args.rows
    # What the indexer does after such a run; it also leaves the table clean for the next run.
    t0 = time.perf_counter()
    store.optimize()
    reoptimize_s = time.perf_counter() - t0

    # -- report -----------------------------------------------------------------------------
    def rate(n: int, s: float) -> str:
        return f"{n / s:,.0f} rows/s ({n:,} rows in {s:.1f} s)" if s > 0 and n else "-"

    print()
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs; store {store.uri}")
    print(
        f"data: {args.rows:,} unit vectors, {args.dim}-d, mixture of {args.centres} clusters / {N_STYLES} styles, "
        f"{SUBSPACE}-d cluster subspaces; {args.queries} queries = perturbed held-out draws"
    )
    print(
        f"filter: category {RARE} = {rare_share:.1%} of rows, assigned per product independently of the "
        f"vector clusters (hard case for IVF)"
    )
    print(f"vector index: {vector_index or 'none (exact search)'}; ann={json.dumps(asdict(ann))}")
    print(f"scalar indexes: {', '.join(sorted(n for n in indexes if n != vector_index))}")
    print()
    print("| step | result |")
    print("|---|---|")
    print(
        f"| write, add_rows_bulk (batches of {args.batch:,}) | {rate(meta.get('bulk_rows', 0), meta.get('bulk_s', 0))} |"
    )
    print(
        f"| write, upsert_images of new images (batches of {args.batch:,}) | {rate(meta.get('upsert_rows', 0), meta.get('upsert_s', 0))} |"
    )
    print(
        f"| write, upsert_images replacing stored images (batches of 1,000) | {rate(meta.get('replace_rows', 0), meta.get('replace_s', 0))} |"
    )
    print(f"| optimize(): compaction, scalar + vector indexes{cached} | {meta.get('optimize_s', float('nan')):.1f} s |")
    print(
        f"| of which vector index build ({vector_index or 'none'}){cached} | {meta.get('index_build_s', 0.0):.1f} s |"
    )
    print(
        f"| upsert_images of 64 stored images (indexer batch) into the optimized table, per call "
        f"| p50 {percentile(upsert_calls, 50) * 1e3:.0f} ms |"
    )
    print(
        f"| upsert_images where an image loses a garment (delete-by-source merge), per call | {shrink_s * 1e3:,.0f} ms |"
    )
    print(f"| optimize() after those upserts (incremental: compaction, index update) | {reoptimize_s:.1f} s |")
    print(f"| warm(): load indexes into memory (once per serving process) | {warm_s:.1f} s |")
    for name, seconds in views:
        print(f"| {name} at {args.rows:,} rows | {seconds * 1e3:,.0f} ms |")
    print()
    print("| query | k | p50 ms | p95 ms | Recall@k |")
    print("|---|---|---|---|---|")
    for label, k, p50, p95, recall in results:
        print(f"| {label} | {k} | {p50:.2f} | {p95:.2f} | {recall:.3f} |")
    results_json.write(
        args.json,
        {
            "rows": args.rows,
            "dim": args.dim,
            "queries": args.queries,
            "filtered_share": round(rare_share, 4),
            "vector_index": vector_index,
            "ann": asdict(ann),
            "write_rows_per_s": round(meta["bulk_rows"] / meta["bulk_s"]) if meta.get("bulk_s") else None,
            "optimize_s": round(meta.get("optimize_s", float("nan")), 1),
            "index_build_s": round(meta.get("index_build_s", 0.0), 1),
            "index_cached": bool(cached),
            "warm_s": round(warm_s, 1),
            "lookups": [
                {"query": label, "k": k, "p50_ms": round(p50, 2), "p95_ms": round(p95, 2), "recall": round(recall, 3)}
                for label, k, p50, p95, recall in results
            ],
        },
    )
    store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
