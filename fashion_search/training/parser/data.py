"""Training examples for the garment parser: CCP street photos with per-pixel labels, plus
plain-background product shots whose mask comes from the backdrop and whose class comes from
the catalog's article type.

Everything is decoded once into memory at a size just large enough for the strongest zoom, so
an epoch costs only resizes, flips and colour changes.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import multiprocessing
import zipfile
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing import shared_memory
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

import numpy as np
from PIL import Image, ImageEnhance

from fashion_search.garments.parser import letterbox
from fashion_search.garments.taxonomy import (
    ARTICLE_TYPE_TO_CLASS,
    GARMENT_CLASSES,
    IGNORE,
    PARSER_CLASSES,
    ccp_lookup_table,
    class_index,
    lookalikes,
)
from fashion_search.training.datasets import (
    LABEL_SETS,
    ccp_names,
    is_kaggle_holdout,
    lip_lookup_table,
    load_ccp_photo,
    load_viton_photo,
    product_mask,
    skin_share,
    viton_ids,
)

log = logging.getLogger(__name__)

BACKGROUND = class_index("background")
MAX_ZOOM = 2.4


@dataclass
class Example:
    image: Image.Image  # RGB
    labels: Image.Image  # "L", parser class ids (IGNORE where unknown)
    kind: str  # "street", "product" or "studio" (VITON's model photos)


def load_ccp(ccp_root: Path, ids: list[int], max_height: Optional[int] = None) -> list[Example]:
    table = ccp_lookup_table(ccp_names(ccp_root))
    examples = []
    for i in ids:
        photo, labels = load_ccp_photo(ccp_root, i, table)
        if max_height and photo.height > max_height:
            size = (round(photo.width * max_height / photo.height), max_height)
            photo, labels = photo.resize(size, Image.BILINEAR), labels.resize(size, Image.NEAREST)
        examples.append(Example(photo, labels, "street"))
    return examples


def load_viton(viton_root: Path, exclude: set[str], limit: int = 0) -> list[Example]:
    """VITON's studio photos of models with their parse maps (LIP labels mapped by
    :func:`~fashion_search.training.datasets.lip_lookup_table`, some to ``LABEL_SETS``), minus
    the ``exclude`` ids (the validation split both the parser and the embedder leave out)."""
    table = lip_lookup_table()
    ids = viton_ids(viton_root, exclude)[: limit or None]
    examples = [Example(*load_viton_photo(viton_root, i, table), "studio") for i in ids]
    log.info("VITON studio photos: %d (%d ids left out)", len(examples), len(exclude))
    return examples


Labeller = Callable[[str, Image.Image, np.ndarray, np.ndarray], Optional[np.ndarray]]


def _kaggle_shots(
    kaggle_root: Path,
    per_class: int,
    seed: int,
    holdout: bool,
    wanted: Callable[[str], bool],
    label: Labeller,
    what: str,
) -> list[Example]:
    """Up to ``per_class`` examples per garment class from Kaggle photos on a plain backdrop
    (a foreground of 3-95% of the photo), in a seeded order: ``label(class, photo, rgb, mask)``
    gives each photo's label map, or None to pass it over."""
    with open(kaggle_root / "labels.csv", newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["articleType"] in ARTICLE_TYPE_TO_CLASS]
    rows = [
        r for r in rows if is_kaggle_holdout(r["id"]) == holdout and wanted(ARTICLE_TYPE_TO_CLASS[r["articleType"]])
    ]
    rng = np.random.default_rng(seed)
    rng.shuffle(rows)
    taken: dict[str, int] = {}
    examples = []
    for row in rows:
        cls = ARTICLE_TYPE_TO_CLASS[row["articleType"]]
        if taken.get(cls, 0) >= per_class:
            continue
        try:
            photo = Image.open(kaggle_root / row["image"]).convert("RGB")
        except OSError:
            continue
        rgb = np.asarray(photo)
        mask, uniformity = product_mask(rgb)
        if uniformity < 0.9 or not 0.03 < mask.mean() < 0.95:
            continue
        labels = label(cls, photo, rgb, mask)
        if labels is None:
            continue
        examples.append(Example(photo, Image.fromarray(labels, "L"), "product"))
        taken[cls] = taken.get(cls, 0) + 1
    log.info("%s: %d (%s)", what, len(examples), ", ".join(f"{k} {v}" for k, v in sorted(taken.items())))
    return examples


def load_product_shots(
    kaggle_root: Path, per_class: int, seed: int, holdout: bool = False, max_skin: float = 0.02
) -> list[Example]:
    """Plain-background product shots of garment article types, without a person in them."""

    def label(cls: str, photo: Image.Image, rgb: np.ndarray, mask: np.ndarray) -> Optional[np.ndarray]:
        if skin_share(rgb, mask) > max_skin:
            return None
        labels = np.full(mask.shape, BACKGROUND, np.uint8)
        # Pale parts of a pale product can match the backdrop: inside the product's box, pixels
        # outside the mask are unknown rather than background.
        ys, xs = np.nonzero(mask)
        labels[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1] = IGNORE
        labels[mask] = class_index(cls)
        return labels

    return _kaggle_shots(kaggle_root, per_class, seed, holdout, lambda cls: True, label, "product shots")


GARMENT_IDS = np.asarray([class_index(name) for name in GARMENT_CLASSES] + list(LABEL_SETS))


def rotate_garment_hue(pixels: np.ndarray, labels: np.ndarray, turn: float) -> np.ndarray:
    """``pixels`` with the hue of every garment pixel turned by ``turn`` of the colour circle, one
    turn for all garments of a view (so a dress's top and skirt, or a matching twin set, keep
    matching). Skin, hair, background and unknown pixels keep their colours: skin's hue is a
    real cue, a garment's colour is not a cue to its class."""
    garment = np.isin(labels, GARMENT_IDS)
    if not garment.any():
        return pixels
    hsv = np.array(Image.fromarray(pixels).convert("HSV"))
    hue = hsv[..., 0]
    hue[garment] = (hue[garment].astype(np.int16) + int(round(turn * 256))) % 256
    out = pixels.copy()
    out[garment] = np.asarray(Image.fromarray(hsv, "HSV").convert("RGB"))[garment]  # the round trip is lossy
    return out


def augment(
    example: Example, size: tuple[int, int], rng: np.random.Generator, hue: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """One random view: zoom, placement, mirror and mild colour changes; with ``hue``, garments'
    hue turned by up to that fraction of the colour circle either way (:func:`rotate_garment_hue`),
    a regulariser against learning a class from the colours 700 street photos happen to show.
    Returns uint8 HxWx3 pixels and HxW labels."""
    image, labels = example.image, example.labels
    if example.kind == "street":
        # Half the views zoom in (up to a torso or a pair of legs filling the frame): catalog
        # photos of worn products are cropped far tighter than CCP's full-body shots.
        scale = rng.uniform(0.7, 1.3) if rng.random() < 0.5 else rng.uniform(1.3, MAX_ZOOM)
        offset = (rng.uniform(0, 1), rng.uniform(0, 1))
    elif example.kind == "studio":
        # Trained at their own size, as they are parsed (photos smaller than the canvas are not
        # enlarged), with mild zoom: the model already fills the frame.
        scale, offset = rng.uniform(0.8, 1.25), (rng.uniform(0, 1), rng.uniform(0, 1))
    else:  # product shots appear anywhere from a thumbnail-in-a-frame to filling it
        scale, offset = rng.uniform(0.45, 1.0), (rng.uniform(0, 1), rng.uniform(0, 1))
    if rng.random() < 0.5:
        image, labels = image.transpose(Image.FLIP_LEFT_RIGHT), labels.transpose(Image.FLIP_LEFT_RIGHT)
    canvas, label_canvas, _ = letterbox(image, labels, size, scale, offset)
    for enhancer in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        canvas = enhancer(canvas).enhance(rng.uniform(0.8, 1.2))
    pixels, label_pixels = np.asarray(canvas), np.asarray(label_canvas)
    if hue:  # drawn only when asked, so that runs without it keep their recorded random stream
        pixels = rotate_garment_hue(pixels, label_pixels, rng.uniform(-hue, hue))
    return pixels, label_pixels


Teacher = Callable[[Image.Image], tuple[np.ndarray, np.ndarray]]


def worn_shot_labels(
    mask: np.ndarray,
    garment_class: str,
    labels: np.ndarray,
    confidence: np.ndarray,
    min_confidence: float = 0.5,
    min_share: float = 0.2,
) -> Optional[np.ndarray]:
    """Labels for a catalog photo of a garment of ``garment_class`` worn by a model, whose
    foreground against the plain backdrop is ``mask``: a teacher parser's ``labels`` (with their
    ``confidence``), corrected by what the catalog says.

    The catalog knows the garment's class, the plain backdrop knows the background, and the
    teacher knows where skin, hair and the other garments are. Where the teacher read the
    garment as a lookalike class (a T-shirt as knitwear, a dress as a top and a skirt), the
    catalog's class wins: those are the confusions a parser trained on 700 street photos makes,
    and the same product read as different classes in different photos costs same-product
    search. Pixels of the foreground the teacher calls background, or any other class with less
    than ``min_confidence``, are unknown. None when the corrected garment covers less than
    ``min_share`` of the foreground (the teacher missed it, or the product shot is no good)."""
    if labels.shape != mask.shape:
        labels = np.asarray(Image.fromarray(labels).resize(mask.shape[::-1], Image.NEAREST))
        confidence = np.asarray(Image.fromarray(confidence).resize(mask.shape[::-1], Image.BILINEAR))
    target = class_index(garment_class)
    group = [class_index(name) for name in lookalikes(garment_class)]
    out = labels.astype(np.uint8).copy()
    out[(confidence < min_confidence) | (labels == BACKGROUND)] = IGNORE
    out[np.isin(labels, group)] = target
    out[~mask] = BACKGROUND
    if (out == target).sum() < min_share * mask.sum():
        return None
    return out


def load_worn_shots(
    kaggle_root: Path, per_class: int, seed: int, teacher: Teacher, min_skin: float = 0.02
) -> list[Example]:
    """Product shots in which a model wears a garment of a class that has lookalikes (tops,
    knitwear, outerwear, dresses, skirts, trousers, shorts, legwear), labelled by ``teacher``
    and corrected by the article type (:func:`worn_shot_labels`). They are what
    :func:`load_product_shots` leaves out, and what catalog photos of clothes mostly are. The
    skin-colour test that finds the model also passes skin-coloured products that no one wears
    (beige, pink, tan: about a third of them); the teacher labels those whole, which is right."""

    def label(cls: str, photo: Image.Image, rgb: np.ndarray, mask: np.ndarray) -> Optional[np.ndarray]:
        if skin_share(rgb, mask) <= min_skin:
            return None  # no one wears it: load_product_shots' kind of photo
        return worn_shot_labels(mask, cls, *teacher(photo))

    return _kaggle_shots(
        kaggle_root, per_class, seed, False, lambda cls: len(lookalikes(cls)) > 1, label, "worn product shots"
    )


View = tuple[np.ndarray, np.ndarray]


_WORKER: dict = {}  # in each worker process: the examples and the shared view slots, inherited by fork


def _augment_into(index: int, seed: int, slot: int, position: int) -> None:
    pixels, labels = _WORKER["pixels"], _WORKER["labels"]
    size = pixels.shape[2:4]
    view_pixels, view_labels = augment(_WORKER["examples"][index], size, np.random.default_rng(seed), _WORKER["hue"])
    pixels[slot, position] = view_pixels
    labels[slot, position] = view_labels


class AugmentPool:
    """Worker processes that make training views. PIL holds the GIL for much of a view, and the
    training loop needs it to launch GPU work: threads stop helping at about two and then slow
    the loop itself. The workers are forked once, before any training, and inherit the examples
    and a few batch-sized slots of shared memory; each view costs the pipe only its index, its
    seed and where to write it, not its pixels."""

    def __init__(
        self, examples: Sequence[Example], processes: int, batch_size: int, size: tuple[int, int], hue: float = 0.0
    ) -> None:
        self.examples, self.processes, self.batch_size, self.size, self.hue = examples, processes, batch_size, size, hue
        # Enough batches in flight to keep every worker busy, one being read, one spare.
        self.ahead = max(1, -(-processes // batch_size))
        slots = self.ahead + 2
        self._memory = [
            shared_memory.SharedMemory(create=True, size=slots * batch_size * size[0] * size[1] * n) for n in (3, 1)
        ]
        self.pixels = np.ndarray((slots, batch_size, *size, 3), np.uint8, buffer=self._memory[0].buf)
        self.labels = np.ndarray((slots, batch_size, *size), np.uint8, buffer=self._memory[1].buf)
        _WORKER.update(examples=examples, pixels=self.pixels, labels=self.labels, hue=hue)
        try:
            # Forked before torch starts its threads or CUDA: a fork-started pool is safe only then.
            self._pool = multiprocessing.get_context("fork").Pool(processes)
        finally:
            _WORKER.clear()

    def submit(self, jobs: list[tuple[int, int]], batch: int) -> list:
        """Start the views ``(example index, seed)`` of the ``batch``-th batch; returns handles to
        wait on. Batches take the slots in turn, so at most ``ahead`` may be in flight."""
        slot = self._slot(batch)
        return [
            self._pool.apply_async(_augment_into, (index, seed, slot, position))
            for position, (index, seed) in enumerate(jobs)
        ]

    def _slot(self, batch: int) -> int:
        return batch % len(self.pixels)

    def read(self, handles: list, batch: int) -> list[View]:
        for handle in handles:
            handle.get()  # re-raises a worker's error here
        slot = self._slot(batch)
        return [(self.pixels[slot, i].copy(), self.labels[slot, i].copy()) for i in range(len(handles))]

    def close(self) -> None:
        self._pool.terminate()
        self._pool.join()
        for memory in self._memory:
            memory.close()
            memory.unlink()

    def __enter__(self) -> "AugmentPool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def augmented_batches(
    examples: Sequence[Example],
    order: Sequence[int],
    batch_size: int,
    size: tuple[int, int],
    rng: np.random.Generator,
    threads: int = 0,
    pool: Optional[AugmentPool] = None,
    hue: float = 0.0,
) -> Iterator[list[View]]:
    """Random views (:func:`augment`) of ``examples`` in ``order``, ``batch_size`` at a time.

    Without ``threads`` every view draws from ``rng`` in turn: the stream the shipped model was
    trained with, so its recorded command still reproduces it. With ``threads``, each view gets
    its own seed, drawn from ``rng`` in order, so the views depend on the seed and not on the
    thread count or scheduling; and the next batch is augmented while the caller trains on this
    one. On a GPU the training step is shorter than augmenting a batch on one core (about 4 ms a
    view on this CPU), so training would otherwise wait on the CPU. A ``pool`` of processes over
    the same ``examples`` makes the very same views as threads do, on more cores.
    """
    starts = range(0, len(order), batch_size)
    if not threads and pool is None:
        for start in starts:
            yield [augment(examples[i], size, rng, hue) for i in order[start : start + batch_size]]
        return
    if pool is not None and (
        pool.examples is not examples or pool.batch_size != batch_size or pool.size != size or pool.hue != hue
    ):
        raise ValueError("the augment pool was made for other examples, batch size, canvas or hue")
    threads_pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="augment") if pool is None else None
    ahead = 1 if pool is None else pool.ahead

    # Seeds are drawn batch by batch in order, however far ahead, so the views depend only on
    # the seed, not on threads, processes or scheduling.
    def submit(n: int) -> list:
        chosen = order[starts[n] : starts[n] + batch_size]
        seeds = [int(seed) for seed in rng.integers(0, 2**63 - 1, size=len(chosen))]
        if pool is not None:
            return pool.submit([(int(i), seed) for i, seed in zip(chosen, seeds)], n)
        return [
            threads_pool.submit(augment, examples[i], size, np.random.default_rng(seed), hue)
            for i, seed in zip(chosen, seeds)
        ]

    def read(n: int, jobs: list) -> list[View]:
        return pool.read(jobs, n) if pool is not None else [job.result() for job in jobs]

    try:
        pending = deque((n, submit(n)) for n in range(min(ahead, len(starts))))
        while pending:
            n, jobs = pending.popleft()
            if n + ahead < len(starts):
                pending.append((n + ahead, submit(n + ahead)))
            yield read(n, jobs)
    finally:
        if threads_pool is not None:
            threads_pool.shutdown(cancel_futures=True)


def class_pixel_counts(examples: list[Example]) -> np.ndarray:
    counts = np.zeros(len(PARSER_CLASSES), np.float64)
    for example in examples:
        hist = np.bincount(np.asarray(example.labels).ravel(), minlength=256)
        counts += hist[: len(PARSER_CLASSES)]
    return counts


PACK_SOURCE = "source.json"


def write_examples(
    path: Path, splits: dict[str, list[Example]], quality: int = 80, source: Optional[dict] = None
) -> None:
    """Pack prepared examples into one zip (photos as WebP, labels as PNG), so that a machine
    without the datasets (a lent GPU, whose upload is limited) can train on these examples. The
    label maps are kept exactly; the photos lose what a lossy WebP at ``quality`` loses (at 80,
    73% of the bytes of CCP's own JPEGs; the JPEG re-encoded at 92 took 150%). ``source``, how
    the examples were made (datasets, quotas, teacher), travels in the pack, so that a model
    trained on it records its data as one trained on the datasets does."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as pack:
        pack.writestr(PACK_SOURCE, json.dumps({**(source or {}), "webp_quality": quality}, indent=1))
        for split, examples in splits.items():
            for i, example in enumerate(examples):
                stem = f"{split}/{i:05d}-{example.kind}"
                photo, labels = io.BytesIO(), io.BytesIO()
                example.image.save(photo, "WEBP", quality=quality, method=6)
                example.labels.save(labels, "PNG", optimize=True)
                pack.writestr(stem + ".webp", photo.getvalue())
                pack.writestr(stem + ".png", labels.getvalue())


def read_pack_source(path: Path) -> Optional[dict]:
    """How the examples in a pack were made (None for packs written before it was recorded)."""
    with zipfile.ZipFile(path) as pack:
        return json.loads(pack.read(PACK_SOURCE)) if PACK_SOURCE in pack.namelist() else None


def read_examples(path: Path) -> dict[str, list[Example]]:
    """The splits written by :func:`write_examples`, in their order."""
    splits: dict[str, list[Example]] = {}
    with zipfile.ZipFile(path) as pack:
        names = sorted(n for n in pack.namelist() if n.endswith(".webp"))
        for name in names:
            base = name[: -len(".webp")]
            split, stem = base.split("/")
            kind = stem.split("-", 1)[1]
            image = Image.open(io.BytesIO(pack.read(name))).convert("RGB")
            labels = Image.open(io.BytesIO(pack.read(base + ".png")))
            labels.load()
            splits.setdefault(split, []).append(Example(image, labels, kind))
    return splits
