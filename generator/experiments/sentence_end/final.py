"""Runs that change only the final position, computed for the final position alone.

Neuron patching and steering change the residual stream at the final position only, from some
layer on. Attention is causal, so every earlier position keeps the unchanged run's values: each
changed run starts at that layer from the unchanged run's residual and computes the final
position alone, attending to the unchanged run's cached keys and values at the earlier
positions (as generator.engine's patching does), and reads the logits there only. Exact: the
same numbers as whole forwards with TransformerLens hooks (tested on neurons and steering).
GPT-2-style blocks (a sequential residual), the only family generator.engine implements; its
model_weights refuses others, and the experiment is skipped where the engine cannot run."""

from __future__ import annotations

import torch

from generator.engine import ops

KV = ("attn.hook_k", "attn.hook_v")


def stream_name(n_layers: int, stream: int) -> str:
    """The hook of residual stream `stream` (0 … n_layers: each block's input, then the last output)."""
    return f"blocks.{stream}.hook_resid_pre" if stream < n_layers else f"blocks.{n_layers - 1}.hook_resid_post"


def cached(model, toks: torch.Tensor, start: int):
    """One unchanged run of [B, P] tokens: its final-position logits [B, vocab], the residual
    stream `start` at the final position [1, B, 1, D] and, per later layer, the keys and values
    at the earlier positions ([1, B, P-1, H, d] each)."""
    n, hook = model.cfg.n_layers, stream_name(model.cfg.n_layers, start)
    logits, cache = model.run_with_cache(toks, names_filter=lambda h: h.endswith(KV) or h == hook)
    prefix = {l: tuple(cache[f"blocks.{l}.{x}"][None, :, :-1] for x in KV) for l in range(start, n)}
    return logits[:, -1], cache[hook][None, :, -1:], prefix


def run(w, resid: torch.Tensor, prefix: dict, start: int, patch=None) -> torch.Tensor:
    """The final position's residual after the final norm [S, B, D], from `resid` [S, B, 1, D]
    at stream `start` (w: generator.engine.families.model_weights). `patch(layer, post)`, where
    given, returns each layer's MLP activations (mlp.hook_post, [S, B, 1, d_mlp]) to use."""
    x, norm = resid, w.family.norm
    for l in range(start, w.n_layers):
        lw = w.layers[l]
        h = norm(x, lw.ln1, w.eps)
        q, k, v = (ops.project(h, W, b, w.n_heads) for W, b in ((lw.W_Q, lw.b_Q), (lw.W_K, lw.b_K), (lw.W_V, lw.b_V)))
        keys, values = (ops.join_positions(p, y, dim=-3) for p, y in zip(prefix[l], (k, v)))
        x = x + ops.attention_out(ops.attention(q, keys, values, w.attn_scale), lw.W_O, lw.b_O)
        post = w.act_fn(norm(x, lw.ln2, w.eps) @ lw.W_in + lw.b_in)
        if patch is not None:
            post = patch(l, post)
        x = x + post @ lw.W_out + lw.b_out
    return norm(x[:, :, -1], w.ln_final, w.eps)


def agrees(got: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    """Refuse where the final-position run does not reproduce the model's own unchanged run."""
    got, expected = got.float().cpu(), expected.float().cpu()
    if float((got - expected).abs().max()) > 1e-3 * max(1.0, float(expected.abs().max())):
        raise NotImplementedError(f"the final-position runs of {what} disagree with the model's own logits")
