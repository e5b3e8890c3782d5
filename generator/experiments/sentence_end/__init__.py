"""When does a final token end a sentence? Counterfactual endings of the pronoun task and the
pronoun circuit on them (endings.py), the neurons of the circuit's MLPs that separate "." from
";" and a sentence end from an exception (neurons.py), and a linear sentence-end direction with
a steering check (probe.py). Reads the circuit experiment's stored circuit."""

from __future__ import annotations

import time

import torch

from generator.experiments import Result
from generator.experiments.exceptions import case_masks
from generator.experiments.hypotheses import copying
from generator.experiments.params import SentenceEnd as Params
from generator.experiments.sentence_end import endings, neurons, probe
from generator.tasks import TaskBatch


def unsupported(model) -> str | None:
    """The circuit runner's limits (it verifies the stored circuit on the new endings)."""
    from generator.engine import unsupported as engine_unsupported

    return engine_unsupported(model, circuit=True)


@torch.no_grad()
def run(model, batch, params: Params, inputs: dict) -> Result:
    circuit = inputs["circuit"]
    tasks = inputs.get("tasks", {})
    exceptions = tasks.get("exceptions") if isinstance(tasks.get("exceptions"), TaskBatch) else None
    contrast = tasks.get("contrast") if isinstance(tasks.get("contrast"), TaskBatch) else None
    start = time.perf_counter()
    masks = case_masks(model)
    keep = endings.circuit_keep(model, circuit)
    table, tokens = endings.analyse(model, batch, keep, params, masks)
    timings = {"endings": round(time.perf_counter() - start, 3)}
    table["circuit_edges"] = int(keep.sum())
    table["circuit_faithful"] = circuit.faithful
    table["smallest_faithful"] = circuit.circuit.smallest_faithful is not None

    layers = [m.layer for m in circuit.circuit.mlps]
    pairs = copying.word_pairs(model, set(batch.answer_tokens[:, 0].tolist()))
    cap = copying.capital_direction(model, pairs)
    cap = cap.float().cpu() if cap is not None else None
    corpus = list(tokens.values())
    corpus += list(exceptions.clean_tokens) if exceptions is not None else []
    corpus += list(contrast.clean_tokens) + list(contrast.corrupted_tokens) if contrast is not None else []
    contrasts = []
    if layers:
        period, corruption = params.sentence_ends[0], params.non_ends[0]
        contrasts.append(
            neurons.Contrast("period", tokens[period], tokens[corruption], "logit_diff", True, batch.answer_tokens)
        )
        exception = exception_contrast(contrast, exceptions, masks)
        if exception is not None:
            contrasts.append(exception)
    start = time.perf_counter()
    neuron_rows = [neurons.analyse(model, c, layers, cap, params) for c in contrasts]
    streams: dict = {}  # the corpus's final-position streams, which the probe reads too
    neuron_rows = neurons.with_contexts(model, neuron_rows, corpus, params, streams)
    timings["neurons"] = round(time.perf_counter() - start, 3)
    start = time.perf_counter()
    probed = probe.analyse(model, tokens, batch, exceptions, contrast, params, masks, streams)
    timings["probe"] = round(time.perf_counter() - start, 3)
    metrics = {
        "n_layers": model.cfg.n_layers,
        "d_mlp": model.cfg.d_mlp if layers else None,
        "endings": table,
        "neurons": {
            "layers": layers,
            "contrasts": neuron_rows,
            "n_capital_pairs": len(pairs),
            "most": params.most,
            "few": params.few,
        },
        "probe": {
            **probed,
            "present": params.present,
        },
        # the contrast task's minimal pairs, or why this model's tokenizer could not build them
        "contrast_unbuildable": getattr(tasks.get("contrast"), "reason", None) if contrast is None else None,
        "confidence": params.confidence,
        "bootstrap": params.bootstrap,
    }
    return Result(metrics, timings=timings)


def lowercase_pairs(contrast) -> list[int]:
    """The contrast task's pairs whose exception member English follows with a lowercase word."""
    families = contrast.spec.info["families"]
    return [i for i, p in enumerate(contrast.spec.prompts) if families[p.group]["after_exception"] == "lowercase"]


def exception_contrast(contrast, exceptions, masks):
    """A sentence-end "." against an exception ".": the contrast task's minimal pairs (those
    followed by a lowercase word), the sentence-end member clean, prompt by prompt; without it,
    the exceptions task's ordinary sentence ends against its lowercase families, the clean side
    their mean activation. None without either."""
    idx = lowercase_pairs(contrast) if contrast is not None else []
    if idx:
        return neurons.Contrast(
            "exception",
            [contrast.corrupted_tokens[i] for i in idx],
            [contrast.clean_tokens[i] for i in idx],
            "capital_log_odds",
            True,
            masks=masks,
            source="contrast",
        )
    if exceptions is None:
        return None
    spec = exceptions.spec
    families = spec.info["families"]
    ends = [i for i, p in enumerate(spec.prompts) if p.group == spec.info["control"] and p.text.endswith(".")]
    lows = [
        i for i, p in enumerate(spec.prompts) if families[p.group]["expected"] == "lowercase" and p.text.endswith(".")
    ]
    if not (ends and lows):
        return None
    return neurons.Contrast(
        "exception",
        [exceptions.clean_tokens[i] for i in ends],
        [exceptions.clean_tokens[i] for i in lows],
        "capital_log_odds",
        False,
        masks=masks,
        source="exceptions",
    )
