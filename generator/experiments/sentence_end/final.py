"""Runs that change only the final position, computed for the final position alone.

Neuron patching and steering change the residual stream at the final position only, from some
layer on. Attention is causal, so every earlier position keeps the unchanged run's values: each
changed run starts at that layer from the unchanged run's residual and computes the final
position alone, attending to the unchanged run's cached keys and values at the earlier
positions (as generator.engine's patching does), and reads the logits there only. Exact: the
same numbers as whole forwards with TransformerLens hooks (tested on the neurons, the steering,
the endings and the probe's features).
GPT-2-style blocks (a sequential residual), the only family generator.engine implements; its
model_weights refuses others, and the experiment is skipped where the engine cannot run."""

from __future__ import annotations

import torch

from generator.engine import ops
from generator.models import final_logits_only

KV = ("attn.hook_k", "attn.hook_v")


def stream_name(n_layers: int, stream: int) -> str:
    """The hook of residual stream `stream` (0 … n_layers: each block's input, then the last output)."""
    return f"blocks.{stream}.hook_resid_pre" if stream < n_layers else f"blocks.{n_layers - 1}.hook_resid_post"


def cached(model, toks: torch.Tensor, start: int):
    """One unchanged run of [B, P] tokens: its final-position logits [B, vocab], the residual
    stream `start` at the final position [1, B, 1, D] and, per later layer, the keys and values
    at the earlier positions ([1, B, P-1, H, d] each)."""
    n, hook = model.cfg.n_layers, stream_name(model.cfg.n_layers, start)
    logits, cache = model.run_with_cache(
        toks, names_filter=lambda h: h.endswith(KV) or h == hook, **final_logits_only(model)
    )
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
        q, k, v = qkv(h, lw, w.n_heads)
        keys, values = (ops.join_positions(p, y, dim=-3) for p, y in zip(prefix[l], (k, v)))
        x = x + ops.attention_out(ops.attention(q, keys, values, w.attn_scale), lw.W_O, lw.b_O)
        post = w.act_fn(norm(x, lw.ln2, w.eps) @ lw.W_in + lw.b_in)
        if patch is not None:
            post = patch(l, post)
        x = x + post @ lw.W_out + lw.b_out
    return norm(x[:, :, -1], w.ln_final, w.eps)


def qkv(h: torch.Tensor, lw, n_heads: int) -> tuple[torch.Tensor, ...]:
    """Queries, keys and values of every head from one normed input."""
    return tuple(ops.project(h, W, b, n_heads) for W, b in ((lw.W_Q, lw.b_Q), (lw.W_K, lw.b_K), (lw.W_V, lw.b_V)))


def agrees(got: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    """Refuse where the final-position run does not reproduce the model's own unchanged run."""
    got, expected = got.detach().float().cpu(), expected.detach().float().cpu()
    if float((got - expected).abs().max()) > 1e-3 * max(1.0, float(expected.abs().max())):
        raise NotImplementedError(f"the final-position runs of {what} disagree with the model's own logits")


def key(prompt: torch.Tensor) -> tuple[int, ...]:
    """A [1, P] prompt's tokens, as a dict key."""
    return tuple(prompt.flatten().tolist())


def share_prefixes(prompts: list[torch.Tensor]) -> tuple[list[int], list[tuple[int, int]]]:
    """Prompts ([1, P] each) that repeat an earlier prompt's tokens but for the last (the
    endings of one sentence): (the prompts to run whole, [(a repeat, the prompt whose run it
    shares)]). Every activation of a repeat before its last position is its partner's."""
    firsts: dict[tuple, int] = {}
    whole, repeats = [], []
    for i, p in enumerate(prompts):
        key = (p.shape[-1], *p[0, :-1].tolist())
        if p.shape[-1] > 1 and key in firsts:
            repeats.append((i, firsts[key]))
        else:
            firsts.setdefault(key, i)
            whole.append(i)
    return whole, repeats


def last_token_runs(w, prompts: list[torch.Tensor], repeats, prefix: dict) -> dict[int, tuple]:
    """The last position of each repeat, from its partner's cached keys and values (prefix:
    {partner: {layer: (k, v)}, each [1, 1, P-1, H, d]}), repeats of one length in one batch:
    {repeat: (its residual streams [n_layers + 1, d_model]: each block's input, then the last
    output; its MLP activations [n_layers, d_mlp])}."""
    out = {}
    groups: dict[int, list[tuple[int, int]]] = {}
    for i, partner in repeats:
        groups.setdefault(prompts[i].shape[-1], []).append((i, partner))
    for p, members in groups.items():
        last = torch.cat([prompts[i][0, -1:] for i, _ in members]).to(w.W_E.device)
        x = (w.W_E[last] + w.family.positions(w, p - 1, p))[None, :, None]  # [1, R, 1, D]
        streams, posts = [], []
        for l in range(w.n_layers):
            lw, kv = w.layers[l], [torch.cat([prefix[j][l][c] for _, j in members], 1) for c in (0, 1)]
            streams.append(x[0, :, -1])
            h = w.family.norm(x, lw.ln1, w.eps)
            q, k, v = qkv(h, lw, w.n_heads)
            keys, values = (ops.join_positions(c, y, dim=-3) for c, y in zip(kv, (k, v)))
            x = x + ops.attention_out(ops.attention(q, keys, values, w.attn_scale), lw.W_O, lw.b_O)
            post = w.act_fn(w.family.norm(x, lw.ln2, w.eps) @ lw.W_in + lw.b_in)
            posts.append(post[0, :, -1])
            x = x + post @ lw.W_out + lw.b_out
        streams.append(x[0, :, -1])
        for r, (i, _) in enumerate(members):
            out[i] = (torch.stack([s[r] for s in streams]), torch.stack([a[r] for a in posts]))
    return out


def whole_and_repeats(model, prompts: list[torch.Tensor], names: list[str], on_batch) -> dict[int, tuple]:
    """Runs of [1, P] prompts sharing work between the endings of one sentence: each prompt not
    a repeat (share_prefixes) runs whole, equal lengths together, caching `names`, and
    on_batch(prompt indices, [n, P] tokens, cache) is called; each repeat computes its last
    position alone: {repeat: (streams, MLP activations)} there (last_token_runs) is returned."""
    from generator.engine.families import model_weights

    whole, repeats = share_prefixes(prompts)
    partners = {j for _, j in repeats}
    prefix: dict[int, dict] = {}
    rows = [prompts[i] for i in whole]
    for idx, toks in by_length(rows):
        members = [whole[j] for j in idx]
        _, cache = model.run_with_cache(
            toks, names_filter=lambda h: h in names or (bool(partners) and h.endswith(KV)), **final_logits_only(model)
        )
        on_batch(members, toks, cache)
        for r, i in enumerate(members):
            if i in partners:
                prefix[i] = {
                    l: tuple(cache[f"blocks.{l}.{x}"][r : r + 1][None, :, :-1] for x in KV)
                    for l in range(model.cfg.n_layers)
                }
    return last_token_runs(model_weights(model), prompts, repeats, prefix) if repeats else {}


def by_length(rows: list[torch.Tensor]) -> list[tuple[list[int], torch.Tensor]]:
    """(indices, [n, P] tokens) per token length of [1, P] rows."""
    groups: dict[int, list[int]] = {}
    for i, r in enumerate(rows):
        groups.setdefault(r.shape[-1], []).append(i)
    return [(idx, torch.cat([rows[i] for i in idx])) for idx in groups.values()]
