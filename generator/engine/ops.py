"""The block operations, each written once: LayerNorm, the q/k/v projection, the causal
attention pattern and its mix of values, the MLP and the answer readout; and the table form
(`Op`) in which a model family lays out its block. The patching engine (generator.engine) runs
a family's table; the circuit runner (generator.engine.graph) calls these same functions on
its per-reader inputs, so both compute one forward.

Every function takes any leading axes. In the patching engine they are [V, B] (V variants,
B prompts), in the circuit runner [B]. Shapes after them (P positions computed, N = every
position, H heads, D = d_model, d = d_head):
  resid_pre, resid_mid, resid_post, attn_out, mlp_out, ln1, ln2   [..., P, D]
  q, k, v, z                                                        [..., P, H, d]
  pattern                                                           [..., H, P, N]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from generator.engine.weights import Affine, LayerWeights, ModelWeights


def layer_norm(x: torch.Tensor, affine: Affine, eps: float) -> torch.Tensor:
    """LayerNorm over the last axis (after fold_ln the affine part is usually the identity)."""
    w, b = affine
    return F.layer_norm(x, x.shape[-1:], w, b, eps)


def layer_norm_scale(x: torch.Tensor, eps: float) -> torch.Tensor:
    """The divisor LayerNorm applies to x [..., D] (sqrt(var + eps) [..., 1]): path patching
    holds it fixed to carry a change into a reader linearly."""
    centred = x - x.mean(-1, keepdim=True)  # as TransformerLens computes it
    return (centred.pow(2).mean(-1, keepdim=True) + eps).sqrt()


def split_heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:  # [..., H*d] -> [..., H, d]
    return x.unflatten(-1, (n_heads, -1))


def project(x: torch.Tensor, W: torch.Tensor, b: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Queries, keys or values of every head from one input: [..., D] -> [..., H, d]."""
    return split_heads(x @ W + b, n_heads)


def project_heads(
    x: torch.Tensor, W: torch.Tensor, b: torch.Tensor, heads: torch.Tensor | slice, n_heads: int
) -> torch.Tensor:
    """Queries, keys or values of some heads, each from an input of its own (the circuit
    runner's readers): x [K, ..., P, D] for the K heads `heads` -> [..., P, K, d]."""
    W, b = W.unflatten(-1, (n_heads, -1))[:, heads], b.unflatten(-1, (n_heads, -1))[heads]
    return torch.einsum("k...pd,dke->...pke", x, W) + b


def join_positions(prefix: torch.Tensor | None, suffix: torch.Tensor, dim: int) -> torch.Tensor:
    """Cached earlier positions joined to recomputed later ones, broadcasting the first axis
    (the patching engine's variants share one cached prefix)."""
    if prefix is None:
        return suffix
    lead = torch.broadcast_shapes(prefix.shape[:1], suffix.shape[:1])
    return torch.cat([prefix.expand(*lead, *prefix.shape[1:]), suffix.expand(*lead, *suffix.shape[1:])], dim)


def attention_pattern(
    q: torch.Tensor,
    k: torch.Tensor,
    scale: float,
    key_mask: torch.Tensor | None = None,
    prefix: torch.Tensor | None = None,
) -> torch.Tensor:
    """Causal softmax(q·k / scale): q [..., P, H, d] at the last P of the N positions, k
    [..., N, H, d] at every position -> [..., H, P, N]. key_mask [..., 1, 1, N] bool: keys no
    query may read (left padding), besides the later ones. prefix: the patching engine's keys
    [1, B, S, H, d] of the first S positions, the same for each of q's V variants ([V, B, P, H,
    d]); k then holds only the later ones."""
    scores = q.transpose(-3, -2) @ k.transpose(-3, -2).transpose(-2, -1) / scale
    if prefix is not None:  # read as it is, not copied per variant (hand-written: a join would)
        early = torch.einsum("vbqhd,bkhd->vbhqk", q, prefix[0]) / scale  # q may have 1 variant, k many
        lead = torch.broadcast_shapes(early.shape[:-1], scores.shape[:-1])
        scores = torch.cat([early.expand(*lead, -1), scores.expand(*lead, -1)], -1)
    n_pos = scores.shape[-1]
    q_pos = torch.arange(n_pos - q.shape[-3], n_pos, device=q.device)
    k_pos = torch.arange(n_pos, device=q.device)
    scores = scores.masked_fill(k_pos[None, :] > q_pos[:, None], float("-inf"))
    return (scores if key_mask is None else scores.masked_fill(key_mask, float("-inf"))).softmax(-1)


def mix_values(pattern: torch.Tensor, v: torch.Tensor, prefix: torch.Tensor | None = None) -> torch.Tensor:
    """pattern @ v per head: [..., H, P, N] x [..., N, H, d] -> z [..., P, H, d]. prefix: values
    of the first S positions shared by every variant, as in attention_pattern (v the later ones)."""
    if prefix is None:
        return (pattern @ v.transpose(-3, -2)).transpose(-3, -2)
    early, late = pattern.split([prefix.shape[-3], v.shape[-3]], -1)
    return torch.einsum("vbhqk,bkhd->vbqhd", early, prefix[0]) + (late @ v.transpose(-3, -2)).transpose(-3, -2)


def attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, key_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """z [..., P, H, d] of causal attention (k and v at every position; key_mask as in
    attention_pattern)."""
    return mix_values(attention_pattern(q, k, scale, key_mask), v)


def attention_out(z: torch.Tensor, W_O: torch.Tensor, b_O: torch.Tensor) -> torch.Tensor:
    """What attention writes: every head's z through W_O [H*d, D], summed, plus the bias."""
    return z.flatten(-2) @ W_O + b_O


def head_writes(z: torch.Tensor, W_O: torch.Tensor) -> torch.Tensor:
    """Each head's write apart, z [..., P, H, d] -> [..., P, H, D] (attention_out without the
    sum over heads and the bias): the circuit runner's writers."""
    return torch.einsum("...phe,hed->...phd", z, W_O.unflatten(0, (z.shape[-2], -1)))


def mlp(x: torch.Tensor, layer: LayerWeights, act_fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """The plain MLP: [..., D] -> [..., M] -> [..., D]."""
    return act_fn(x @ layer.W_in + layer.b_in) @ layer.W_out + layer.b_out


def logit_diff(x: torch.Tensor, W_answer: torch.Tensor, b_answer: torch.Tensor) -> torch.Tensor:
    """Final-position residual after the final norm [..., B, D], with each prompt's (correct,
    wrong) unembedding columns W_answer [B, D, 2] and biases [B, 2] -> logit differences [..., B]."""
    logits = (x[..., None, :] @ W_answer)[..., 0, :] + b_answer
    return logits[..., 0] - logits[..., 1]


def capital_log_odds(logits: torch.Tensor, upper: torch.Tensor, lower: torch.Tensor) -> torch.Tensor:
    """[..., vocab] logits -> [...] log P(capital-initial token) − log P(lowercase-initial token):
    a log-sum-exp over each part of the vocabulary (`upper`, `lower`: bool masks), the softmax's
    normaliser cancelling. The exceptions experiment's measure, and the circuit runner's second
    readout (no answer pair: it means the same on every tokenizer)."""
    logits = logits.float()
    return logits[..., upper].logsumexp(-1) - logits[..., lower].logsumexp(-1)


def vocabulary_log_odds(x: torch.Tensor, W_U: torch.Tensor, b_U: torch.Tensor, upper, lower) -> torch.Tensor:
    """Final-position residual after the final norm [..., B, D] -> capital log-odds [..., B]
    through the whole unembedding."""
    return capital_log_odds(x @ W_U + b_U, upper, lower)


# ---- the table form of a block ------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """What computing one block needs besides the op's inputs."""

    model: ModelWeights
    layer: LayerWeights
    start: int  # first position computed (earlier ones are the corrupted run's)
    n_pos: int  # N
    prefix_k: torch.Tensor | None  # [1, B, start, H, d]: keys before `start`, or None
    prefix_v: torch.Tensor | None


@dataclass(frozen=True)
class Op:
    inputs: tuple[str, ...]
    compute: Callable[..., torch.Tensor]  # (step, *inputs) -> activation


def run_ops(table: dict[str, Op], s: Step, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Every op of a block in order, from the activations in `state` (a plain forward)."""
    for name, op in table.items():
        if name not in state:
            state[name] = op.compute(s, *(state[x] for x in op.inputs))
    return state


KEY_SIDE = ("k", "v")  # read at every earlier position; everything else is per query position


def position_dim(name: str) -> int:
    """The (query) position axis of an activation, counted from the end."""
    return -3 if name in ("q", "k", "v", "z") else -2
