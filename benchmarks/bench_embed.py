"""Embedding cost per garment, embedders side by side in one run, and the vector size each stores.

Usage:
    python benchmarks/bench_embed.py [--embedders efficientnet-lite2+colour,garment-head] [--garments 256]

Embeds the same garment crops (the parser's garments of Kaggle product shots and VITON model
photos) with each embedder, in the batches indexing uses, alternating embedders pass by pass so
that the machine's load hits both alike. Reports the median per-garment time over the passes,
its ratio to the first embedder, and bytes per stored vector (float32) and per 1,000 garments.
Writes JSON (default ``docs/results/bench_embed.json``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import results_json  # noqa: E402  (benchmarks/results_json.py)

from fashion_search.embed import create_embedder  # noqa: E402
from fashion_search.garments import create_detector  # noqa: E402
from fashion_search.images import load_image  # noqa: E402


def garment_crops(data: Path, count: int) -> list:
    """Box crops of the garments the parser finds in Kaggle shots and VITON photos, half each."""
    detector = create_detector("parser")
    photos = sorted((data / "kaggle" / "images").glob("*.jpg"))[: count // 2]
    photos += sorted((data / "viton" / "photos").glob("*.jpg"))[: count // 2]
    crops = []
    for path in photos:
        image = load_image(path)
        crops += [g.crop(image) for g in detector.detect(image)[:1]]
    return crops[:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--embedders", default="efficientnet-lite2+colour,garment-head")
    parser.add_argument("--garments", type=int, default=256)
    parser.add_argument("--passes", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64, help="garments per embed call, as indexing batches")
    parser.add_argument("--output", help="JSON file (default docs/results/bench_embed.json)")
    args = parser.parse_args()

    names = [n.strip() for n in args.embedders.split(",") if n.strip()]
    crops = garment_crops(Path(args.data), args.garments)
    embedders = {name: create_embedder(name) for name in names}
    for embedder in embedders.values():
        embedder.embed(crops[:8])  # load and warm up
    times: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(args.passes):
        for name, embedder in embedders.items():
            started = time.perf_counter()
            for lo in range(0, len(crops), args.batch_size):
                embedder.embed(crops[lo : lo + args.batch_size])
            times[name].append((time.perf_counter() - started) * 1000 / len(crops))
    first = float(np.median(times[names[0]]))
    rows = []
    for name in names:
        median = float(np.median(times[name]))
        dim = embedders[name].dim
        rows.append(
            {
                "embedder": name,
                "dim": dim,
                "ms_per_garment_p50": round(median, 2),
                "ms_per_garment_range": [round(min(times[name]), 2), round(max(times[name]), 2)],
                "ratio_to_first": round(median / first, 2),
                "vector_bytes": dim * 4,
                "vector_kib_per_1000_garments": round(dim * 4 * 1000 / 1024, 1),
            }
        )
    print(f"{len(crops)} garment crops, {args.passes} alternating passes, batches of {args.batch_size}\n")
    print("| embedder | dim | ms per garment, p50 (range) | ratio | vectors per 1,000 garments |")
    print("|---|---|---|---|---|")
    for r in rows:
        lo, hi = r["ms_per_garment_range"]
        print(
            f"| {r['embedder']} | {r['dim']} | {r['ms_per_garment_p50']:.2f} ({lo:.2f}-{hi:.2f}) | "
            f"{r['ratio_to_first']:.2f} | {r['vector_kib_per_1000_garments']:.0f} KiB |"
        )
    results_json.write(
        results_json.default_path("bench_embed") if args.output is None else args.output,
        {"garments": len(crops), "passes": args.passes, "batch_size": args.batch_size, "embedders": rows},
    )


if __name__ == "__main__":
    main()
