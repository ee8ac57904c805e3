"""``fashion-search``: a thin command-line layer over the Python API."""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from typing import Any, Optional, Sequence

from fashion_search.catalog import CatalogItem, CsvColumns, load_catalog
from fashion_search.duplicates import DEFAULT_THRESHOLD as DEFAULT_DUPLICATE_THRESHOLD
from fashion_search.errors import EmptyIndexError, FashionSearchError, ImageError, UsageError
from fashion_search.images import load_image
from fashion_search.index_record import DEFAULT_CROP
from fashion_search.indexing import IndexRunner, LocalRunner
from fashion_search.pipeline import CROP_MODES, Component, model_files
from fashion_search.registry import (
    DEFAULT_DETECTOR,
    DEFAULT_EMBEDDER,
    DEFAULT_TEXT_ENCODER,
    DETECTORS,
    EMBEDDERS,
    TEXT_ENCODERS,
    Registry,
)
from fashion_search.search import Searcher, describe_index, measured_with
from fashion_search.settings import ENV_PREFIX, Settings, read_api_key, settings_table
from fashion_search.store import missing_local_store, open_store
from fashion_search.writer import CatalogWriter

log = logging.getLogger("fashion_search")


def _db(args: argparse.Namespace) -> str:
    """The index a command works on: ``--db``, else ``FASHION_SEARCH_DB``."""
    db = args.db or Settings.load().db
    if not db:
        raise UsageError(f"{args.command} needs --db (or {ENV_PREFIX}DB)")
    return db


def _add_catalog_args(parser: argparse.ArgumentParser, positional: bool = True) -> None:
    if positional:
        parser.add_argument("catalog", nargs="?", help="catalog folder laid out as <Category>/<ProductID>/<image>")
    else:
        parser.add_argument("--catalog", help="catalog folder laid out as <Category>/<ProductID>/<image>")
    parser.add_argument("--csv", help="CSV catalog instead of a folder: one row per image")
    parser.add_argument("--image-column", default="image", help="CSV column with the image path (default: image)")
    parser.add_argument(
        "--product-id-column", default="product_id", help="CSV column with the product id (default: product_id)"
    )
    parser.add_argument(
        "--category-column", default="category", help="CSV column with the category (default: category)"
    )
    parser.add_argument("--metadata", help="CSV of product metadata joined on the product id column")


def _add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--embedder", help=f"feature model, one of: {', '.join(EMBEDDERS.names())} (default: {DEFAULT_EMBEDDER})"
    )
    parser.add_argument("--weights", help="local weights file for embedders that need one (resnet152)")
    parser.add_argument(
        "--embedder-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="option for the embedder, repeatable (e.g. colour_weight=0.3 flip=true)",
    )
    parser.add_argument(
        "--detector", help=f"garment detector, one of: {', '.join(DETECTORS.names())} (default: {DEFAULT_DETECTOR})"
    )
    parser.add_argument(
        "--detector-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="option for the detector, repeatable (e.g. weights=maskrcnn.pth classes=deepfashion2)",
    )


def _add_crop_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--crop",
        choices=CROP_MODES,
        help=f"what of a garment is embedded: its box, or its box with everything outside its mask "
        f"painted white (default for new indexes: {DEFAULT_CROP})",
    )


def _key_values(pairs: Sequence[str], flag: str) -> dict[str, str]:
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"{flag} takes KEY=VALUE, not {pair!r}")
        options[key.strip()] = value
    return options


def _component(registry: Registry, name: Optional[str], raw: dict[str, str], flag: str) -> Optional[Component]:
    if raw and not name:
        raise UsageError(f"{flag} needs --{registry.kind.split()[-1]} NAME to say whose options they are")
    return Component(name, registry.parse_options(name, raw)) if name else None


def _add_text_encoder_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--text-encoder",
        help=f"model for words, one of: {', '.join(TEXT_ENCODERS.names())} (default: {DEFAULT_TEXT_ENCODER})",
    )
    parser.add_argument(
        "--text-encoder-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="option for the text encoder, repeatable (e.g. model_path=my_text_encoder.onnx)",
    )


def _text_encoder(args: argparse.Namespace) -> Optional[Component]:
    raw = _key_values(args.text_encoder_option, "--text-encoder-option")
    name = args.text_encoder or (DEFAULT_TEXT_ENCODER if raw else None)
    return Component(name, TEXT_ENCODERS.parse_options(name, raw)) if name else None


def _components(args: argparse.Namespace) -> tuple[Optional[Component], Optional[Component]]:
    if args.weights and not args.embedder:
        raise UsageError("--weights needs --embedder NAME (e.g. --embedder resnet152)")
    embedder_options = _key_values(args.embedder_option, "--embedder-option")
    if args.weights:
        embedder_options["weights"] = args.weights
    embedder = _component(EMBEDDERS, args.embedder, embedder_options, "--embedder-option")
    detector = _component(
        DETECTORS, args.detector, _key_values(args.detector_option, "--detector-option"), "--detector-option"
    )
    return embedder, detector


def _catalog(args: argparse.Namespace):
    return load_catalog(
        folder=args.catalog,
        csv_path=args.csv,
        columns=CsvColumns(args.image_column, args.product_id_column, args.category_column),
        metadata_csv=args.metadata,
    )


def _runner(args: argparse.Namespace) -> IndexRunner:
    """Who analyses an index run's images: this process, or Ray workers (--ray)."""
    if args.ray is not None:
        # Loaded only for --ray: the rest of the command line never imports Ray's side.
        from fashion_search.indexing_ray import RayRunner, RaySettings

        return RayRunner(RaySettings(address=args.ray, workers=args.workers))
    if args.workers is not None:
        raise UsageError("--workers sets the number of Ray workers: use it with --ray")
    return LocalRunner()


def cmd_index(args: argparse.Namespace) -> int:
    runner = _runner(args)
    db = _db(args)
    items = _catalog(args)
    embedder, detector = _components(args)
    writer = CatalogWriter.create(db, embedder, detector, crop=args.crop, rebuild=args.rebuild, runner=runner)
    action = "re-embedding every one of" if args.rebuild else "indexing"
    print(f"{action} {len(items)} catalog images into {db}", file=sys.stderr)
    try:
        report = writer.index(
            items, batch_size=args.batch_size, prune=not args.keep_missing, all_garments=args.all_garments
        )
    except KeyboardInterrupt:
        print("\ninterrupted: finished batches are saved; run the same command again to finish", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(report.to_dict()))
    else:
        print(
            f"done in {report.seconds:.1f} s: {report.indexed} indexed ({report.images_per_second:.1f} img/s, "
            f"{report.garments} garments), {report.unchanged} unchanged, {report.removed} removed, "
            f"{len(report.failed)} failed; index holds {writer.store.count()} garments"
        )
        for path, reason in report.failed:
            print(f"  failed: {path}: {reason}")
    # Nothing read at all (every image failed, or the catalog's folders could not be listed):
    # a scheduled job must not read that as success.
    return 1 if report.failed and not (report.indexed or report.unchanged) else 0


def _print_result(result: dict) -> None:
    query = result["query"]
    shown = query if isinstance(query, str) else " + ".join(f"{k} {v!r}" for k, v in query.items() if v is not None)
    print(f"== {shown}  ({result['timings_ms'].get('total', 0):.0f} ms)")
    if "results" in result:  # words alone: one list of products
        _print_products(result["results"], "  ")
    for garment in result.get("garments", []):
        print(f"  [{garment['label']}] box={garment['box']} score={garment['score']:.2f}")
        _print_products(garment["results"], "    ")


def _print_products(products: list[dict], indent: str) -> None:
    for rank, r in enumerate(products, 1):
        print(f"{indent}{rank:>3}. {r['score']:.3f}  {r['product_id']:<16} {r['category']:<24} {r['image']}")


def _query_lines(path: str) -> list[tuple[Any, Optional[str], Optional[str], Optional[str]]]:
    """A --queries file's lines as ``(echo, image, text, error)``: what each line asked (to echo
    it), its photo's path (relative to the file) and its words, or why it cannot be searched."""
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read the queries file {path}: {getattr(exc, 'strerror', None) or exc}") from None
    folder = os.path.dirname(os.path.abspath(path))
    queries: list[tuple[Any, Optional[str], Optional[str], Optional[str]]] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            query = json.loads(line)
        except ValueError:
            queries.append((line, None, None, f"line {number} is not JSON"))
            continue
        image, text = (query.get("image"), query.get("text")) if isinstance(query, dict) else (None, None)
        if not isinstance(query, dict) or (image is None and text is None):
            queries.append((query, None, None, f'line {number} is not {{"image": path}}, {{"text": words}} or both'))
        elif (image is not None and not isinstance(image, str)) or (text is not None and not isinstance(text, str)):
            queries.append((query, None, None, f"line {number}: image is a path and text is words, both text"))
        else:
            echo = {"image": image, "text": text}
            queries.append((echo, os.path.join(folder, image) if image else None, text, None))
    return queries


def cmd_search(args: argparse.Namespace) -> int:
    if args.queries and (args.images or args.text is not None):
        raise UsageError("--queries takes photos and words from its file: give no photos or --text with it")
    if not args.images and args.text is None and not args.queries:
        raise UsageError("search needs photos, --text WORDS, or --queries FILE.jsonl")
    embedder, detector = _components(args)
    searcher = Searcher.open(_db(args), embedder, detector, text_encoder=_text_encoder(args))
    where = searcher.parse_filter(args.filter)  # a bad filter fails before any photo is read
    if args.queries:
        queries = _query_lines(args.queries)
    else:
        photos = args.images or [None]
        queries = [
            (image if args.text is None else {"image": image, "text": args.text}, image, args.text, None)
            for image in photos
        ]
    failures = 0
    for echo, image, text, error in queries:
        result: dict[str, Any]
        if error is None:
            try:
                found = searcher.search(
                    image, k=args.k, category=args.category, same_class=not args.any_class, where=where, text=text
                )
                found.query = echo
                result = found.to_dict()
            except (ImageError, UsageError) as exc:  # this query's own fault; the others go on
                error = str(exc)
        if error is not None:
            failures += 1
            result = {"query": echo, "error": error}
        if args.json or args.queries:
            print(json.dumps(result, ensure_ascii=False), flush=True)
        elif "error" in result:
            print(f"== {echo}\n  error: {result['error']}", flush=True)
        else:
            _print_result(result)
    return 1 if failures else 0


def _cutoffs(text: str, flag: str) -> list[int]:
    try:
        values = [int(k) for k in text.split(",") if k.strip()]
    except ValueError:
        raise UsageError(f"{flag} takes comma-separated whole numbers (e.g. 1,5,10), not {text!r}") from None
    if not values or min(values) < 1:
        raise UsageError(f"{flag} takes comma-separated whole numbers of 1 or more, not {text!r}")
    return values


def _indexed_searcher(args: argparse.Namespace, items: Sequence[CatalogItem]) -> Searcher:
    """The index at ``--db``, with ``items`` indexed into it first (new or changed images only;
    nothing is pruned, so an index of a larger catalog keeps its other images)."""
    embedder, detector = _components(args)
    writer = CatalogWriter.create(_db(args), embedder, detector, crop=args.crop)
    report = writer.index(items, batch_size=args.batch_size, prune=False)
    if report.indexed:
        print(f"indexed {report.indexed} images first ({report.images_per_second:.1f} img/s)", file=sys.stderr)
    return Searcher(writer.store, writer.pipeline)


def _write_per_query(report: Any, path: Optional[str]) -> None:
    from fashion_search.evaluation import write_per_query

    if path:
        lines = write_per_query(report, path)
        print(f"wrote {lines} per-query outcomes to {path}", file=sys.stderr)


def cmd_eval(args: argparse.Namespace) -> int:
    from fashion_search.evaluation import evaluate_index

    items = _catalog(args)
    labels = [c.strip() for c in args.labels.split(",") if c.strip()]
    recall_at = _cutoffs(args.recall_at, "--recall-at")
    precision_at = _cutoffs(args.precision_at, "--precision-at")
    searcher = _indexed_searcher(args, items)
    result = evaluate_index(
        items, searcher, recall_at=recall_at, labels=labels, precision_at=precision_at, same_class=not args.any_class
    )
    _write_per_query(result, args.per_query)
    if args.json:
        print(json.dumps({**measured_with(searcher.pipeline, not args.any_class), **result.to_dict()}))
    else:
        print(result.table())
    return 0


def cmd_eval_pairs(args: argparse.Namespace) -> int:
    from fashion_search.evaluation import evaluate_pairs, read_query_pairs

    pairs = read_query_pairs(args.pairs)
    recall_at = _cutoffs(args.recall_at, "--recall-at")
    if args.catalog or args.csv or args.metadata:
        searcher = _indexed_searcher(args, _catalog(args))
    else:
        embedder, detector = _components(args)
        searcher = Searcher.open(_db(args), embedder, detector, crop=args.crop)
    result = evaluate_pairs(pairs, searcher, recall_at=recall_at, same_class=not args.any_class, threads=args.threads)
    _write_per_query(result, args.per_query)
    if args.json:
        print(
            json.dumps(
                {**measured_with(searcher.pipeline, not args.any_class), "pairs": args.pairs, **result.to_dict()}
            )
        )
    else:
        print(result.table())
    return 0


def cmd_detect(args: argparse.Namespace) -> int:
    from fashion_search.garments import create_detector, encode_mask
    from fashion_search.garments.drawing import draw_garments

    _, spec = _components(args)
    spec = spec or Component(DEFAULT_DETECTOR)
    detector = create_detector(spec.name, **spec.options)
    if args.draw and len(args.images) > 1:
        raise UsageError("--draw takes one image at a time")
    failures = 0
    for image_path in args.images:
        try:
            picture = load_image(image_path)
        except ImageError as exc:
            failures += 1
            print(
                json.dumps({"image": image_path, "error": str(exc)})
                if args.json
                else f"== {image_path}\n  error: {exc}"
            )
            continue
        garments = detector.detect(picture)
        if args.json:
            print(
                json.dumps(
                    {
                        "image": image_path,
                        "size": [picture.width, picture.height],
                        "garments": [
                            {
                                "label": g.label,
                                "score": g.score,
                                "box": list(g.box),
                                "mask": encode_mask(g.mask) if g.mask is not None else None,
                            }
                            for g in garments
                        ],
                    }
                )
            )
        else:
            print(f"== {image_path}  ({len(garments)} garments)")
            area = picture.width * picture.height
            for g in garments:
                share = f"{g.mask.sum() / area:6.1%} of the photo" if g.mask is not None else ""
                print(f"  {g.label:<10} {g.score:.2f}  box={list(g.box)}  {share}")
        if args.draw:
            draw_garments(picture, garments).save(args.draw)
            print(f"drawn to {args.draw}", file=sys.stderr)
    return 1 if failures else 0


def cmd_info(args: argparse.Namespace) -> int:
    db = _db(args)
    info = describe_index(db)
    if args.json:
        print(json.dumps(info, ensure_ascii=False))
    elif not args.check:
        print(
            f"index {info['db']}: {info['images']} images, {info['garments']} garments, "
            f"{len(info['categories'])} categories; {info['dim']}-d vectors, {info['crop']} crops"
        )
        for role, model in info["models"].items():
            files = model_files((model or {}).get("identity", {}))
            print(
                f"  {role}: {(model or {}).get('name')}" + "".join(f"\n    {name} sha256 {sha}" for name, sha in files)
            )
        print(
            "  its models, as found here: "
            + ("the same" if info["models_match"] else "different:\n    " + "\n    ".join(info["differences"]))
        )
        for category, shares in sorted(info["category_classes"].items()):
            print(f"  {category}: " + ", ".join(f"{label} {share:.2f}" for label, share in shares.items()))
        if info["metadata_columns"]:
            print("  metadata columns (for --filter):")
        for name, column in info["metadata_columns"].items():
            if column["type"] == "number":
                shown = f"number, {column['min']:g} to {column['max']:g}"
            else:
                values = column.get("values")
                shown = "text, " + (", ".join(map(repr, values)) if values else "many values")
            print(f"    {name}: {shown} ({column['products']} products)")
    if args.check and not info["models_match"]:
        if not args.json:
            print(
                f"{db}: built with other models than the installed ones:\n  " + "\n  ".join(info["differences"]),
                file=sys.stderr,
            )
        return 1
    return 0


def cmd_duplicates(args: argparse.Namespace) -> int:
    from fashion_search.duplicates import find_duplicates

    db = _db(args)
    if missing_local_store(db):
        raise EmptyIndexError(f"no index at {db}: run `fashion-search index CATALOG --db {db}` first")
    store = open_store(str(db))
    if not 0.0 < args.threshold <= 1.0:
        raise UsageError(f"--threshold is a cosine similarity in (0, 1], not {args.threshold}")

    def progress(done: int, total: int) -> None:
        print(f"compared {done}/{total} images", file=sys.stderr, flush=True)

    report = find_duplicates(store, args.threshold, threads=args.threads, progress=progress)
    if args.json:
        print(json.dumps(report.to_dict(), ensure_ascii=False))
        return 0
    copies = sum(len(g.images) for g in report.groups)
    print(
        f"{len(report.groups)} groups of near-identical images ({copies} images) among {report.images} images "
        f"of different products, similarity >= {report.threshold} ({report.seconds:.1f} s)"
    )
    for n, group in enumerate(report.groups, 1):
        print(f"== group {n}: {len(group.products)} products, similarity >= {group.similarity:.3f}")
        for image in group.images:
            print(f"    {image.product_id:<20} {image.category:<24} {image.image}")
    return 0


def cmd_demo_catalog(args: argparse.Namespace) -> int:
    from fashion_search.demo import write_fashion_mnist_catalog

    root = write_fashion_mnist_catalog(args.out, per_class=args.per_class, source=args.source)
    print(root)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn  # the web layer's dependencies load only for this command

    from fashion_search.web import create_app

    megabytes = lambda value: None if value is None else int(value * 2**20)  # noqa: E731
    settings = Settings.load(
        db=args.db,
        host=args.host,
        port=args.port,
        max_upload_bytes=megabytes(args.max_upload_mb),
        max_write_bytes=megabytes(args.max_write_mb),
        threads=args.threads,
        api_key=read_api_key(args.api_key_file) if args.api_key_file else None,
        protect_reads=True if args.protect_reads else None,
        uploads=args.uploads,
    )
    if not settings.db:
        raise UsageError(f"serve needs --db (or {ENV_PREFIX}DB)")
    app = create_app(settings.db, settings, text_encoder=_text_encoder(args))  # models load here
    print(
        f"serving {settings.db} at http://{settings.host}:{settings.port}/  (API docs: /docs; Ctrl-C stops)",
        file=sys.stderr,
        flush=True,
    )
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level="debug" if args.verbose else "info",
        access_log=not args.no_access_log,
    )
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    # Training lives apart from what serves: its module (and torch) load only for this command.
    from fashion_search.training.cli import main as train_main

    return train_main(args.train_args)


DB_HELP = f"the index: a folder, or postgresql://... (default: ${ENV_PREFIX}DB)"


def _count(text: str) -> int:
    """A whole number of 1 or more, as an option's value."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"takes a whole number of 1 or more, not {text!r}")
    return value


def _amount(text: str) -> float:
    """A finite positive number, as an option's value (nan, inf and 0 are refused)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"takes a positive number, not {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fashion-search", description="Visual search for fashion catalogs.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging, and tracebacks with errors")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("index", help="index (or refresh) a catalog")
    _add_catalog_args(p)
    p.add_argument(
        "--db",
        help="index location: a folder (or lancedb://path), or postgresql://user@host:5432/db?table=garments "
        f"(default: ${ENV_PREFIX}DB)",
    )
    _add_model_args(p)
    _add_crop_arg(p)
    p.add_argument("--batch-size", type=_count, default=64)
    p.add_argument("--keep-missing", action="store_true", help="keep indexed images that are no longer in the catalog")
    p.add_argument(
        "--all-garments",
        action="store_true",
        help="index every garment found in a photo (default: its main garment and those of the "
        "classes its category holds)",
    )
    p.add_argument(
        "--rebuild",
        action="store_true",
        help="empty the index and re-embed every image with the models at hand (needed after the "
        "models changed: an index never mixes two models' vectors)",
    )
    p.add_argument(
        "--ray",
        nargs="?",
        const="local",
        metavar="ADDRESS",
        help="analyse the images on Ray workers (the distributed extra): a local Ray instance, or "
        "the cluster at ADDRESS (e.g. ray://head:10001 or auto); the driver writes to --db",
    )
    p.add_argument(
        "--workers",
        type=_count,
        help="Ray workers, each loading the models once (default: one per 2 CPUs of the cluster)",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_index)

    p = sub.add_parser(
        "search",
        help="find products like the garments in photos, or described by words",
        description="Photos alone: the products like each garment found. --text alone: the products the "
        'words describe. Photos and --text: each garment as the words say it ("in red"). --queries: '
        "one query per line of a JSON-lines file, answered in order as JSON lines.",
    )
    p.add_argument("images", nargs="*", help="query photo(s)")
    p.add_argument("--text", metavar="WORDS", help='words: alone ("red floral dress"), or with photos ("in black")')
    p.add_argument(
        "--queries",
        metavar="FILE.jsonl",
        help='one query a line: {"image": path}, {"text": words} or both (paths relative to the file); '
        "one JSON answer a line, each with its query; a bad line answers with its error (exit code 1)",
    )
    p.add_argument("--db", help=DB_HELP)
    p.add_argument("-k", type=_count, default=12, help="results per garment (default 12)")
    p.add_argument("--category", help="only products of this catalog category")
    p.add_argument(
        "--filter",
        metavar="EXPR",
        help="only products whose metadata passes EXPR, e.g. 'brand = \"Nike\" and price < 50' "
        "(grammar: docs/filters.md; `fashion-search info --db DB` lists the columns)",
    )
    p.add_argument(
        "--any-class",
        action="store_true",
        help="let a garment match catalog items of any garment class (default: only the categories "
        "that hold its class, and there garments of its class or a lookalike one)",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per query per line")
    _add_model_args(p)
    _add_text_encoder_args(p)
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("eval", help="measure retrieval quality on a labelled catalog")
    _add_catalog_args(p, positional=False)
    p.add_argument("--db", help=DB_HELP)
    _add_model_args(p)
    _add_crop_arg(p)
    p.add_argument(
        "--labels", default="category", help="comma-separated label columns for precision (default: category)"
    )
    p.add_argument("--recall-at", default="1,5,10")
    p.add_argument("--precision-at", default="5,10")
    p.add_argument(
        "--any-class",
        action="store_true",
        help="measure search with --any-class (default: class-aware search, as search does)",
    )
    p.add_argument("--batch-size", type=_count, default=64)
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--per-query",
        metavar="FILE",
        help="also write each query's outcome as JSON lines, to compare two runs query by query "
        "(scripts/compare_runs.py)",
    )
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser(
        "eval-pairs",
        help="measure worn-to-shop recall: photos of people wearing catalog products",
        description="Each photo of a CSV of photo,product_id pairs is searched as search does it, "
        "with its garment that can match the product (the largest such), and the product's rank is "
        "recorded. With a catalog (--catalog or --csv), it is indexed into --db first.",
    )
    _add_catalog_args(p, positional=False)
    p.add_argument("--db", help=DB_HELP)
    p.add_argument(
        "--pairs", required=True, help="CSV with columns photo (relative to the CSV's folder) and product_id"
    )
    _add_model_args(p)
    _add_crop_arg(p)
    p.add_argument("--recall-at", default="1,5,20")
    p.add_argument(
        "--any-class",
        action="store_true",
        help="measure search with --any-class (default: class-aware search, as search does)",
    )
    p.add_argument("--batch-size", type=_count, default=64, help="catalog images per indexing batch")
    p.add_argument("--threads", type=_count, default=2, help="photos decoded, parsed and looked up at once (default 2)")
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--per-query",
        metavar="FILE",
        help="also write each pair's outcome as JSON lines, to compare two runs pair by pair (scripts/compare_runs.py)",
    )
    p.set_defaults(func=cmd_eval_pairs)

    p = sub.add_parser("detect", help="find, classify and segment the garments in photos (no index needed)")
    p.add_argument("images", nargs="+", help="photo(s)")
    p.add_argument("--draw", metavar="OUT.png", help="save the photo with each garment outlined and labelled")
    p.add_argument("--json", action="store_true", help="one JSON object per photo, masks run-length encoded")
    _add_model_args(p)
    p.set_defaults(func=cmd_detect)

    p = sub.add_parser("info", help="what an index holds and which models (by sha256) built it")
    p.add_argument("--db", help=DB_HELP)
    p.add_argument("--json", action="store_true", help="print it as one JSON object")
    p.add_argument(
        "--check",
        action="store_true",
        help="exit with status 1 when the installed models are not the ones that built the index",
    )
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("demo-catalog", help="write the Fashion-MNIST demo catalog (Debian dataset-fashion-mnist)")
    p.add_argument("out", help="folder to write the catalog to")
    p.add_argument("--per-class", type=_count, default=100, help="products per article type (default 100)")
    p.add_argument("--source", default="/usr/share/datasets/fashion-mnist", help="folder with the idx files")
    p.set_defaults(func=cmd_demo_catalog)

    p = sub.add_parser(
        "serve",
        help="serve the search page and the JSON API over an index",
        description="Every setting can also come from the environment (a command-line option wins); "
        "docs/settings.md lists them.",
        epilog="settings:\n" + settings_table(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--db", help=DB_HELP)
    p.add_argument("--host", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, help="default 8000")
    p.add_argument("--max-upload-mb", type=_amount, help="largest photo accepted (default 10)")
    p.add_argument("--threads", type=_count, help="concurrent searches (default: the CPU count, at least 2)")
    p.add_argument("--no-access-log", action="store_true", help="do not log each request")
    p.add_argument(
        "--api-key-file",
        help="a file holding the key that catalog writes (PUT/DELETE /api/products/...) need as "
        "`Authorization: Bearer KEY`; without one, writes are off",
    )
    p.add_argument("--protect-reads", action="store_true", help="searches and other reads need the key too")
    p.add_argument("--uploads", help="folder for written products' images (default: uploads/ in a Lance index)")
    p.add_argument("--max-write-mb", type=_amount, help="largest catalog write request (default 64)")
    _add_text_encoder_args(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser(
        "duplicates",
        help="list near-identical catalog images under different product ids",
        description="Groups of catalog images that are copies of one another (the same photo, resized or "
        "re-encoded) under different product ids, found through the index (one lookup per image).",
    )
    p.add_argument("--db", help=DB_HELP)
    p.add_argument(
        "--threshold",
        type=float,
        default=DEFAULT_DUPLICATE_THRESHOLD,
        help=f"cosine similarity of the images' main garments that counts as a copy (default {DEFAULT_DUPLICATE_THRESHOLD})",
    )
    p.add_argument("--threads", type=_count, default=4, help="lookups run side by side (default 4)")
    p.add_argument("--json", action="store_true", help="print the groups as JSON")
    p.set_defaults(func=cmd_duplicates)

    p = sub.add_parser(
        "train",
        help="train, export and measure the models (needs the train extra)",
        add_help=False,
        description="fashion-search train {parser,embedder,evaluate-parser,export-embedder} ...",
    )
    p.add_argument("train_args", nargs=argparse.REMAINDER, help="a training command and its options (train --help)")
    p.set_defaults(func=cmd_train)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return args.func(args)
    except FashionSearchError as exc:
        # Problems the user can act on (bad paths, missing models or extras, an index built with
        # other models) get their message alone; -v shows the traceback for bug reports.
        if args.verbose:
            raise
        print(f"fashion-search: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader left (`fashion-search search ... | head`): stop quietly, as Unix tools do.
        # Output still buffered for the closed pipe would fail again at exit: point it away.
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):  # stdout is not a file (an embedding program's stream)
            pass
        return 141
    except OSError as exc:
        # Missing or read-only paths, a full disk: the user's to fix, said on one line.
        if args.verbose:
            raise
        print(f"fashion-search: error: {_os_error(exc)}", file=sys.stderr)
        return 2


def _os_error(exc: OSError) -> str:
    """An operating-system error as one line: what failed, and on which path."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    path = exc.filename if exc.filename is not None else None
    return f"{reason}: {path}" if path is not None else reason


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
