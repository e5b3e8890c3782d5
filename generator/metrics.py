"""The metric and number helpers shared by the engine and the experiments (the lowest layer:
it imports nothing from the project, so nothing imports upward)."""

from __future__ import annotations

import math
from typing import Any

import torch

from generator import ReportError


def logit_diff(logits: torch.Tensor, answer_tokens: torch.Tensor) -> torch.Tensor:
    """Per-prompt logit(correct) - logit(wrong) at the final position, the notebook's
    `logits_to_ave_logit_diff(..., per_prompt=True)`. logits: [batch, pos, vocab] or
    [batch, vocab] (already the final position); answer_tokens: [batch, 2]."""
    final = logits[:, -1] if logits.dim() == 3 else logits
    picked = final.gather(-1, answer_tokens.to(final.device))
    return picked[:, 0] - picked[:, 1]


def mean_logit_diff_metric(answer_tokens: torch.Tensor):
    """The scalar metric TransformerLens's sweeps take: logits -> mean logit difference."""
    return lambda logits: logit_diff(logits, answer_tokens).mean()


def normalisation_scale(experiment: str, clean: float, corrupted: float) -> float:
    """clean − corrupted mean logit difference, the denominator of every normalised metric
    (0 = corrupted run, 1 = clean run); a clear error where it is undefined."""
    scale = float(clean) - float(corrupted)
    if abs(scale) < 1e-6:
        raise ReportError(
            f"{experiment}: the clean and corrupted mean logit differences are equal ({float(clean):.4g}), "
            "so the normalised metric (0 = corrupted, 1 = clean) is undefined; this model does not react "
            "to the corruption"
        )
    return scale


def to_list(t: torch.Tensor, digits: int = 6) -> list:
    """A tensor as nested lists of floats rounded to `digits` significant digits, so that the
    stored JSON is small and identical across runs of the same computation."""
    return _round(t.detach().double().cpu().tolist(), digits)


def _round(x, digits):
    if isinstance(x, list):
        return [_round(v, digits) for v in x]
    return float(f"{x:.{digits}g}")


def num(x, digits: int = 6) -> float:
    return float(f"{float(x):.{digits}g}")


def check_finite(name: str, value: Any, where: str = "") -> None:
    """Fail loudly on NaN/inf anywhere in a result: a NaN rendered as a number is a lie."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ReportError(
            f"experiment {name} produced {value} at {where or 'top level'}; "
            "check the model's dtype (float16 overflows) and the prompts"
        )
    if isinstance(value, dict):
        for k, v in value.items():
            check_finite(name, v, f"{where}.{k}" if where else str(k))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            check_finite(name, v, f"{where}[{i}]")
