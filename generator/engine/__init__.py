"""Exact activation patching, fast: the one engine behind every patching sweep.

Why this is hand-written rather than a call to ``transformer_lens.patching``: TransformerLens
runs, for every index of a sweep (each layer x position, each head), a full forward of the
whole corrupted batch through every layer, with full-vocabulary logits at every position,
although a logit-difference metric reads two logits at the final position. This engine
computes the same numbers from the same (folded) weights of a ``TransformerBridge`` in
compatibility mode, but:

1. each patched run starts at the patched layer (and at the patched activation inside it)
   from the cached corrupted run, so earlier layers are never recomputed;
2. attention is causal, so positions before the first patched position are exactly the
   corrupted run's: their cached keys and values are reused and only later positions are
   recomputed;
3. where clean and corrupted prompts share a token prefix, every activation on that prefix is
   the same in both runs, so a patch there changes nothing (its result is the corrupted
   baseline) and an all-position patch only has to start after the prefix;
4. in the last layer only the final position is carried past the keys and values, and only
   the two answer logits are computed;
5. many patch variants run as one batch (rows = variants x prompts), chunked to ``max_rows``;
6. on the CPU the chunks run side by side, one per core (generator.engine.threads).

Every step is exact in real arithmetic; in float32 the results agree with TransformerLens's
sweeps to 1e-5 (tested; typically ~1e-6: only the order of floating-point sums differs). The
constructor checks the engine's forward against the model's own logits and refuses an
architecture it does not reproduce; use ``transformer_lens.patching`` there.

The parts: ``weights`` (the engine's tables of folded weights, one object per layer), ``ops``
(the block operations, each written once, shared with the circuit runner in ``graph``),
``families`` (one module per kind of block: its weights, its block as a table of ops, and
``unsupported(model)``, the one-line reason a model's family is not implemented), and the
scheduler below (caches, grouping variants by start, chunking).

Usage::

    engine = PatchingEngine(model, clean_tokens, corrupted_tokens, answer_tokens)
    resid = engine.sweep("resid_pre")                  # [layer, pos] mean logit difference
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import torch
from transformer_lens.utilities import get_act_name

from generator.engine import ops
from generator.engine.families import model_weights, unsupported
from generator.engine.ops import Step
from generator.engine.threads import side_by_side
from generator.metrics import logit_diff
from generator.patch_targets import TARGETS, PatchTarget

Cache = Mapping[str, torch.Tensor]
__all__ = ["PatchingEngine", "patch_sweep", "unsupported"]


class PatchingEngine:
    """Clean and corrupted runs of one task on one model, ready for any number of sweeps.

    Args:
        model: a ``TransformerBridge`` with ``enable_compatibility_mode(...)`` (GPT-2 style).
        clean_tokens, corrupted_tokens: ``[batch, pos]`` token ids of equal shape.
        answer_tokens: ``[batch, 2]`` (correct, wrong) token ids; the metric is their logit
            difference at the final position.
        clean_cache / corrupted_cache: optional TransformerLens caches (any mapping of hook
            names) of the two runs, so patched values are bit-for-bit the ones TL would use;
            computed by the engine's own forward when omitted.
        max_rows: upper bound on variants x prompts per batched forward (memory budget).
        share_prefix: skip the token prefix shared by every clean/corrupted pair (exact; turn
            off only to exercise the general path).
        check: compare the engine's corrupted-run metric with the model's own logits once.
    """

    def __init__(
        self,
        model,
        clean_tokens: torch.Tensor,
        corrupted_tokens: torch.Tensor,
        answer_tokens: torch.Tensor,
        *,
        clean_cache: Cache | None = None,
        corrupted_cache: Cache | None = None,
        max_rows: int = 2048,
        share_prefix: bool = True,
        check: bool = True,
    ):
        self.w = model_weights(model)  # refuses architectures it does not implement
        self.family = self.w.family
        if clean_tokens.shape != corrupted_tokens.shape or clean_tokens.ndim != 2:
            raise ValueError(
                f"clean_tokens {tuple(clean_tokens.shape)} and corrupted_tokens "
                f"{tuple(corrupted_tokens.shape)} must both be [batch, pos] of the same shape"
            )
        if answer_tokens.shape != (clean_tokens.shape[0], 2):
            raise ValueError(
                f"answer_tokens must be [batch, 2] = {(clean_tokens.shape[0], 2)} "
                f"(correct, wrong) ids; got {tuple(answer_tokens.shape)}"
            )
        self.n_layers, self.n_heads = self.w.n_layers, self.w.n_heads
        self.max_rows = max_rows
        self.device = self.w.W_E.device
        self.batch, self.n_pos = clean_tokens.shape
        clean_tokens, corrupted_tokens = clean_tokens.to(self.device), corrupted_tokens.to(self.device)
        self.answer_tokens = answer_tokens.to(self.device)
        # Only the two answer columns of the unembedding: [batch, d_model, 2] and [batch, 2].
        self.W_answer = self.w.W_U[:, self.answer_tokens].permute(1, 0, 2)
        self.b_answer = self.w.b_U[self.answer_tokens]

        with torch.inference_mode():
            self.corrupted = self._intake(corrupted_cache, corrupted_tokens, "corrupted")
            self.clean = self._intake(clean_cache, clean_tokens, "clean")
            final = get_act_name("resid_post", self.n_layers - 1)
            self.corrupted_logit_diff = self.readout(self.corrupted[final][None, :, -1:])[0]
            self.clean_logit_diff = self.readout(self.clean[final][None, :, -1:])[0]
            if check:
                self._check_against_model(model, corrupted_tokens)
        # Positions before `shared` hold the same tokens in every clean/corrupted pair.
        differs = (clean_tokens != corrupted_tokens).any(dim=0).nonzero()
        self.shared = (int(differs[0]) if len(differs) else self.n_pos) if share_prefix else 0
        self._swept: dict[str, torch.Tensor] = {}  # sweeps of the clean run, per prompt, by target

    # ---- runs ---------------------------------------------------------------------------

    def step(self, layer: int, start: int) -> Step:
        """The context for computing block `layer` from position `start` on in a patched run:
        keys and values before `start` are the corrupted run's."""
        prefix = {
            kv: self.corrupted[get_act_name(kv, layer)][None, :, :start] if start else None for kv in ops.KEY_SIDE
        }
        return Step(self.w, self.w.layers[layer], start, self.n_pos, prefix["k"], prefix["v"])

    def run_block(self, layer: int, state: dict, start: int, last_only: bool = False) -> torch.Tensor:
        """Complete block `layer`: compute what depends on `state` (the changed activations,
        positions from `start` on), read everything else from the corrupted cache."""
        s = self.step(layer, start)
        for name, op in self.family.OPS.items():
            if name in state or not any(x in state for x in op.inputs):
                continue
            every_pos = not last_only or name in self.family.ALL_POSITIONS_IN_LAST_LAYER
            state[name] = op.compute(s, *(self._read(state, x, layer, start, every_pos) for x in op.inputs))
        return state["resid_post"]

    def _read(self, state, name, layer, start, every_pos):
        x = state.get(name)
        if x is None:  # unchanged: the corrupted run's, from `start` on
            full = self.corrupted[get_act_name(name, layer)][None]
            x = full.narrow(ops.position_dim(name), start, self.n_pos - start)
        if not every_pos and name not in ops.KEY_SIDE:
            x = x.narrow(ops.position_dim(name), x.shape[ops.position_dim(name)] - 1, 1)
        return x

    def _full_run(self, tokens) -> dict[str, torch.Tensor]:
        """An unpatched forward, caching every activation under its TransformerLens name."""
        cache: dict[str, torch.Tensor] = {}
        resid = (self.w.W_E[tokens] + self.family.positions(self.w, 0, tokens.shape[1]))[None]
        for layer in range(self.n_layers):
            state = {"resid_pre": resid}
            resid = self.run_block(layer, state, start=0)
            cache.update({get_act_name(n, layer): state[n][0] for n in self.family.CACHED})
        return cache

    def _intake(self, cache, tokens, which) -> dict[str, torch.Tensor]:
        """The activations of a run: the caller's cache (on this device) or a fresh forward."""
        if cache is None:
            return self._full_run(tokens)
        names = [get_act_name(n, l) for l in range(self.n_layers) for n in self.family.CACHED]
        missing = [n for n in names if n not in cache]
        if missing:
            raise ValueError(
                f"{which}_cache lacks {missing[0]} (and {len(missing) - 1} more hooks); pass a "
                f"full run_with_cache() cache or leave {which}_cache out"
            )
        return {n: cache[n].to(self.device) for n in names}

    def readout(self, resid_final: torch.Tensor) -> torch.Tensor:
        """[V, B, 1, d_model] final residual -> [V, B] logit differences."""
        x = self.family.norm(resid_final[:, :, -1], self.w.ln_final, self.w.eps)
        return ops.logit_diff(x, self.W_answer, self.b_answer)

    def _check_against_model(self, model, corrupted_tokens, n_prompts=4):
        """Compare the engine's corrupted-run metric with the model's own, on a few prompts."""
        expected = logit_diff(model(corrupted_tokens[:n_prompts]), self.answer_tokens[:n_prompts])
        got = self.corrupted_logit_diff[:n_prompts]
        tol = 1e-3 if got.dtype in (torch.float32, torch.float64) else 5e-2
        err = float((got - expected).abs().max())
        if err > tol * max(1.0, float(expected.abs().max())):
            raise NotImplementedError(
                f"generator.engine's forward disagrees with the model's logits by {err:.3g} on the "
                "corrupted prompts, so this architecture is not reproduced exactly. Use "
                "transformer_lens.patching's sweeps for it instead."
            )

    # ---- sweeps: the scheduler ------------------------------------------------------------

    def sweep(
        self,
        target: str,
        *,
        per_prompt: bool = False,
        source: Cache | None = None,
        source_shares_prefix: bool = False,
        layers: Sequence[int] | None = None,
        positions: Sequence[int] | None = None,
    ) -> torch.Tensor:
        """Patch each index of `target` into the corrupted run, one index at a time.

        The patched value is the clean run's activation, or `source`'s (a mapping of hook
        names to TransformerLens-shaped activations) where given: path patching passes
        receivers' inputs recomputed from one sender's clean output. Returns the mean logit
        difference per index, shaped like the TransformerLens sweep (``PatchTarget.axes``);
        with ``per_prompt=True`` a trailing ``[batch]`` axis holds each prompt's value.
        ``source_shares_prefix``: `source` equals the corrupted run on the shared token prefix
        (true of anything computed from clean − corrupted differences), so it can be skipped.
        ``layers``, ``positions``: patch only these layers, or these positions of a by-position
        target (the others keep the corrupted baseline).
        """
        if target not in TARGETS:
            raise ValueError(f"unknown patch target {target!r}; choose one of {sorted(TARGETS)}")
        spec = TARGETS[target]
        if positions is not None and "pos" not in spec.axes:
            raise ValueError(f"positions= needs a by-position target; {target!r} patches every position at once")
        plain = source is None and layers is None and positions is None  # the clean run everywhere: kept
        if plain and target in self._swept:
            out = self._swept[target]
        elif plain and spec.all_positions and self.shared == self.n_pos - 1:
            out = self._last_position(spec)
        else:
            out = self._sweep(spec, source, source_shares_prefix, layers, positions)
        if plain:
            self._swept[target] = out
        out = out.clone()
        return out if per_prompt else out.mean(-1)

    def _last_position(self, spec: PatchTarget) -> torch.Tensor:
        """A by-position sweep where only the last position differs between clean and
        corrupted: there its variant is its all-positions sibling's (the one patched position
        is the same), elsewhere the corrupted run."""
        out = self.corrupted_logit_diff.expand(*self._shape(spec), -1).clone()
        out.select(spec.axes.index("pos"), self.n_pos - 1).copy_(self.sweep(spec.all_positions, per_prompt=True))
        return out

    def _shape(self, spec: PatchTarget) -> tuple[int, ...]:
        sizes = {"layer": self.n_layers, "pos": self.n_pos, "head": self.n_heads}
        return tuple(sizes[a] for a in spec.axes)

    def _sweep(self, spec: PatchTarget, source, source_shares_prefix: bool, layers, positions) -> torch.Tensor:
        """[*axes, batch] logit differences, one patched run per index (the scheduler)."""
        shape = self._shape(spec)
        indices = list(itertools.product(*(range(n) for n in shape)))
        out = self.corrupted_logit_diff.expand(len(indices), -1).clone()  # no-op patches
        skip_prefix = source is None or source_shares_prefix
        source = self.clean if source is None else source
        # Group the variants that start at the same layer and position.
        groups: dict[tuple[int, int], list[int]] = {}
        for i, index in enumerate(indices):
            if layers is not None and index[0] not in layers:
                continue
            start = index[spec.axes.index("pos")] if "pos" in spec.axes else 0
            if positions is not None and start not in positions:
                continue
            if skip_prefix and start < self.shared:  # the patched value is the corrupted one here
                if "pos" in spec.axes:
                    continue
                start = self.shared
            if start < self.n_pos:
                groups.setdefault((index[0], start), []).append(i)
        per_chunk = max(1, self.max_rows // self.batch)
        runs = [(l, s, m[c : c + per_chunk]) for (l, s), m in groups.items() for c in range(0, len(m), per_chunk)]
        # independent runs, side by side (generator.engine.threads), the costliest first so that
        # the last one left is short: a cost is the rows times the layers they pass through
        runs.sort(key=lambda r: -(self.n_layers - r[0]) * (self.n_pos - r[1]) * len(r[2]))

        def patched(run):
            layer, start, chunk = run
            with torch.inference_mode():  # per thread
                return self._patched_runs(spec, [indices[i] for i in chunk], layer, start, source)

        with torch.inference_mode():
            for (_, _, chunk), values in zip(runs, side_by_side(patched, runs, self.device)):
                out[chunk] = values
        return out.reshape(*shape, self.batch)

    def _patched_runs(
        self, spec: PatchTarget, chunk: Sequence[tuple[int, ...]], layer: int, start: int, source: Cache
    ) -> torch.Tensor:
        """Logit differences [variant, prompt] for variants patching `layer` from `start` on."""
        name = spec.activation
        corrupted = self.corrupted[get_act_name(name, layer)][None]
        base = corrupted.narrow(ops.position_dim(name), start, self.n_pos - start)
        act = base.expand(len(chunk), *base.shape[1:]).clone()
        patched = source[get_act_name(name, layer)].to(self.device)
        for i, index in enumerate(chunk):
            spec.setter(act, i, index, patched, start)
        out = self.corrupted_logit_diff.expand(len(chunk), -1).clone()
        # a variant whose patched value is the corrupted one (e.g. the embedding of a token the
        # two prompts share) is the corrupted run: not run
        changed = [i for i in range(len(chunk)) if not torch.equal(act[i], base[0])]
        if not changed:
            return out
        state = {name: act if len(changed) == len(chunk) else act[changed]}
        for l in range(layer, self.n_layers):
            state = {"resid_pre": self.run_block(l, state, start, last_only=l == self.n_layers - 1)}
        out[changed] = self.readout(state["resid_pre"])
        return out


def patch_sweep(
    model,
    target: str,
    clean_tokens,
    corrupted_tokens,
    answer_tokens,
    *,
    clean_cache: Cache | None = None,
    corrupted_cache: Cache | None = None,
    max_rows: int = 2048,
    per_prompt: bool = False,
) -> torch.Tensor:
    """One sweep in one call: ``PatchingEngine(...).sweep(target)``. Build a
    :class:`PatchingEngine` once instead when running several targets on the same prompts."""
    engine = PatchingEngine(
        model,
        clean_tokens,
        corrupted_tokens,
        answer_tokens,
        clean_cache=clean_cache,
        corrupted_cache=corrupted_cache,
        max_rows=max_rows,
    )
    return engine.sweep(target, per_prompt=per_prompt)
