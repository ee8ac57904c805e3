"""Train the garment head on cached head inputs, and export it as ONNX.

Objective (docs/experiments/2026-12-01-garment-head.md):

* worn-to-shop: symmetric InfoNCE between a batch's worn crops and their product photos, every
  other product of the batch a negative;
* product self-views: the same between product photos and their augmented second views, so that
  another photo of one product (a detail, a back, a re-shoot) lands near it;
* product kinds: article type and colour classifiers on labelled product shots (Kaggle), read
  off the normalised embedding, so that garments the pairs never show (shoes, bags, trousers)
  keep their kind and colour apart.

Checkpoints after every epoch, so ``fashion-search train embedder`` resumes where it stopped.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

log = logging.getLogger(__name__)


@dataclass
class HeadConfig:
    dim: int = 256
    hidden: int = 1024
    epochs: int = 20
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    temperature: float = 0.05
    input_dropout: float = 0.1
    self_view_weight: float = 0.5
    type_weight: float = 1.0
    colour_label_weight: float = 1.0
    seed: int = 0


@dataclass
class HeadData:
    worn: np.ndarray
    product: np.ndarray
    product_view: np.ndarray
    product_ids: list[str]
    shots: np.ndarray  # (m, d) labelled product shots; may be empty
    shot_types: list[str]
    shot_colours: list[str]


def build_head(in_dim: int, config: HeadConfig):
    from torch import nn

    return nn.Sequential(
        nn.Linear(in_dim, config.hidden),
        nn.BatchNorm1d(config.hidden),
        nn.ReLU(),
        nn.Dropout(0.2),
        nn.Linear(config.hidden, config.dim),
    )


def _classes(labels: Sequence[str], min_count: int = 5) -> tuple[list[str], np.ndarray]:
    """Labels seen at least ``min_count`` times, and each example's class (-1: left out)."""
    values, counts = np.unique(np.asarray(labels, dtype=object).astype(str), return_counts=True)
    names = [str(v) for v, c in zip(values, counts) if c >= min_count and v]
    index = {name: i for i, name in enumerate(names)}
    return names, np.array([index.get(str(label), -1) for label in labels], dtype=np.int64)


def batches_of_distinct_products(product_ids: Sequence[str], batch_size: int, rng: np.random.Generator) -> list:
    """Shuffled batches in which no product appears twice: two rows of one product in a batch
    would each count the other as a negative."""
    order = rng.permutation(len(product_ids))
    batches, current, seen = [], [], set()
    held = []
    for i in order:
        if product_ids[i] in seen:
            held.append(i)
            continue
        current.append(i)
        seen.add(product_ids[i])
        if len(current) == batch_size:
            batches.append(np.array(current))
            current, seen = [], set()
            pending, held = held, []
            for j in pending:
                if product_ids[j] in seen:
                    held.append(j)
                else:
                    current.append(j)
                    seen.add(product_ids[j])
    return batches  # a last partial batch is dropped: BatchNorm and InfoNCE want full batches


def train_head(
    data: HeadData, config: HeadConfig, run_dir: Path, device: str = "cpu", threads: int = 0
) -> tuple[Any, dict[str, Any]]:
    """Train (resuming from ``run_dir/checkpoint.pt`` when its config matches) and return the
    head in eval mode with a summary of the run."""
    import torch
    import torch.nn.functional as F

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    in_dim = data.worn.shape[1]
    head = build_head(in_dim, config).to(device)
    type_names, type_ids = _classes(data.shot_types)
    colour_names, colour_ids = _classes(data.shot_colours)
    type_classifier = torch.nn.Linear(config.dim, max(1, len(type_names))).to(device)
    colour_classifier = torch.nn.Linear(config.dim, max(1, len(colour_names))).to(device)
    log_scale = torch.nn.Parameter(torch.tensor(float(np.log(1 / config.temperature)), device=device))
    params = [*head.parameters(), *type_classifier.parameters(), *colour_classifier.parameters(), log_scale]
    optimiser = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = len(data.worn) // config.batch_size
    if steps_per_epoch < 1:
        raise ValueError(f"{len(data.worn)} pairs do not fill one batch of {config.batch_size}; lower --batch-size")
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, config.lr, total_steps=config.epochs * steps_per_epoch)

    worn = torch.from_numpy(data.worn).to(device)
    product = torch.from_numpy(data.product).to(device)
    view = torch.from_numpy(data.product_view).to(device)
    labelled = np.nonzero((type_ids >= 0) | (colour_ids >= 0))[0] if len(data.shots) else np.zeros(0, np.int64)
    shots = torch.from_numpy(data.shots).to(device) if len(labelled) else None
    shot_type = torch.from_numpy(type_ids).to(device)
    shot_colour = torch.from_numpy(colour_ids).to(device)

    checkpoint = run_dir / "checkpoint.pt"
    history: list[dict[str, float]] = []
    start_epoch = 0
    if checkpoint.exists():
        state = torch.load(checkpoint, map_location=device, weights_only=False)
        if state["config"] == asdict(config) and state["in_dim"] == in_dim:
            head.load_state_dict(state["head"])
            type_classifier.load_state_dict(state["type_classifier"])
            colour_classifier.load_state_dict(state["colour_classifier"])
            log_scale.data.copy_(state["log_scale"])
            optimiser.load_state_dict(state["optimiser"])
            schedule.load_state_dict(state["schedule"])
            rng.bit_generator.state = state["rng"]
            torch.set_rng_state(state["torch_rng"])
            history, start_epoch = state["history"], state["epoch"]
            log.info("resuming after epoch %d", start_epoch)
        else:
            log.warning("%s is from another configuration: starting afresh", checkpoint)

    def embed(x):
        return F.normalize(head(F.dropout(x, config.input_dropout, training=True)), dim=1)

    def info_nce(a, b):
        logits = log_scale.exp() * a @ b.T
        target = torch.arange(len(a), device=a.device)
        return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2

    started = time.monotonic()
    for epoch in range(start_epoch, config.epochs):
        head.train()
        sums = {"pairs": 0.0, "self": 0.0, "kinds": 0.0}
        batches = batches_of_distinct_products(data.product_ids, config.batch_size, rng)[:steps_per_epoch]
        for rows in batches:
            index = torch.from_numpy(rows).to(device)
            z_worn, z_product = embed(worn[index]), embed(product[index])
            pair_loss = info_nce(z_worn, z_product)
            loss = pair_loss
            sums["pairs"] += float(pair_loss.detach())
            if config.self_view_weight:
                self_loss = info_nce(z_product, embed(view[index]))
                loss = loss + config.self_view_weight * self_loss
                sums["self"] += float(self_loss.detach())
            if shots is not None and (config.type_weight or config.colour_label_weight):
                pick = torch.from_numpy(rng.choice(labelled, config.batch_size)).to(device)
                z_shot = embed(shots[pick])
                # Classifiers on the unit vector (scaled: cosine logits train slowly otherwise).
                kind_loss = config.type_weight * F.cross_entropy(
                    type_classifier(z_shot) * 10, shot_type[pick], ignore_index=-1
                ) + config.colour_label_weight * F.cross_entropy(
                    colour_classifier(z_shot) * 10, shot_colour[pick], ignore_index=-1
                )
                loss = loss + kind_loss
                sums["kinds"] += float(kind_loss.detach())
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
        history.append({"epoch": epoch + 1, **{k: round(v / len(batches), 4) for k, v in sums.items()}})
        log.info("epoch %d/%d %s (%.0f s)", epoch + 1, config.epochs, history[-1], time.monotonic() - started)
        state = {
            "config": asdict(config),
            "in_dim": in_dim,
            "epoch": epoch + 1,
            "head": head.state_dict(),
            "type_classifier": type_classifier.state_dict(),
            "colour_classifier": colour_classifier.state_dict(),
            "log_scale": log_scale.detach(),
            "optimiser": optimiser.state_dict(),
            "schedule": schedule.state_dict(),
            "rng": rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
            "history": history,
        }
        torch.save(state, checkpoint.with_suffix(".tmp"))
        os.replace(checkpoint.with_suffix(".tmp"), checkpoint)
    head.eval()
    summary = {
        "config": asdict(config),
        "pairs": len(data.worn),
        "products": len(set(data.product_ids)),
        "labelled_shots": int(len(labelled)),
        "article_types": len(type_names),
        "colours": len(colour_names),
        "history": history,
        "train_seconds_this_run": round(time.monotonic() - started, 1),
    }
    return head.cpu(), summary


def export_head(head: Any, in_dim: int, output: Path, metadata: dict[str, str]) -> Path:
    """The head as a self-contained ONNX file (input ``features``, output ``embedding``) with
    ``metadata`` under the project's prefix."""
    import torch

    from fashion_search.embed.garment_head import HEAD_INPUT, HEAD_OUTPUT
    from fashion_search.training.embedder.export import save_onnx

    return save_onnx(
        head.eval(),
        torch.zeros(2, in_dim),
        output,
        (HEAD_INPUT, HEAD_OUTPUT),
        "input",
        dict(sorted(metadata.items())),
        "fashion-search train embedder",
    )


def verify_export(head: Any, onnx_path: Path, in_dim: int) -> float:
    """Largest difference between torch and onnxruntime outputs on random inputs."""
    import torch

    from fashion_search.embed.garment_head import HEAD_INPUT, HEAD_OUTPUT
    from fashion_search.runtime import onnx_session

    model = onnx_session(onnx_path, 1)
    x = np.random.default_rng(0).standard_normal((5, in_dim)).astype(np.float32) * 0.05
    with torch.no_grad():
        expected = head(torch.from_numpy(x)).numpy()
    (got,) = model.run([HEAD_OUTPUT], {HEAD_INPUT: x})
    return float(np.abs(got - expected).max())


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


__all__ = ["HeadConfig", "HeadData", "export_head", "train_head", "verify_export"]
