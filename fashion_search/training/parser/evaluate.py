"""How well a garment detector parses photos, measured on labelled data.

* Segmentation (CCP validation photos 701-800, full photo resolution): per-class IoU and the mean
  over garment classes; pixels of labels the taxonomy ignores (jewellery, gloves, ...) are left
  out.
* Box recall at IoU 0.5: ground-truth boxes are one per class and connected region of the
  labelled mask (regions under 0.05% of the photo are noise and skipped); predicted boxes are the
  connected regions of each garment's mask, so a pair of shoes, two regions in the ground truth,
  is two regions on both sides.
* The ceiling of both: the same figures for the ground-truth label map put through the parser's
  canvas and garment extraction, which separates what the network gets wrong from what no
  network could get right at that canvas.
* Product shots (held-out Kaggle images of garment article types): how often the photo yields
  exactly one garment of the right class, the right class at all, and the right class as its
  largest garment; separately for shots without a person and for worn products.
* Street tags (CCP photos 1005-1204, image-level tags): per class, the share of tagged garments
  the detector finds.
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, NamedTuple, Optional, Sequence

import numpy as np
from PIL import Image

from fashion_search.garments import Garment, GarmentDetector
from fashion_search.garments.parser import canvas_size, garments_from_labels, letterbox
from fashion_search.garments.taxonomy import (
    ARTICLE_TYPE_TO_CLASS,
    CCP_TO_CLASS,
    GARMENT_CLASSES,
    IGNORE,
    PARSER_CLASSES,
    ccp_lookup_table,
    class_index,
)
from fashion_search.training.datasets import (
    ccp_ids,
    ccp_names,
    is_kaggle_holdout,
    load_ccp_photo,
    product_mask,
    skin_share,
)

MIN_REGION = 0.0005


def region_boxes(mask: np.ndarray, min_pixels: float = 0.0) -> list[tuple[int, int, int, int]]:
    from scipy import ndimage

    regions, _ = ndimage.label(mask, structure=np.ones((3, 3), bool))
    sizes = np.bincount(regions.ravel())
    boxes = []
    for i, s in enumerate(ndimage.find_objects(regions)):
        if s is not None and sizes[i + 1] >= min_pixels:
            boxes.append((s[1].start, s[0].start, s[1].stop, s[0].stop))
    return boxes


def box_iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    iw = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0


def mask_box(mask: np.ndarray) -> Optional[tuple[int, int, int, int]]:
    """The box (x0, y0, x1, y1) around a mask's pixels, None for an empty mask."""
    ys, xs = np.nonzero(mask)
    return (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1) if len(xs) else None


def predicted_labels(garments: Sequence[Garment], shape: tuple[int, int]) -> np.ndarray:
    """Per-pixel class ids painted from garment masks, smallest garment on top; pixels no garment
    covers are background (skin and hair are not garments and count as background for garment
    IoU, since the detector reports garments only)."""
    out = np.full(shape, class_index("background"), np.int64)
    for garment in sorted(garments, key=lambda g: -(g.mask.sum() if g.mask is not None else 0)):
        if garment.mask is not None and garment.label in PARSER_CLASSES:
            out[garment.mask] = class_index(garment.label)
    return out


@dataclass
class SegmentationReport:
    photos: int
    iou: dict[str, float]
    box_recall: dict[str, float]
    box_counts: dict[str, int]
    # predicted class -> {true class: share of its predicted pixels}, garments only, shares >= 0.05:
    # the parser's lookalike classes (taxonomy.LOOKALIKE_PAIRS) are read off these.
    confusions: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def mean_iou(self) -> float:
        values = [self.iou[c] for c in GARMENT_CLASSES if not math.isnan(self.iou.get(c, math.nan))]
        return float(np.mean(values)) if values else math.nan

    def to_dict(self) -> dict[str, Any]:
        return {
            "photos": self.photos,
            "garment_mean_iou": round(self.mean_iou, 4),
            "iou": {k: round(v, 4) for k, v in self.iou.items()},
            "box_recall": {k: round(v, 4) for k, v in self.box_recall.items()},
            "box_counts": self.box_counts,
            "confusions": self.confusions,
        }


class _SegmentationScore:
    """Confusion matrix and box matches, photo by photo."""

    def __init__(self) -> None:
        n = len(PARSER_CLASSES)
        self.matrix = np.zeros((n, n), np.int64)
        self.found: dict[str, int] = defaultdict(int)
        self.total: dict[str, int] = defaultdict(int)
        self.photos = 0

    def add(self, truth: np.ndarray, garments: Sequence[Garment]) -> None:
        n = len(PARSER_CLASSES)
        self.photos += 1
        pred = predicted_labels(garments, truth.shape)
        # Skin and hair are not garments: for garment IoU they are background on both sides.
        truth_g = truth.astype(np.int64)
        truth_g[np.isin(truth_g, [class_index("skin"), class_index("hair")])] = class_index("background")
        keep = truth_g != IGNORE
        self.matrix += np.bincount(truth_g[keep] * n + pred[keep], minlength=n * n).reshape(n, n)
        floor = MIN_REGION * truth.size
        for name in GARMENT_CLASSES:
            truth_boxes = region_boxes(truth == class_index(name), floor)
            if not truth_boxes:
                continue
            pred_boxes = [b for g in garments if g.label == name and g.mask is not None for b in region_boxes(g.mask)]
            self.total[name] += len(truth_boxes)
            self.found[name] += sum(any(box_iou(t, p) >= 0.5 for p in pred_boxes) for t in truth_boxes)

    def report(self) -> SegmentationReport:
        inter = np.diag(self.matrix).astype(np.float64)
        union = self.matrix.sum(0) + self.matrix.sum(1) - inter
        iou = {
            name: float(inter[i] / union[i]) if union[i] else math.nan
            for i, name in enumerate(PARSER_CLASSES)
            if name in GARMENT_CLASSES
        }
        recall = {name: self.found[name] / self.total[name] for name in GARMENT_CLASSES if self.total[name]}
        return SegmentationReport(self.photos, iou, recall, dict(self.total), self.confusions())

    def confusions(self, floor: float = 0.05) -> dict[str, dict[str, float]]:
        predicted = self.matrix.sum(0)
        out = {}
        for j, guess in enumerate(PARSER_CLASSES):
            if guess not in GARMENT_CLASSES or not predicted[j]:
                continue
            shares = {
                truth: round(float(self.matrix[i, j] / predicted[j]), 4)
                for i, truth in enumerate(PARSER_CLASSES)
                if truth in GARMENT_CLASSES and truth != guess and self.matrix[i, j] >= floor * predicted[j]
            }
            if shares:
                out[guess] = dict(sorted(shares.items(), key=lambda kv: -kv[1]))
        return out


def _score_photos(
    ccp_root: Path, ids: Optional[Sequence[int]], garments_of: Callable[[Image.Image, np.ndarray], Sequence[Garment]]
) -> SegmentationReport:
    """Scores the garments ``garments_of(photo, labels)`` gives for each labelled photo."""
    ccp_root = Path(ccp_root)
    table = ccp_lookup_table(ccp_names(ccp_root))
    score = _SegmentationScore()
    for photo_id in ids if ids is not None else ccp_ids("val"):
        photo, labels = load_ccp_photo(ccp_root, photo_id, table)
        truth = np.asarray(labels)
        score.add(truth, garments_of(photo, truth))
    return score.report()


def evaluate_segmentation(
    detector: GarmentDetector, ccp_root: Path, ids: Optional[Sequence[int]] = None
) -> SegmentationReport:
    """Garment IoU and box recall of ``detector``'s garments against CCP's labelled masks."""
    return _score_photos(ccp_root, ids, lambda photo, _: detector.detect(photo))


def segmentation_ceiling(ccp_root: Path, ids: Optional[Sequence[int]] = None, **extraction: Any) -> SegmentationReport:
    """What a parser network that labelled every pixel of its canvas right would score: each
    photo's ground-truth label map shrunk onto the canvas the parser runs on, read off by the
    parser's own garment extraction (``extraction``: its ``min_area``, ``merge_distance``,
    ``max_garments``) and scaled back to the photo, then scored as :func:`evaluate_segmentation`
    scores a detector. The gap between a model's figures and these is the network's; what these
    miss is lost to the canvas's resolution and to the extraction's rules (specks dropped, at most
    ``max_garments`` garments). Pixels of labels the taxonomy leaves out (jewellery, gloves) are
    given background, since the parser has no class for them."""

    def perfect_parse(photo: Image.Image, truth: np.ndarray) -> list[Garment]:
        perfect = np.where(truth == IGNORE, class_index("background"), truth).astype(np.uint8)
        # The same letterbox as GarmentParser.parse, labels shrunk by nearest neighbour.
        _, canvas, (x, y, w, h) = letterbox(photo, Image.fromarray(perfect), canvas_size(photo.size))
        labels = np.asarray(canvas)[y : y + h, x : x + w]
        return garments_from_labels(labels, np.ones(labels.shape, np.float32), photo.size, **extraction)

    return _score_photos(ccp_root, ids, perfect_parse)


class ProductShotOutcome(NamedTuple):
    """What a detector made of one product shot."""

    id: str
    cls: str
    group: str  # "worn" (a model in the photo) or "no person"
    exactly_one_right: bool
    right_class_found: bool
    largest_is_right: bool
    nothing_found: bool


MEASURES = ("exactly_one_right", "right_class_found", "largest_is_right", "nothing_found")


@dataclass
class ProductShotReport:
    # Photo by photo, in the seeded order, so that two detectors can be compared on each photo.
    photos: list[ProductShotOutcome] = field(default_factory=list)

    @property
    def groups(self) -> dict[str, dict[str, float]]:
        """Per group ("all", "no person", "worn"): photos, and the share of each measure."""
        out = {}
        for group in ("all", "no person", "worn"):
            rows = [p for p in self.photos if group in ("all", p.group)]
            if rows:
                out[group] = {"photos": len(rows)} | {
                    m: round(float(np.mean([getattr(p, m) for p in rows])), 4) for m in MEASURES
                }
        return out

    @property
    def per_class(self) -> dict[str, float]:
        """Per class, the share of its shots parsed as exactly one garment of that class."""
        classes = sorted({p.cls for p in self.photos})
        return {c: round(float(np.mean([p.exactly_one_right for p in self.photos if p.cls == c])), 4) for c in classes}

    def to_dict(self) -> dict[str, Any]:
        return {"groups": self.groups, "exactly_one_right_per_class": self.per_class}


def evaluate_product_shots(
    detector: GarmentDetector, kaggle_root: Path, per_class: int = 30, seed: int = 1
) -> ProductShotReport:
    """On held-out Kaggle images: does a product photo yield one garment of its article type's
    class? Worn products (a model in the photo, found by skin colour) are reported apart, since a
    photo of a model in a shirt and jeans rightly yields two garments."""
    kaggle_root = Path(kaggle_root)
    with open(kaggle_root / "labels.csv", newline="") as handle:
        rows = [
            r
            for r in csv.DictReader(handle)
            if r["articleType"] in ARTICLE_TYPE_TO_CLASS and is_kaggle_holdout(r["id"])
        ]
    rng = np.random.default_rng(seed)
    rng.shuffle(rows)
    taken: dict[str, int] = defaultdict(int)
    report = ProductShotReport()
    for row in rows:
        cls = ARTICLE_TYPE_TO_CLASS[row["articleType"]]
        if taken[cls] >= per_class:
            continue
        taken[cls] += 1
        photo = Image.open(kaggle_root / row["image"]).convert("RGB")
        rgb = np.asarray(photo)
        worn = skin_share(rgb, product_mask(rgb)[0]) > 0.02
        garments = detector.detect(photo)
        labels = [g.label for g in garments]
        largest = max(garments, key=lambda g: g.mask.sum() if g.mask is not None else 0).label if garments else None
        report.photos.append(
            ProductShotOutcome(
                id=row["id"],
                cls=cls,
                group="worn" if worn else "no person",
                exactly_one_right=len(garments) == 1 and labels[0] == cls,
                right_class_found=cls in labels,
                largest_is_right=largest == cls,
                nothing_found=not garments,
            )
        )
    return report


def ccp_tags(ccp_root: Path) -> list[tuple[Path, set[str]]]:
    """CCP's tag-only photos with their tags mapped to garment classes."""
    ccp_root = Path(ccp_root)
    with open(ccp_root / "tags.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    out = []
    for row in rows:
        classes = {CCP_TO_CLASS.get(t) for t in row["tags"].split(";")}
        out.append((ccp_root / row["photo"], {c for c in classes if c in GARMENT_CLASSES}))
    return out


def evaluate_tags(detector: GarmentDetector, ccp_root: Path, limit: Optional[int] = None) -> dict[str, Any]:
    """Per class, the share of photos tagged with it in which the detector finds it, and the
    share of found garments whose class no tag names."""
    tagged: dict[str, int] = defaultdict(int)
    found: dict[str, int] = defaultdict(int)
    extra = detected = 0
    for path, classes in ccp_tags(ccp_root)[:limit]:
        labels = {g.label for g in detector.detect(Image.open(path).convert("RGB"))}
        for c in classes:
            tagged[c] += 1
            found[c] += c in labels
        detected += len(labels & set(GARMENT_CLASSES))
        extra += len((labels & set(GARMENT_CLASSES)) - classes)
    return {
        "recall": {c: round(found[c] / tagged[c], 4) for c in sorted(tagged)},
        "tagged": dict(sorted(tagged.items())),
        "overall_recall": round(sum(found.values()) / max(1, sum(tagged.values())), 4),
        "untagged_share": round(extra / max(1, detected), 4),
    }


# VITON's parse maps, scored in the classes LIP tells apart: its upper-clothes may be a top or
# knitwear and its pants trousers or shorts, so those pairs are scored as one.
VITON_GROUPS: dict[str, tuple[str, ...]] = {
    "top or knitwear": ("top", "knitwear"),
    "outerwear": ("outerwear",),
    "dress": ("dress",),
    "skirt": ("skirt",),
    "trousers or shorts": ("trousers", "shorts"),
    "legwear": ("legwear",),
    "footwear": ("footwear",),
    "hat": ("hat",),
    "scarf": ("scarf",),
    "eyewear": ("eyewear",),
}


@dataclass
class VitonReport:
    photos: int
    iou: dict[str, float]
    pixels: dict[str, int]
    top_found: float  # photos whose upper-clothes region is matched (box IoU >= 0.5) by a top or knitwear
    top_read_as: dict[str, float]  # the class of the garment that best covers the upper clothes

    @property
    def mean_iou(self) -> float:
        values = [v for v in self.iou.values() if not math.isnan(v)]
        return float(np.mean(values)) if values else math.nan

    def to_dict(self) -> dict[str, Any]:
        return {
            "photos": self.photos,
            "mean_iou": round(self.mean_iou, 4),
            "iou": {k: round(v, 4) for k, v in self.iou.items()},
            "truth_pixels": self.pixels,
            "top_found": round(self.top_found, 4),
            "top_read_as": {k: round(v, 4) for k, v in sorted(self.top_read_as.items(), key=lambda kv: -kv[1])},
        }


def evaluate_viton(
    detector: GarmentDetector, viton_root: Path, ids: Sequence[str], min_truth_pixels: int = 20_000
) -> VitonReport:
    """Garment IoU of ``detector``'s garments against VITON's parse maps (made by a parsing model,
    not by people) on ``ids`` (the validation split), in ``VITON_GROUPS``; groups with fewer than
    ``min_truth_pixels`` labelled pixels over all photos are too rare to score. Also, for the top
    every VITON photo shows: how often a top-like garment's box matches it, and which class the
    garment covering most of it is given (what class-aware search then searches)."""
    from fashion_search.training.datasets import LABEL_SETS, lip_lookup_table, load_viton_photo

    names = list(VITON_GROUPS)
    n = len(names) + 1  # 0: background, skin and hair
    group_of_class = np.zeros(256, np.int64)
    for g, classes in enumerate(VITON_GROUPS.values(), start=1):
        for cls in classes:
            group_of_class[class_index(cls)] = g
        for code, members in LABEL_SETS.items():
            if members == classes:
                group_of_class[code] = g
    group_of_class[IGNORE] = -1
    table = lip_lookup_table()
    top_code = next(code for code, members in LABEL_SETS.items() if members == ("top", "knitwear"))
    matrix = np.zeros((n, n), np.int64)
    found = 0
    read_as: dict[str, int] = defaultdict(int)
    for photo_id in ids:
        photo, labels = load_viton_photo(Path(viton_root), photo_id, table)
        truth = np.asarray(labels)
        garments = detector.detect(photo)
        pred = group_of_class[predicted_labels(garments, truth.shape)]
        truth_g = group_of_class[truth]
        keep = truth_g >= 0
        matrix += np.bincount(truth_g[keep] * n + pred[keep], minlength=n * n).reshape(n, n)
        top = truth == top_code
        if top.any():
            box = mask_box(top)
            # Whole boxes on both sides: hair or a strap often splits a top into regions.
            boxes = [mask_box(g.mask) for g in garments if g.label in ("top", "knitwear") and g.mask is not None]
            found += any(box_iou(box, b) >= 0.5 for b in boxes if b is not None)
            cover = [(int((g.mask & top).sum()), g.label) for g in garments if g.mask is not None]
            best = max(cover, default=(0, "nothing"))
            read_as[best[1] if best[0] > 0 else "nothing"] += 1
    inter = np.diag(matrix).astype(np.float64)
    union = matrix.sum(0) + matrix.sum(1) - inter
    truth_pixels = matrix.sum(1)
    iou = {
        name: float(inter[g] / union[g]) for g, name in enumerate(names, start=1) if truth_pixels[g] >= min_truth_pixels
    }
    photos = len(ids)
    tops = max(1, sum(read_as.values()))
    return VitonReport(
        photos,
        iou,
        {name: int(truth_pixels[g]) for g, name in enumerate(names, start=1)},
        found / tops,
        {k: v / tops for k, v in read_as.items()},
    )
