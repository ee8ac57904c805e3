"""ResNet-152 embedder for users' own torchvision-format checkpoints (the seed system's model).

Optional: needs the ``torch`` extra, and a local weights file, since fashion-search downloads
nothing. torchvision is used when installed; otherwise an in-repo ResNet-152 with exactly
torchvision's ``state_dict`` layout is built, so that ``pip install 'fashion-search[torch]'``
(torch alone) is enough.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
from PIL import Image

from fashion_search.embed import Embedder
from fashion_search.embed.preprocess import IMAGENET_MEAN, IMAGENET_STD, to_tensor
from fashion_search.errors import MissingDependencyError, ModelError, ModelNotFoundError, UsageError
from fashion_search.registry import EMBEDDERS, PathLike
from fashion_search.runtime import sha256_file
from fashion_search.vectors import l2_normalise

try:
    import torch
    from torch import nn
except ImportError:  # the optional extra is not installed; the embedder explains on use
    torch = None  # type: ignore[assignment]
    nn = None  # type: ignore[assignment]

INSTALL_HINT = "pip install 'fashion-search[torch]'"
IMAGE_SIZE = 224
LAYERS = (3, 8, 36, 3)  # ResNet-152
FEATURE_DIM = 2048


class CheckpointError(ModelError):
    """A weights file is not a usable checkpoint of the model asked for."""


if torch is not None:

    class Bottleneck(nn.Module):
        """torchvision's ResNet v1.5 bottleneck: the stride sits on the 3x3 convolution."""

        expansion = 4

        def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
            self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
            self.bn3 = nn.BatchNorm2d(planes * self.expansion)
            self.relu = nn.ReLU(inplace=True)
            self.downsample = downsample

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            identity = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.relu(self.bn2(self.conv2(out)))
            out = self.bn3(self.conv3(out))
            return self.relu(out + identity)

    class ResNet(nn.Module):
        """Attribute names mirror torchvision.models.ResNet so that its checkpoints load as is."""

        def __init__(self, layers: Sequence[int] = LAYERS, num_classes: int = 1000) -> None:
            super().__init__()
            self.inplanes = 64
            self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
            self.layer1 = self._make_layer(64, layers[0])
            self.layer2 = self._make_layer(128, layers[1], stride=2)
            self.layer3 = self._make_layer(256, layers[2], stride=2)
            self.layer4 = self._make_layer(512, layers[3], stride=2)
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(512 * Bottleneck.expansion, num_classes)
            for module in self.modules():  # torchvision's initialisation, for from-scratch use
                if isinstance(module, nn.Conv2d):
                    nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                elif isinstance(module, nn.BatchNorm2d):
                    nn.init.constant_(module.weight, 1)
                    nn.init.constant_(module.bias, 0)

        def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
            downsample = None
            if stride != 1 or self.inplanes != planes * Bottleneck.expansion:
                downsample = nn.Sequential(
                    nn.Conv2d(self.inplanes, planes * Bottleneck.expansion, 1, stride=stride, bias=False),
                    nn.BatchNorm2d(planes * Bottleneck.expansion),
                )
            modules = [Bottleneck(self.inplanes, planes, stride, downsample)]
            self.inplanes = planes * Bottleneck.expansion
            modules += [Bottleneck(self.inplanes, planes) for _ in range(1, blocks)]
            return nn.Sequential(*modules)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(torch.flatten(self.avgpool(x), 1))


def _require_torch() -> None:
    if torch is None:
        raise MissingDependencyError(f"the resnet152 embedder needs PyTorch: {INSTALL_HINT}")


def build_resnet152(use_torchvision: bool | None = None) -> "nn.Module":
    """An untrained ResNet-152 with the 1000-way classifier, torchvision's or the in-repo twin."""
    _require_torch()
    if use_torchvision is not False:
        try:
            from torchvision.models import resnet152
        except ImportError:
            if use_torchvision:
                raise
        else:
            return resnet152(weights=None)
    return ResNet(LAYERS)


def _extract_state_dict(checkpoint: Any, path: Path) -> dict[str, "torch.Tensor"]:
    state = checkpoint
    if isinstance(state, dict):
        # Training scripts commonly wrap the weights; accept the usual containers.
        for key in ("state_dict", "model", "model_state_dict"):
            if isinstance(state.get(key), dict):
                state = state[key]
                break
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise CheckpointError(
            f"{path} holds no state_dict: expected a dict of tensors, optionally under a 'state_dict' or 'model' key"
        )
    # DataParallel / DistributedDataParallel checkpoints prefix every key with "module.".
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def load_state_dict(weights: Path) -> dict[str, "torch.Tensor"]:
    """The state_dict in a checkpoint file, unwrapped from the usual training containers."""
    try:
        # weights_only: a .pth is a pickle, and an untrusted one could run code when loaded.
        checkpoint = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"cannot load {weights} as a weights-only PyTorch checkpoint ({exc}); save just the "
            "model's state_dict: torch.save(model.state_dict(), path)"
        ) from exc
    return _extract_state_dict(checkpoint, weights)


def load_backbone(weights: Path) -> "nn.Module":
    """ResNet-152 from a checkpoint, without its classifier: outputs 2048-d pooled features."""
    _require_torch()
    # The classifier is dropped anyway, and fine-tuned checkpoints may have any class count.
    state = {k: v for k, v in load_state_dict(weights).items() if not k.startswith("fc.")}
    model = build_resnet152()
    model.fc = nn.Identity()
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(
            f"{weights} is not a torchvision-format ResNet-152 checkpoint: "
            f"{len(result.missing_keys)} missing keys (e.g. {result.missing_keys[:3]}), "
            f"{len(result.unexpected_keys)} unexpected keys (e.g. {result.unexpected_keys[:3]})"
        )
    return model.eval()


@EMBEDDERS.register("resnet152")
class ResNetEmbedder(Embedder):
    """Letterboxed 224x224 image -> ResNet-152 global-average-pooled features -> unit vector."""

    name = "resnet152"
    dim = FEATURE_DIM

    def __init__(
        self,
        weights: Optional[PathLike] = None,
        batch_size: int = 16,
        threads: Optional[int] = None,
    ) -> None:
        if weights is None or str(weights) == "":
            raise UsageError(
                "the resnet152 embedder needs weights=PATH: a local torchvision-format ResNet-152 "
                "state_dict (.pth), or a checkpoint with a 'state_dict' or 'model' entry"
            )
        self.weights = Path(weights).expanduser()
        if not self.weights.is_file():
            raise ModelNotFoundError(f"ResNet-152 weights file not found: {self.weights}")
        _require_torch()
        if batch_size < 1:
            raise UsageError(f"batch_size must be positive, not {batch_size!r}")
        self.batch_size = batch_size
        if threads:
            torch.set_num_threads(threads)  # process-wide: torch has no per-model setting
        self._model = load_backbone(self.weights)
        # Vectors from different weights are not comparable: record which file made them.
        self.weights_sha256 = sha256_file(self.weights)

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        images = list(images)
        out = np.empty((len(images), self.dim), dtype=np.float32)
        for start in range(0, len(images), self.batch_size):
            chunk = images[start : start + self.batch_size]
            pixels = torch.from_numpy(to_tensor(chunk, IMAGE_SIZE, IMAGENET_MEAN, IMAGENET_STD))
            with torch.no_grad():
                out[start : start + len(chunk)] = self._model(pixels).numpy()
        return l2_normalise(out)

    def identity(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dim": self.dim,
            "model": self.weights.name,
            "sha256": self.weights_sha256,
            "input_size": IMAGE_SIZE,
            "mean": list(IMAGENET_MEAN),
            "std": list(IMAGENET_STD),
        }


__all__ = [
    "CheckpointError",
    "MissingDependencyError",
    "ResNetEmbedder",
    "build_resnet152",
    "load_backbone",
    "load_state_dict",
]
