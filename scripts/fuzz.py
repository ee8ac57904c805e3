"""Coverage-guided fuzzing (atheris) of what reads untrusted input: image decoding, the
metadata filter parser, and the checks of catalog writes.

    python scripts/fuzz.py images  --seconds 600 [--corpus DIR]
    python scripts/fuzz.py filters --seconds 600
    python scripts/fuzz.py writes  --seconds 600

``images`` feeds bytes to ``load_image`` (what index runs, search, detect and the API decode
with): an :class:`ImageError` is the documented answer, anything else is a finding. It is seeded
with the robustness corpus and mutates it (the decoders are C without coverage hooks). ``filters`` feeds text to ``parse_filter``: a :class:`FilterError` is
the answer to bad text. Text that parses must also translate for both stores, evaluate on sample
products, and keep its meaning through ``negation_normal_form``. ``writes`` feeds bytes to what a
catalog write's JSON goes through (``parse_json``, then ``check_product_fields`` as metadata and
``check_bulk_entry`` as a bulk listing's product): a :class:`CatalogError` is the answer, and what
passes must be storable (UTF-8, JSON) and be counted and taken back exactly by the metadata
columns a write updates. A finding stops the run with its
traceback and the input that caused it (saved under ``--artifacts``); the exit status is
non-zero then. The suite runs each target briefly (tests/robustness/test_fuzz.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

try:
    import atheris
except ImportError:  # pragma: no cover - the dev extra installs it on x86_64 Linux
    sys.exit("atheris is not installed: pip install -e '.[dev]' (x86_64 Linux)")

# Each target loads only what it needs, and only the filter parser is instrumented (pure Python:
# coverage guides the fuzzer there). The image target mutates inputs for Pillow's decoders,
# which are C built without coverage hooks. A process that had instrumented any module (the
# whole image module, or only the filter parser beside it) saw atheris's own memory grow
# ~10-15 KB per image input until libFuzzer stopped at 3 GB, while a process with none stays
# flat (docs/robustness.md).
if "filters" in sys.argv[1:2]:
    with atheris.instrument_imports(include=["fashion_search.store.filters"]):
        from fashion_search.store.filters import (
            FilterError,
            MetadataColumns,
            evaluate,
            negation_normal_form,
            parse_filter,
        )
if "writes" in sys.argv[1:2]:
    with atheris.instrument_imports(include=["fashion_search.catalog.validation"]):
        from fashion_search.catalog.validation import check_bulk_entry, check_product_fields, parse_json
    from fashion_search.errors import CatalogError
    from fashion_search.store.filters import MetadataColumns, metadata_tags
from fashion_search.errors import ImageError  # noqa: E402
from fashion_search.images import load_image  # noqa: E402

# Small enough that no input makes the fuzzer hold gigabytes; the cap itself is under test.
MAX_PIXELS = 4_000_000
PRODUCTS = [
    {"brand": "Nike", "price": "30", "colour": "Red", "base colour": "Navy"},
    {"brand": "Zara", "price": 120, "size": "XL"},
    {"price": "not a number", "brand": ""},
    {},
]
COLUMNS = (
    MetadataColumns.learn(PRODUCTS + [{"price": 5}, {"size": "38"}, {"colour": "Blue"}])
    if "filters" in sys.argv[1:2]
    else None
)
SEED_FILTERS = [
    'brand = "Nike" and price < 50',
    "colour in ('Red', 'Blue') or not size = 'XL'",
    "price between 10 and 100 and `base colour` != 'Navy'",
    "not (brand = 'Zara' or price >= 100)",
]


def fuzz_image(data: bytes) -> None:
    try:
        load_image(data, max_pixels=MAX_PIXELS)
    except ImageError:
        pass


def fuzz_filter(data: bytes) -> None:
    text = atheris.FuzzedDataProvider(data).ConsumeUnicodeNoSurrogates(400)
    try:
        tree = parse_filter(text, COLUMNS)
    except FilterError:
        return
    from fashion_search.store.lance import lance_filter
    from fashion_search.store.postgres import postgres_filter

    lance_filter(tree)
    postgres_filter(tree, {})
    normal = negation_normal_form(tree)
    for product in PRODUCTS:
        if bool(evaluate(tree, product)) != bool(evaluate(normal, product)):
            raise AssertionError(f"negation_normal_form changed the meaning of {text!r} for {product}")


SEED_WRITES = [
    '{"brand": "Nike", "price": 49.9, "sizes": null, "new": true}',
    '{"a": 9007199254740993, "b": "\\ud800", "c": 1e400}',
    "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
    '{"product_id": "p1", "category": "Tops", "metadata": {"x": 1}, "images": ["f1", "f1"]}',
]


def fuzz_write(data: bytes) -> None:
    try:
        value = parse_json(data, "metadata")
    except CatalogError:
        return
    try:
        check_bulk_entry(value)
    except CatalogError:
        pass
    try:
        metadata = check_product_fields("p1", "Tops", value)
    except CatalogError:
        return
    json.dumps(metadata, ensure_ascii=False).encode("utf-8")  # every store can hold it
    metadata_tags(metadata)
    counted = MetadataColumns.learn([metadata, metadata])
    if counted.updated(removed=[metadata]).to_dict() != MetadataColumns.learn([metadata]).to_dict():
        raise AssertionError(f"taking back {metadata!r} did not undo counting it")
    if counted.updated(removed=[metadata, metadata]).columns:
        raise AssertionError(f"columns of {metadata!r} outlived its products")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("target", choices=["images", "filters", "writes"])
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--corpus", help="seed inputs (default: the robustness corpus, or the sample filters)")
    ap.add_argument("--artifacts", default=str(ROOT / "artifacts" / "fuzz"))
    args = ap.parse_args()

    seeds = Path(args.corpus) if args.corpus else Path(tempfile.mkdtemp(prefix=f"fuzz-{args.target}-"))
    if not args.corpus:
        if args.target == "images":
            from tests.robustness.corpus import write_corpus

            write_corpus(seeds)
            (seeds / "corpus.json").unlink()
            for big in ("huge-20000.png", "bomb.png"):
                (seeds / big).unlink()  # refused at once; they would only slow the fuzzer
        else:
            for n, text in enumerate(SEED_FILTERS if args.target == "filters" else SEED_WRITES):
                (seeds / f"seed-{n}").write_bytes(text.encode())
    artifacts = Path(args.artifacts)
    artifacts.mkdir(parents=True, exist_ok=True)
    target = {"images": fuzz_image, "filters": fuzz_filter, "writes": fuzz_write}[args.target]
    if args.target == "filters":  # loaded once, before the clock starts
        import fashion_search.store.lance  # noqa: F401
        import fashion_search.store.postgres  # noqa: F401
    argv = [
        sys.argv[0],
        str(seeds),
        f"-max_total_time={args.seconds}",
        f"-artifact_prefix={artifacts}/{args.target}-",
        "-rss_limit_mb=3072",
        f"-max_len={ {'images': 262144, 'filters': 1024, 'writes': 4096}[args.target] }",
        "-print_final_stats=1",
        "-keep_seed=1",  # the decoders give no coverage: without it the seeds are dropped as redundant
    ]
    atheris.Setup(argv, target)
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
