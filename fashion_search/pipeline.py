"""The analysis shared by indexing, search and evaluation: decode an image, find its garments,
cut each out and embed it.

Indexing and search must treat images identically, or catalog and query vectors stop being
comparable; composing the steps here, once (:meth:`GarmentPipeline.prepare` and
:meth:`GarmentPipeline.embed_prepared`), guarantees it. The same goes for the models
themselves: an index records each model's identity (name, options, and what the model says
makes its output: weights by sha256, classes, input size, preprocessing), and an index whose
identities differ from the models at hand is refused rather than mixed or searched.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import numpy as np
from PIL import Image

from fashion_search.embed import Embedder
from fashion_search.errors import IndexMismatchError, UsageError
from fashion_search.garments import Garment, GarmentDetector
from fashion_search.images import MAX_PIXELS, ImageSource, load_image
from fashion_search.index_record import DEFAULT_CROP, RECORD_FORMAT, IndexRecord, ModelRecord
from fashion_search.registry import DEFAULT_DETECTOR, DEFAULT_EMBEDDER, DETECTORS, EMBEDDERS, Registry


@dataclass(frozen=True)
class Component:
    """A registry name plus the options it was created with: enough to create it again."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "options": dict(self.options)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Component":
        return cls(name=data["name"], options=dict(data.get("options") or {}))

    @classmethod
    def of(cls, model: ModelRecord) -> "Component":
        """The component an index recorded as ``model``."""
        return cls(model.name, dict(model.options))


# How a garment is cut out for embedding: its box as photographed, or its box with everything
# outside its mask (backdrop, skin, other garments) painted white like a product-shot backdrop.
# Box measured better with the shipped parser (docs/experiments/2026-11-27-masked-crops.md): its
# masks are not yet tight enough, and cutting along a ragged mask loses the garment's own edges.
CROP_MODES = ("box", "masked")
WHITE = (255, 255, 255)

# Chooses which of a photo's garments go on (indices, in order): indexing keeps those of the
# classes a category holds, worn-to-shop evaluation the one that can match the product.
GarmentChoice = Callable[[list[Garment]], list[int]]


@dataclass
class PreparedImage:
    """One image decoded, its garments found (and chosen) and cut out: what embedding needs.
    The full image is not kept, so a batch of large photos does not hold their pixels."""

    size: tuple[int, int]
    garments: list[Garment]
    crops: list[Image.Image]


def _create(registry: Registry, spec: "Component", threads: Optional[int]) -> Any:
    """The model ``spec`` names; with ``threads`` for models that take it (onnxruntime's
    intra-op threads) unless the spec sets them itself."""
    options = dict(spec.options)
    if threads is not None and "threads" not in options and "threads" in registry.option_types(spec.name):
        options["threads"] = threads
    return registry.create(spec.name, **options)


class GarmentPipeline:
    """Detector + embedder, created once per process and reused for every image.

    ``threads``: onnxruntime threads per model (default: every core this process may use; a Ray
    worker gives its share of a node)."""

    def __init__(
        self,
        embedder: Optional[Component] = None,
        detector: Optional[Component] = None,
        crop: str = DEFAULT_CROP,
        threads: Optional[int] = None,
    ) -> None:
        if crop not in CROP_MODES:
            raise UsageError(f"unknown crop mode {crop!r}; choose one of {', '.join(CROP_MODES)}")
        self.embedder_spec = embedder or Component(DEFAULT_EMBEDDER)
        self.detector_spec = detector or Component(DEFAULT_DETECTOR)
        self.crop = crop
        self.threads = threads
        self.embedder: Embedder = _create(EMBEDDERS, self.embedder_spec, threads)
        self.detector: GarmentDetector = _create(DETECTORS, self.detector_spec, threads)

    @property
    def dim(self) -> int:
        return self.embedder.dim

    def record(self) -> IndexRecord:
        """What an index built by this pipeline records about its models. Options that only say
        where weights live are recorded too, so that search can rebuild the same models from the
        index alone; the identities say whether they are still the same models."""
        return IndexRecord(
            embedder=ModelRecord(self.embedder_spec.name, dict(self.embedder_spec.options), self.embedder.identity()),
            detector=ModelRecord(self.detector_spec.name, dict(self.detector_spec.options), self.detector.identity()),
            dim=self.dim,
            crop=self.crop,
        )

    def differences(self, record: IndexRecord) -> list[str]:
        """How an index's recorded models differ from this pipeline's, one line each (empty when
        its vectors and this pipeline's are comparable)."""
        if record.format < RECORD_FORMAT:
            return [
                "it was built by an earlier fashion-search that did not record which model weights made its vectors"
            ]
        wanted = self.record()
        lines = []
        for role in ("embedder", "detector"):
            had, has = getattr(record, role), getattr(wanted, role)
            if had.name != has.name:
                lines.append(f"{role} {had.name!r} in the index, {has.name!r} here")
                continue
            before, now = _flat(had.identity), _flat(has.identity)
            for key in sorted(set(before) | set(now)):
                if before.get(key) != now.get(key):
                    lines.append(
                        f"{role} {has.name}: {key} {_short(before.get(key))} in the index, {_short(now.get(key))} here"
                    )
        for key in ("dim", "crop"):
            if getattr(record, key) != getattr(wanted, key):
                lines.append(f"{key} {getattr(record, key)!r} in the index, {getattr(wanted, key)!r} here")
        return lines

    def check(self, record: IndexRecord, where: str, remedy: str) -> None:
        """Raise :class:`IndexMismatchError` when the index at ``where`` was built with other
        models than this pipeline's, naming each difference and ``remedy``."""
        lines = self.differences(record)
        if lines:
            raise IndexMismatchError(
                f"the index at {where} was built with other models than these; its vectors "
                f"and theirs are not comparable:\n  " + "\n  ".join(lines) + f"\n{remedy}"
            )

    def detect(self, image: Image.Image, detector: Optional[GarmentDetector] = None) -> list[Garment]:
        """The garments in ``image``, by ``detector`` (default: the pipeline's own; a copy made
        with ``for_parallel_use`` when called from many threads)."""
        garments = (detector or self.detector).detect(image)
        return garments or [Garment(label="image", score=1.0, box=(0, 0, image.width, image.height))]

    def crop_garments(self, image: Image.Image, garments: Sequence[Garment]) -> list[Image.Image]:
        """What the embedder sees of each garment."""
        background = WHITE if self.crop == "masked" else None
        return [g.crop(image, background) for g in garments]

    def prepare(
        self,
        source: ImageSource,
        detector: Optional[GarmentDetector] = None,
        choose: Optional[GarmentChoice] = None,
        timings: Optional[dict[str, float]] = None,
        max_pixels: int = MAX_PIXELS,
    ) -> PreparedImage:
        """Decode ``source``, find its garments (those ``choose`` picks, when given) and cut each
        out: the one way search, indexing and evaluation turn an image into crops. Stage times
        in ms go into ``timings`` (``decode``, ``detect``). Raises :class:`ImageError` for a file
        that is not a readable image."""
        started = time.perf_counter()
        picture = load_image(source, max_pixels=max_pixels)
        decoded = time.perf_counter()
        garments = self.detect(picture, detector)
        if choose is not None:
            garments = [garments[i] for i in choose(garments)]
        crops = self.crop_garments(picture, garments)
        if timings is not None:
            timings["decode"] = (decoded - started) * 1e3
            timings["detect"] = (time.perf_counter() - decoded) * 1e3
        return PreparedImage(picture.size, garments, crops)

    def embed_prepared(
        self, prepared: Sequence[PreparedImage], timings: Optional[dict[str, float]] = None
    ) -> list[np.ndarray]:
        """Vectors for the crops of each prepared image, embedded in one batch across images
        (time in ms into ``timings["embed"]``)."""
        started = time.perf_counter()
        vectors = self.embed_crops([p.crops for p in prepared])
        if timings is not None:
            timings["embed"] = (time.perf_counter() - started) * 1e3
        return vectors

    def embed_crops(self, crops: Sequence[Sequence[Image.Image]]) -> list[np.ndarray]:
        """Vectors for each image's garment crops, embedded in one batch across images."""
        flat = [crop for per_image in crops for crop in per_image]
        vectors = self.embedder.embed(flat) if flat else np.zeros((0, self.dim), np.float32)
        out, start = [], 0
        for per_image in crops:
            out.append(vectors[start : start + len(per_image)])
            start += len(per_image)
        return out

    def embed_garments(self, images: Sequence[Image.Image], garments: Sequence[Sequence[Garment]]) -> list[np.ndarray]:
        """Vectors for each image's garments, embedded in one batch across images."""
        return self.embed_crops([self.crop_garments(img, gs) for img, gs in zip(images, garments)])


def _flat(identity: Any, prefix: str = "") -> dict[str, Any]:
    """A nested identity (a combined embedder's parts) as ``{"parts.0.sha256": ...}``."""
    if isinstance(identity, dict):
        items = identity.items()
    elif isinstance(identity, list) and any(isinstance(v, dict) for v in identity):
        items = ((str(i), v) for i, v in enumerate(identity))
    else:
        return {prefix: identity}
    flat: dict[str, Any] = {}
    for key, value in items:
        flat.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def model_files(identity: dict[str, Any]) -> list[tuple[str, str]]:
    """``(file name, sha256)`` of every weights file an identity names, parts included."""
    flat = _flat(identity)
    return [
        (str(flat.get(key[: -len("sha256")] + "model", "?")), value)
        for key, value in flat.items()
        if key.endswith("sha256")
    ]


def _short(value: Any) -> str:
    """A recorded value as it reads in a message: hashes shortened, long lists elided."""
    if isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value):
        return f"{value[:12]}..."
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def pipeline_from_record(
    record: IndexRecord,
    embedder: Optional[Component] = None,
    detector: Optional[Component] = None,
    crop: Optional[str] = None,
    threads: Optional[int] = None,
) -> GarmentPipeline:
    """The models an index was built with (by name and options, as recorded), or the ones given."""
    return GarmentPipeline(
        embedder=embedder or Component.of(record.embedder),
        detector=detector or Component.of(record.detector),
        crop=crop or record.crop,
        threads=threads,
    )
