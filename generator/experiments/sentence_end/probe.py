"""A sentence-end direction (issue 20, item 5): a linear probe on the residual stream at the
final position, then a steering check that it is causal.

Examples: the pronoun task with each ending (sentence ends "." "!" "?" against ";" "," and
none) and the exceptions task's prompts that end in "." (its ordinary sentence ends against
its families where a lowercase word follows; P.S., titles and proper nouns, where a capital
follows without a sentence end, are left out). The split holds out whole clusters per source
(a name with all its templates and endings; an exception prompt), seeded. The probe is an
L2-regularised logistic regression on standardised features, fitted by Newton's method in torch
(double precision; `fit`): a few hundred examples of at most a few thousand dimensions need no other library,
and it runs where the model runs. Accuracy is read on the held-out clusters per residual stream,
overall and among the "." examples alone, where the final token is the same and only context
can tell them apart.

Steering: at the first stream where the "." examples are told apart on held-out data (else
the best one), the probe's weight vector (unit length, in residual units) times c × the gap
between the two classes' mean projections is added at the final position (TransformerLens hook
on that stream), for each coefficient c, to held-out exception prompts and sentence ends; and a
random direction of the same norm, the control.
"""

from __future__ import annotations

import torch

from generator.experiments.circuit import cluster_weights, quantiles
from generator.experiments.exceptions import capital_log_odds
from generator.experiments.sentence_end import final
from generator.experiments.sentence_end.neurons import by_length
from generator.metrics import num, to_list

stream_hook = final.stream_name  # (kept under the name the tests and the steering use)


def features(model, tokens, known: dict | None = None) -> tuple[torch.Tensor, list[str]]:
    """[stream, B, d_model] residual streams at the final position, and their labels. The
    endings of one sentence share their runs but for the last token (final.whole_and_repeats).
    known: streams already computed, by final.key (neurons.top_contexts's corpus run)."""
    rows = list(tokens) if isinstance(tokens, list) else list(tokens[:, None])
    out = torch.empty(model.cfg.n_layers + 1, len(rows), model.cfg.d_model, dtype=torch.double)
    names = [stream_hook(model.cfg.n_layers, s) for s in range(model.cfg.n_layers + 1)]
    known = known or {}
    todo = []
    for i, row in enumerate(rows):
        if final.key(row) in known:
            out[:, i] = known[final.key(row)]
        else:
            todo.append(i)

    def keep(members, toks, cache):
        out[:, [todo[m] for m in members]] = torch.stack([cache[name][:, -1] for name in names]).double().cpu()

    if todo:
        for i, (streams, _) in final.whole_and_repeats(model, [rows[i] for i in todo], names, keep).items():
            out[:, todo[i]] = streams.double().cpu()
    return out, [f"{s}_pre" if s < model.cfg.n_layers else "final_post" for s in range(model.cfg.n_layers + 1)]


def fit(x: torch.Tensor, y: torch.Tensor, l2: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Logistic regression on standardised features: (w, b) in the original units, so that
    x @ w + b is the logit of label 1. Minimises mean BCE + l2/2 ‖w_std‖².

    Newton's method with a backtracking line search (hand-written: torch has no logistic
    regression and scikit-learn is not a dependency). With d_model + 1 unknowns the Hessian is
    small: a few solves per stream, where L-BFGS took about 80 gradient steps on the
    near-separable streams (13 streams of GPT-2 small's width: 4.8 s of CPU, about 8 s before;
    the optimum, which is unique, agrees to 4e-7)."""
    mean, std = x.mean(0), x.std(0).clamp_min(1e-8)
    z = torch.cat([(x - mean) / std, torch.ones(len(x), 1, dtype=x.dtype)], 1)  # the bias last
    penalty = torch.full((z.shape[1],), float(l2), dtype=x.dtype)
    penalty[-1] = 0.0

    def loss(theta):
        return torch.nn.functional.binary_cross_entropy_with_logits(z @ theta, y) + (penalty * theta) @ theta / 2

    theta = torch.zeros(z.shape[1], dtype=x.dtype)
    for _ in range(100):
        p = torch.sigmoid(z @ theta)
        grad = z.T @ (p - y) / len(y) + penalty * theta
        if float(grad.abs().max()) < 1e-10:
            break
        hessian = (z.T * (p * (1 - p))) @ z / len(y) + torch.diag(penalty)
        step = torch.linalg.lstsq(hessian, grad[:, None]).solution[:, 0]  # lstsq: singular without l2
        t, before, slope = 1.0, loss(theta), float(grad @ step)
        while t > 1e-12 and loss(theta - t * step) > before - 1e-4 * t * slope:
            t /= 2
        if t <= 1e-12:
            break
        theta = theta - t * step
    w, b = theta[:-1], theta[-1]
    return w / std, b - (mean / std) @ w


def loss_of(z, y, w, b, l2):
    return torch.nn.functional.binary_cross_entropy_with_logits(z @ w + b, y) + l2 / 2 * (w @ w)


def split(sources: list[str], clusters: list[str], share: float, seed: int) -> torch.Tensor:
    """[N] bool, True = held out: per source, a seeded `share` of its clusters (at least one,
    and at least one left to train on)."""
    g = torch.Generator().manual_seed(seed)
    test = set()
    for source in dict.fromkeys(sources):
        mine = list(dict.fromkeys(c for s, c in zip(sources, clusters) if s == source))
        if len(mine) < 2:
            continue
        n = min(len(mine) - 1, max(1, round(share * len(mine))))
        test |= {mine[i] for i in torch.randperm(len(mine), generator=g)[:n].tolist()}
    return torch.tensor([c in test for c in clusters])


def accuracy(x, y, w, b) -> torch.Tensor:
    """[N] 1.0 where the probe's sign is the label's."""
    return ((x @ w + b > 0) == (y > 0.5)).double()


def examples(model, endings: dict, batch, exceptions, contrast, params) -> dict:
    """The probe's examples: tokens (a list of [1, P]), labels (1 = sentence end), sources,
    clusters (kept on one side of the split), whether the final token is ".", whether the
    example is a member of a contrast pair (same length and final token as its partner)."""
    out = {"tokens": [], "label": [], "source": [], "cluster": [], "period": [], "pair": []}

    def add(*values):
        for key, value in zip(out, values):
            out[key].append(value)

    for e, toks in endings.items():
        for i, p in enumerate(batch.spec.prompts):
            add(toks[i : i + 1], e in params.sentence_ends, "pronoun", f"name:{p.name}", e == ".", False)
    if exceptions is not None:
        spec = exceptions.spec
        families = spec.info["families"]
        for i, p in enumerate(spec.prompts):
            end = p.group == spec.info["control"]
            if p.text.endswith(".") and (end or families[p.group]["expected"] == "lowercase"):
                add(exceptions.clean_tokens[i], end, p.group, f"prompt:{i}", True, False)
    if contrast is not None:
        families = contrast.spec.info["families"]
        for i, p in enumerate(contrast.spec.prompts):
            if families[p.group]["after_exception"] == "lowercase":
                add(contrast.corrupted_tokens[i], True, f"contrast:{p.group}", f"pair:{p.name}", True, True)
                add(contrast.clean_tokens[i], False, f"contrast:{p.group}", f"pair:{p.name}", True, True)
    return out


def analyse(model, endings: dict, batch, exceptions, contrast, params, masks, known: dict | None = None) -> dict:
    data = examples(model, endings, batch, exceptions, contrast, params)
    y = torch.tensor(data["label"], dtype=torch.double)
    period, pair = torch.tensor(data["period"]), torch.tensor(data["pair"])
    test = split(data["source"], data["cluster"], params.test_share, params.seed)
    x, labels = features(model, data["tokens"], known)
    g = torch.Generator().manual_seed(params.seed)
    weights = cluster_weights([c for c, t in zip(data["cluster"], test.tolist()) if t], params.bootstrap, g)
    # the subset that decides presence: contrast pairs where there are any (same final token and
    # position: only context differs), else every example ending in "."
    decisive = pair if bool(pair.any()) else period
    rows, probes = [], []
    for s in range(len(labels)):
        w, b = fit(x[s][~test], y[~test], params.l2)
        probes.append((w, b))
        correct = accuracy(x[s][test], y[test], w, b)
        rows.append(
            {
                "stream": labels[s],
                "train": num(accuracy(x[s][~test], y[~test], w, b).mean()),
                "test": num(correct.mean()),
                "test_ci": subset_interval(correct, torch.ones_like(correct, dtype=torch.bool), weights, params),
                "period_test": num(correct[period[test]].mean()),
                "period_test_ci": subset_interval(correct, period[test], weights, params),
                "pairs_test": num(correct[pair[test]].mean()) if bool((pair & test).any()) else None,
                "pairs_test_ci": subset_interval(correct, pair[test], weights, params)
                if bool((pair & test).any())
                else None,
            }
        )
    key = "pairs_test" if bool(pair.any()) else "period_test"
    first = next((s for s, r in enumerate(rows) if r[key] >= params.present), None)
    first_all = next((s for s, r in enumerate(rows) if r["test"] >= params.present), None)
    chance = majority(y[test & decisive])
    above = next((s for s, r in enumerate(rows) if r[f"{key}_ci"][0] > chance), None)
    # steer where the decisive subset is told apart best, past the embeddings (which hold only
    # the final token and its position); the earliest such stream on ties
    later = range(1, len(rows)) if len(rows) > 1 else range(len(rows))
    chosen = max(later, key=lambda s: (rows[s][key], -s))
    targets = test & decisive
    steering = steer(model, data, x[chosen], y, targets, ~test & decisive, probes[chosen], chosen, params, masks)
    return {
        "n_train": int((~test).sum()),
        "n_test": int(test.sum()),
        "n_period_test": int((test & period).sum()),
        "n_pairs_test": int((test & pair).sum()),
        "sources": sorted(set(data["source"])),
        "decides": "pairs" if bool(pair.any()) else "period",
        "chance": num(majority(y[test])),
        "period_chance": num(majority(y[test & period])),
        "streams": rows,
        "first_present": labels[first] if first is not None else None,
        "first_present_all": labels[first_all] if first_all is not None else None,
        # the first stream whose decisive accuracy's interval lies above guessing the majority
        "first_above_chance": labels[above] if above is not None else None,
        "decisive_chance": num(chance),
        "steering": steering,
    }


def majority(y: torch.Tensor) -> float:
    """The accuracy of always guessing the more common label."""
    share = float(y.mean()) if len(y) else 0.5
    return max(share, 1 - share)


def subset_interval(correct, mask, weights, params) -> list[float]:
    """The percentile interval of the accuracy over `mask`'s examples, resampling clusters."""
    m = mask.double()
    boot = (weights @ (correct * m)) / (weights @ m).clamp_min(1e-12)
    return to_list(quantiles(boot, params))


def steer(model, data, x, y, targets, train, probe, stream: int, params, masks) -> dict:
    """Capital log-odds of the `targets` examples (held out; exceptions: label 0, sentence ends:
    label 1) with c × gap × the probe's unit direction added at `stream`, and with a random
    direction of the same norm; gap: between the classes' mean projections on `train` (the
    training examples of the subset steered)."""
    w, _ = probe
    d = w / w.norm()
    proj = x[train] @ d
    gap = float(proj[y[train] > 0.5].mean() - proj[y[train] < 0.5].mean())
    g = torch.Generator().manual_seed(params.seed)
    r = torch.randn(d.shape, generator=g, dtype=torch.double)
    r = r / r.norm()
    hook = stream_hook(model.cfg.n_layers, stream)
    groups = {
        "exceptions": [i for i in range(len(y)) if targets[i] and y[i] < 0.5][: params.steer_prompts],
        "sentence_ends": [i for i in range(len(y)) if targets[i] and y[i] > 0.5][: params.steer_prompts],
    }
    out = {"stream": data_label(model, stream), "gap": num(gap), "coefficients": list(params.coefficients)}
    for name, idx in groups.items():
        out[f"n_{name}"] = len(idx)
        if not idx:  # nothing of this kind held out (e.g. no exceptions task): no curve
            for kind in ("probe", "random"):
                out[f"{name}_{kind}"] = {"mean": [], "low": [], "high": []}
            continue
        tokens = [data["tokens"][i] for i in idx]
        scales = torch.tensor(params.coefficients, dtype=torch.double)[:, None] * gap
        both = log_odds(model, tokens, hook, torch.cat([scales * d, scales * r]), masks)  # [2C, n]
        for kind, values in (("probe", both[: len(scales)]), ("random", both[len(scales) :])):
            g2 = torch.Generator().manual_seed(params.seed)
            wts = cluster_weights(list(range(len(idx))), params.bootstrap, g2)
            band = quantiles(((wts @ values.T) / wts.sum(-1, keepdim=True)), params)  # [2, C]
            out[f"{name}_{kind}"] = {
                "mean": to_list(values.mean(-1)),
                "low": to_list(band[0]),
                "high": to_list(band[1]),
            }
        out[f"n_{name}"] = len(idx)
    return {**out, **verdict(out)}


def data_label(model, stream: int) -> str:
    return f"{stream}_pre" if stream < model.cfg.n_layers else "final_post"


def log_odds(model, tokens: list, hook_name: str, vectors: torch.Tensor, masks) -> torch.Tensor:
    """Capital log-odds with each of `vectors` ([V, d_model], or one [d_model]) added to the
    final position at `hook_name` (a residual stream, stream_hook's): [V, n] (or [n]). Each
    group of equal-length prompts runs once unchanged; every vector's run then starts at that
    stream and computes the final position alone (final.run: exact, as whole forwards with a
    hook; tested)."""
    from generator.engine.families import model_weights

    w = model_weights(model)
    n_layers = model.cfg.n_layers
    stream = next(s for s in range(n_layers + 1) if stream_hook(n_layers, s) == hook_name)
    many = vectors.dim() == 2
    vectors = vectors if many else vectors[None]
    out = torch.empty(len(vectors), len(tokens), dtype=torch.double)
    upper, lower = masks
    for idx, toks in by_length(tokens):
        logits, resid, prefix = final.cached(model, toks, stream)
        up, low = upper.to(logits.device), lower.to(logits.device)
        unchanged = final.run(w, resid, prefix, stream)[0] @ w.W_U + w.b_U
        final.agrees(capital_log_odds(unchanged, up, low), capital_log_odds(logits, up, low), "steering")
        added = resid + vectors[:, None, None].to(resid.device, resid.dtype)  # [V, B, 1, D]
        odds = capital_log_odds(final.run(w, added, prefix, stream) @ w.W_U + w.b_U, up, low)
        out[:, idx] = odds.double().cpu()
    return out if many else out[0]


def verdict(out: dict) -> dict:
    """What steering along the probe does, against the random direction of the same norm.
    shift_*: the mean capital log-odds at the largest coefficient (exceptions) and at the most
    negative one (sentence ends) minus the unsteered; capitalises: the exceptions' mean goes
    from at most zero to above zero; stops: the sentence ends' from above zero to below; works:
    the probe moves both groups the intended way, each further than the random direction does,
    and stops the sentence ends and capitalises the exceptions (where they did not already)."""
    zero = out["coefficients"].index(0.0)
    res = {}
    for kind in ("probe", "random"):
        up, down = out[f"exceptions_{kind}"]["mean"], out[f"sentence_ends_{kind}"]["mean"]
        res[f"shift_up_{kind}"] = num(up[-1] - up[zero]) if out["n_exceptions"] else None
        res[f"shift_down_{kind}"] = num(down[0] - down[zero]) if out["n_sentence_ends"] else None
        res[f"capitalises_{kind}"] = bool(out["n_exceptions"]) and up[zero] <= 0 < up[-1]
        res[f"stops_{kind}"] = bool(out["n_sentence_ends"]) and down[zero] > 0 > down[0]
    res["already_capital"] = bool(out["n_exceptions"]) and out["exceptions_probe"]["mean"][zero] > 0
    beats = (
        res["shift_up_probe"] is not None
        and res["shift_down_probe"] is not None
        and res["shift_up_probe"] > max(0.0, res["shift_up_random"])
        and res["shift_down_probe"] < min(0.0, res["shift_down_random"])
    )
    res["beats_random"] = beats
    res["works"] = beats and res["stops_probe"] and (res["capitalises_probe"] or res["already_capital"])
    return res
