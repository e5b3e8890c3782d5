"""Path patching's sources on the engine: a sender head's clean − corrupted write carried into
each later layer's query, key or value input alone, with the receiver's norm scale held at the
corrupted run's (TransformerLens's `get_act_patch_direct_path`). The engine's sweep then
patches these as the receivers' activations (`PatchingEngine.sweep(..., source=...)`)."""

from __future__ import annotations

import torch
from transformer_lens.utilities import get_act_name

from generator.engine import PatchingEngine, ops


def sender_write(engine: PatchingEngine, sender) -> torch.Tensor:
    """[batch, pos, d_model] the sender's (`.layer`, `.head`) clean − corrupted write into the
    residual stream."""
    z = get_act_name("z", sender.layer)
    W_O = engine.w.layers[sender.layer].W_O.unflatten(0, (engine.n_heads, -1))[sender.head]  # [d_head, d_model]
    return (engine.clean[z][:, :, sender.head] - engine.corrupted[z][:, :, sender.head]) @ W_O


def path_sources(engine: PatchingEngine, sender, component: str) -> dict[str, torch.Tensor]:
    """Each later layer's `component` (q, k or v) with the sender's write added to its input,
    linearly through the corrupted run's ln1 scale (as get_act_patch_direct_path does)."""
    delta = sender_write(engine, sender)
    out = {}
    for layer in range(sender.layer + 1, engine.n_layers):
        L = engine.w.layers[layer]
        scale = engine.family.norm_scale(engine.corrupted[get_act_name("resid_pre", layer)], engine.w.eps)
        x = delta / scale if L.ln1[0] is None else delta / scale * L.ln1[0]  # a bias cancels in a change
        W = getattr(L, f"W_{component.upper()}")  # [d_model, head * d_head]
        name = get_act_name(component, layer)
        out[name] = engine.corrupted[name] + ops.split_heads(x @ W, engine.n_heads)
    return out
