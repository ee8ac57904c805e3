"""The learned garment parser: a per-pixel garment classifier turned into a list of garments.

The network (``models/garment_parser.onnx``, trained by ``fashion-search train parser``; see
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
from typing import Any, Optional

import numpy as np
from PIL import Image

from fashion_search.garments import Garment, GarmentDetector
from fashion_search.garments.taxonomy import NOT_GARMENTS, PAIRED_CLASSES, PARSER_CLASSES
from fashion_search.registry import DETECTORS, PathLike
from fashion_search.runtime import OnnxModel, check_names

MODEL_DIR = Path(__file__).resolve().parent / "models"
DEFAULT_MODEL = MODEL_DIR / "garment_parser.onnx"
INPUT_SIZE = (448, 288)  # (height, width) the shipped network was trained at: the largest canvas it sees
STRIDE = 32  # a canvas side must be a multiple of the backbone's total stride
WHITE = (255, 255, 255)
# Garments that are small by nature keep a lower size floor, or sunglasses would never survive.
SMALL_CLASSES = frozenset({"eyewear", "belt", "hat"})
SMALL_CLASS_FLOOR = 0.25  # their share of ``min_area``


def letterbox(
    image: Image.Image,
    labels: Optional[Image.Image],
    size: tuple[int, int],
    scale: float = 1.0,
    offset: tuple[float, float] = (0.5, 0.5),
    fill_label: int = 0,
):
    """Fit ``image`` into ``size`` (h, w) keeping its aspect ratio, zoomed by ``scale``, padded
    with white (the backdrop of product shots, so padding looks like nothing); ``offset`` in
    [0, 1] places it (0.5 = centred). Returns the canvas, the labels pasted the same way (or
    None) and the box ``(x, y, w, h)`` the image occupies, possibly partly outside the canvas."""
    height, width = size
    fit = min(width / image.width, height / image.height) * scale
    w, h = max(1, round(image.width * fit)), max(1, round(image.height * fit))
    x, y = round((width - w) * offset[0]), round((height - h) * offset[1])
    canvas = Image.new("RGB", (width, height), WHITE)
    # reducing_gap: big photos are first shrunk by whole factors, which is several times faster
    # than one bilinear pass over 8 MP and indistinguishable at the network's scale.
    canvas.paste(image.resize((w, h), Image.BILINEAR, reducing_gap=3.0), (x, y))
    label_canvas = None
    if labels is not None:
        label_canvas = Image.new("L", (width, height), fill_label)
        label_canvas.paste(labels.resize((w, h), Image.NEAREST), (x, y))
    return canvas, label_canvas, (x, y, w, h)


def canvas_size(image_size: tuple[int, int], largest: tuple[int, int] = INPUT_SIZE) -> tuple[int, int]:
    """The (h, w) canvas a photo of ``image_size`` (w, h) is parsed on: ``largest``, the training
    canvas, for any photo that has to shrink to fit it (parses of those measured best on exactly
    the canvas the network was trained on: Zalora same-product R@1 0.833 against 0.775 on canvases
    cut to the photo's shape); a smaller photo keeps its own size, each side rounded up to a
    multiple of ``STRIDE``. Blowing a 224x224 catalog thumbnail up to 448x288 adds no detail and
    costs 2.9 times the time, for the same product-shot figures."""
    width, height = image_size
    if height >= largest[0] or width >= largest[1]:
        return largest
    h = max(2 * STRIDE, -(-height // STRIDE) * STRIDE)
    w = max(2 * STRIDE, -(-width // STRIDE) * STRIDE)
    return h, w


def _gap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> tuple[int, int]:
    return max(0, max(a[0], b[0]) - min(a[2], b[2])), max(0, max(a[1], b[1]) - min(a[3], b[3]))


def _union(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    return min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])


class GarmentParser(OnnxModel, GarmentDetector):
    """Finds, classifies and segments every garment in a photo.

    The ONNX file records the classes it labels, its input size and its pixel scaling in its
    metadata; a file whose classes differ from ``taxonomy.PARSER_CLASSES`` is refused, since
    its class ids would be read as other garments.
    """

    name = "parser"
    kind = "garment parser model"
    default_path = DEFAULT_MODEL

    def __init__(
        self,
        model_path: Optional[PathLike] = None,
        threads: Optional[int] = None,
        min_area: float = 0.004,
        merge_distance: float = 0.35,
        max_garments: int = 8,
    ) -> None:
        super().__init__(model_path or None, threads)
        self.classes = self.metadata_names("classes")
        check_names(self.classes, PARSER_CLASSES, "classes", self.model_path)
        height, width = self.metadata_floats("input_size", 2)
        self.input_size = (int(height), int(width))
        self.mean = self.metadata_floats("mean", 3)
        self.std = self.metadata_floats("std", 3)
        # Models exported with a fixed input size (older exports) always get the full canvas.
        shape = self.session.get_inputs()[0].shape
        self.dynamic_size = not all(isinstance(d, int) for d in shape[2:])
        self.min_area = min_area
        self.merge_distance = merge_distance
        self.max_garments = max_garments
        self._mean = (np.asarray(self.mean, np.float64) * 255).astype(np.float32)
        self._std = (np.asarray(self.std, np.float64) * 255).astype(np.float32)

    def identity(self) -> dict[str, Any]:
        return {
            "name": self.name,
            **self.file_identity(),
            "classes": list(self.classes),
            "input_size": list(self.input_size),
            "mean": list(self.mean),
            "std": list(self.std),
            "min_area": self.min_area,
            "merge_distance": self.merge_distance,
            "max_garments": self.max_garments,
        }

    def for_parallel_use(self) -> "GarmentParser":
        if self.threads == 1:
            return self
        return GarmentParser(
            self.model_path,
            threads=1,
            min_area=self.min_area,
            merge_distance=self.merge_distance,
            max_garments=self.max_garments,
        )

    def parse(self, image: Image.Image) -> tuple[np.ndarray, np.ndarray]:
        """Per-pixel class ids and their probability, for the photo at the network's scale
        (the letterbox padding cut away): arrays of shape about ``image`` shrunk to fit the
        model's input size, or the photo's own size when it is smaller."""
        size = canvas_size(image.size, self.input_size) if self.dynamic_size else self.input_size
        canvas, _, (x, y, w, h) = letterbox(image.convert("RGB"), None, size)
        pixels = ((np.asarray(canvas, np.float32) - self._mean) / self._std).transpose(2, 0, 1)[None]
        labels, confidence = self.session.run(None, {"pixels": np.ascontiguousarray(pixels)})
        return labels[0, y : y + h, x : x + w], confidence[0, y : y + h, x : x + w]

    def detect(self, image: Image.Image) -> list[Garment]:
        labels, confidence = self.parse(image)
        return garments_from_labels(
            labels, confidence, image.size, self.min_area, self.merge_distance, self.max_garments
        )


def garments_from_labels(
    labels: np.ndarray,
    confidence: np.ndarray,
    image_size: tuple[int, int],
    min_area: float = 0.004,
    merge_distance: float = 0.35,
    max_garments: int = 8,
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
        floor = min_area * area * (SMALL_CLASS_FLOOR if name in SMALL_CLASSES else 1.0)
        regions, count = ndimage.label(labels == class_id, structure=np.ones((3, 3), bool))
        sizes = np.bincount(regions.ravel(), minlength=count + 1)
        # Biggest region first, so that groups grow around the main part of a garment.
        parts = sorted(
            (
                ((s[1].start, s[0].start, s[1].stop, s[0].stop), i + 1)
                for i, s in enumerate(ndimage.find_objects(regions))
                if s is not None and sizes[i + 1] >= floor * 0.1
            ),
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
    width, height = image_size
    sx, sy = width / mask.shape[1], height / mask.shape[0]
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    # Only the garment's surroundings are upsampled (a full-size resize of every mask of a 8 MP
    # photo cost more than the network); giving resize() the matching source box keeps the result
    # identical to resizing the whole mask.
    x0, y0 = max(0, int((cols[0] - 1) * sx)), max(0, int((rows[0] - 1) * sy))
    x1, y1 = min(width, int(np.ceil((cols[-1] + 2) * sx))), min(height, int(np.ceil((rows[-1] + 2) * sy)))
    source = (x0 / sx, y0 / sy, x1 / sx, y1 / sy)
    small = Image.fromarray(mask.astype(np.uint8) * 255, "L")
    # Upsampled smoothly then thresholded: nearest-neighbour would give blocky outlines.
    region = np.asarray(small.resize((x1 - x0, y1 - y0), Image.BILINEAR, box=source)) >= 128
    if not region.any():  # a sliver that vanished in resizing: keep its scaled-up pixels
        region = np.asarray(small.resize((x1 - x0, y1 - y0), Image.NEAREST, box=source)) > 0
    if not region.any():
        # Smaller than one pixel of the photo (a photo of a few pixels is parsed on a larger
        # canvas): the garment keeps the photo pixels its box touches.
        bx0, by0 = int(cols[0] * sx), int(rows[0] * sy)
        bx1 = min(width, max(bx0 + 1, int(np.ceil((cols[-1] + 1) * sx))))
        by1 = min(height, max(by0 + 1, int(np.ceil((rows[-1] + 1) * sy))))
        region[by0 - y0 : by1 - y0, bx0 - x0 : bx1 - x0] = True
    full = np.zeros((height, width), bool)
    full[y0:y1, x0:x1] = region
    rows, cols = np.flatnonzero(region.any(axis=1)), np.flatnonzero(region.any(axis=0))
    box = (x0 + int(cols[0]), y0 + int(rows[0]), x0 + int(cols[-1]) + 1, y0 + int(rows[-1]) + 1)
    return Garment(label=name, score=round(score, 4), box=box, mask=full)


DETECTORS.register("parser")(GarmentParser)
