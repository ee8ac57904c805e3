"""``fashion-search train parser``: train the garment parser and export it to ONNX.

Seeded end to end (data order, augmentation, initialisation), so a rerun on the same machine
reproduces the same model; see the model card for the figures of the shipped one.
"""

from __future__ import annotations

import json
import logging
import math
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Optional

import numpy as np
import torch
import torch.nn.functional as F

from fashion_search.embed.preprocess import EFFICIENTNET_LITE_MEAN, EFFICIENTNET_LITE_STD
from fashion_search.garments.parser import letterbox
from fashion_search.garments.taxonomy import IGNORE, PARSER_CLASSES
from fashion_search.runtime import METADATA_PREFIX, sha256_file
from fashion_search.training.datasets import ccp_ids
from fashion_search.training.embedder.pairs import read_ids
from fashion_search.training.parser import BACKBONE_LR, DECODER_LR, data
from fashion_search.training.parser.model import ParserExport, ParserNet, calibrate_decoder_norms, load_checkpoint

if TYPE_CHECKING:
    import onnx

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    ccp_root: str
    kaggle_root: Optional[str]
    output: str
    epochs: int = 20
    batch_size: int = 8
    height: int = 448
    width: int = 288
    products_per_class: int = 60
    lr: float = DECODER_LR
    backbone_lr: float = BACKBONE_LR
    weight_decay: float = 1e-4
    frozen_blocks: int = 5
    seed: int = 0
    threads: int = 0
    limit: int = 0  # train on the first N street photos only (smoke tests)
    device: str = "cpu"  # "cuda" where a GPU is available; the shipped model was trained on the CPU
    init: Optional[str] = None  # a parser.pt to start from: training in stages
    jaccard_weight: float = 0.0  # weight of the soft-Jaccard term added to cross-entropy
    hue: float = 0.0  # garments' hue turned by up to this fraction of the colour circle (data.augment)
    loader_threads: int = 0  # augment on threads, a batch ahead (GPU training); 0: in line
    loader_processes: int = 0  # augment in forked processes instead (GPU machines with many cores)
    decoder: str = "pyramid"  # a name in model.DECODERS
    backbone: str = "efficientnet-lite0"  # a name in model.BACKBONES
    examples: Optional[str] = None  # a pack from write_training_examples, in place of ccp_root/kaggle_root
    minutes: float = 0.0  # time budget: fewer epochs than ``epochs`` where the second one shows they won't fit
    worn_per_class: int = 0  # Kaggle photos of worn garments per class, labelled by ``teacher`` (data.load_worn_shots)
    teacher: Optional[str] = None  # ONNX parser labelling them; None: the shipped one
    viton_root: Optional[str] = None  # VITON's studio photos with parse maps, mixed into every epoch
    viton_per_epoch: int = 0  # VITON photos drawn afresh each epoch; 0: all of them
    viton_height: int = 256  # VITON photos are trained at their own size, as they are parsed
    viton_width: int = 192
    exclude_ids: Optional[str] = None  # VITON ids never trained on (splits/viton_validation_ids.txt)
    # "backbone": (x - 127) / 128, what the ImageNet backbone was pretrained on; "legacy": the
    # scaling every parser before 2026-12-01 was trained with (see to_pixels).
    pixel_scaling: str = "backbone"


PIXEL_SCALINGS = ("backbone", "legacy")
# Options that change where or how fast a run goes, not the model it makes: a run resumes from its
# checkpoint when every other option is the same.
NOT_MODEL_OPTIONS = ("output", "threads", "loader_threads", "loader_processes", "device", "minutes")


def pixel_mean_std(scaling: str) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std subtracted from and dividing 0..255 pixel values. "backbone": 127 and 128, the
    -1..1 range the ImageNet backbone was pretrained on. "legacy": 127/255 and 128/255, which
    every parser before 2026-12-01 was trained and served with (inputs of about 0..508)."""
    if scaling not in PIXEL_SCALINGS:
        raise ValueError(f"pixel scaling is one of {', '.join(PIXEL_SCALINGS)}, not {scaling!r}")
    mean = np.asarray(EFFICIENTNET_LITE_MEAN, np.float32) * 255
    std = np.asarray(EFFICIENTNET_LITE_STD, np.float32) * 255
    if scaling == "legacy":
        mean, std = mean / 255, std / 255
    return mean, std


def to_pixels(batch: np.ndarray, scaling: str = "backbone") -> torch.Tensor:
    """uint8 NHWC -> float NCHW, scaled as ``scaling`` says (:func:`pixel_mean_std`); the export
    records the scaling, which is what the served parser applies."""
    mean, std = pixel_mean_std(scaling)
    return torch.from_numpy(((batch.astype(np.float32) - mean) / std).transpose(0, 3, 1, 2).copy())


def parser_metadata(size: tuple[int, int], scaling: str = "backbone") -> dict[str, str]:
    """What a parser export records for its loader: the classes it labels, the canvas it was
    trained at (h, w), and ``to_pixels``'s scaling as mean and std on the 0..1 scale of
    ``x / 255`` that every model of this project records."""
    mean, std = pixel_mean_std(scaling)

    def numbers(values: np.ndarray) -> str:
        return ",".join(repr(float(v) / 255) for v in values.astype(np.float64))

    return {
        f"{METADATA_PREFIX}model": "garment-parser",
        f"{METADATA_PREFIX}classes": ",".join(PARSER_CLASSES),
        f"{METADATA_PREFIX}input_size": f"{size[0]},{size[1]}",
        f"{METADATA_PREFIX}mean": numbers(mean),
        f"{METADATA_PREFIX}std": numbers(std),
    }


def write_metadata(proto: "onnx.ModelProto", metadata: dict[str, str]) -> None:
    """Set ``metadata`` on an ONNX model, replacing any earlier value of the same keys."""
    kept = [(p.key, p.value) for p in proto.metadata_props if p.key not in metadata]
    del proto.metadata_props[:]
    for key, value in [*kept, *sorted(metadata.items())]:
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value


def class_weights(counts: np.ndarray) -> torch.Tensor:
    """Square-root inverse frequency, relative to the median class: belts and sunglasses cover
    0.1% of the pixels and would otherwise never be predicted."""
    freq = counts / counts.sum()
    present = freq > 0
    weights = np.ones_like(freq)
    weights[present] = np.sqrt(np.median(freq[present]) / freq[present])
    return torch.tensor(np.clip(weights, 0.2, 5.0), dtype=torch.float32)


def soft_jaccard_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """1 - mean soft IoU over the classes present in the batch. Cross-entropy is dominated by
    the big regions; this term weighs a belt's IoU as much as a coat's, as the metric does."""
    valid = labels != IGNORE
    probs = torch.softmax(logits, dim=1) * valid[:, None]
    onehot = F.one_hot(torch.where(valid, labels, 0), logits.shape[1]).permute(0, 3, 1, 2).to(probs.dtype)
    onehot = onehot * valid[:, None]
    inter = (probs * onehot).sum((0, 2, 3))
    union = (probs + onehot).sum((0, 2, 3)) - inter
    present = onehot.sum((0, 2, 3)) > 0
    return 1 - ((inter + 1) / (union + 1))[present].mean()


def label_targets(weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For every label value 0..255: which classes it accepts (a class id its own class, a
    ``LABEL_SETS`` value any of its classes, ``IGNORE`` none) and its pixels' loss weight (a set's:
    the mean of its classes')."""
    from fashion_search.training.datasets import LABEL_SETS

    n = len(weights)
    allowed = torch.zeros(256, n, dtype=torch.bool)
    value_weights = torch.zeros(256)
    allowed[torch.arange(n), torch.arange(n)] = True
    value_weights[:n] = weights.cpu()
    for code, classes in LABEL_SETS.items():
        members = [PARSER_CLASSES.index(c) for c in classes]
        allowed[code, members] = True
        value_weights[code] = weights.cpu()[members].mean()
    return allowed, value_weights


def set_cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, allowed: torch.Tensor, value_weights: torch.Tensor
) -> torch.Tensor:
    """Weighted cross-entropy where a pixel's label may accept several classes: minus the log of
    the probability the network gives to any of them. Equals ``F.cross_entropy`` with class
    weights and ``ignore_index=IGNORE`` when every label is one class."""
    allowed, value_weights = allowed.to(logits.device), value_weights.to(logits.device)
    pixel_weights = value_weights[labels]
    accepted = allowed[labels].permute(0, 3, 1, 2)
    # Ignored pixels accept every class, so that their (zero-weighted) term stays finite.
    accepted = accepted | (pixel_weights == 0)[:, None]
    log_accepted = torch.logsumexp(logits.masked_fill(~accepted, float("-inf")), dim=1)
    nll = torch.logsumexp(logits, dim=1) - log_accepted
    return (pixel_weights * nll).sum() / pixel_weights.sum().clamp_min(1e-12)


def parser_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    weights: torch.Tensor,
    allowed: torch.Tensor,
    value_weights: torch.Tensor,
) -> torch.Tensor:
    """Cross-entropy, through :func:`set_cross_entropy` only for batches with set-valued labels
    (it costs more memory and time than torch's own)."""
    if bool(((labels >= len(weights)) & (labels != IGNORE)).any()):
        return set_cross_entropy(logits, labels, allowed, value_weights)
    return F.cross_entropy(logits, labels, weight=weights, ignore_index=IGNORE)


def confusion(pred: np.ndarray, truth: np.ndarray, n: int) -> np.ndarray:
    keep = truth != IGNORE
    return np.bincount(truth[keep].astype(np.int64) * n + pred[keep], minlength=n * n).reshape(n, n)


def iou_per_class(matrix: np.ndarray) -> np.ndarray:
    inter = np.diag(matrix).astype(np.float64)
    union = matrix.sum(0) + matrix.sum(1) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, np.nan)


def validate(
    net: ParserNet, examples: list[data.Example], size: tuple[int, int], scaling: str = "backbone"
) -> dict[str, float]:
    """Per-class IoU at the model's input resolution: a cheap progress signal. The reported
    figures come from ``fashion_search.training.parser.evaluate`` on the exported model, at full
    photo resolution."""
    net.eval()
    n = len(PARSER_CLASSES)
    matrix = np.zeros((n, n), np.int64)
    device = next(net.parameters()).device
    with torch.inference_mode():
        for example in examples:
            canvas, labels, _ = letterbox(example.image, example.labels, size)
            logits = net(to_pixels(np.asarray(canvas)[None], scaling).to(device))
            logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
            matrix += confusion(logits.argmax(1)[0].cpu().numpy().astype(np.int64), np.asarray(labels), n)
    net.train()
    iou = iou_per_class(matrix)
    return {name: float(iou[i]) for i, name in enumerate(PARSER_CLASSES)}


def garment_miou(iou: dict[str, float]) -> float:
    from fashion_search.garments.taxonomy import GARMENT_CLASSES

    values = [iou[c] for c in GARMENT_CLASSES if not math.isnan(iou[c])]
    return float(np.mean(values)) if values else float("nan")


def export_onnx(net: ParserNet, path: Path, scaling: str = "backbone") -> None:
    """One self-contained ONNX file whose input height and width are free (multiples of 32), so
    the parser can run small photos at their own size. The dynamo exporter keeps the sizes
    symbolic; the older tracer bakes the FPN's upsampling sizes in for the example input."""
    import onnx
    from torch.export import Dim

    net.eval()
    model = ParserExport(net).eval()
    dummy = torch.zeros(1, 3, *net.image_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.onnx")
    shapes = {"pixels": {2: 32 * Dim("h32", min=2, max=64), 3: 32 * Dim("w32", min=2, max=64)}}
    torch.onnx.export(
        model,
        (dummy,),
        str(tmp),
        input_names=["pixels"],
        output_names=["labels", "confidence"],
        dynamic_shapes=shapes,
        opset_version=18,
        dynamo=True,
        verbose=False,
    )
    proto = onnx.load(str(tmp))
    write_metadata(proto, parser_metadata(net.image_size, scaling))
    onnx.save_model(proto, str(path), save_as_external_data=False)
    tmp.unlink()
    tmp.with_name(tmp.name + ".data").unlink(missing_ok=True)


def train_parser(config: TrainConfig) -> dict:
    if not 0 <= config.hue <= 0.5:
        raise ValueError(
            f"hue turns garments by a fraction of the colour circle either way, 0 to 0.5, not {config.hue}"
        )
    pixel_mean_std(config.pixel_scaling)  # a bad name fails here, before any data is read
    out = Path(config.output)
    out.mkdir(parents=True, exist_ok=True)
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    size = (config.height, config.width)
    if config.examples:
        splits = data.read_examples(Path(config.examples))
        train, val, studio = splits["train"], splits["val"], splits.get("studio", [])
        source = data.read_pack_source(Path(config.examples))
    else:
        # Recorded here as a pack records it: which teacher labelled the worn photos, by hash, since
        # "the shipped model" names another file once a new one ships.
        source = examples_source(config)
        train, val, studio = training_examples(config)
    log.info(
        "training on %d examples (%d street photos) and %d studio photos, validating on %d",
        len(train),
        sum(e.kind == "street" for e in train),
        len(studio),
        len(val),
    )
    # Forked here, before the network exists: no torch threads or CUDA state yet.
    pool = (
        data.AugmentPool(train, config.loader_processes, config.batch_size, size, config.hue)
        if config.loader_processes
        else None
    )
    try:
        return _train(config, train, val, rng, pool, source, studio)
    finally:
        if pool is not None:
            pool.close()


def _train(
    config: TrainConfig,
    train: list[data.Example],
    val: list[data.Example],
    rng: np.random.Generator,
    pool: Optional[data.AugmentPool],
    examples_source: Optional[dict] = None,
    studio: Optional[list[data.Example]] = None,
) -> dict:
    studio = studio or []
    out = Path(config.output)
    size = (config.height, config.width)
    device = torch.device(config.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # one training canvas size: let cuDNN pick its fastest kernels
    # Weighed on street photos and product shots only: VITON's 9,000 tops would make top and skin
    # "common" and lower their weight on the street photos the parser is for.
    weights = class_weights(data.class_pixel_counts(train)).to(device)
    allowed, value_weights = label_targets(weights)
    studio_size = (config.viton_height, config.viton_width)
    studio_per_epoch = min(len(studio), config.viton_per_epoch or len(studio))
    net = ParserNet(len(PARSER_CLASSES), size, config.frozen_blocks, config.decoder, config.backbone)
    if config.init:
        decoder_loaded = load_checkpoint(net, config.init)
        if not decoder_loaded:
            log.info("%s has another decoder: its backbone starts a new %s decoder", config.init, config.decoder)
        elif config.init.endswith(".onnx"):
            calibrate_decoder_norms(net, calibration_pixels(train, size, config.seed, scaling=config.pixel_scaling))
    net = net.to(device)
    backbone = [p for p in net.backbone.parameters() if p.requires_grad]
    decoder = [p for n, p in net.named_parameters() if not n.startswith("backbone.")]
    optimiser = torch.optim.AdamW(
        [{"params": backbone, "lr": config.backbone_lr}, {"params": decoder, "lr": config.lr}],
        weight_decay=config.weight_decay,
    )
    steps_per_epoch = math.ceil(len(train) / config.batch_size) + math.ceil(studio_per_epoch / config.batch_size)
    total = steps_per_epoch * config.epochs
    warmup = min(100, total // 10)
    # A list so that a time budget can shorten the cosine after the second epoch; the learning rate
    # of the steps already taken barely depends on it (under 1.5% off at 20 epochs or more).
    planned = [total]
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser,
        lambda s: (
            (s + 1) / warmup
            if s < warmup
            else 0.5 * (1 + math.cos(math.pi * (s - warmup) / max(1, planned[0] - warmup)))
        ),
    )
    history: list[dict] = []
    net.train()
    epochs = config.epochs
    epoch = 0
    spent = 0.0  # minutes of earlier runs of this one, when resumed
    checkpoint = out / "checkpoint.pt"
    if checkpoint.exists():
        state = torch.load(checkpoint, map_location=device, weights_only=False)
        if state["config"] != model_options(config):
            raise ValueError(
                f"{out} holds a run with other options: resume it with them, or train into another --output"
            )
        net.load_state_dict(state["net"])
        optimiser.load_state_dict(state["optimiser"])
        schedule.load_state_dict(state["schedule"])
        rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
        epoch, epochs, planned[0], history, spent = (
            state["epoch"],
            state["epochs"],
            state["planned"],
            state["history"],
            state["minutes"],
        )
        log.info("resuming %s after epoch %d of %d", out, epoch, epochs)
    started = time.perf_counter() - spent * 60
    while epoch < epochs:
        order = rng.permutation(len(train))
        losses = []
        if studio:
            batches = mixed_batches(
                [(train, size, order), (studio, studio_size, rng.permutation(len(studio))[:studio_per_epoch])],
                config.batch_size,
                rng,
                config.hue,
            )
        else:
            batches = data.augmented_batches(
                train, order, config.batch_size, size, rng, config.loader_threads, pool, config.hue
            )
        for views in batches:
            pixels = to_pixels(np.stack([v[0] for v in views]), config.pixel_scaling).to(device)
            labels = torch.from_numpy(np.stack([v[1] for v in views]).astype(np.int64)).to(device)
            logits = F.interpolate(net(pixels), size=labels.shape[1:], mode="bilinear", align_corners=False)
            loss = parser_loss(logits, labels, weights, allowed, value_weights)
            if config.jaccard_weight:
                loss = loss + config.jaccard_weight * soft_jaccard_loss(logits, labels)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            losses.append(loss.item())
        entry = {"epoch": epoch + 1, "loss": float(np.mean(losses)), "minutes": (time.perf_counter() - started) / 60}
        if (epoch + 1) % 3 == 0 or epoch + 1 == epochs:
            iou = validate(net, val, size, config.pixel_scaling)
            entry["val_garment_miou"] = garment_miou(iou)
            entry["val_iou"] = iou
        history.append(entry)
        log.info("epoch %d: %s", epoch + 1, {k: v for k, v in entry.items() if k != "val_iou"})
        torch.save(net.state_dict(), out / "parser.pt")
        epoch += 1
        if epoch >= 2 and config.minutes:
            # Planned again after every epoch: on a shared machine one epoch can take twice another.
            epoch_minutes = entry["minutes"] - history[-2]["minutes"]
            fitting = epochs_within(config.minutes, entry["minutes"], epoch_minutes, epoch, config.epochs)
            if fitting != epochs:
                epochs = fitting
                planned[0] = steps_per_epoch * epochs
                log.info("time budget %.1f min: %d epochs", config.minutes, epochs)
        # Everything a killed run needs to go on as if it had not stopped.
        torch.save(
            {
                "config": model_options(config),
                "net": net.state_dict(),
                "optimiser": optimiser.state_dict(),
                "schedule": schedule.state_dict(),
                "rng": rng.bit_generator.state,
                "torch_rng": torch.get_rng_state(),
                "epoch": epoch,
                "epochs": epochs,
                "planned": planned[0],
                "history": history,
                "minutes": entry["minutes"],
            },
            checkpoint.with_suffix(".tmp"),
        )
        checkpoint.with_suffix(".tmp").replace(checkpoint)
    report = {
        "config": asdict(config),
        "classes": list(PARSER_CLASSES),
        "history": history,
        "epochs": epochs,
        "train_examples": len(train),
        "studio_examples": len(studio),
        "studio_per_epoch": studio_per_epoch,
        "minutes": (time.perf_counter() - started) / 60,
    }
    report["environment"] = training_environment()
    if config.init:
        report["init_sha256"] = sha256_file(Path(config.init))
    if examples_source is not None:
        report["examples_source"] = examples_source
    # Written before the export, so that a machine lacking the ONNX exporter still returns the run.
    (out / "training.json").write_text(json.dumps(report, indent=2))
    export_onnx(net.cpu(), out / "garment_parser.onnx", config.pixel_scaling)
    return report


def model_options(config: TrainConfig) -> dict:
    """The options that make the model: a checkpoint resumes only a run with the same ones."""
    return {k: v for k, v in asdict(config).items() if k not in NOT_MODEL_OPTIONS}


def mixed_batches(
    groups: list[tuple[list[data.Example], tuple[int, int], np.ndarray]],
    batch_size: int,
    rng: np.random.Generator,
    hue: float = 0.0,
) -> Iterator[list[data.View]]:
    """Batches of random views of several groups of examples, each group at its own canvas size
    (``(examples, (h, w), order)``), one group per batch, the batches in a random order."""
    plan = [
        (examples, size, order[start : start + batch_size])
        for examples, size, order in groups
        for start in range(0, len(order), batch_size)
    ]
    for n in rng.permutation(len(plan)):
        examples, size, chosen = plan[n]
        yield [data.augment(examples[i], size, rng, hue) for i in chosen]


def calibration_pixels(
    train: list[data.Example], size: tuple[int, int], seed: int, n: int = 32, scaling: str = "backbone"
) -> torch.Tensor:
    """Augmented views of ``n`` training examples, drawn from a random stream of their own so that
    the training run's data order and augmentation stay those of its seed."""
    rng = np.random.default_rng([seed, 1])
    views = [
        data.augment(train[i], size, rng)[0] for i in rng.choice(len(train), size=min(n, len(train)), replace=False)
    ]
    return to_pixels(np.stack(views), scaling)


def epochs_within(minutes: float, elapsed: float, epoch_minutes: float, done: int, most: int) -> int:
    """How many epochs fit in ``minutes``, ``done`` of them having taken ``elapsed``, judged by the
    latest one (``epoch_minutes``), with a tenth of what is left kept for validation passes. Not by
    the first: on a fresh GPU machine it took four times as long as the second (cuDNN's kernel
    search, cold caches)."""
    more = int(0.9 * max(0.0, minutes - elapsed) / max(epoch_minutes, 1e-6))
    return max(done, min(most, done + more))


def training_examples(config: TrainConfig) -> tuple[list[data.Example], list[data.Example], list[data.Example]]:
    """The training and validation examples: CCP's fixed split, plus product shots for training;
    and VITON's studio photos outside the excluded ids, trained at their own size."""
    ccp = Path(config.ccp_root)
    # Decoded no larger than the strongest zoom needs (CCP's own ~838 px is less than that).
    max_height = int(config.height * data.MAX_ZOOM)
    train = data.load_ccp(ccp, ccp_ids("train")[: config.limit or None], max_height)
    if config.kaggle_root and config.products_per_class:
        train += data.load_product_shots(Path(config.kaggle_root), config.products_per_class, config.seed)
    if config.kaggle_root and config.worn_per_class:
        from fashion_search.garments.parser import GarmentParser

        teacher = GarmentParser(config.teacher)
        train += data.load_worn_shots(Path(config.kaggle_root), config.worn_per_class, config.seed, teacher.parse)
    val = data.load_ccp(ccp, ccp_ids("val")[: (config.limit and 10) or None], max_height)
    studio = []
    if config.viton_root:
        excluded = read_ids(config.exclude_ids) if config.exclude_ids else set()
        studio = data.load_viton(Path(config.viton_root), excluded, config.limit)
    return train, val, studio


def training_environment() -> dict[str, str]:
    """The libraries a run's numbers pass through. The seed fixes data order, augmentation and
    initial weights, but another torch, Pillow or numpy changes the arithmetic a little, and
    over thousands of steps that grows into another model (measured: the shipped recipe rerun
    on a later install ended 0.016 lower in validation mean IoU)."""
    import PIL

    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "pillow": PIL.__version__,
    }


def examples_source(config: TrainConfig) -> dict:
    """What decides the examples :func:`training_examples` makes: the options that chose them and,
    where worn photos were labelled, which teacher labelled them."""
    source = {
        k: getattr(config, k)
        for k in ("ccp_root", "kaggle_root", "products_per_class", "worn_per_class", "seed", "limit", "height", "width")
    }
    if config.viton_root:
        source["viton_root"] = config.viton_root
        if config.exclude_ids:
            source["exclude_ids"] = {"path": config.exclude_ids, "sha256": sha256_file(Path(config.exclude_ids))}
    if config.worn_per_class:
        from fashion_search.garments.parser import DEFAULT_MODEL

        teacher = Path(config.teacher or DEFAULT_MODEL)
        source["teacher"] = {
            "path": str(config.teacher) if config.teacher else "shipped",
            "sha256": sha256_file(teacher),
        }
    return source


def write_training_examples(config: TrainConfig, path: Path) -> dict[str, int]:
    """Pack the examples ``config`` would train on into one file, for training on a machine that
    has no copy of the datasets (``--examples``)."""
    train, val, studio = training_examples(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    splits = {"train": train, "val": val} | ({"studio": studio} if studio else {})
    data.write_examples(path, splits, source=examples_source(config))
    return {"train": len(train), "val": len(val), "studio": len(studio), "bytes": path.stat().st_size}
