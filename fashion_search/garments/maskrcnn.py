"""Mask R-CNN garment detector for users' own torchvision-format checkpoints.

The seed system detected garments with a Mask R-CNN fine-tuned on DeepFashion2; this detector
runs such a model: torchvision's ``maskrcnn_resnet50_fpn`` ``state_dict`` (any class count)
from a local file, plus the names of its classes. Optional: needs the ``torch`` extra.
torchvision is used when installed; otherwise the in-repo twin in ``maskrcnn_model`` (same
``state_dict`` layout, same eval-mode results) runs it on torch alone.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
from PIL import Image

from fashion_search.embed.resnet import INSTALL_HINT, CheckpointError
from fashion_search.errors import MissingDependencyError, ModelNotFoundError, UsageError
from fashion_search.garments import Garment, GarmentDetector
from fashion_search.registry import DETECTORS, PathLike
from fashion_search.runtime import sha256_file

try:
    import torch
    from torch import nn
except ImportError:  # the optional extra is not installed; the detector explains on use
    torch = None  # type: ignore[assignment]
    nn = None  # type: ignore[assignment]

# DeepFashion2's categories, in its category_id order (1-13).
DEEPFASHION2_CLASSES: tuple[str, ...] = (
    "short_sleeved_shirt",
    "long_sleeved_shirt",
    "short_sleeved_outwear",
    "long_sleeved_outwear",
    "vest",
    "sling",
    "shorts",
    "trousers",
    "skirt",
    "short_sleeved_dress",
    "long_sleeved_dress",
    "vest_dress",
    "sling_dress",
)
CLASS_WEIGHT_KEY = "roi_heads.box_predictor.cls_score.weight"


def _require_torch() -> None:
    if torch is None:
        raise MissingDependencyError(f"the maskrcnn detector needs PyTorch: {INSTALL_HINT}")


def build_maskrcnn(num_classes: int, use_torchvision: bool | None = None, **config: Any) -> "nn.Module":
    """An untrained Mask R-CNN (ResNet-50 FPN), torchvision's or the in-repo twin.

    ``num_classes`` counts the background; ``config`` takes torchvision's MaskRCNN keywords
    that both implementations share (min_size, max_size, box_score_thresh, box_nms_thresh,
    box_detections_per_img).
    """
    _require_torch()
    if use_torchvision is not False:
        try:
            from torchvision.models.detection import maskrcnn_resnet50_fpn
        except ImportError:
            if use_torchvision:
                raise
        else:
            return maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=num_classes, **config)
    from fashion_search.garments.maskrcnn_model import MaskRCNN

    return MaskRCNN(num_classes, **config)


def parse_classes(classes: str | os.PathLike | Sequence[str]) -> list[str]:
    """Class names from a list, ``"deepfashion2"``, a comma-separated string, or a file (a JSON
    list, or text with one name per line)."""
    if isinstance(classes, (list, tuple)):
        names = [str(c).strip() for c in classes]
    else:
        text = str(classes).strip()
        path = Path(text).expanduser()
        if text.lower() == "deepfashion2":
            names = list(DEEPFASHION2_CLASSES)
        elif path.is_file():
            content = path.read_text(encoding="utf-8")
            if path.suffix.lower() == ".json":
                names = json.loads(content)
                if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                    raise UsageError(f"{path} must hold a JSON list of class names")
            else:
                names = [line.strip() for line in content.splitlines() if line.strip()]
        elif os.sep in text or path.suffix.lower() in (".txt", ".json", ".names"):
            raise ModelNotFoundError(f"class list file not found: {path}")
        else:
            names = [n.strip() for n in text.split(",")]
    if not names or not all(names):
        raise UsageError(f"empty class name in the class list {classes!r}")
    return names


def load_detection_model(weights: Path, classes: Sequence[str], **config: Any) -> "nn.Module":
    """A Mask R-CNN in eval mode from a checkpoint whose foreground classes are ``classes``."""
    _require_torch()
    from fashion_search.embed.resnet import load_state_dict
    from fashion_search.garments.maskrcnn_model import upgrade_legacy_keys

    state = upgrade_legacy_keys(load_state_dict(weights))
    if CLASS_WEIGHT_KEY not in state:
        raise CheckpointError(
            f"{weights} is not a torchvision-format Mask R-CNN checkpoint: it has no {CLASS_WEIGHT_KEY}"
        )
    num_classes = int(state[CLASS_WEIGHT_KEY].shape[0])
    if num_classes - 1 != len(classes):
        raise CheckpointError(
            f"{weights} predicts {num_classes - 1} classes (plus background), but {len(classes)} class "
            f"names were given: {', '.join(classes)}"
        )
    model = build_maskrcnn(num_classes, **config)
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # tensors of the wrong shape
        raise CheckpointError(f"{weights} does not fit Mask R-CNN ResNet-50 FPN: {exc}") from exc
    # Backbones trained with plain BatchNorm count batches; the eval-mode result does not use it.
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    if missing or result.unexpected_keys:
        raise CheckpointError(
            f"{weights} is not a torchvision-format Mask R-CNN ResNet-50 FPN checkpoint: "
            f"{len(missing)} missing keys (e.g. {missing[:3]}), "
            f"{len(result.unexpected_keys)} unexpected keys (e.g. {result.unexpected_keys[:3]})"
        )
    return model.eval()


@DETECTORS.register("maskrcnn")
class MaskRCNNDetector(GarmentDetector):
    """Garments found by a Mask R-CNN: one per detection scoring at least ``score_threshold``,
    best first, with its class name and its mask. No detection gives an empty list."""

    name = "maskrcnn"

    def __init__(
        self,
        weights: Optional[PathLike] = None,
        classes: Optional[str | Sequence[str]] = None,
        score_threshold: float = 0.5,
        mask_threshold: float = 0.5,
        max_detections: int = 20,
        min_size: int = 800,
        max_size: int = 1333,
        threads: Optional[int] = None,
    ) -> None:
        if weights is None or str(weights) == "":
            raise UsageError(
                "the maskrcnn detector needs weights=PATH: a local torchvision-format Mask R-CNN "
                "ResNet-50 FPN state_dict (.pth), e.g. fine-tuned on DeepFashion2"
            )
        if classes is None:
            raise UsageError(
                "the maskrcnn detector needs classes=: the checkpoint's class names in order, background "
                "excluded (a list, a comma-separated string, a file with one per line, or 'deepfashion2')"
            )
        self.weights = Path(weights).expanduser()
        if not self.weights.is_file():
            raise ModelNotFoundError(f"Mask R-CNN weights file not found: {self.weights}")
        _require_torch()
        self.classes = parse_classes(classes)
        self.score_threshold = score_threshold
        self.mask_threshold = mask_threshold
        self.max_detections = max_detections
        self.min_size, self.max_size = min_size, max_size
        if self.max_detections < 1 or self.min_size < 1 or self.max_size < self.min_size:
            raise UsageError("max_detections and min_size must be positive, and max_size at least min_size")
        if threads:
            torch.set_num_threads(threads)  # process-wide: torch has no per-model setting
        # Thresholding inside the model is exact (greedy NMS never lets a lower score suppress a
        # higher one) and spares the mask head the boxes that would be dropped anyway.
        self._model = load_detection_model(
            self.weights,
            self.classes,
            min_size=self.min_size,
            max_size=self.max_size,
            box_score_thresh=self.score_threshold,
            box_detections_per_img=self.max_detections,
        )
        # Garment crops, hence index vectors, depend on the weights: record which file made them.
        self.weights_sha256 = sha256_file(self.weights)

    def detect(self, image: Image.Image) -> list[Garment]:
        image = image.convert("RGB")
        pixels = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
        with torch.inference_mode():
            found = self._model([pixels])[0]
        garments = []
        width, height = image.size
        for box, label, score, mask in zip(
            found["boxes"].tolist(), found["labels"].tolist(), found["scores"].tolist(), found["masks"]
        ):
            x1 = min(max(int(np.floor(box[0])), 0), width - 1)
            y1 = min(max(int(np.floor(box[1])), 0), height - 1)
            x2 = min(max(int(np.ceil(box[2])), x1 + 1), width)
            y2 = min(max(int(np.ceil(box[3])), y1 + 1), height)
            garments.append(
                Garment(
                    label=self.classes[label - 1],
                    score=round(float(score), 4),
                    box=(x1, y1, x2, y2),
                    mask=(mask[0] > self.mask_threshold).numpy(),
                )
            )
        return garments

    def identity(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": self.weights.name,
            "sha256": self.weights_sha256,
            "classes": list(self.classes),
            "score_threshold": self.score_threshold,
            "mask_threshold": self.mask_threshold,
            "max_detections": self.max_detections,
            "min_size": self.min_size,
            "max_size": self.max_size,
        }


__all__ = ["DEEPFASHION2_CLASSES", "MaskRCNNDetector", "build_maskrcnn", "load_detection_model", "parse_classes"]
