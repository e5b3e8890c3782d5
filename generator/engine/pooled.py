"""Prompts of several token lengths as one circuit runner.

A CircuitRunner needs one [B, P] batch. Contrast pairs differ in length from pair to pair (each
pair's two members have the same length). `PooledRunner` left-pads them into as few batches as
it can (usually one) and answers what the circuit experiment asks (generator.experiments.circuit:
evaluate, patch_edges, scores, clean_metric, corrupted_metric, graph, n_pos, start, memo) for all
prompts at once:

* positions are counted from the end: position n_pos − 1 is every prompt's final token, and a
  batch of P positions takes the last P of the pooled n_pos (a position-aware mask [W, R, n_pos]
  is cut to each batch's last P columns);
* within a batch, prompt i is padded on the left to the batch's length; its positions are
  counted from its first real token and no position reads the padding (CircuitRunner's `pad`),
  so each prompt's numbers are those of a run on it alone. The padding must sit inside the
  prefix every pair of the batch shares (the runner computes only from the first position where
  a pair differs, and every computed position must be real in every prompt); lengths whose
  padding would reach further start a batch of their own;
* per-prompt metrics are concatenated batch by batch (`order` gives each one's prompt index);
* scores are the prompt-weighted mean of the batches' scores: each batch's is a gradient of its
  own mean metric, so Σ_g (B_g / B) score_g is the gradient of the mean over all prompts.

Why pad rather than run each length alone: on a model of GPT-2 small's size a batch of a few
short prompts streams every weight matrix once per forward, so a forward costs about as much
whatever its rows; one padded batch instead of four halved the MLPs' time in the e-mail family's
circuits and made them 1.45 times faster in all (benchmarks/README.md).
"""

from __future__ import annotations

import torch

from generator.engine.graph import CircuitRunner


class PooledRunner:
    def __init__(self, model, clean: list, corrupted: list, answers: torch.Tensor | None, **runner_args):
        """clean, corrupted: one [1, P_i] token tensor per prompt; answers [B, 2] or None."""
        self.runners, self.order = [], []
        for idx in batches(clean, corrupted):
            n = max(int(clean[i].shape[-1]) for i in idx)
            pad = torch.tensor([n - int(clean[i].shape[-1]) for i in idx])
            pair = answers[idx] if answers is not None else None
            runner = CircuitRunner(
                model, padded(clean, idx, n), padded(corrupted, idx, n), pair, pad=pad, **runner_args
            )
            self.runners.append(runner)
            self.order += idx
        self.graph, self.device = self.runners[0].graph, self.runners[0].device
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


def first_difference(clean: torch.Tensor, corrupted: torch.Tensor) -> int:
    """The first position where a [1, P] pair differs (its last one if none does)."""
    differs = (clean[0] != corrupted[0]).nonzero()
    return int(differs[0]) if len(differs) else clean.shape[-1] - 1


def batches(clean: list, corrupted: list) -> list[list[int]]:
    """The prompts in padded batches, longest first: a length joins the current batch while its
    padding stays within the prefix every pair of the batch shares."""
    lengths: dict[int, list[int]] = {}
    for i, tokens in enumerate(clean):
        lengths.setdefault(int(tokens.shape[-1]), []).append(i)
    out, longest, shared = [], 0, 0  # the current batch's length and shared prefix
    for n in sorted(lengths, reverse=True):
        idx = lengths[n]
        first = min(first_difference(clean[i], corrupted[i]) for i in idx)  # in this length's positions
        if out and longest - n <= min(shared, first + longest - n):
            out[-1] += idx
            shared = min(shared, first + longest - n)
        else:
            out.append(list(idx))
            longest, shared = n, first
    return out


def padded(tokens: list, idx: list[int], n: int) -> torch.Tensor:
    """The prompts `idx` left-padded to n tokens with token 0 (the runner reads no padding; the
    same in both members, so padding never counts as a difference)."""
    return torch.cat([torch.nn.functional.pad(tokens[i], (n - tokens[i].shape[-1], 0)) for i in idx])
