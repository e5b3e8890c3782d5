"""GPT-2-style blocks (GPT-2 and the bundled organisms): pre-LayerNorm, learned absolute
positions added to the token embedding, causal multi-head attention, a plain MLP, and a
sequential residual (the MLP reads the residual after attention has written to it)."""

from __future__ import annotations

import math
import sys

import torch

from generator.engine import ops
from generator.engine.ops import Op
from generator.engine.weights import ACT_FNS, LayerWeights, ModelWeights, affine

NAME = "GPT-2-style"
SHAPE = "pre-LayerNorm, learned positions, causal multi-head attention, plain MLP, sequential residual"
RESIDUAL = "sequential"  # the MLP reads resid_mid (attention's write included)
ROTARY = False  # positions enter as embeddings, not as a rotation of q and k


def mismatches(cfg) -> list[str]:
    """`field=value` for each of the model config's fields whose value this block does not
    implement; empty when the engine reproduces the model (checked again on its logits)."""
    differs = {
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
    return [f"{k}={getattr(cfg, k, None)!r}" for k, v in differs.items() if v]


def read_weights(model) -> ModelWeights:
    """Detached weights of a GPT-2-style TransformerBridge, heads fused per layer."""
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
            ln1=affine(model.blocks[l].ln1), ln2=affine(model.blocks[l].ln2),
        )
        for l in range(cfg.n_layers)
    )  # fmt: skip
    scale = cfg.attn_scale if getattr(cfg, "attn_scale", -1.0) > 0 else math.sqrt(cfg.d_head)
    return ModelWeights(
        W_E=model.W_E.detach(), W_pos=model.W_pos.detach(), W_U=model.W_U.detach(), b_U=model.b_U.detach(),
        layers=layers, ln_final=affine(model.ln_final), n_heads=cfg.n_heads, d_head=cfg.d_head,
        eps=cfg.eps, attn_scale=scale if getattr(cfg, "use_attn_scale", True) else 1.0,
        act_fn=ACT_FNS[cfg.act_fn], family=sys.modules[__name__],
    )  # fmt: skip


# ---- the block: what the two runners call ----------------------------------------------------
# GPT-2's choices among ops' primitives, looked up in ops at each call (not aliased at import),
# so ops holds the one definition that every runner computes with.


def norm(x: torch.Tensor, affine, eps: float) -> torch.Tensor:
    return ops.layer_norm(x, affine, eps)


def norm_scale(x: torch.Tensor, eps: float) -> torch.Tensor:
    return ops.layer_norm_scale(x, eps)


def mlp(x: torch.Tensor, layer: LayerWeights, act_fn) -> torch.Tensor:
    return ops.mlp(x, layer, act_fn)


def positions(w: ModelWeights, start: int, stop: int) -> torch.Tensor:
    """What the residual stream gets for positions start..stop-1 besides the tokens: learned
    position embeddings [stop - start, D]."""
    return w.W_pos[start:stop]


# The block as a table (in compute order): each activation, under its TransformerLens hook
# name, the activations it reads and how it is computed.
OPS: dict[str, Op] = {
    "ln1": Op(("resid_pre",), lambda s, x: norm(x, s.layer.ln1, s.model.eps)),
    "q": Op(("ln1",), lambda s, x: ops.project(x, s.layer.W_Q, s.layer.b_Q, s.model.n_heads)),
    "k": Op(("ln1",), lambda s, x: ops.project(x, s.layer.W_K, s.layer.b_K, s.model.n_heads)),
    "v": Op(("ln1",), lambda s, x: ops.project(x, s.layer.W_V, s.layer.b_V, s.model.n_heads)),
    # keys and values before s.start are the cached prefix's, read beside the recomputed ones
    "pattern": Op(("q", "k"), lambda s, q, k: ops.attention_pattern(q, k, s.model.attn_scale, prefix=s.prefix_k)),
    "z": Op(("pattern", "v"), lambda s, p, v: ops.mix_values(p, v, s.prefix_v)),
    "attn_out": Op(("z",), lambda s, z: ops.attention_out(z, s.layer.W_O, s.layer.b_O)),
    "resid_mid": Op(("resid_pre", "attn_out"), lambda s, r, a: r + a),
    "ln2": Op(("resid_mid",), lambda s, x: norm(x, s.layer.ln2, s.model.eps)),
    "mlp_out": Op(("ln2",), lambda s, x: mlp(x, s.layer, s.model.act_fn)),
    "resid_post": Op(("resid_mid", "mlp_out"), lambda s, r, m: r + m),
}
BLOCK = ("resid_pre", *OPS)  # every activation of a block, in compute order
CACHED = tuple(name for name in BLOCK if not name.startswith("ln"))  # what TransformerLens caches
# In the last layer only the final position is carried on, except for what feeds keys/values.
ALL_POSITIONS_IN_LAST_LAYER = ("ln1", "k", "v")
