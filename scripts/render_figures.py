#!/usr/bin/env python
"""Render the figure tables of the README and the model cards from the measurements in
``docs/results/*.json``.

    python scripts/render_figures.py          # rewrite every figure block
    python scripts/render_figures.py --check  # exit 1, naming each block that disagrees with its JSON

A figure block is the text between ``<!-- figures:NAME -->`` and ``<!-- /figures -->``; NAME picks
the table below. The JSON files are written by the commands that measure (``fashion-search eval
--json``, ``fashion-search train evaluate-parser``, ``fashion-search train export-embedder
--results``, ``benchmarks/*.py``), so a figure in the docs is always one that was measured.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fashion_search.garments.taxonomy import GARMENT_CLASSES  # noqa: E402

RESULTS = ROOT / "docs" / "results"
DOCUMENTS = (
    ROOT / "README.md",
    ROOT / "fashion_search" / "garments" / "models" / "GARMENT_PARSER.md",
    ROOT / "fashion_search" / "embed" / "models" / "MODEL_CARD.md",
    ROOT / "fashion_search" / "embed" / "models" / "GARMENT_HEAD.md",
    ROOT / "docs" / "scaling.md",
    ROOT / "docs" / "filters.md",
    ROOT / "docs" / "http-api.md",
)
BLOCK = re.compile(r"(<!-- figures:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /figures -->)", re.S)


def load(name: str) -> dict[str, Any]:
    return json.loads((RESULTS / f"{name}.json").read_text())


def table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def f3(value: float | None) -> str:
    return "-" if value is None or value != value else f"{value:.3f}"


def interval(report: dict[str, Any], k: int) -> str:
    lo, hi = report["recall_95ci"][f"R@{k}"]
    return f"{report['recall'][f'R@{k}']:.3f} ({lo:.3f}-{hi:.3f})"


# -- README ---------------------------------------------------------------------------------------


def retrieval() -> str:
    zalora, any_class, comparison = load("eval_zalora"), load("eval_zalora_any_class"), load("embedder_comparison")
    run = comparison["runs"][comparison["b"]]
    kaggle, worn, street = run["kaggle"], run["worn_to_shop"], run["street_to_shop"]
    p10 = kaggle["precision"]

    def worn_recall(k: int) -> str:
        lo, hi = worn["recall_95ci"][f"R@{k}"]
        return f"{worn['recall'][f'R@{k}']:.3f} ({lo:.3f}-{hi:.3f})"

    rows = [
        [
            f"VITON validation ({worn['queries']:,} model photos, 1,000 tops)",
            "worn-to-shop R@1 (95% interval)",
            worn_recall(1),
            "",
        ],
        ["", "worn-to-shop R@5 / R@20", f"{worn_recall(5)} / {worn_recall(20)}", ""],
        [
            f"Zalora ({zalora['images']} images, {zalora['multi_view_queries']} multi-view queries)",
            "same-product R@1 (95% interval)",
            interval(zalora, 1),
            interval(any_class, 1),
        ],
        ["", "same-product R@5", interval(zalora, 5), interval(any_class, 5)],
        ["", "same-product R@10", f3(zalora["recall"]["R@10"]), f3(any_class["recall"]["R@10"])],
        ["", "category P@5", f3(zalora["precision"]["category"]["P@5"]), f3(any_class["precision"]["category"]["P@5"])],
        [f"Kaggle ({kaggle['images']:,} held-out product shots)", "articleType P@10", f3(p10["category"]["P@10"]), ""],
        ["", "baseColour P@10", f3(p10["baseColour"]["P@10"]), ""],
        ["", "subCategory P@10", f3(p10["subCategory"]["P@10"]), ""],
        [
            f"CCP street photos ({street['garments']:,} garments) on those Kaggle shots",
            "street-to-shop P@10: results of the garment's class",
            f3(street["P@10"]),
            "",
        ],
    ]
    return table(["data", "measure", "default (class-aware)", "`--any-class`"], rows)


# Paired measures of scripts/compare_embedders.py, in the order the tables show them.
COMPARED = (
    ("viton R@1", "worn-to-shop R@1, VITON validation"),
    ("viton R@5", "worn-to-shop R@5"),
    ("viton R@20", "worn-to-shop R@20"),
    ("zalora R@1", "Zalora same-product R@1"),
    ("zalora R@5", "Zalora same-product R@5"),
    ("zalora category P@5", "Zalora category P@5"),
    ("kaggle category P@10", "Kaggle held-out articleType P@10"),
    ("kaggle baseColour P@10", "Kaggle held-out baseColour P@10"),
    ("kaggle subCategory P@10", "Kaggle held-out subCategory P@10"),
    ("styles R@10", "Kaggle same style, other colour R@10"),
    ("street street-to-shop P@10", "CCP street-to-shop P@10"),
)


def embedder_comparison() -> str:
    record = load("embedder_comparison")
    paired = record["paired"]
    rows = []
    for key, name in COMPARED:
        r = paired[key]
        lo, hi = r["95ci"]
        rows.append(
            [name, f"{r['queries']:,}", f3(r["a"]), f3(r["b"]), f"{r['difference']:+.3f} ({lo:+.3f} to {hi:+.3f})"]
        )
    header = ["measure (same queries)", "queries", f"`{record['a']}`", f"`{record['b']}`", "difference (95% interval)"]
    a, b = (record["runs"][record[side]]["kaggle_index"] for side in ("a", "b"))
    return table(header, rows) + (
        f"\n\nThe index of that Kaggle catalog ({b['garments']:,} garments) takes {a['megabytes_per_1000_garments']:.1f} "
        f"MB per 1,000 garments on disk with `{record['a']}` and {b['megabytes_per_1000_garments']:.1f} MB with "
        f"`{record['b']}`. Measured {record['measured']}."
    )


def embedder_speed() -> str:
    record = load("bench_embed")
    rows = []
    for r in record["embedders"]:
        lo, hi = r["ms_per_garment_range"]
        rows.append(
            [
                f"`{r['embedder']}`",
                r["dim"],
                f"{r['ms_per_garment_p50']:.1f} ({lo:.1f}-{hi:.1f})",
                f"{r['ratio_to_first']:.2f}",
                f"{r['vector_kib_per_1000_garments']:,.0f} KiB",
            ]
        )
    header = ["embedder", "dim", "ms per garment, p50 (range)", "ratio", "vectors per 1,000 garments"]
    return table(header, rows) + (
        f"\n\n{record['garments']} parser crops of Kaggle shots and VITON photos, {record['passes']} passes "
        f"alternating the embedders, batches of {record['batch_size']}; measured {record['measured']['date']} on "
        f"{record['measured']['machine']}."
    )


def head_file() -> str:
    record = load("garment_head")
    return (
        f"- File `garment_head.onnx`, {record['megabytes']} MB, sha256 `{record['sha256']}`; it runs on the "
        f"backbone `efficientnet_lite2_features.onnx` (sha256 `{record['backbone_sha256'][:12]}…`).\n"
        f"- Trained {record['trained']} on {record['pairs']:,} VITON pairs and {record['labelled_shots']:,} Kaggle "
        f"shots ({record['article_types']} article types, {record['colours']} colours), {record['epochs']} epochs: "
        f"{record['minutes']:.0f} min on {record['hardware']}, {record['feature_minutes']:.0f} of them computing "
        f"backbone features; onnxruntime agrees with torch to {record['export_max_abs_error']:.1e}."
    )


def speed() -> str:
    bench = load("bench_search")
    index = bench["index"]
    rows = [
        [
            f"indexing the Kaggle catalog ({index['images']:,} images; {index['garments_per_image']} garments stored "
            "per image)",
            f"{index['images_per_s']} images/s",
            "",
            "",
            "",
            "",
        ]
    ]
    for run in bench["search"]:
        lo, hi = run["p50_range_ms"]
        rows.append(
            [
                f"search: {run['description']} ({run['garments_per_query']} garments found)",
                f"p50 {run['p50_ms']} ms ({lo}-{hi})",
                f"{run['p95_ms']} ms",
                f"{run['detect_p50_ms']} ms",
                f"{run['embed_p50_ms']} ms",
                f"{run['lookup_p50_ms']} ms",
            ]
        )
    return table(["", "rate, or p50 (range)", "p95", "detect p50", "embed p50", "store lookups p50"], rows)


def store() -> str:
    bench = load("bench_store")
    rows = [[row["query"], row["k"], row["p50_ms"], row["p95_ms"], f3(row["recall"])] for row in bench["lookups"]]
    return table(["query", "k", "p50 ms", "p95 ms", "Recall@k against exact search"], rows)


def server_runs(name: str, by_servers: bool = False) -> str:
    """A load benchmark's runs; ``by_servers`` adds the number of server processes."""
    bench = load(name)
    rows = [
        [
            *([run["servers"]] if by_servers else []),
            run["clients"],
            run["requests"],
            run["errors"],
            run["requests_per_s"],
            f"{run['p50_ms']:.0f}",
            f"{run['p95_ms']:.0f}",
            run["rss_mb"],
        ]
        for run in bench["runs"]
    ]
    header = ["concurrent clients", "requests", "errors", "requests/s", "p50 ms", "p95 ms", "server RSS, MB"]
    return table(["servers", *header[:-1], "servers' RSS, MB"] if by_servers else header, rows)


def server() -> str:
    return server_runs("bench_server")


# -- docs/scaling.md -------------------------------------------------------------------------------


def stores(name: str = "bench_stores") -> str:
    bench = load(name)
    columns = bench["stores"]
    header = [f"{bench['rows']:,} x {bench['dim']}-d", *columns]
    rows = [
        ["bulk write, rows/s", *(f"{c['write_rows_per_s']:,}" for c in columns.values())],
        ["index build (optimize), s", *(f"{c['index_build_s']:,.0f}" for c in columns.values())],
        ["disk, GB", *(f"{c['disk_bytes'] / 1e9:.1f}" for c in columns.values())],
    ]
    first = next(iter(columns.values()))
    for i, lookup in enumerate(first["lookups"]):
        rows.append(
            [
                f"{lookup['query']}, k={lookup['k']}: p50 / p95 ms, Recall@k",
                *(
                    f"{c['lookups'][i]['p50_ms']:.1f} / {c['lookups'][i]['p95_ms']:.1f}, {c['lookups'][i]['recall']:.3f}"
                    for c in columns.values()
                ),
            ]
        )
    return table(header, rows)


# -- docs/filters.md, docs/http-api.md ---------------------------------------------------------------


def filters() -> str:
    bench = load("bench_filters")
    rows = [
        [
            name,
            lookup["query"],
            f"{lookup['rows_passing']:.1%}",
            f"{lookup['p50_ms']:.1f} / {lookup['p95_ms']:.1f}",
            f"{lookup['recall']:.3f}",
        ]
        for name, store in bench["stores"].items()
        for lookup in store["lookups"]
    ]
    return table(
        [f"{bench['rows']:,} x {bench['dim']}-d, k=10", "filter", "rows passing", "p50 / p95 ms", "Recall@10"], rows
    )


def mixed_load() -> str:
    bench = load("bench_server_writes")
    rows = [
        [
            run["clients"],
            run["requests"],
            run["errors"],
            run["requests_per_s"],
            f"{run['p50_ms']:.0f} / {run['p95_ms']:.0f}",
            run["writes"],
            run["write_errors"],
            run["writes_per_s"],
            f"{run['write_p50_ms']:.0f} / {run['write_p95_ms']:.0f}",
            f"{run['written_found']} / {run['writes'] - run['write_errors']}",
        ]
        for run in bench["runs"]
    ]
    header = [
        "search clients",
        "searches",
        "errors",
        "searches/s",
        "search p50 / p95 ms",
        "writes",
        "errors",
        "writes/s",
        "write p50 / p95 ms",
        "written products found",
    ]
    return table(header, rows)


def indexing_ray() -> str:
    bench = load("bench_index")
    rows = [
        [run["store"], run["run"], f"{run['images_per_second']:.2f}", f"{run['ratio']:.2f}", f"{run['wall_s']:.0f}"]
        for run in bench["runs"]
    ]
    return table(["store", "indexed by", "images/s", "vs one process", "command wall s"], rows)


def replicas() -> str:
    return server_runs("bench_server_replicas", by_servers=True)


# -- the garment parser's card ----------------------------------------------------------------------


def parser_segmentation() -> str:
    parser = load("garment_parser")
    seg, ceiling, targets = parser["segmentation"], parser["segmentation_ceiling"], parser["target_classes"]
    rows = [
        [
            f"{c} (target)" if c in targets else c,
            f3(seg["iou"].get(c)),
            f3(seg["box_recall"].get(c)),
            seg["box_counts"].get(c, 0),
            f3(ceiling["iou"].get(c)),
            f3(ceiling["box_recall"].get(c)),
        ]
        for c in GARMENT_CLASSES
    ]
    rows.append(
        ["**garment mean IoU**", f"**{f3(seg['garment_mean_iou'])}**", "", "", f3(ceiling["garment_mean_iou"]), ""]
    )
    return table(["class", "IoU", "box recall", "boxes", "IoU ceiling", "box recall ceiling"], rows)


def parser_catalog() -> str:
    parser = load("garment_parser")
    shots, tags, s2s = parser["product_shots"], parser["tags"], parser["street_to_shop"]
    rows = [
        [group, int(s["photos"]), f3(s["exactly_one_right"]), f3(s["right_class_found"]), f3(s["largest_is_right"])]
        for group, s in shots["groups"].items()
    ]
    first = table(
        [
            "held-out Kaggle product shots",
            "photos",
            "exactly one garment, right class",
            "right class found",
            "largest garment right",
        ],
        rows,
    )
    rows = [
        [
            c,
            tags["tagged"].get(c, 0),
            f3(tags["recall"].get(c)),
            f3(s2s["precision_at_10"].get(c)),
            s2s["garments"].get(c, 0),
        ]
        for c in GARMENT_CLASSES
        if c in tags["tagged"] or c in s2s["precision_at_10"]
    ]
    rows.append(
        [
            "**all**",
            sum(tags["tagged"].values()),
            f"**{f3(tags['overall_recall'])}**",
            f"**{f3(s2s['overall'])}**",
            sum(s2s["garments"].values()),
        ]
    )
    second = table(
        ["class", "tagged street photos", "found", "street-to-shop P@10 (Kaggle)", "garments searched"], rows
    )
    return first + "\n\n" + second


def parser_comparison() -> str:
    """The shipped parser against the one shipped before it, paired on the same photos and queries."""
    record = load("parser_seed_average_comparison")
    boxes = record["ccp_validation_paired"]["boxes"]
    ccp_photos = load("garment_parser")["segmentation"]["photos"]  # the same CCP validation photos
    sections = [
        ("CCP validation photos", "", record["ccp_validation_paired"]),
        ("Kaggle product shots", "", record["product_shots_paired"]),
        ("Zalora multi-view queries", "", record["zalora_paired"]),
        ("VITON validation pairs", "worn-to-shop ", record["worn_to_shop_paired"]),
    ]
    rows = []
    for data, prefix, measures in sections:
        for name, r in measures.items():
            if not isinstance(r, dict) or "difference" not in r:
                continue
            lo, hi = r["95ci"]
            count = r.get("photos") or r.get("queries") or boxes.get(name.removeprefix("box recall "), ccp_photos)
            difference = f"{r['difference']:+.3f} ({lo:+.3f} to {hi:+.3f})"
            rows.append([data, prefix + name, f"{count:,}", f3(r["a"]), f3(r["b"]), difference])
            data = ""
    return table(
        ["data", "measure", "photos, boxes or queries", "before", "shipped", "difference (95% interval)"], rows
    )


def parser_file() -> str:
    parser = load("garment_parser")
    model, speed_, measured = parser["model"], parser["latency"], parser["measured"]
    runs = ", ".join(str(v) for v in sorted(speed_["detect_p50_runs_ms"]))
    return (
        f"- File `{model['file']}`, {model['megabytes']} MB, sha256 `{model['sha256']}`; input "
        f"{model['input_size'][0]}x{model['input_size'][1]} (h x w).\n"
        f"- Parse p50 {speed_['detect_p50_ms']} ms, network alone {speed_['parse_p50_ms']} ms, p95 "
        f"{speed_['detect_p95_ms']} ms ({speed_['photos']} CCP photos of about 550x825; median of "
        f"{speed_['runs']} runs: {runs} ms). Measured {measured['date']} on {measured['machine']}."
    )


# -- the embedder's card --------------------------------------------------------------------------


def embedder_file() -> str:
    record = load("embedder")
    model, weights = record["model"], record["weights"]
    packages = ", ".join(f"{name} {version}" for name, version in sorted(record["packages"].items()))
    return (
        f"- File `{model['file']}`, {model['megabytes']} MB, opset {model['opset']}, sha256 `{model['sha256']}`.\n"
        f"- From `{weights['file']}`, sha256 `{weights['sha256']}`; onnxruntime agrees with torch to "
        f"{record['onnx_vs_torch_max_abs_diff']:.1e} (largest absolute difference).\n"
        f"- Exported {record['measured']['date']} with {packages}."
    )


def embedder_latency() -> str:
    latency = load("embedder")["latency"]
    rows = [[f"model only, batch {b}", f"{latency[f'model_ms_per_image_b{b}']:.1f} ms / image"] for b in (1, 4, 16)]
    if "decode_ms_per_image" in latency:
        rows += [
            [
                f"JPEG decode ({int(latency['images'])} Zalora images)",
                f"{latency['decode_ms_per_image']:.1f} ms / image",
            ],
            ["letterbox + normalise", f"{latency['preprocess_ms_per_image']:.1f} ms / image"],
            [
                f"decode + embed, batches of {int(latency['batch_size'])}",
                f"{latency['end_to_end_images_per_s_flip_false']:.1f} images / s",
            ],
            ["the same with flip averaging", f"{latency['end_to_end_images_per_s_flip_true']:.1f} images / s"],
        ]
    return table([f"CPU latency ({int(latency['threads'])} threads)", ""], rows)


BLOCKS: dict[str, Callable[[], str]] = {
    "retrieval": retrieval,
    "speed": speed,
    "store": store,
    "server": server,
    "parser-segmentation": parser_segmentation,
    "parser-catalog": parser_catalog,
    "parser-file": parser_file,
    "parser-comparison": parser_comparison,
    "embedder-file": embedder_file,
    "embedder-latency": embedder_latency,
    "embedder-comparison": embedder_comparison,
    "embedder-speed": embedder_speed,
    "head-file": head_file,
    "stores": stores,
    "stores-postgres": lambda: stores("bench_stores_postgres"),
    "indexing-ray": indexing_ray,
    "replicas": replicas,
    "filters": filters,
    "mixed-load": mixed_load,
}


def render(text: str) -> str:
    def block(match: re.Match) -> str:
        name = match.group("name")
        if name not in BLOCKS:
            raise SystemExit(f"unknown figure block {name!r}; known: {', '.join(sorted(BLOCKS))}")
        return match.group(1) + BLOCKS[name]() + "\n" + match.group(4)

    return BLOCK.sub(block, text)


def stale_blocks(path: Path) -> list[str]:
    """Names of the figure blocks in ``path`` that differ from their JSON."""
    text = path.read_text()
    fresh = render(text)
    old = {m.group("name"): m.group("body") for m in BLOCK.finditer(text)}
    new = {m.group("name"): m.group("body") for m in BLOCK.finditer(fresh)}
    return [name for name in old if old[name] != new[name]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a block is stale")
    args = parser.parse_args(argv)
    stale = {path: stale_blocks(path) for path in DOCUMENTS}
    if args.check:
        for path, names in stale.items():
            for name in names:
                print(
                    f"{path.relative_to(ROOT)}: figures:{name} differs from docs/results (run scripts/render_figures.py)"
                )
        return 1 if any(stale.values()) else 0
    for path in DOCUMENTS:
        path.write_text(render(path.read_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
