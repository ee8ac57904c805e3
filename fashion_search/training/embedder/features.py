"""Head inputs for the training examples, computed once through the serving code and cached.

The backbone is frozen (the head learns on top of the shipped ImageNet features), so each view
of each example goes through it once, by :class:`~fashion_search.embed.garment_head.HeadInputs`,
the code search runs, in chunks saved as they finish, so an interrupted run resumes where it
stopped. Augmentation is therefore per view rather than per
epoch: a worn crop with its box jittered and maybe mirrored, and a second, cropped and maybe
mirrored view of each product photo.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
from PIL import Image, ImageOps

from fashion_search.errors import ImageError
from fashion_search.garments import GarmentDetector
from fashion_search.images import load_image
from fashion_search.training.embedder.pairs import Box, LabelledShot, TrainingPair

log = logging.getLogger(__name__)

CHUNK = 256
# Each side of a worn garment's box moves by up to this share of the box: parser boxes at
# search time are looser or tighter than a parse map's.
BOX_JITTER = 0.08
# A product's second view keeps at least this share of each side.
PRODUCT_CROP = 0.85

FeatureFn = Callable[[Sequence[Image.Image]], np.ndarray]


@dataclass
class PairFeatures:
    worn: np.ndarray  # (n, d) head inputs of the worn crops
    product: np.ndarray  # (n, d) of the product photos
    product_view: np.ndarray  # (n, d) of a second, augmented view of each product photo
    product_ids: list[str]
    kept: np.ndarray  # (n,) bool: False where an image could not be read


def jittered(box: Box, width: int, height: int, rng: np.random.Generator) -> Box:
    x1, y1, x2, y2 = box
    bw, bh = x2 - x1, y2 - y1
    dx1, dx2 = rng.uniform(-BOX_JITTER, BOX_JITTER, 2) * bw
    dy1, dy2 = rng.uniform(-BOX_JITTER, BOX_JITTER, 2) * bh
    nx1, ny1 = max(0, round(x1 + dx1)), max(0, round(y1 + dy1))
    nx2, ny2 = min(width, round(x2 + dx2)), min(height, round(y2 + dy2))
    return (nx1, ny1, nx2, ny2) if nx2 - nx1 >= 8 and ny2 - ny1 >= 8 else box


def _area(garment) -> int:
    return (garment.box[2] - garment.box[0]) * (garment.box[3] - garment.box[1])


def detected_crops(
    photo: Image.Image, product: Image.Image, detector: GarmentDetector, fallback: Optional[Box] = None
) -> tuple[Optional[Box], Image.Image]:
    """The worn garment's box and the product crop, as search and indexing cut them: the product
    photo's largest garment, and the largest garment in ``photo`` of that garment's class, else
    ``fallback`` (a parse map's box), else the largest of any class."""
    product_garments = detector.detect(product)
    main = max(product_garments, key=_area) if product_garments else None
    product_crop = main.crop(product) if main is not None else product
    garments = detector.detect(photo)
    same = [g for g in garments if main is not None and g.label == main.label]
    if same:
        return tuple(int(v) for v in max(same, key=_area).box), product_crop  # type: ignore[return-value]
    if fallback is not None or not garments:
        return fallback, product_crop
    return tuple(int(v) for v in max(garments, key=_area).box), product_crop  # type: ignore[return-value]


def worn_view(photo: Image.Image, box: Optional[Box], rng: np.random.Generator) -> Image.Image:
    if box is not None:
        photo = photo.crop(jittered(box, photo.width, photo.height, rng))
    return ImageOps.mirror(photo) if rng.random() < 0.5 else photo


def product_view(product: Image.Image, rng: np.random.Generator) -> Image.Image:
    keep_w, keep_h = rng.uniform(PRODUCT_CROP, 1.0, 2)
    w, h = round(product.width * keep_w), round(product.height * keep_h)
    x, y = int(rng.integers(0, product.width - w + 1)), int(rng.integers(0, product.height - h + 1))
    view = product.crop((x, y, x + w, y + h))
    return ImageOps.mirror(view) if rng.random() < 0.5 else view


def _cache_dir(cache: Path, kind: str, keys: Sequence[str], settings: dict) -> Path:
    digest = hashlib.sha1(json.dumps([kind, list(keys), settings], sort_keys=True).encode()).hexdigest()[:16]
    return cache / f"{kind}-{digest}"


def _chunks(
    n: int, folder: Path, compute: Callable[[int, int], dict[str, np.ndarray]], what: str
) -> dict[str, np.ndarray]:
    """Compute ``[lo, hi)`` chunks not yet on disk, then load them all, concatenated."""
    folder.mkdir(parents=True, exist_ok=True)
    started, done = time.monotonic(), 0
    for lo in range(0, n, CHUNK):
        path = folder / f"chunk-{lo // CHUNK:05d}.npz"
        if path.exists():
            continue
        arrays = compute(lo, min(n, lo + CHUNK))
        tmp = path.with_name(path.stem + ".tmp.npz")
        np.savez(tmp, **arrays)
        tmp.replace(path)
        done += min(n, lo + CHUNK) - lo
        rate = done / max(1e-9, time.monotonic() - started)
        log.info("%s: %d/%d computed (%.1f examples/s)", what, min(n, lo + CHUNK), n, rate)
    parts = [dict(np.load(folder / f"chunk-{lo // CHUNK:05d}.npz")) for lo in range(0, n, CHUNK)]
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]} if parts else {}


def pair_features(
    pairs: Sequence[TrainingPair],
    features: FeatureFn,
    cache: Path,
    identity: dict,
    seed: int = 0,
    detector: Optional[GarmentDetector] = None,
) -> PairFeatures:
    """Head inputs of each pair's worn crop, product photo and augmented product view.

    With ``detector``, worn photos and product photos are cut as search and indexing cut them
    (:func:`detected_crops`); without, the worn photo by the pair's box (whole without one) and
    the product photo whole.
    ``identity`` names the feature extractor, so that a cache from another model is not reused.
    """

    def compute(lo: int, hi: int) -> dict[str, np.ndarray]:
        worn, product, view, kept = [], [], [], []
        for index in range(lo, hi):
            pair = pairs[index]
            rng = np.random.default_rng([seed, index])
            try:
                photo, shot = load_image(pair.photo), load_image(pair.product)
            except (ImageError, OSError) as exc:
                log.warning("skipping pair %s: %s", pair.photo, exc)
                photo = shot = Image.new("RGB", (8, 8), (255, 255, 255))
                kept.append(False)
            else:
                kept.append(True)
            box = pair.box
            if detector is not None:
                box, shot = detected_crops(photo, shot, detector, fallback=pair.box)
            worn.append(worn_view(photo, box, rng))
            product.append(shot)
            view.append(product_view(shot, rng))
        return {
            "worn": features(worn),
            "product": features(product),
            "product_view": features(view),
            "kept": np.array(kept, dtype=bool),
        }

    keys = [f"{p.photo}|{p.product}|{p.box}" for p in pairs]
    cut_by = detector.identity() if detector is not None else None
    folder = _cache_dir(Path(cache), "pairs", keys, {"seed": seed, "identity": identity, "detector": cut_by})
    arrays = _chunks(len(pairs), folder, compute, "pair features")
    return PairFeatures(
        arrays["worn"], arrays["product"], arrays["product_view"], [p.product_id for p in pairs], arrays["kept"]
    )


def shot_features(shots: Sequence[LabelledShot], features: FeatureFn, cache: Path, identity: dict) -> np.ndarray:
    """Head inputs of labelled product shots (rows of unreadable images are zero)."""

    def compute(lo: int, hi: int) -> dict[str, np.ndarray]:
        images, ok = [], []
        for shot in shots[lo:hi]:
            try:
                images.append(load_image(shot.path))
                ok.append(True)
            except (ImageError, OSError) as exc:
                log.warning("skipping %s: %s", shot.path, exc)
                images.append(Image.new("RGB", (8, 8), (255, 255, 255)))
                ok.append(False)
        out = features(images)
        out[~np.array(ok)] = 0
        return {"features": out}

    folder = _cache_dir(Path(cache), "shots", [str(s.path) for s in shots], {"identity": identity})
    return _chunks(len(shots), folder, compute, "labelled shot features").get("features", np.zeros((0, 0), np.float32))


__all__ = ["PairFeatures", "pair_features", "shot_features"]
