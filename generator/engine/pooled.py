"""Prompts of several token lengths as one circuit runner.

A CircuitRunner needs one [B, P] batch. Contrast pairs differ in length from pair to pair (each
pair's two members have the same length), so `PooledRunner` holds one runner per length and
answers what the circuit experiment asks (generator.experiments.circuit: evaluate, patch_edges,
scores, clean_metric, corrupted_metric, graph, n_pos, start, memo) for all prompts at once:

* positions are counted from the end: position n_pos − 1 is every prompt's final token, and a
  group of P positions takes the last P of the pooled n_pos (a position-aware mask [W, R, n_pos]
  is cut to each group's last P columns);
* per-prompt metrics are concatenated group by group (`order` gives each one's prompt index);
* scores are the prompt-weighted mean of the groups' scores: each group's is a gradient of its
  own mean metric, so Σ_g (B_g / B) score_g is the gradient of the mean over all prompts.
"""

from __future__ import annotations

import torch

from generator.engine.graph import CircuitRunner


class PooledRunner:
    def __init__(self, model, clean: list, corrupted: list, answers: torch.Tensor | None, **runner_args):
        """clean, corrupted: one [1, P_i] token tensor per prompt; answers [B, 2] or None."""
        groups: dict[int, list[int]] = {}
        for i, tokens in enumerate(clean):
            groups.setdefault(int(tokens.shape[-1]), []).append(i)
        self.runners, self.order = [], []
        for length in sorted(groups):
            idx = groups[length]
            pair = answers[idx] if answers is not None else None
            runner = CircuitRunner(
                model, torch.cat([clean[i] for i in idx]), torch.cat([corrupted[i] for i in idx]), pair, **runner_args
            )
            self.runners.append(runner)
            self.order += idx
        self.graph = self.runners[0].graph
        self.n_pos = max(r.n_pos for r in self.runners)
        self.start = min(r.start + self.n_pos - r.n_pos for r in self.runners)
        self.sizes = torch.tensor([len(r.clean_metric) for r in self.runners], dtype=torch.float)
        self.clean_metric = torch.cat([r.clean_metric for r in self.runners])
        self.corrupted_metric = torch.cat([r.corrupted_metric for r in self.runners])
        self.memo: dict = {}

    def _cut(self, mask: torch.Tensor, runner: CircuitRunner) -> torch.Tensor:
        return mask[..., self.n_pos - runner.n_pos :] if mask.dim() == 3 else mask

    @torch.no_grad()
    def evaluate(self, keep: torch.Tensor) -> torch.Tensor:
        return torch.cat([r.evaluate(self._cut(keep, r)) for r in self.runners])

    @torch.no_grad()
    def patch_edges(self, patched: torch.Tensor) -> torch.Tensor:
        return torch.cat([r.patch_edges(self._cut(patched, r)) for r in self.runners])

    def scores(self, ig_steps: int = 1, at: str = "corrupted") -> torch.Tensor:
        key = ("scores", ig_steps, at)
        if key not in self.memo:
            total = None
            for r, b in zip(self.runners, self.sizes / self.sizes.sum()):
                s = r.scores(ig_steps, at)
                padded = torch.zeros(*s.shape[:2], self.n_pos, dtype=s.dtype, device=s.device)
                padded[..., self.n_pos - r.n_pos :] = s * b
                total = padded if total is None else total + padded
            self.memo[key] = total
        return self.memo[key]
