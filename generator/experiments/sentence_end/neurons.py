"""The neurons of the circuit's MLPs that separate two kinds of final token (issue 20, item 4).

Two contrasts, each a clean set (a capital expected) and a corrupted set, at the final position:
"." against ";" on the pronoun task (prompt by prompt; the metric: the answers' logit
difference) and a sentence-end "." against an exception "." (the exceptions task's ordinary
sentence ends against its families where a lowercase word follows; the metric: the capital
log-odds; the prompts are not pairs, so the clean side is the sentence ends' mean activation).

Per neuron of the MLPs the stored circuit names: attribution = (clean − corrupted activation)
× the gradient of the mean metric at the corrupted run (first order, as attribution patching),
summed over prompts. Then exact patching: the top neurons' clean activations set into the
corrupted run (mlp.hook_post, final position; computed for that position alone, final.py),
each alone and the top k together, as a share of all the named MLPs' neurons patched at once. Also: what each top neuron
writes onto the capitalisation direction (generator.experiments.hypotheses.copying), and the
tokens of the tasks on which it fires most.
"""

from __future__ import annotations

from functools import partial

import torch

from generator.engine import ops
from generator.experiments.sentence_end import final
from generator.metrics import logit_diff, num
from generator.models import final_logits_only


def by_length(tokens) -> list[tuple[list[int], torch.Tensor]]:
    """(prompt indices, [n, P] tokens) per token length: a [B, P] batch, or a list of [1, P]."""
    rows = list(tokens) if isinstance(tokens, list) else list(tokens[:, None])
    groups: dict[int, list[int]] = {}
    for i, r in enumerate(rows):
        groups.setdefault(r.shape[-1], []).append(i)
    return [(idx, torch.cat([rows[i] for i in idx])) for idx in groups.values()]


class Contrast:
    """A clean and a corrupted prompt set and their metric at the final position."""

    def __init__(self, name, clean, corrupted, metric, paired: bool, answers=None, masks=None, source="pronoun"):
        self.name, self.clean, self.corrupted, self.paired = name, clean, corrupted, paired
        self.source = source  # the task the prompts come from
        self.metric, self.answers, self.masks = metric, answers, masks  # masks: case_masks(model)

    def measure(self, model, logits, idx):
        if self.metric == "logit_diff":
            return logit_diff(logits, self.answers[idx])
        from generator.experiments.exceptions import capital_log_odds

        upper, lower = self.masks
        return capital_log_odds(logits, upper.to(logits.device), lower.to(logits.device))


def cached_runs(model, tokens, first: int) -> list[tuple[list[int], tuple]]:
    """The unchanged runs of a prompt set that final-position runs start from: per token
    length, (prompt indices, final.cached(...) from stream `first`)."""
    return [(idx, final.cached(model, toks, first)) for idx, toks in by_length(tokens)]


def run_final(model, contrast, tokens, layers, grad=False, runs=None):
    """One run of a prompt set: per-prompt metric [B] (from the model's own logits), the named
    layers' final-position neuron activations {layer: [B, d_mlp]} and, with grad, the metric's
    gradients with respect to them.

    The activations and gradients come from the final position alone, recomputed from the
    first named layer (final.run; `runs`: cached_runs from that layer, made here if not given).
    Every path from a final-position activation to the metric stays at the final position
    (attention is causal), so these are the whole forward's values and gradients (tested against
    autograd through whole forwards with hooks), without its backward pass through every
    position."""
    from generator.engine.families import model_weights

    w, first = model_weights(model), min(layers)
    runs = cached_runs(model, tokens, first) if runs is None else runs
    n = sum(len(idx) for idx, _ in runs)
    metric = torch.empty(n)
    acts = {layer: torch.empty(n, model.cfg.d_mlp) for layer in layers}
    grads = {layer: torch.empty(n, model.cfg.d_mlp) for layer in layers} if grad else None

    def tap(layer, post, leaves):
        if layer in leaves:
            if grad:  # keep its gradient; paths through later MLPs stay connected (no detach after the first)
                if not post.requires_grad:
                    post = post.detach().requires_grad_(True)
                post.retain_grad()
            leaves[layer] = post
        return post

    for idx, (logits, resid, prefix) in runs:
        leaves: dict = dict.fromkeys(layers)
        with torch.set_grad_enabled(grad):
            normed = final.run(w, resid, prefix, first, partial(tap, leaves=leaves))
            m = contrast_metric(model, w, contrast, normed, idx)[0]
            if grad:
                m.sum().backward()
        expected = contrast.measure(model, logits, idx)
        final.agrees(m.detach(), expected, "neurons")
        metric[idx] = expected.detach().float().cpu()
        for layer in layers:
            acts[layer][idx] = leaves[layer][0, :, -1].detach().float().cpu()
            if grad:
                grads[layer][idx] = leaves[layer].grad[0, :, -1].float().cpu()
    return metric, acts, grads


def patched_runs(model, contrast: Contrast, layers, target, sets, budget: int = 4096, runs=None) -> torch.Tensor:
    """Mean metric [len(sets)] of the corrupted prompts with each set of neurons (flat indices,
    layer-major over `layers`) set to `target` ({layer: [B, d_mlp]}) at the final position.

    Only the final position changes, so (as generator.engine's patching) each patched run
    starts at the first named layer from the corrupted run's residual there and computes the
    final position alone, attending to the corrupted run's cached keys and values at the
    earlier positions, which the patch cannot change (attention is causal). The same numbers as
    hooks on mlp.hook_post of whole forwards (patched_runs_by_hooks; tested), from one cached
    corrupted run per token length, sets batched, about `budget` final positions a run."""
    from generator.engine.families import model_weights

    w = model_weights(model)  # refuses a block it does not reproduce (the experiment's unsupported)
    first = min(layers)
    masks = set_masks(sets, len(layers), model.cfg.d_mlp)
    total = torch.zeros(len(sets), dtype=torch.double)
    n = 0
    for idx, (logits, resid, prefix) in cached_runs(model, contrast.corrupted, first) if runs is None else runs:
        n += len(idx)
        check = final.run(w, resid, prefix, first)
        final.agrees(
            contrast_metric(model, w, contrast, check, idx)[0], contrast.measure(model, logits, idx), "neurons"
        )
        values = {l: target[l][idx][None, :, None].to(resid.device, resid.dtype) for l in layers}  # [1, B, 1, d_mlp]
        per = max(1, budget // len(idx))
        for start in range(0, len(sets), per):
            chunk = masks[start : start + per].to(resid.device)

            def patch(l, post, chunk=chunk, values=values):
                if l not in values:
                    return post
                return torch.where(chunk[:, layers.index(l)][:, None, None], values[l], post)

            out = final.run(w, resid.expand(len(chunk), -1, -1, -1), prefix, first, patch)
            total[start : start + len(chunk)] += contrast_metric(model, w, contrast, out, idx).double().cpu().sum(1)
    return total / n


def set_masks(sets, n_layers: int, d_mlp: int) -> torch.Tensor:
    """[S, layers, d_mlp] bool: which neurons each set patches (a neuron's id is layer index × d_mlp + its index)."""
    masks = torch.zeros(len(sets), n_layers, d_mlp, dtype=torch.bool)
    for s, chosen in enumerate(sets):
        for i in chosen:
            masks[s, i // d_mlp, i % d_mlp] = True
    return masks


def contrast_metric(model, w, contrast: Contrast, normed: torch.Tensor, idx) -> torch.Tensor:
    """The contrast's metric [S, B] from normed final residuals [S, B, D]: two answer columns
    for a logit difference, the whole vocabulary for the capital log-odds."""
    if contrast.metric == "logit_diff":
        answers = contrast.answers[idx].to(normed.device)
        return ops.logit_diff(normed, w.W_U[:, answers].permute(1, 0, 2), w.b_U[answers])
    logits = normed @ w.W_U + w.b_U
    return contrast.measure(model, logits.flatten(0, 1), idx).reshape(normed.shape[:2])


def patched_runs_by_hooks(model, contrast: Contrast, layers, target, sets, budget: int = 2048) -> torch.Tensor:
    """patched_runs the slow, plain way (kept as its check): TransformerLens hooks on
    mlp.hook_post at the final position, a whole forward of the corrupted batch per set."""
    masks = set_masks(sets, len(layers), model.cfg.d_mlp)
    total = torch.zeros(len(sets), dtype=torch.double)
    n = 0
    for idx, toks in by_length(contrast.corrupted):
        n += len(idx)
        per = max(1, budget // (len(idx) * toks.shape[1]))
        for start in range(0, len(sets), per):
            chunk = list(range(start, min(len(sets), start + per)))

            def hook(x, hook, li, chunk=chunk, idx=idx):
                x = x.clone()
                rows = masks[chunk, li].repeat_interleave(len(idx), 0).to(x.device)  # row c * len(idx) + i
                values = target[layers[li]][idx].repeat(len(chunk), 1).to(x.device, x.dtype)
                x[:, -1] = torch.where(rows, values, x[:, -1])
                return x

            hooks = [(f"blocks.{layer}.mlp.hook_post", partial(hook, li=li)) for li, layer in enumerate(layers)]
            repeated = toks.repeat(len(chunk), 1)
            logits = model.run_with_hooks(repeated, fwd_hooks=hooks, **final_logits_only(model))[:, -1]
            metric = contrast.measure(model, logits, idx * len(chunk)).double().cpu()
            total[chunk] += metric.reshape(len(chunk), len(idx)).sum(1)
    return total / n


def analyse(model, contrast: Contrast, layers: list[int], cap_dir, params) -> dict:
    """Attribution, exact patching and what the top neurons write, for one contrast (its
    top neurons' contexts are added by with_contexts)."""
    clean_m, clean_a, _ = run_final(model, contrast, contrast.clean, layers)
    runs = cached_runs(model, contrast.corrupted, min(layers))  # also what the patched runs start from
    corr_m, corr_a, corr_g = run_final(model, contrast, contrast.corrupted, layers, grad=True, runs=runs)
    n = len(corr_m)
    # the activations each corrupted prompt is given: its own pair's clean ones, or the clean mean
    target = {layer: clean_a[layer] if contrast.paired else clean_a[layer].mean(0).expand(n, -1) for layer in layers}
    attribution = torch.stack([((target[layer] - corr_a[layer]) * corr_g[layer]).sum(0) / n for layer in layers])
    flat = attribution.flatten()  # [len(layers) * d_mlp], layer-major
    order = flat.abs().argsort(descending=True, stable=True)
    base = float(corr_m.mean())

    top = order[: params.top_neurons].tolist()
    ks = [k for k in params.top_k if k <= len(flat)]
    # every patched run at once: all the neurons, each top neuron alone, the top k together
    # (a set asked for twice, such as the top 1 and the first neuron alone, runs once)
    sets = [tuple(range(len(flat)))] + [(i,) for i in top] + [tuple(order[:k].tolist()) for k in ks]
    unique = list(dict.fromkeys(sets))
    patched = (patched_runs(model, contrast, layers, target, unique, runs=runs) - base).tolist()
    effects = [patched[unique.index(x)] for x in sets]
    everything, alone, together = effects[0], effects[1 : 1 + len(top)], effects[1 + len(top) :]
    rows = []
    for i, effect in zip(top, alone):
        layer, neuron = layers[i // model.cfg.d_mlp], i % model.cfg.d_mlp
        diff = float((target[layer][:, neuron] - corr_a[layer][:, neuron]).mean())
        w_out = model.W_out[layer, neuron].float().cpu()
        per_unit = float(w_out @ cap_dir) if cap_dir is not None else None
        rows.append(
            {
                "layer": layer,
                "neuron": neuron,
                "attribution": num(flat[i]),
                "exact_effect": num(effect),
                "share": num(effect / everything) if abs(everything) > 1e-9 else None,
                "clean_activation": num(target[layer][:, neuron].mean()),
                "corrupted_activation": num(corr_a[layer][:, neuron].mean()),
                "capital_per_unit": num(per_unit) if per_unit is not None else None,
                "capital_of_difference": num(per_unit * diff) if per_unit is not None else None,
                "capital_cosine": num(cosine(w_out, cap_dir)) if cap_dir is not None else None,
            }
        )
    top_k = [
        {"k": k, "effect": num(e), "share": num(e / everything) if abs(everything) > 1e-9 else None}
        for k, e in zip(ks, together)
    ]
    few_k = next((t["k"] for t in top_k if t["share"] is not None and t["share"] >= params.most), None)
    return {
        "name": contrast.name,
        "metric": contrast.metric,
        "source": contrast.source,
        "paired": contrast.paired,
        "n_clean": len(clean_m),
        "n_corrupted": n,
        "clean": num(clean_m.mean()),
        "corrupted": num(base),
        "all_effect": num(everything),
        "neurons": rows,
        "top_k": top_k,
        "most_by": few_k,
        "few": few_k is not None and few_k <= params.few,
    }


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    norm = a.norm() * b.norm()
    return float(a @ b / norm) if norm > 0 else 0.0


def with_contexts(model, rows: list[dict], corpus, params, streams: dict | None = None) -> list[dict]:
    """Each contrast's row with the top contexts of its first `context_neurons` neurons, the
    corpus run once for all of them (and for `streams`: see top_contexts)."""
    shown = [[(n["layer"], n["neuron"]) for n in r["neurons"][: params.context_neurons]] for r in rows]
    found = top_contexts(model, corpus, list(dict.fromkeys(nn for s in shown for nn in s)), params.contexts, streams)
    by_neuron = {(c["layer"], c["neuron"]): c for c in found}
    return [{**r, "contexts": [by_neuron[nn] for nn in s]} for r, s in zip(rows, shown)]


def top_contexts(
    model, corpus: list[torch.Tensor], neurons: list[tuple[int, int]], k: int, streams: dict | None = None
) -> list[dict]:
    """For each (layer, neuron): the k token positions of the corpus (a list of [n, P] token
    batches) where it fires most, each with the token and the few tokens before it (distinct
    contexts only). The endings of one sentence share their runs but for the last token
    (final.whole_and_repeats): their earlier positions are their partner's, the same contexts.

    streams: a dict that also receives each prompt's residual streams at its final position
    ([n_layers + 1, d_model], as probe.features reads them), by final.key: the probe's examples
    are prompts of this corpus, so they need not run again."""
    if not neurons:
        return []
    layers = sorted({layer for layer, _ in neurons})
    prompts = [row[None] for batch in corpus for row in batch]  # one [1, P] per prompt
    acts: dict[int, torch.Tensor] = {}  # prompt -> [positions counted, len(neurons)] (BOS left out)
    where = {i: 1 for i in range(len(prompts))}  # the first position counted per prompt
    names = [f"blocks.{layer}.mlp.hook_post" for layer in layers]
    resid = [final.stream_name(model.cfg.n_layers, s) for s in range(model.cfg.n_layers + 1)]

    def keep(members, toks, cache):
        got = torch.stack([cache[f"blocks.{l}.mlp.hook_post"][:, 1:, n] for l, n in neurons], -1).float().cpu()
        acts.update(zip(members, got))
        if streams is not None:
            finals = torch.stack([cache[name][:, -1] for name in resid], 1).double().cpu()  # [n, stream, D]
            streams.update((final.key(prompts[i]), x) for i, x in zip(members, finals))

    runs = final.whole_and_repeats(model, prompts, names + (resid if streams is not None else []), keep)
    for i, (at_end, post) in runs.items():
        acts[i] = torch.stack([post[l, n] for l, n in neurons])[None].float().cpu()
        where[i] = prompts[i].shape[-1] - 1
        if streams is not None:
            streams[final.key(prompts[i])] = at_end.double().cpu()
    out = []
    for j, (layer, neuron) in enumerate(neurons):
        seen, rows = set(), []
        candidates = [
            (float(a[p, j]), prompts[i][0], where[i] + p) for i, a in sorted(acts.items()) for p in range(a.shape[0])
        ]
        for value, row, p in sorted(candidates, key=lambda t: -t[0]):
            pieces = model.to_str_tokens(row[max(1, p - 5) : p + 1])
            context = "".join(pieces)
            if context in seen:
                continue
            seen.add(context)
            rows.append({"activation": num(value), "token": pieces[-1], "context": context})
            if len(rows) == k:
                break
        out.append({"layer": layer, "neuron": neuron, "top": rows})
    return out
