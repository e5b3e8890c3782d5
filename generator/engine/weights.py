"""The weights the engine computes with, read once from a TransformerBridge in compatibility
mode (folded LayerNorms, centred writing weights): one `LayerWeights` per block."""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable
from dataclasses import dataclass

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

    @property
    def n_layers(self) -> int:
        return len(self.layers)


def check_supported(model) -> None:
    """Refuse configurations the engine's forward does not implement, naming the field."""
    cfg = model.cfg
    unsupported = {
        "positional_embedding_type": getattr(cfg, "positional_embedding_type", "standard") != "standard",
        "normalization_type": getattr(cfg, "normalization_type", "LN") not in ("LN", "LNPre"),
        "attn_only": bool(getattr(cfg, "attn_only", False)),
        "gated_mlp": bool(getattr(cfg, "gated_mlp", False)),
        "parallel_attn_mlp": bool(getattr(cfg, "parallel_attn_mlp", False)),
        "act_fn": getattr(cfg, "act_fn", None) not in ACT_FNS,
        "n_key_value_heads": getattr(cfg, "n_key_value_heads", None) not in (None, cfg.n_heads),
        "attention_dir": getattr(cfg, "attention_dir", "causal") != "causal",
        "use_local_attn": bool(getattr(cfg, "use_local_attn", False)),
        "scale_attn_by_inverse_layer_idx": bool(getattr(cfg, "scale_attn_by_inverse_layer_idx", False)),
        "attn_scores_soft_cap": (getattr(cfg, "attn_scores_soft_cap", -1.0) or -1.0) > 0,
        "output_logits_soft_cap": (getattr(cfg, "output_logits_soft_cap", -1.0) or -1.0) > 0,
        "use_qk_norm": bool(getattr(cfg, "use_qk_norm", False)),
        "post_embedding_ln": bool(getattr(cfg, "post_embedding_ln", False)),
        "final_rms": bool(getattr(cfg, "final_rms", False)),
    }
    bad = [f"{k}={getattr(cfg, k, None)!r}" for k, v in unsupported.items() if v]
    if bad:
        raise NotImplementedError(
            f"generator.engine supports GPT-2-style models (pre-LayerNorm, learned positions, "
            f"causal multi-head attention, plain MLP); this model has {', '.join(bad)}. "
            "Use transformer_lens.patching's sweeps for it instead."
        )
    training = [name or "<root>" for name, mod in model.named_modules() if mod.training]
    if training:
        raise ValueError(
            f"activation patching needs the model in eval mode; {training[0]} is training. Call model.eval() first."
        )


def _affine(norm) -> Affine:
    """The LayerNorm's weight and bias, or None where they are the identity (after fold_ln)."""
    w, b = getattr(norm, "weight", None), getattr(norm, "bias", None)
    w = None if w is None or bool((w == 1).all()) else w.detach()
    b = None if b is None or bool((b == 0).all()) else b.detach()
    return w, b


_cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def model_weights(model) -> ModelWeights:
    """Detached weights of a GPT-2-style TransformerBridge, heads fused per layer. Read once per
    model (the bridge stacks each weight from its blocks on every access, which is slow)."""
    check_supported(model)
    if model not in _cache:
        _cache[model] = _read_weights(model)
    return _cache[model]


def _read_weights(model) -> ModelWeights:
    cfg = model.cfg

    def fused(w):  # [layer, head, d_model, d_head] -> [layer, d_model, head * d_head]
        return w.detach().permute(0, 2, 1, 3).reshape(w.shape[0], w.shape[2], -1).contiguous()

    W_Q, W_K, W_V = fused(model.W_Q), fused(model.W_K), fused(model.W_V)
    W_O = model.W_O.detach().flatten(1, 2).contiguous()  # [layer, head * d_head, d_model]
    b_Q, b_K, b_V = (b.detach().flatten(1) for b in (model.b_Q, model.b_K, model.b_V))  # [layer, head * d_head]
    b_O, W_in, b_in, W_out, b_out = (x.detach() for x in (model.b_O, model.W_in, model.b_in, model.W_out, model.b_out))
    layers = tuple(
        LayerWeights(
            W_Q=W_Q[l], W_K=W_K[l], W_V=W_V[l], b_Q=b_Q[l], b_K=b_K[l], b_V=b_V[l], W_O=W_O[l], b_O=b_O[l],
            W_in=W_in[l], b_in=b_in[l], W_out=W_out[l], b_out=b_out[l],
            ln1=_affine(model.blocks[l].ln1), ln2=_affine(model.blocks[l].ln2),
        )
        for l in range(cfg.n_layers)
    )  # fmt: skip
    scale = cfg.attn_scale if getattr(cfg, "attn_scale", -1.0) > 0 else math.sqrt(cfg.d_head)
    return ModelWeights(
        W_E=model.W_E.detach(), W_pos=model.W_pos.detach(), W_U=model.W_U.detach(), b_U=model.b_U.detach(),
        layers=layers, ln_final=_affine(model.ln_final), n_heads=cfg.n_heads, d_head=cfg.d_head,
        eps=cfg.eps, attn_scale=scale if getattr(cfg, "use_attn_scale", True) else 1.0,
        act_fn=ACT_FNS[cfg.act_fn],
    )  # fmt: skip
