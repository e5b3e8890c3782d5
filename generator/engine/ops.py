"""One transformer block as a table of ops: each activation, the activations it reads and how
it is computed. A patched run recomputes only the ops downstream of what it patched, reading
everything else from the corrupted run's cache; the table's order is the compute order.

Shapes (V variants, B prompts, P positions from the run's start, N = all positions,
H heads, D = d_model, d = d_head, M = d_mlp):
  resid_pre, resid_mid, resid_post, attn_out, mlp_out, ln1, ln2   [V, B, P, D]
  q, k, v, z                                                        [V, B, P, H, d]
  pattern                                                           [V, B, H, P, N]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from generator.engine.weights import Affine, LayerWeights, ModelWeights


@dataclass(frozen=True)
class Step:
    """What computing one block needs besides the op's inputs."""

    model: ModelWeights
    layer: LayerWeights
    start: int  # first position computed (earlier ones are the corrupted run's)
    n_pos: int  # N
    prefix_k: torch.Tensor | None  # [1, B, start, H, d]: keys before `start`, or None
    prefix_v: torch.Tensor | None


def norm(x: torch.Tensor, affine: Affine, eps: float) -> torch.Tensor:
    """LayerNorm over the last axis (after fold_ln the affine part is usually the identity)."""
    w, b = affine
    return F.layer_norm(x, x.shape[-1:], w, b, eps)


def split_heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:  # [..., H*d] -> [..., H, d]
    return x.unflatten(-1, (n_heads, -1))


def join_positions(prefix: torch.Tensor | None, suffix: torch.Tensor, dim: int) -> torch.Tensor:
    """Cached earlier positions joined to recomputed later ones, broadcasting the variant axis."""
    if prefix is None:
        return suffix
    lead = torch.broadcast_shapes(prefix.shape[:1], suffix.shape[:1])
    return torch.cat([prefix.expand(*lead, *prefix.shape[1:]), suffix.expand(*lead, *suffix.shape[1:])], dim)


def attention_pattern(s: Step, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Causal softmax(q·k / scale): [V, B, P, H, d] x [V, B, P, H, d] -> [V, B, H, P, N]."""
    k = join_positions(s.prefix_k, k, dim=-3)  # keys at every position
    scores = q.transpose(-3, -2) @ k.transpose(-3, -2).transpose(-2, -1) / s.model.attn_scale
    q_pos = torch.arange(s.start, s.n_pos, device=q.device)[-q.shape[-3] :]
    k_pos = torch.arange(s.n_pos, device=q.device)
    return scores.masked_fill(k_pos[None, :] > q_pos[:, None], float("-inf")).softmax(-1)


def mix_values(s: Step, pattern: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """pattern @ v per head: [V, B, H, P, N] x [V, B, P, H, d] -> [V, B, P, H, d]."""
    v = join_positions(s.prefix_v, v, dim=-3)
    return (pattern @ v.transpose(-3, -2)).transpose(-3, -2)


def mlp(s: Step, x: torch.Tensor) -> torch.Tensor:  # [.., D] -> [.., M] -> [.., D]
    return s.model.act_fn(x @ s.layer.W_in + s.layer.b_in) @ s.layer.W_out + s.layer.b_out


@dataclass(frozen=True)
class Op:
    inputs: tuple[str, ...]
    compute: Callable[..., torch.Tensor]  # (step, *inputs) -> activation


OPS: dict[str, Op] = {
    "ln1": Op(("resid_pre",), lambda s, x: norm(x, s.layer.ln1, s.model.eps)),
    "q": Op(("ln1",), lambda s, x: split_heads(x @ s.layer.W_Q + s.layer.b_Q, s.model.n_heads)),
    "k": Op(("ln1",), lambda s, x: split_heads(x @ s.layer.W_K + s.layer.b_K, s.model.n_heads)),
    "v": Op(("ln1",), lambda s, x: split_heads(x @ s.layer.W_V + s.layer.b_V, s.model.n_heads)),
    "pattern": Op(("q", "k"), attention_pattern),
    "z": Op(("pattern", "v"), mix_values),
    "attn_out": Op(("z",), lambda s, z: z.flatten(-2) @ s.layer.W_O + s.layer.b_O),
    "resid_mid": Op(("resid_pre", "attn_out"), lambda s, r, a: r + a),
    "ln2": Op(("resid_mid",), lambda s, x: norm(x, s.layer.ln2, s.model.eps)),
    "mlp_out": Op(("ln2",), mlp),
    "resid_post": Op(("resid_mid", "mlp_out"), lambda s, r, m: r + m),
}
BLOCK = ("resid_pre", *OPS)  # every activation of a block, in compute order
CACHED = tuple(name for name in BLOCK if not name.startswith("ln"))  # what TransformerLens caches
KEY_SIDE = ("k", "v")  # read at every earlier position; everything else is per query position
# In the last layer only the final position is carried on, except for what feeds keys/values.
ALL_POSITIONS_IN_LAST_LAYER = ("ln1", "k", "v")


def position_dim(name: str) -> int:
    """The (query) position axis of an activation, counted from the end."""
    return -3 if name in ("q", "k", "v", "z") else -2
