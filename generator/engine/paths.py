"""Path patching's sources on the engine: a sender head's clean − corrupted write carried into
one receiver's input alone — a later layer's query, key or value input, an MLP's input, or the
final norm before the unembedding — through that receiver's own LayerNorm, recomputed (the
exact edge intervention, as TransformerLens 4's `get_act_patch_direct_path` and the circuit
runner's edges compute it). The engine's sweep then patches these as the receivers'
activations (`PatchingEngine.sweep(..., source=...)`)."""

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
    """Each later layer's `component` (q, k or v) computed from the corrupted residual plus the
    sender's write, through ln1 recomputed: the input every head of that layer would get if it
    alone read the sender's clean output (the sweep patches one head at a time)."""
    delta = sender_write(engine, sender)
    out = {}
    for layer in range(sender.layer + 1, engine.n_layers):
        L = engine.w.layers[layer]
        x = engine.family.norm(engine.corrupted[get_act_name("resid_pre", layer)] + delta, L.ln1, engine.w.eps)
        W, b = getattr(L, f"W_{component.upper()}"), getattr(L, f"b_{component.upper()}")
        out[get_act_name(component, layer)] = ops.project(x, W, b, engine.n_heads)
    return out


def mlp_layers(engine: PatchingEngine, sender) -> range:
    """The MLPs that read a head's write: its own layer's too where the MLP reads the residual
    after attention (a sequential residual), only later ones where it reads resid_pre."""
    first = sender.layer if engine.family.RESIDUAL == "sequential" else sender.layer + 1
    return range(first, engine.n_layers)


@torch.no_grad()
def mlp_sweep(engine: PatchingEngine, sender) -> torch.Tensor:
    """[n_layers, batch] logit differences with the sender's write added to one MLP's input
    only (its norm recomputed), every other component corrupted; the
    corrupted baseline at MLPs the sender cannot reach. One run per MLP, each starting at its
    layer and at the first position where clean and corrupted differ (before it the write is 0)."""
    delta = sender_write(engine, sender)
    out = engine.corrupted_logit_diff.expand(engine.n_layers, -1).clone()
    start = engine.shared
    mid = "resid_mid" if engine.family.RESIDUAL == "sequential" else "resid_pre"
    for layer in mlp_layers(engine, sender):
        L = engine.w.layers[layer]
        x, d = engine.corrupted[get_act_name(mid, layer)][:, start:], delta[:, start:]
        ln2 = engine.family.norm(x + d, L.ln2, engine.w.eps)
        state = {"mlp_out": engine.family.mlp(ln2, L, engine.w.act_fn)[None]}
        for l in range(layer, engine.n_layers):
            state = {"resid_pre": engine.run_block(l, state, start, last_only=l == engine.n_layers - 1)}
        out[layer] = engine.readout(state["resid_pre"])[0]
    return out


@torch.no_grad()
def logits_path(engine: PatchingEngine, sender) -> torch.Tensor:
    """[batch] logit differences with the sender's write at the final position added straight
    to the final norm's input (the norm recomputed): the direct path to the unembedding,
    through no later component."""
    final = engine.corrupted[get_act_name("resid_post", engine.n_layers - 1)][:, -1]
    d = sender_write(engine, sender)[:, -1]
    x = engine.family.norm(final + d, engine.w.ln_final, engine.w.eps)
    return ops.logit_diff(x, engine.W_answer, engine.b_answer)
