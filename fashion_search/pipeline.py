"""The analysis shared by indexing and search: find the garments in an image, embed each.

Indexing and search must treat images identically, or catalog and query vectors stop being
comparable; keeping the steps in one place guarantees it. The same goes for the models
themselves: an index records each model's identity (name, options, and what the model says
makes its output: weights by sha256, classes, input size, preprocessing), and an index whose
identities differ from the models at hand is refused rather than mixed or searched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import numpy as np
from PIL import Image

from fashion_search.embed import Embedder, create_embedder
from fashion_search.errors import IndexMismatchError, UsageError
from fashion_search.garments import Garment, GarmentDetector, create_detector
from fashion_search.registry import DEFAULT_DETECTOR, DEFAULT_EMBEDDER

# Version of what the manifest holds. 2: each model's identity is recorded (earlier indexes
# did not record which weights made their vectors).
MANIFEST_FORMAT = 2


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


# How a garment is cut out for embedding: its box as photographed, or its box with everything
# outside its mask (backdrop, skin, other garments) painted white like a product-shot backdrop.
# Box measured better with the shipped parser (docs/experiments/2026-11-27-masked-crops.md): its
# masks are not yet tight enough, and cutting along a ragged mask loses the garment's own edges.
CROP_MODES = ("box", "masked")
DEFAULT_CROP = "box"
WHITE = (255, 255, 255)


class GarmentPipeline:
    """Detector + embedder, created once per process and reused for every image."""

    def __init__(
        self,
        embedder: Optional[Component] = None,
        detector: Optional[Component] = None,
        crop: str = DEFAULT_CROP,
    ) -> None:
        if crop not in CROP_MODES:
            raise UsageError(f"unknown crop mode {crop!r}; choose one of {', '.join(CROP_MODES)}")
        self.embedder_spec = embedder or Component(DEFAULT_EMBEDDER)
        self.detector_spec = detector or Component(DEFAULT_DETECTOR)
        self.crop = crop
        self.embedder: Embedder = create_embedder(self.embedder_spec.name, **self.embedder_spec.options)
        self.detector: GarmentDetector = create_detector(self.detector_spec.name, **self.detector_spec.options)

    @property
    def dim(self) -> int:
        return self.embedder.dim

    def manifest(self) -> dict[str, Any]:
        """What an index built by this pipeline records about its models. Options that only say
        where weights live are recorded too, so that search can rebuild the same models from the
        index alone; the identities say whether they are still the same models."""
        return {
            "format": MANIFEST_FORMAT,
            "embedder": {**self.embedder_spec.to_dict(), "identity": self.embedder.identity()},
            "detector": {**self.detector_spec.to_dict(), "identity": self.detector.identity()},
            "dim": self.dim,
            "crop": self.crop,
        }

    def differences(self, manifest: dict[str, Any]) -> list[str]:
        """How an index's recorded models differ from this pipeline's, one line each (empty when
        its vectors and this pipeline's are comparable)."""
        if manifest.get("format", 1) < MANIFEST_FORMAT:
            return [
                "it was built by an earlier fashion-search that did not record which model weights made its vectors"
            ]
        wanted = self.manifest()
        lines = []
        for role in ("embedder", "detector"):
            had, has = manifest.get(role) or {}, wanted[role]
            if had.get("name") != has["name"]:
                lines.append(f"{role} {had.get('name')!r} in the index, {has['name']!r} here")
                continue
            before, now = _flat(had.get("identity", {})), _flat(has["identity"])
            for key in sorted(set(before) | set(now)):
                if before.get(key) != now.get(key):
                    lines.append(
                        f"{role} {has['name']}: {key} {_short(before.get(key))} in the index, "
                        f"{_short(now.get(key))} here"
                    )
        for key in ("dim", "crop"):
            if manifest.get(key) != wanted[key]:
                lines.append(f"{key} {manifest.get(key)!r} in the index, {wanted[key]!r} here")
        return lines

    def check(self, manifest: dict[str, Any], where: str, remedy: str) -> None:
        """Raise :class:`IndexMismatchError` when the index at ``where`` was built with other
        models than this pipeline's, naming each difference and ``remedy``."""
        lines = self.differences(manifest)
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


def pipeline_from_manifest(
    manifest: dict[str, Any],
    embedder: Optional[Component] = None,
    detector: Optional[Component] = None,
    crop: Optional[str] = None,
) -> GarmentPipeline:
    """The models an index was built with (by name and options, as recorded), or the ones given."""
    return GarmentPipeline(
        embedder=embedder or Component.from_dict(manifest["embedder"]),
        detector=detector or Component.from_dict(manifest["detector"]),
        crop=crop or manifest.get("crop", DEFAULT_CROP),
    )
