"""``fashion-search``: a thin command-line layer over the Python API."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Optional, Sequence

from fashion_search.catalog import CatalogError, CsvColumns, load_catalog
from fashion_search.engine import EmptyIndexError, SearchEngine
from fashion_search.evaluation import evaluate_index
from fashion_search.garments.training import BACKBONE_LR, DECODER_LR
from fashion_search.images import ImageError, load_image
from fashion_search.indexing import IndexMismatchError
from fashion_search.pipeline import CROP_MODES, DEFAULT_CROP, Component
from fashion_search.registry import DEFAULT_DETECTOR, DEFAULT_EMBEDDER, DETECTORS, EMBEDDERS, UnknownComponentError

log = logging.getLogger("fashion_search")


class UsageError(ValueError):
    """Options that do not go together."""


def _add_catalog_args(parser: argparse.ArgumentParser, positional: bool = True) -> None:
    if positional:
        parser.add_argument("catalog", nargs="?", help="catalog folder laid out as <Category>/<ProductID>/<image>")
    else:
        parser.add_argument("--catalog", help="catalog folder laid out as <Category>/<ProductID>/<image>")
    parser.add_argument("--csv", help="CSV catalog instead of a folder: one row per image")
    parser.add_argument("--image-column", default="image", help="CSV column with the image path (default: image)")
    parser.add_argument("--product-id-column", default="product_id", help="CSV column with the product id (default: product_id)")
    parser.add_argument("--category-column", default="category", help="CSV column with the category (default: category)")
    parser.add_argument("--metadata", help="CSV of product metadata joined on the product id column")


def _add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--embedder", help=f"feature model, one of: {', '.join(EMBEDDERS.names())} (default: {DEFAULT_EMBEDDER})")
    parser.add_argument("--weights", help="local weights file for embedders that need one (resnet152)")
    parser.add_argument("--detector", help=f"garment detector, one of: {', '.join(DETECTORS.names())} (default: {DEFAULT_DETECTOR})")
    parser.add_argument("--detector-option", action="append", default=[], metavar="KEY=VALUE",
                        help="option for the detector, repeatable (e.g. weights=maskrcnn.pth classes=deepfashion2)")


def _add_crop_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--crop", choices=CROP_MODES,
                        help=f"what of a garment is embedded: its box, or its box with everything outside its mask "
                             f"painted white (default for new indexes: {DEFAULT_CROP})")


def _components(args: argparse.Namespace) -> tuple[Optional[Component], Optional[Component]]:
    embedder = None
    if args.weights and not args.embedder:
        raise UsageError("--weights needs --embedder NAME (e.g. --embedder resnet152)")
    if args.embedder:
        options = {"weights": str(Path(args.weights).expanduser().resolve())} if args.weights else {}
        embedder = Component(args.embedder, options)
    if args.detector_option and not args.detector:
        raise UsageError("--detector-option needs --detector NAME (e.g. --detector maskrcnn)")
    options = {}
    for option in args.detector_option:
        key, sep, value = option.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--detector-option takes KEY=VALUE, not {option!r}")
        # Absolute, so that searches run from another folder find the files the index was made with.
        options[key.strip()] = str(Path(value).expanduser().resolve()) if Path(value).expanduser().is_file() else value
    detector = Component(args.detector, options) if args.detector else None
    return embedder, detector


def _catalog(args: argparse.Namespace):
    return load_catalog(
        folder=args.catalog,
        csv_path=args.csv,
        columns=CsvColumns(args.image_column, args.product_id_column, args.category_column),
        metadata_csv=args.metadata,
    )


def cmd_index(args: argparse.Namespace) -> int:
    items = _catalog(args)
    embedder, detector = _components(args)
    engine = SearchEngine.create(args.db, embedder, detector, crop=args.crop)
    print(f"indexing {len(items)} catalog images into {args.db}", file=sys.stderr)
    try:
        report = engine.index(items, batch_size=args.batch_size, prune=not args.keep_missing,
                              all_garments=args.all_garments)
    except KeyboardInterrupt:
        print("\ninterrupted: finished batches are saved; run the same command again to finish", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(report.to_dict()))
    else:
        print(
            f"done in {report.seconds:.1f} s: {report.indexed} indexed ({report.images_per_second:.1f} img/s, "
            f"{report.garments} garments), {report.unchanged} unchanged, {report.removed} removed, "
            f"{len(report.failed)} failed; index holds {engine.store.count()} garments"
        )
        for path, reason in report.failed:
            print(f"  failed: {path}: {reason}")
    return 1 if report.total and report.failed and not (report.indexed or report.unchanged) else 0


def _print_result(result: dict) -> None:
    print(f"== {result['query']}  ({result['timings_ms'].get('total', 0):.0f} ms)")
    for garment in result["garments"]:
        print(f"  [{garment['label']}] box={garment['box']} score={garment['score']:.2f}")
        for rank, r in enumerate(garment["results"], 1):
            print(f"    {rank:>3}. {r['score']:.3f}  {r['product_id']:<16} {r['category']:<24} {r['image']}")


def cmd_search(args: argparse.Namespace) -> int:
    embedder, detector = _components(args)
    engine = SearchEngine.open(args.db, embedder, detector)
    failures = 0
    for image in args.images:
        try:
            result = engine.search(image, k=args.k, category=args.category, same_class=not args.any_class).to_dict()
        except ImageError as exc:
            failures += 1
            result = {"query": image, "error": str(exc)}
        if args.json:
            print(json.dumps(result, ensure_ascii=False), flush=True)
        elif "error" in result:
            print(f"== {image}\n  error: {result['error']}", flush=True)
        else:
            _print_result(result)
    return 1 if failures else 0


def cmd_eval(args: argparse.Namespace) -> int:
    items = _catalog(args)
    embedder, detector = _components(args)
    engine = SearchEngine.create(args.db, embedder, detector, crop=args.crop)
    report = engine.index(items, batch_size=args.batch_size, prune=False)
    if report.indexed:
        print(f"indexed {report.indexed} images first ({report.images_per_second:.1f} img/s)", file=sys.stderr)
    labels = [c.strip() for c in args.labels.split(",") if c.strip()]
    recall_at = [int(k) for k in args.recall_at.split(",")]
    precision_at = [int(k) for k in args.precision_at.split(",")]
    result = evaluate_index(items, engine.store, recall_at=recall_at, labels=labels, precision_at=precision_at,
                            same_class=not args.any_class)
    print(json.dumps(result.to_dict()) if args.json else result.table())
    return 0


def cmd_detect(args: argparse.Namespace) -> int:
    from fashion_search.garments import create_detector, encode_mask
    from fashion_search.garments.drawing import draw_garments

    _, detector_spec = _components(args)
    detector = create_detector(detector_spec.name if detector_spec else DEFAULT_DETECTOR,
                               **(detector_spec.options if detector_spec else {}))
    if args.draw and len(args.images) > 1:
        raise UsageError("--draw takes one image at a time")
    failures = 0
    for image_path in args.images:
        try:
            picture = load_image(image_path)
        except ImageError as exc:
            failures += 1
            print(json.dumps({"image": image_path, "error": str(exc)}) if args.json else f"== {image_path}\n  error: {exc}")
            continue
        garments = detector.detect(picture)
        if args.json:
            print(json.dumps({
                "image": image_path, "size": [picture.width, picture.height],
                "garments": [{"label": g.label, "score": g.score, "box": list(g.box),
                              "mask": encode_mask(g.mask) if g.mask is not None else None} for g in garments],
            }))
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


def cmd_train_parser(args: argparse.Namespace) -> int:
    try:
        from fashion_search.garments.training.train import TrainConfig, train_parser
    except ImportError as exc:
        raise ImportError(f"training needs the export extra: pip install 'fashion-search[export]' ({exc})") from exc

    logging.getLogger("fashion_search").setLevel(logging.INFO)
    if not (args.ccp or args.examples):
        raise SystemExit("train-parser needs --ccp (the datasets) or --examples (a pack of them)")
    if args.write_examples and not args.ccp:
        raise SystemExit("train-parser --write-examples packs the datasets: it needs --ccp (and --kaggle)")
    if not (args.output or args.write_examples):
        raise SystemExit("train-parser needs --output (or --write-examples to only pack the examples)")
    config = TrainConfig(ccp_root=args.ccp, kaggle_root=args.kaggle, output=args.output, epochs=args.epochs,
                         batch_size=args.batch_size, products_per_class=args.products_per_class, seed=args.seed,
                         threads=args.threads, limit=args.limit, device=args.device,
                         frozen_blocks=args.frozen_blocks, init=args.init, jaccard_weight=args.jaccard_weight,
                         hue=args.hue, loader_threads=args.loader_threads, loader_processes=args.loader_processes,
                         decoder=args.decoder, backbone=args.backbone, examples=args.examples,
                         minutes=args.minutes, lr=args.lr, backbone_lr=args.backbone_lr,
                         worn_per_class=args.worn_per_class, teacher=args.teacher)
    if args.write_examples:
        from fashion_search.garments.training.train import write_training_examples

        print(json.dumps(write_training_examples(config, Path(args.write_examples))))
        return 0
    report = train_parser(config)
    print(json.dumps({k: report[k] for k in ("minutes", "train_examples")} | {"last": report["history"][-1]}))
    print(f"model: {Path(args.output) / 'garment_parser.onnx'}", file=sys.stderr)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    engine = SearchEngine.open(args.db)
    info = {
        "db": args.db,
        "garments": engine.store.count(),
        "categories": engine.store.categories(),
        "manifest": engine.store.read_manifest(),
    }
    print(json.dumps(info, indent=2, ensure_ascii=False))
    return 0


def cmd_demo_catalog(args: argparse.Namespace) -> int:
    from fashion_search.demo import write_fashion_mnist_catalog

    root = write_fashion_mnist_catalog(args.out, per_class=args.per_class, source=args.source)
    print(root)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn  # the web layer's dependencies load only for this command

    from fashion_search.web import Settings, create_app

    settings = Settings(max_upload_bytes=int(args.max_upload_mb * 2**20))
    if args.threads:
        settings.search_threads = args.threads
    app = create_app(args.db, settings)  # models load here, before the first request
    print(f"serving {args.db} at http://{args.host}:{args.port}/  (API docs: /docs; Ctrl-C stops)",
          file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="debug" if args.verbose else "info",
                access_log=not args.no_access_log)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fashion-search", description="Visual search for fashion catalogs.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("index", help="index (or refresh) a catalog")
    _add_catalog_args(p)
    p.add_argument("--db", required=True, help="index location: a path or lancedb://path")
    _add_model_args(p)
    _add_crop_arg(p)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--keep-missing", action="store_true", help="keep indexed images that are no longer in the catalog")
    p.add_argument("--all-garments", action="store_true",
                   help="index every garment found in a photo (default: its main garment and those of the "
                        "classes its category holds)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_index)

    p = sub.add_parser("search", help="find products like the garments in photos")
    p.add_argument("images", nargs="+", help="query photo(s)")
    p.add_argument("--db", required=True)
    p.add_argument("-k", type=int, default=12, help="results per garment (default 12)")
    p.add_argument("--category", help="only products of this catalog category")
    p.add_argument("--any-class", action="store_true",
                   help="let a garment match catalog items of any garment class (default: only the categories "
                        "that hold its class, and there garments of its class or a lookalike one)")
    p.add_argument("--json", action="store_true", help="one JSON object per query image per line")
    _add_model_args(p)
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("eval", help="measure retrieval quality on a labelled catalog")
    _add_catalog_args(p, positional=False)
    p.add_argument("--db", required=True)
    _add_model_args(p)
    _add_crop_arg(p)
    p.add_argument("--labels", default="category", help="comma-separated label columns for precision (default: category)")
    p.add_argument("--recall-at", default="1,5,10")
    p.add_argument("--precision-at", default="5,10")
    p.add_argument("--any-class", action="store_true",
                   help="measure search with --any-class (default: class-aware search, as search does)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("detect", help="find, classify and segment the garments in photos (no index needed)")
    p.add_argument("images", nargs="+", help="photo(s)")
    p.add_argument("--draw", metavar="OUT.png", help="save the photo with each garment outlined and labelled")
    p.add_argument("--json", action="store_true", help="one JSON object per photo, masks run-length encoded")
    _add_model_args(p)
    p.set_defaults(func=cmd_detect)

    p = sub.add_parser("train-parser", help="train the garment parser on Clothing Co-Parsing (+ product shots)")
    p.add_argument("--ccp", help="Clothing Co-Parsing folder (photos/, masks/, labels.csv)")
    p.add_argument("--kaggle", help="folder of plain-background product shots with labels.csv (articleType)")
    p.add_argument("--examples", help="train on a pack written by --write-examples instead of --ccp/--kaggle "
                                      "(a GPU machine without the datasets)")
    p.add_argument("--write-examples", metavar="FILE",
                   help="write the examples --ccp/--kaggle give to FILE (one zip) and stop, without training")
    p.add_argument("--output", help="folder for the checkpoint, the ONNX model and training.json")
    p.add_argument("--minutes", type=float, default=0.0,
                   help="time budget for training: fewer than --epochs where the second epoch shows they will "
                        "not fit (the epochs run are recorded in training.json; default 0: no budget)")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--products-per-class", type=int, default=60)
    p.add_argument("--worn-per-class", type=int, default=0,
                   help="add up to N Kaggle photos per class of a garment worn by a model, labelled by --teacher and "
                        "corrected by their article type (classes with lookalikes only; default 0: none)")
    p.add_argument("--teacher", help="garment parser ONNX model that labels the --worn-per-class photos "
                                     "(default: the shipped one)")
    p.add_argument("--lr", type=float, default=DECODER_LR, help=f"decoder learning rate (default {DECODER_LR})")
    p.add_argument("--backbone-lr", type=float, default=BACKBONE_LR,
                   help=f"backbone learning rate (default {BACKBONE_LR})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: all cores)")
    p.add_argument("--limit", type=int, default=0, help="use only the first N street photos (smoke runs, learning curves; validation during training then takes 10 photos)")
    p.add_argument("--device", default="cpu", help="torch device to train on, e.g. cuda (default: cpu)")
    p.add_argument("--frozen-blocks", type=int, default=5,
                   help="backbone blocks kept as they start, ImageNet's or --init's weights (default 5 of 16, for 2-core CPUs; "
                        "0 trains them all, worth it on a GPU)")
    p.add_argument("--loader-threads", type=int, default=0,
                   help="augment training views on N threads, one batch ahead, each view seeded on its own "
                        "(for GPU training, where augmenting in line would leave the GPU waiting; default 0: "
                        "in line, the random stream the shipped model was trained with)")
    p.add_argument("--loader-processes", type=int, default=0,
                   help="augment in N forked processes instead of threads, the same views as --loader-threads "
                        "makes (PIL holds the GIL for much of a view: threads stop helping at about two, "
                        "processes use every core of a GPU machine)")
    p.add_argument("--init", help="parser.pt checkpoint, or a garment_parser.onnx this project exported (the shipped "
                                  "one, say), to start from instead of ImageNet weights alone (only its backbone, "
                                  "where its decoder is of another kind)")
    p.add_argument("--decoder", default="pyramid",
                   help="decoder on the backbone: pyramid (the first parser's) or context (sees the whole photo)")
    p.add_argument("--backbone", default="efficientnet-lite0",
                   help="ImageNet backbone: efficientnet-lite0 (the shipped parser's), efficientnet-lite1 or "
                        "efficientnet-lite2 (larger; their weights come with the export extra)")
    p.add_argument("--jaccard-weight", type=float, default=0.0,
                   help="add this much soft-Jaccard (IoU) loss to cross-entropy (default 0: cross-entropy only)")
    p.add_argument("--hue", type=float, default=0.0,
                   help="turn the hue of garment pixels (not skin, hair or background) by up to this fraction of the "
                        "colour circle in each training view, one turn per view (0.5: any hue; default 0: none)")
    p.set_defaults(func=cmd_train_parser)

    p = sub.add_parser("info", help="what an index holds")
    p.add_argument("--db", required=True)
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("demo-catalog", help="write the Fashion-MNIST demo catalog (Debian dataset-fashion-mnist)")
    p.add_argument("out", help="folder to write the catalog to")
    p.add_argument("--per-class", type=int, default=100, help="products per article type (default 100)")
    p.add_argument("--source", default="/usr/share/datasets/fashion-mnist", help="folder with the idx files")
    p.set_defaults(func=cmd_demo_catalog)

    p = sub.add_parser("serve", help="serve the search page and the JSON API over an index")
    p.add_argument("--db", required=True)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-upload-mb", type=float, default=10.0, help="largest photo accepted (default 10)")
    p.add_argument("--threads", type=int, default=0, help="concurrent searches (default: the CPU count, at least 2)")
    p.add_argument("--no-access-log", action="store_true", help="do not log each request")
    p.set_defaults(func=cmd_serve)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (CatalogError, EmptyIndexError, IndexMismatchError, UnknownComponentError, FileNotFoundError,
            ImportError, ValueError) as exc:
        # User-facing problems (bad paths, missing models or extras, bad checkpoints) get one
        # line; -v shows the traceback for bug reports.
        if args.verbose:
            raise
        print(f"fashion-search: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
