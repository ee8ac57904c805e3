"""Weight averaging of parser runs fine-tuned from one starting point.

Runs of one recipe that differ only in their seed can land on either side of the ship rule
(docs/experiments/2026-12-02-parser-second-seed.md); the average of their weights (a "model
soup", Wortsman et al., ICML 2022) is one model whose figures vary less than any run's. It holds
only for runs that start from the same weights, so that their parameters stay in one basin.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import torch

from fashion_search.errors import UsageError
from fashion_search.garments.taxonomy import PARSER_CLASSES
from fashion_search.runtime import sha256_file
from fashion_search.training.parser.model import ParserNet, load_checkpoint

# Options two runs must share for their weights to be averaged into one network.
SAME_NETWORK = ("backbone", "decoder", "frozen_blocks", "pixel_scaling", "height", "width", "init")


def _run_config(run: Path) -> dict[str, Any]:
    try:
        return json.loads((run / "training.json").read_text())["config"]
    except FileNotFoundError:
        raise UsageError(f"{run} holds no finished parser run (training.json and parser.pt)") from None


def average_runs(runs: Sequence[str | Path], output: Path) -> dict[str, Any]:
    """Average the ``parser.pt`` weights of ``runs`` (batch-norm statistics included) into
    ``output``: ``parser.pt``, ``garment_parser.onnx`` and ``average.json``, which names the runs."""
    from fashion_search.training.parser.train import export_onnx

    runs = [Path(r) for r in runs]
    if len(runs) < 2:
        raise UsageError("averaging needs two runs or more")
    configs = [_run_config(r) for r in runs]
    for key in SAME_NETWORK:
        values = {str(c.get(key)) for c in configs}
        if len(values) > 1:
            raise UsageError(f"runs differ in {key} ({', '.join(sorted(values))}): their weights cannot be averaged")
    first = configs[0]
    net = ParserNet(
        len(PARSER_CLASSES),
        (first["height"], first["width"]),
        first["frozen_blocks"],
        first["decoder"],
        first["backbone"],
    )
    states = []
    for run in runs:
        load_checkpoint(net, str(run / "parser.pt"))
        states.append({name: value.clone() for name, value in net.state_dict().items()})
    averaged = {
        name: torch.stack([s[name].float() for s in states]).mean(0).to(value.dtype)
        if value.is_floating_point()
        else value  # batch counters: not weights
        for name, value in states[0].items()
    }
    net.load_state_dict(averaged)
    output.mkdir(parents=True, exist_ok=True)
    torch.save(averaged, output / "parser.pt")
    export_onnx(net, output / "garment_parser.onnx", first["pixel_scaling"])
    record = {
        "runs": [str(r) for r in runs],
        "seeds": [c.get("seed") for c in configs],
        "parser_sha256": [sha256_file(r / "parser.pt") for r in runs],
        "config": {key: first.get(key) for key in SAME_NETWORK},
        "model_sha256": sha256_file(output / "garment_parser.onnx"),
    }
    (output / "average.json").write_text(json.dumps(record, indent=2) + "\n")
    return record
