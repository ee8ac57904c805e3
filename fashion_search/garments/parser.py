"""The learned garment parser: a per-pixel garment classifier turned into a list of garments.

The network (``models/garment_parser.onnx``, trained by ``fashion-search train-parser``; see
``models/GARMENT_PARSER.md``) labels every pixel of a letterboxed photo with one of
``taxonomy.PARSER_CLASSES``. Garments are read off that label map:

- each garment class's connected regions are found; specks are dropped;
- regions of one class that lie close together are one garment (two shoes are one footwear
  item; a skirt split by a hand is one skirt), measured relative to the regions' own size so the
  rule holds at any photo scale;
- regions of one class far apart stay separate garments: in a photo of several people, each
  person's top is its own garment as long as the tops do not touch. Touching garments of one
  class cannot be told apart from a label map and come back as one.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image

from fashion_search.embed import sha256_file
from fashion_search.embed.preprocess import EFFICIENTNET_LITE_MEAN, EFFICIENTNET_LITE_STD
from fashion_search.garments import Garment, GarmentDetector
from fashion_search.garments.taxonomy import NOT_GARMENTS, PAIRED_CLASSES, PARSER_CLASSES
from fashion_search.registry import DETECTORS

MODEL_DIR = Path(__file__).resolve().parent / "models"
DEFAULT_MODEL = MODEL_DIR / "garment_parser.onnx"
INPUT_SIZE = (448, 288)  # (height, width) the network was trained and exported at
WHITE = (255, 255, 255)
# Garments that are small by nature keep a lower size floor, or sunglasses would never survive.
SMALL_CLASSES = frozenset({"eyewear", "belt", "hat"})


def letterbox(image: Image.Image, labels: Optional[Image.Image], size: tuple[int, int], scale: float = 1.0,
              offset: tuple[float, float] = (0.5, 0.5), fill_label: int = 0):
    """Fit ``image`` into ``size`` (h, w) keeping its aspect ratio, zoomed by ``scale``, padded
    with white (the backdrop of product shots, so padding looks like nothing); ``offset`` in
    [0, 1] places it (0.5 = centred). Returns the canvas, the labels pasted the same way (or
    None) and the box ``(x, y, w, h)`` the image occupies, possibly partly outside the canvas."""
    height, width = size
    fit = min(width / image.width, height / image.height) * scale
    w, h = max(1, round(image.width * fit)), max(1, round(image.height * fit))
    x, y = round((width - w) * offset[0]), round((height - h) * offset[1])
    canvas = Image.new("RGB", (width, height), WHITE)
    canvas.paste(image.resize((w, h), Image.BILINEAR), (x, y))
    label_canvas = None
    if labels is not None:
        label_canvas = Image.new("L", (width, height), fill_label)
        label_canvas.paste(labels.resize((w, h), Image.NEAREST), (x, y))
    return canvas, label_canvas, (x, y, w, h)


def _gap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> tuple[int, int]:
    return max(0, max(a[0], b[0]) - min(a[2], b[2])), max(0, max(a[1], b[1]) - min(a[3], b[3]))


def _union(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    return min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])


class GarmentParser(GarmentDetector):
    """Finds, classifies and segments every garment in a photo."""

    name = "parser"

    def __init__(
        self,
        model_path: Optional[str] = None,
        threads: int = 0,
        min_area: float = 0.004,
        merge_distance: float = 0.35,
        max_garments: int = 8,
    ) -> None:
        import onnxruntime as ort

        self.model_path = Path(model_path) if model_path else DEFAULT_MODEL
        if not self.model_path.is_file():
            raise FileNotFoundError(f"garment parser model not found: {self.model_path}")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
        self.session = ort.InferenceSession(str(self.model_path), options, providers=["CPUExecutionProvider"])
        self.threads = int(threads)
        self.min_area = float(min_area)
        self.merge_distance = float(merge_distance)
        self.max_garments = int(max_garments)
        self._mean = np.asarray(EFFICIENTNET_LITE_MEAN, np.float32)
        self._std = np.asarray(EFFICIENTNET_LITE_STD, np.float32)

    def describe(self) -> dict:
        return {
            "name": self.name,
            "model": self.model_path.name,
            "sha256": sha256_file(self.model_path),
            "classes": list(PARSER_CLASSES),
            "min_area": self.min_area,
            "merge_distance": self.merge_distance,
        }

    def parse(self, image: Image.Image) -> tuple[np.ndarray, np.ndarray]:
        """Per-pixel class ids and their probability, for the photo at the network's scale
        (the letterbox padding cut away): arrays of shape about ``image`` shrunk to fit 448x288."""
        canvas, _, (x, y, w, h) = letterbox(image.convert("RGB"), None, INPUT_SIZE)
        pixels = ((np.asarray(canvas, np.float32) - self._mean) / self._std).transpose(2, 0, 1)[None]
        labels, confidence = self.session.run(None, {"pixels": np.ascontiguousarray(pixels)})
        return labels[0, y : y + h, x : x + w], confidence[0, y : y + h, x : x + w]

    def detect(self, image: Image.Image) -> list[Garment]:
        labels, confidence = self.parse(image)
        return garments_from_labels(labels, confidence, image.size, self.min_area, self.merge_distance,
                                    self.max_garments)


def garments_from_labels(
    labels: np.ndarray, confidence: np.ndarray, image_size: tuple[int, int], min_area: float = 0.004,
    merge_distance: float = 0.35, max_garments: int = 8,
) -> list[Garment]:
    """Garments read off a per-pixel class map, largest first, with masks and boxes scaled to
    ``image_size`` (width, height). ``min_area`` is the smallest garment as a share of the photo;
    ``merge_distance`` how far apart (relative to their size) regions of one class still form one
    garment."""
    from scipy import ndimage

    area = labels.size
    found = []
    for class_id in np.unique(labels):
        name = PARSER_CLASSES[int(class_id)]
        if name in NOT_GARMENTS:
            continue
        floor = min_area * area * (0.25 if name in SMALL_CLASSES else 1.0)
        regions, count = ndimage.label(labels == class_id, structure=np.ones((3, 3), bool))
        sizes = np.bincount(regions.ravel(), minlength=count + 1)
        # Biggest region first, so that groups grow around the main part of a garment.
        parts = sorted(
            (((s[1].start, s[0].start, s[1].stop, s[0].stop), i + 1)
             for i, s in enumerate(ndimage.find_objects(regions)) if s is not None and sizes[i + 1] >= floor * 0.1),
            key=lambda part: -sizes[part[1]],
        )
        groups: list[tuple[tuple[int, int, int, int], list[int]]] = []
        reach = merge_distance * (3.0 if name in PAIRED_CLASSES else 1.0)
        for box, region in parts:
            for g, (group_box, members) in enumerate(groups):
                gap_x, gap_y = _gap(box, group_box)
                size_w = max(box[2] - box[0], group_box[2] - group_box[0])
                size_h = max(box[3] - box[1], group_box[3] - group_box[1])
                if gap_x <= reach * size_w and gap_y <= reach * size_h:
                    groups[g] = (_union(box, group_box), members + [region])
                    break
            else:
                groups.append((box, [region]))
        for _, members in groups:
            pixels = int(sizes[members].sum())
            if pixels >= floor:
                mask = np.isin(regions, members)
                found.append((pixels, name, float(confidence[mask].mean()), mask))
    found.sort(key=lambda f: -f[0])
    return [_to_garment(image_size, name, score, mask) for _, name, score, mask in found[:max_garments]]


def _to_garment(image_size: tuple[int, int], name: str, score: float, mask: np.ndarray) -> Garment:
    small = Image.fromarray(mask.astype(np.uint8) * 255, "L")
    # Upsampled smoothly then thresholded: nearest-neighbour would give blocky outlines.
    full = np.asarray(small.resize(image_size, Image.BILINEAR)) >= 128
    if not full.any():  # a sliver that vanished in resizing: keep its scaled-up pixels
        full = np.asarray(small.resize(image_size, Image.NEAREST)) > 0
    rows, cols = np.flatnonzero(full.any(axis=1)), np.flatnonzero(full.any(axis=0))
    box = (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)
    return Garment(label=name, score=round(score, 4), box=box, mask=full)


@DETECTORS.register("parser")
def _parser(**options: object) -> GarmentDetector:
    return GarmentParser(**options)
