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


def _through_norm(delta: torch.Tensor, x: torch.Tensor, affine, engine: PatchingEngine) -> torch.Tensor:
    """What `delta` added to a norm's input x changes in its output, the scale held at x's:
    centred (as the norm centres) and divided by x's scale, times the norm's weight."""
    change = (delta - delta.mean(-1, keepdim=True)) / engine.family.norm_scale(x, engine.w.eps)
    return change if affine[0] is None else change * affine[0]


def mlp_layers(engine: PatchingEngine, sender) -> range:
    """The MLPs that read a head's write: its own layer's too where the MLP reads the residual
    after attention (a sequential residual), only later ones where it reads resid_pre."""
    first = sender.layer if engine.family.RESIDUAL == "sequential" else sender.layer + 1
    return range(first, engine.n_layers)


@torch.no_grad()
def mlp_sweep(engine: PatchingEngine, sender) -> torch.Tensor:
    """[n_layers, batch] logit differences with the sender's write added to one MLP's input
    only (its norm's scale held at the corrupted run's), every other component corrupted; the
    corrupted baseline at MLPs the sender cannot reach. One run per MLP, each starting at its
    layer and at the first position where clean and corrupted differ (before it the write is 0)."""
    delta = sender_write(engine, sender)
    out = engine.corrupted_logit_diff.expand(engine.n_layers, -1).clone()
    start = engine.shared
    mid = "resid_mid" if engine.family.RESIDUAL == "sequential" else "resid_pre"
    for layer in mlp_layers(engine, sender):
        L = engine.w.layers[layer]
        x, d = engine.corrupted[get_act_name(mid, layer)][:, start:], delta[:, start:]
        ln2 = engine.family.norm(x, L.ln2, engine.w.eps) + _through_norm(d, x, L.ln2, engine)
        state = {"mlp_out": engine.family.mlp(ln2, L, engine.w.act_fn)[None]}
        for l in range(layer, engine.n_layers):
            state = {"resid_pre": engine.run_block(l, state, start, last_only=l == engine.n_layers - 1)}
        out[layer] = engine.readout(state["resid_pre"])[0]
    return out


@torch.no_grad()
def logits_path(engine: PatchingEngine, sender) -> torch.Tensor:
    """[batch] logit differences with the sender's write at the final position added straight
    to the final norm's input (its scale held at the corrupted run's): the direct path to the
    unembedding, through no later component."""
    final = engine.corrupted[get_act_name("resid_post", engine.n_layers - 1)][:, -1]
    d = sender_write(engine, sender)[:, -1]
    x = engine.family.norm(final, engine.w.ln_final, engine.w.eps) + _through_norm(d, final, engine.w.ln_final, engine)
    return ops.logit_diff(x, engine.W_answer, engine.b_answer)
