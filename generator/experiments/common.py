"""Small helpers shared by experiments: the logit difference and JSON-ready numbers."""

from __future__ import annotations

import torch


def logit_diff(logits: torch.Tensor, answer_tokens: torch.Tensor) -> torch.Tensor:
    """Per-prompt logit(correct) - logit(wrong) at the final position. logits: [batch, pos, vocab]
    or [batch, vocab] (already the final position)."""
    final = logits[:, -1] if logits.dim() == 3 else logits
    picked = final.gather(-1, answer_tokens.to(final.device))
    return picked[:, 0] - picked[:, 1]


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
