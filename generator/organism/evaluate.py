"""Measure an organism checkpoint through the report's own pipeline, and judge it.

The model is loaded by generator.models, the tasks are built by generator.tasks and the numbers
are read from the baseline and exceptions experiments: what the report shows is what the
acceptance checks, with no prompt list or model loader of its own here.

    python -m generator.organism.evaluate generator/assets/organism
"""

from __future__ import annotations

import operator
import pathlib
import sys

from generator import ReportError

PRONOUN_KEYS = (
    "n_prompts",
    "n_tokens",
    "mean_logit_diff",
    "mean_logit_diff_corrupted",
    "std_logit_diff",
    "frac_capital_preferred",
    "frac_lowercase_after_corruption",
    "gender_accuracy",
)
FAMILY_KEYS = ("family", "expected", "n", "mean_log_odds", "min_log_odds", "max_log_odds", "agrees", "vs_control")

# What each bundled checkpoint must reach before it is shipped. Only the notebook's pronoun task
# is gated, and only for the 4-layer model: it must prefer the capital pronoun after "." and
# not after ";". Everything else (the exceptions, the one-layer model's behaviour) is measured
# and reported as found. The structural checks say what the checkpoint is: the prompts keep
# their notebook length, and the attention-only model's MLPs contribute exactly nothing.
ACCEPTANCE = {
    "organism": {
        "n_tokens": ("==", 8),
        "mean_logit_diff": (">=", 2.0),
        "mean_logit_diff_corrupted": ("<=", 0.0),
    },
    "organism-attn-only-1l": {
        "n_tokens": ("==", 8),
        "max_abs_mlp_out": ("==", 0.0),
    },
}
OPS = {">=": operator.ge, "<=": operator.le, "==": operator.eq}


def measure(ckpt_dir) -> dict:
    """Baseline and exceptions metrics of the checkpoint, and its largest MLP output."""
    import torch

    from generator import models, tasks
    from generator.experiments import baseline, exceptions
    from generator.experiments.params import Baseline, Exceptions

    model = models.load_model(models.resolve(str(ckpt_dir)), device="cpu")
    pronoun = tasks.build(tasks.load_task("pronoun"), model)
    b = baseline.run(model, pronoun, Baseline(), {}).metrics
    e = exceptions.run(model, tasks.build(tasks.load_task("exceptions"), model), Exceptions(), {}).metrics
    with torch.no_grad():
        _, cache = model.run_with_cache(pronoun.clean_tokens, names_filter=lambda n: n.endswith("hook_mlp_out"))
    return {
        "pronoun": {k: b[k] for k in PRONOUN_KEYS},
        "exceptions": {
            "control": e["control"],
            "control_mean": e["control_mean"],
            "families": [{k: f[k] for k in FAMILY_KEYS} for f in e["families"]],
        },
        # on the clean pronoun prompts, over every layer: exactly 0 for an attention-only model
        "max_abs_mlp_out": max(float(cache[k].abs().max()) for k in cache.keys()),  # noqa: SIM118 (an ActivationCache)
    }


def summary(metrics: dict) -> dict:
    """The flat numbers ACCEPTANCE refers to."""
    return {**metrics["pronoun"], "max_abs_mlp_out": metrics["max_abs_mlp_out"]}


def acceptance(metrics: dict, model: str) -> list[dict]:
    """Each of the model's acceptance checks with its measured value and whether it passes."""
    values = summary(metrics)
    return [
        {"metric": key, "value": values[key], "op": op, "bound": bound, "ok": bool(OPS[op](values[key], bound))}
        for key, (op, bound) in ACCEPTANCE[model].items()
    ]


def check_acceptance(rows: list[dict], model: str) -> None:
    """Raise, naming every metric that misses its threshold, so a bad retrain is never shipped."""
    misses = [f"{r['metric']} = {r['value']} (needs {r['op']} {r['bound']})" for r in rows if not r["ok"]]
    if misses:
        raise ReportError(
            f"the trained {model} misses its acceptance thresholds: "
            + "; ".join(misses)
            + ". It is not shipped; train longer (steps=...). Tuning the corpus to the report's rules is not a fix."
        )


if __name__ == "__main__":
    import json

    folder = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "generator/assets/organism")
    measured = measure(folder)
    print(
        json.dumps(
            {
                "metrics": measured,
                "acceptance": acceptance(measured, folder.name) if folder.name in ACCEPTANCE else None,
            },
            indent=2,
        )
    )
