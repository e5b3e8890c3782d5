"""The tables the engine computes with: one `LayerWeights` per block and the model's
`ModelWeights`, filled by a family's `read_weights` (generator.engine.families) from a
TransformerBridge in compatibility mode (folded LayerNorms, centred writing weights)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

import torch
import torch.nn.functional as F

ACT_FNS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "gelu": F.gelu,
    "relu": F.relu,
    "silu": F.silu,
}

Affine = tuple[torch.Tensor | None, torch.Tensor | None]  # LayerNorm (weight, bias); None = identity


@dataclass(frozen=True)
class LayerWeights:
    W_Q: torch.Tensor  # [d_model, head * d_head]  (heads fused: one matmul for all heads)
    W_K: torch.Tensor
    W_V: torch.Tensor
    b_Q: torch.Tensor  # [head * d_head]
    b_K: torch.Tensor
    b_V: torch.Tensor
    W_O: torch.Tensor  # [head * d_head, d_model]
    b_O: torch.Tensor  # [d_model]
    W_in: torch.Tensor  # [d_model, d_mlp]
    b_in: torch.Tensor  # [d_mlp]
    W_out: torch.Tensor  # [d_mlp, d_model]
    b_out: torch.Tensor  # [d_model]
    ln1: Affine
    ln2: Affine


@dataclass(frozen=True)
class ModelWeights:
    W_E: torch.Tensor  # [vocab, d_model]
    W_pos: torch.Tensor  # [n_ctx, d_model]
    W_U: torch.Tensor  # [d_model, vocab]
    b_U: torch.Tensor  # [vocab]
    layers: tuple[LayerWeights, ...]
    ln_final: Affine
    n_heads: int
    d_head: int
    eps: float
    attn_scale: float
    act_fn: Callable[[torch.Tensor], torch.Tensor]
    family: ModuleType  # the generator.engine.families module whose block these weights fill

    @property
    def n_layers(self) -> int:
        return len(self.layers)


def affine(norm) -> Affine:
    """The LayerNorm's weight and bias, or None where they are the identity (after fold_ln)."""
    w, b = getattr(norm, "weight", None), getattr(norm, "bias", None)
    w = None if w is None or bool((w == 1).all()) else w.detach()
    b = None if b is None or bool((b == 0).all()) else b.detach()
    return w, b
