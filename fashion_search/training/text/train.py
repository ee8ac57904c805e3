"""Train the text encoder: words mapped into the space of the garment vectors an index stores.

``fashion-search train text-encoder --kaggle ../shared/data/kaggle --output runs/text``

* Image side: frozen. Each Kaggle product shot of the training half goes through the shipped
  pipeline as indexing takes it (parser, the photo's main garment, the garment head); its vector
  is what an index of that shot stores. Computed once and cached in the run folder.
* Text side: all-MiniLM-L6-v2, frozen (its sentence vectors of every training text are computed
  once), then a tower (two layers) trained here.
* Texts: each product's display name, and captions built from its labels (colour, article
  type, gender, usage). Objective: symmetric InfoNCE between texts and garment vectors in a
  batch, where every product a text describes is a positive (a caption such as "blue tshirts"
  describes many).
* Export: MiniLM and the tower as one ONNX graph (token ids and mask in, unit vector out),
  weights quantised to 8 bits, with the tokenizer beside it; the file records the sha256 of the
  embedder (and its backbone) whose space it maps into.

No text of the text-validation products (``splits/kaggle_text_validation_ids.txt``: validation
half products whose name no training product has) is seen here.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from fashion_search.garments.taxonomy import KAGGLE_BASIC_COLOUR

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[3]
TEXT_VALIDATION_IDS = ROOT / "splits" / "kaggle_text_validation_ids.txt"
CHUNK = 256


@dataclass
class TextConfig:
    hidden: int = 512
    epochs: int = 30
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    temperature: float = 0.05  # initial; learned
    name_share: float = 0.5  # of the examples of an epoch, names; the rest captions
    dropout: float = 0.1
    max_length: int = 32  # tokens; Kaggle names have at most 22
    seed: int = 0


@dataclass(frozen=True)
class Product:
    id: str
    image: Path
    name: str
    article_type: str
    colour: str
    gender: str
    usage: str

    @property
    def basic_colour(self) -> Optional[str]:
        return KAGGLE_BASIC_COLOUR.get(self.colour)

    def captions(self) -> list[str]:
        """Texts its labels say of it, as a shopper might type them."""
        texts = [f"{self.colour} {self.article_type}", f"{self.gender} {self.article_type}", self.article_type]
        if self.usage:
            texts.append(f"{self.usage} {self.article_type}")
        if self.basic_colour:
            texts += [
                f"{self.basic_colour} {self.article_type}",
                f"{self.gender} {self.basic_colour} {self.article_type}",
            ]
        return [" ".join(t.split()) for t in texts if t.strip()]


def kaggle_products(root: str | Path) -> list[Product]:
    """Every Kaggle product shot with a display name (``labels.csv``)."""
    root = Path(root)
    with open(root / "labels.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return [
        Product(
            r["id"],
            root / r["image"],
            " ".join(r["productDisplayName"].split()),
            r["articleType"],
            r["baseColour"],
            r["gender"],
            r.get("usage", ""),
        )
        for r in rows
        if r.get("productDisplayName", "").strip()
    ]


def text_validation(products: Sequence[Product], validation_ids: set[str]) -> list[Product]:
    """The validation half's products whose name no training-half product has: no model trains
    on a text-validation product or its name."""
    training_names = {p.name.lower() for p in products if p.id not in validation_ids}
    return [p for p in products if p.id in validation_ids and p.name.lower() not in training_names]


def garment_vectors(
    products: Sequence[Product], pipeline: Any, cache: Path, workers: int = 2
) -> tuple[np.ndarray, list[bool]]:
    """Each product shot's stored vector (its main garment, through the shipped pipeline), and
    whether it could be read; computed in chunks saved as they finish, so a run resumes."""
    from fashion_search.category_classes import main_garment
    from fashion_search.errors import ImageError

    cache.mkdir(parents=True, exist_ok=True)
    detector = pipeline.detector.for_parallel_use() if workers > 1 else pipeline.detector
    choose: Callable = lambda garments: [main_garment(garments)]  # noqa: E731
    vectors, kept = [], []

    def prepare(product: Product) -> Any:
        try:
            return pipeline.prepare(product.image, detector, choose)
        except ImageError:
            return None

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for start in range(0, len(products), CHUNK):
            chunk = products[start : start + CHUNK]
            path = cache / f"vectors-{start:06d}-{len(chunk)}.npz"
            if path.is_file():
                saved = np.load(path)
                vectors.append(saved["vectors"])
                kept += saved["kept"].tolist()
                continue
            prepared = list(pool.map(prepare, chunk))
            good = [p for p in prepared if p is not None]
            embedded = iter(pipeline.embed_prepared(good))
            rows = [next(embedded)[0] if p is not None else np.zeros(pipeline.dim, np.float32) for p in prepared]
            chunk_kept = [p is not None for p in prepared]
            np.savez(path, vectors=np.stack(rows), kept=np.array(chunk_kept))
            vectors.append(np.stack(rows))
            kept += chunk_kept
            log.info("garment vectors: %d/%d", start + len(chunk), len(products))
    return np.concatenate(vectors).astype(np.float32), kept


def tokenize(texts: Sequence[str], max_length: int) -> tuple[np.ndarray, np.ndarray]:
    """Token ids and attention masks, as serving computes them."""
    from fashion_search.embed.text_encoder import load_tokenizer
    from fashion_search.training.text.minilm import minilm_folder

    tokenizer = load_tokenizer(minilm_folder() / "tokenizer.json", max_length)
    encoded = tokenizer.encode_batch(list(texts))
    return np.asarray([e.ids for e in encoded], np.int64), np.asarray([e.attention_mask for e in encoded], np.int64)


def sentence_vectors(minilm: Any, texts: Sequence[str], max_length: int, batch: int = 256) -> np.ndarray:
    """MiniLM's unit sentence vectors of ``texts``."""
    import torch

    out = []
    with torch.no_grad():
        for start in range(0, len(texts), batch):
            ids, mask = tokenize(texts[start : start + batch], max_length)
            out.append(minilm(torch.from_numpy(ids), torch.from_numpy(mask)).numpy())
    return np.concatenate(out) if out else np.zeros((0, minilm.dim), np.float32)


def build_tower(in_dim: int, out_dim: int, config: TextConfig) -> Any:
    from torch import nn

    return nn.Sequential(
        nn.Linear(in_dim, config.hidden), nn.GELU(), nn.Dropout(config.dropout), nn.Linear(config.hidden, out_dim)
    )


def train_tower(
    text_vectors: np.ndarray,
    texts_of: Sequence[Sequence[int]],
    name_of: Sequence[int],
    garments: np.ndarray,
    config: TextConfig,
) -> tuple[Any, dict[str, Any]]:
    """The tower, trained so that product ``i``'s texts (its name ``name_of[i]``, its captions
    ``texts_of[i]``, rows of ``text_vectors``) land near ``garments[i]``."""
    import torch
    from torch.nn import functional as F

    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    E = torch.from_numpy(text_vectors)
    G = F.normalize(torch.from_numpy(garments), dim=1)
    described: dict[int, set[int]] = {}  # text -> the products it describes
    for product, texts in enumerate(texts_of):
        for t in list(texts) + [name_of[product]]:
            described.setdefault(t, set()).add(product)
    tower = build_tower(E.shape[1], G.shape[1], config)
    scale = torch.nn.Parameter(torch.tensor(float(np.log(1 / config.temperature))))
    optimiser = torch.optim.AdamW(list(tower.parameters()) + [scale], lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, config.epochs)
    history = []
    for epoch in range(config.epochs):
        tower.train()
        order = rng.permutation(len(texts_of))
        losses = []
        for start in range(0, len(order), config.batch_size):
            products = order[start : start + config.batch_size]
            chosen = [
                name_of[p] if rng.random() < config.name_share or not texts_of[p] else int(rng.choice(texts_of[p]))
                for p in products
            ]
            positives = torch.tensor([[q in described[t] for q in products] for t in chosen], dtype=torch.float32)
            logits = scale.exp().clamp(max=100) * F.normalize(tower(E[chosen]), dim=1) @ G[products].T
            loss = (
                -(positives / positives.sum(1, keepdim=True) * F.log_softmax(logits, 1)).sum(1).mean()
                - (positives.T / positives.T.sum(1, keepdim=True) * F.log_softmax(logits.T, 1)).sum(1).mean()
            ) / 2
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            losses.append(float(loss.detach()))
        schedule.step()
        history.append({"epoch": epoch + 1, "loss": round(float(np.mean(losses)), 4)})
        log.info("epoch %d: loss %.4f", epoch + 1, history[-1]["loss"])
    return tower.eval(), {"history": history, "temperature": round(float(1 / scale.exp()), 4)}


class _TextGraph:
    """MiniLM, the tower and the final normalisation as one module (what is exported)."""

    def __new__(cls, minilm: Any, tower: Any) -> Any:
        import torch
        from torch.nn import functional as F

        class TextGraph(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.minilm, self.tower = minilm, tower

            def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
                return F.normalize(self.tower(self.minilm(input_ids, attention_mask)), dim=-1)

        return TextGraph().eval()


def export_text_encoder(
    minilm: Any, tower: Any, output: Path, metadata: dict[str, str], max_length: int
) -> dict[str, Any]:
    """``output`` (``text_encoder.onnx``: weights quantised to 8 bits) and, beside it, the
    tokenizer (``text_tokenizer.json``); how far the quantised file's vectors are from torch's."""
    import onnx
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from fashion_search.embed.text_encoder import INPUTS, OUTPUT
    from fashion_search.runtime import METADATA_PREFIX, onnx_session, sha256_file
    from fashion_search.training.embedder.export import IR_VERSION, OPSET, strip_export_metadata
    from fashion_search.training.text.minilm import minilm_folder

    output.parent.mkdir(parents=True, exist_ok=True)
    tokenizer = output.parent / "text_tokenizer.json"
    shutil.copyfile(minilm_folder() / "tokenizer.json", tokenizer)
    graph = _TextGraph(minilm, tower)
    ids, mask = tokenize(["a blue shirt", "red floral dress for women"], max_length)
    full = output.with_name(output.stem + ".fp32.onnx")
    batch, length = torch.export.Dim("batch"), torch.export.Dim("length", max=max_length)
    torch.onnx.export(
        graph,
        (torch.from_numpy(ids), torch.from_numpy(mask)),
        str(full),
        input_names=list(INPUTS),
        output_names=[OUTPUT],
        opset_version=OPSET,
        dynamo=True,
        external_data=False,
        dynamic_shapes={"input_ids": {0: batch, 1: length}, "attention_mask": {0: batch, 1: length}},
    )
    proto = onnx.load(str(full))
    strip_export_metadata(proto)
    proto.ir_version = IR_VERSION
    onnx.save(proto, str(full))
    tmp = output.with_name(output.name + ".tmp")
    # Per-channel scales: sentence vectors within cosine 0.99 of float32 (0.96 with one scale per
    # tensor), at the same 23 MB (docs/experiments/2026-12-06-text-search.md).
    quantize_dynamic(
        str(full), str(tmp), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gather"], per_channel=True
    )
    proto = onnx.load(str(tmp))
    del proto.metadata_props[:]
    values = {**metadata, "max_length": str(max_length), "tokenizer_sha256": sha256_file(tokenizer)}
    for key, value in sorted(values.items()):
        entry = proto.metadata_props.add()
        entry.key, entry.value = METADATA_PREFIX + key, str(value)
    proto.producer_name = "fashion-search train text-encoder"
    proto.ir_version = IR_VERSION
    onnx.save(proto, str(tmp))
    os.replace(tmp, output)
    # How much 8 bits cost: the quantised file against torch on sample texts.
    samples = ["Quechua Men Sweat Proof Blue T-shirt", "black leather handbag", "crimson dress", "watch"]
    ids, mask = tokenize(samples, max_length)
    with torch.no_grad():
        expected = graph(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
    (got,) = onnx_session(output, 1).run([OUTPUT], {INPUTS[0]: ids, INPUTS[1]: mask})
    got = got / np.linalg.norm(got, axis=1, keepdims=True)
    full.unlink()
    return {
        "min_cosine_int8_vs_torch": round(float((got * expected).sum(1).min()), 4),
        "megabytes": round(output.stat().st_size / 1e6, 1),
    }


def train_text_encoder(
    kaggle: Path, output: Path, config: TextConfig, validation_ids: set[str], workers: int = 2
) -> dict[str, Any]:
    """Train, export and measure on features (the served figures come from search:
    ``scripts/evaluate_text.py``); writes ``output/text_encoder.onnx``, its tokenizer and
    ``output/summary.json``."""
    import torch

    from fashion_search.pipeline import GarmentPipeline
    from fashion_search.runtime import sha256_file
    from fashion_search.training.text.minilm import load_minilm, minilm_folder

    started = time.monotonic()
    torch.set_num_threads(max(1, workers))
    products = kaggle_products(kaggle)
    training = [p for p in products if p.id not in validation_ids]
    held_out = text_validation(products, validation_ids)
    pipeline = GarmentPipeline(threads=1 if workers > 1 else None)
    garments, kept = garment_vectors(training, pipeline, output / "cache" / "training")
    training = [p for p, ok in zip(training, kept) if ok]
    garments = garments[np.asarray(kept)]

    texts: list[str] = []
    index: dict[str, int] = {}

    def text_id(text: str) -> int:
        key = text.lower()
        if key not in index:
            index[key] = len(texts)
            texts.append(text)
        return index[key]

    name_of = [text_id(p.name) for p in training]
    texts_of = [[text_id(c) for c in p.captions()] for p in training]
    minilm = load_minilm()
    vectors = sentence_vectors(minilm, texts, config.max_length)
    tower, summary = train_tower(vectors, texts_of, name_of, garments, config)

    identity = pipeline.embedder.identity()
    metadata = {
        "dim": str(pipeline.dim),
        "embedder": pipeline.embedder_spec.name,
        "embedder_sha256": identity.get("sha256", ""),
        "minilm_sha256": sha256_file(minilm_folder() / "model.safetensors"),
        "trained_on": "Kaggle product names and label captions, training half",
    }
    exported = export_text_encoder(minilm, tower, output / "text_encoder.onnx", metadata, config.max_length)
    result = {
        "config": asdict(config),
        "training_products": len(training),
        "training_texts": len(texts),
        "text_validation_products": len(held_out),
        **summary,
        **exported,
        "train_seconds": round(time.monotonic() - started, 1),
    }
    (output / "summary.json").write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    return result


__all__ = [
    "Product",
    "TextConfig",
    "export_text_encoder",
    "garment_vectors",
    "kaggle_products",
    "text_validation",
    "train_text_encoder",
    "train_tower",
]
