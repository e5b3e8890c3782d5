"""When does a final token end a sentence? Counterfactual endings of the pronoun task and the
pronoun circuit on them (endings.py), the neurons of the circuit's MLPs that separate "." from
";" and a sentence end from an exception (neurons.py), and a linear sentence-end direction with
a steering check (probe.py). Reads the circuit experiment's stored circuit."""

from __future__ import annotations

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
    masks = case_masks(model)
    keep = endings.circuit_keep(model, circuit)
    table, tokens = endings.analyse(model, batch, keep, params, masks)
    table["circuit_edges"] = int(keep.sum())
    table["circuit_faithful"] = circuit.faithful
    table["smallest_faithful"] = circuit.circuit.smallest_faithful is not None

    layers = [m.layer for m in circuit.circuit.mlps]
    pairs = copying.word_pairs(model, set(batch.answer_tokens[:, 0].tolist()))
    cap = copying.capital_direction(model, pairs)
    cap = cap.float().cpu() if cap is not None else None
    corpus = list(tokens.values()) + ([t for t in exceptions.clean_tokens] if exceptions is not None else [])
    contrasts = []
    if layers:
        period, corruption = params.sentence_ends[0], params.non_ends[0]
        contrasts.append(
            neurons.Contrast("period", tokens[period], tokens[corruption], "logit_diff", True, batch.answer_tokens)
        )
        if exceptions is not None:
            spec = exceptions.spec
            fams = spec.info["families"]
            ends = [i for i, p in enumerate(spec.prompts) if p.group == spec.info["control"] and p.text.endswith(".")]
            lows = [
                i
                for i, p in enumerate(spec.prompts)
                if fams[p.group]["expected"] == "lowercase" and p.text.endswith(".")
            ]
            if ends and lows:
                contrasts.append(
                    neurons.Contrast(
                        "exception",
                        [exceptions.clean_tokens[i] for i in ends],
                        [exceptions.clean_tokens[i] for i in lows],
                        "capital_log_odds",
                        False,
                        masks=masks,
                    )
                )
    neuron_rows = [neurons.analyse(model, c, layers, cap, params, corpus) for c in contrasts]
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
        "probe": {**probe.analyse(model, tokens, batch, exceptions, params, masks), "present": params.present},
        "confidence": params.confidence,
        "bootstrap": params.bootstrap,
    }
    return Result(metrics)
