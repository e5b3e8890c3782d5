"""Exact activation patching, fast: the one engine behind every patching sweep.

Why this is hand-written rather than a call to ``transformer_lens.patching``: TransformerLens
runs, for every index of a sweep (each layer x position, each head), a full forward of the
whole corrupted batch through every layer, with full-vocabulary logits at every position,
although a logit-difference metric reads two logits at the final position. This module
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
5. many patch variants run as one batch (rows = variants x prompts), chunked to ``max_rows``.

Every step is exact in real arithmetic; in float32 the results agree with TransformerLens's
sweeps to ~1e-6 (only the order of floating-point sums differs). The first call checks the
engine's forward against the model's own logits and refuses an architecture it does not
reproduce (see ``_check_supported``); use ``transformer_lens.patching`` there.

Usage::

    engine = PatchingEngine(model, clean_tokens, corrupted_tokens, answer_tokens)
    resid = engine.sweep("resid_pre")                  # [layer, pos] mean logit difference
    recovered = (resid - engine.corrupted_logit_diff.mean()) / (
        engine.clean_logit_diff.mean() - engine.corrupted_logit_diff.mean())

or ``patch_sweep(model, "head_out", clean_tokens, corrupted_tokens, answer_tokens)``.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from transformer_lens.utilities import get_act_name

from generator.experiments.common import logit_diff  # the metric; re-exported for callers

# --------------------------------------------------------------------------------------------
# Patch targets: one row per sweep, like transformer_lens.patching's partials of
# generic_activation_patch. A setter writes the clean activation into one variant's rows.
#
# Engine activations are laid out like TransformerLens hooks, with two leading axes
# [variant, prompt] and only the positions from the run's start position `start` on:
#   resid_pre / resid_mid / attn_out / mlp_out : [V, B, pos, d_model]
#   q / k / v / z                              : [V, B, pos, head, d_head]
#   pattern                                    : [V, B, head, dest_pos, src_pos]  (dest from start)
# `clean` is the clean run's TransformerLens-shaped activation at that layer ([B, pos, ...]).

Setter = Callable[[torch.Tensor, int, Tuple[int, ...], torch.Tensor, int], None]


def _set_pos(act, i, index, clean, start):
    _, pos = index
    act[i, :, pos - start] = clean[:, pos]


def _set_pos_head(act, i, index, clean, start):
    _, pos, head = index
    act[i, :, pos - start, head] = clean[:, pos, head]


def _set_head(act, i, index, clean, start):
    _, head = index
    act[i, :, :, head] = clean[:, start:, head]


def _set_head_pattern(act, i, index, clean, start):
    _, head = index
    act[i, :, head] = clean[:, head, start:]


def _set_head_pattern_dest(act, i, index, clean, start):
    _, head, pos = index
    act[i, :, head, pos - start] = clean[:, head, pos]


@dataclass(frozen=True)
class Target:
    """What a sweep patches: an engine activation, the swept axes and the setter."""

    activation: str
    axes: Tuple[str, ...]
    setter: Setter
    tl_equivalent: str  # the transformer_lens.patching sweep that gives the same numbers


# No "resid_mid": on a TransformerBridge, TL's hook_resid_mid is the input hook of ln2, so
# get_act_patch_resid_mid patches only the MLP's input (it equals get_act_patch_mlp_out), not
# the residual stream; there is no TL sweep to match for the residual-stream meaning.
TARGETS: Dict[str, Target] = {
    "resid_pre": Target("resid_pre", ("layer", "pos"), _set_pos, "get_act_patch_resid_pre"),
    "attn_out": Target("attn_out", ("layer", "pos"), _set_pos, "get_act_patch_attn_out"),
    "mlp_out": Target("mlp_out", ("layer", "pos"), _set_pos, "get_act_patch_mlp_out"),
    "head_out": Target("z", ("layer", "head"), _set_head, "get_act_patch_attn_head_out_all_pos"),
    "head_q": Target("q", ("layer", "head"), _set_head, "get_act_patch_attn_head_q_all_pos"),
    "head_k": Target("k", ("layer", "head"), _set_head, "get_act_patch_attn_head_k_all_pos"),
    "head_v": Target("v", ("layer", "head"), _set_head, "get_act_patch_attn_head_v_all_pos"),
    "head_pattern": Target(
        "pattern", ("layer", "head"), _set_head_pattern, "get_act_patch_attn_head_pattern_all_pos"
    ),
    "head_out_by_pos": Target(
        "z", ("layer", "pos", "head"), _set_pos_head, "get_act_patch_attn_head_out_by_pos"
    ),
    "head_q_by_pos": Target(
        "q", ("layer", "pos", "head"), _set_pos_head, "get_act_patch_attn_head_q_by_pos"
    ),
    "head_k_by_pos": Target(
        "k", ("layer", "pos", "head"), _set_pos_head, "get_act_patch_attn_head_k_by_pos"
    ),
    "head_v_by_pos": Target(
        "v", ("layer", "pos", "head"), _set_pos_head, "get_act_patch_attn_head_v_by_pos"
    ),
    "head_pattern_by_pos": Target(
        "pattern",
        ("layer", "head", "pos"),
        _set_head_pattern_dest,
        "get_act_patch_attn_head_pattern_by_pos",
    ),
}


# --------------------------------------------------------------------------------------------
# The block as a chain of activations. Each is computed from earlier ones; a patched run
# recomputes only those downstream of the patched activation and reads the rest from the
# corrupted cache.

_BLOCK: Tuple[str, ...] = (
    "resid_pre", "ln1", "q", "k", "v", "pattern", "z",
    "attn_out", "resid_mid", "ln2", "mlp_out", "resid_post",
)  # fmt: skip
_INPUTS: Dict[str, Tuple[str, ...]] = {
    "ln1": ("resid_pre",),
    "q": ("ln1",),
    "k": ("ln1",),
    "v": ("ln1",),
    "pattern": ("q", "k"),
    "z": ("pattern", "v"),
    "attn_out": ("z",),
    "resid_mid": ("resid_pre", "attn_out"),
    "ln2": ("resid_mid",),
    "mlp_out": ("ln2",),
    "resid_post": ("resid_mid", "mlp_out"),
}
# Keys and values are read at every earlier position; everything else is per query position.
_KEY_SIDE = ("k", "v")
# In the last layer only these are computed at every position (they feed keys and values).
_ALL_POSITIONS_IN_LAST_LAYER = ("ln1", "k", "v")


def _pos_dim(name: str) -> int:
    """The (query) position axis of an activation, counted from the end."""
    return -3 if name in ("q", "k", "v", "z") else -2


_ACT_FNS: Dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "gelu": F.gelu,
    "relu": F.relu,
    "silu": F.silu,
}


def _check_supported(model) -> None:
    """Refuse configurations the engine's forward does not implement, naming the field."""
    cfg = model.cfg
    unsupported = {
        "positional_embedding_type": getattr(cfg, "positional_embedding_type", "standard")
        != "standard",
        "normalization_type": getattr(cfg, "normalization_type", "LN") not in ("LN", "LNPre"),
        "attn_only": bool(getattr(cfg, "attn_only", False)),
        "gated_mlp": bool(getattr(cfg, "gated_mlp", False)),
        "parallel_attn_mlp": bool(getattr(cfg, "parallel_attn_mlp", False)),
        "act_fn": getattr(cfg, "act_fn", None) not in _ACT_FNS,
        "n_key_value_heads": getattr(cfg, "n_key_value_heads", None) not in (None, cfg.n_heads),
        "attention_dir": getattr(cfg, "attention_dir", "causal") != "causal",
        "use_local_attn": bool(getattr(cfg, "use_local_attn", False)),
        "scale_attn_by_inverse_layer_idx": bool(
            getattr(cfg, "scale_attn_by_inverse_layer_idx", False)
        ),
        "attn_scores_soft_cap": (getattr(cfg, "attn_scores_soft_cap", -1.0) or -1.0) > 0,
        "output_logits_soft_cap": (getattr(cfg, "output_logits_soft_cap", -1.0) or -1.0) > 0,
        "use_qk_norm": bool(getattr(cfg, "use_qk_norm", False)),
        "post_embedding_ln": bool(getattr(cfg, "post_embedding_ln", False)),
        "final_rms": bool(getattr(cfg, "final_rms", False)),
    }
    bad = [f"{k}={getattr(cfg, k, None)!r}" for k, v in unsupported.items() if v]
    if bad:
        raise NotImplementedError(
            f"generator.engine supports GPT-2-style models (pre-LayerNorm, learned positions, "
            f"causal multi-head attention, plain MLP); this model has {', '.join(bad)}. "
            "Use transformer_lens.patching's sweeps for it instead."
        )
    training = [name or "<root>" for name, mod in model.named_modules() if mod.training]
    if training:
        raise ValueError(
            f"activation patching needs the model in eval mode; {training[0]} is training. "
            "Call model.eval() first."
        )


def _norm_affine(norm) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
    """The LayerNorm's weight and bias, or None where they are the identity (after fold_ln)."""
    w = getattr(norm, "weight", None)
    b = getattr(norm, "bias", None)
    w = None if w is None or bool((w == 1).all()) else w.detach()
    b = None if b is None or bool((b == 0).all()) else b.detach()
    return w, b


class PatchingEngine:
    """Clean and corrupted runs of one task on one model, ready for any number of sweeps.

    Args:
        model: a ``TransformerBridge`` with ``enable_compatibility_mode(...)`` (GPT-2 style).
        clean_tokens, corrupted_tokens: ``[batch, pos]`` token ids of equal shape.
        answer_tokens: ``[batch, 2]`` (correct, wrong) token ids; the metric is their logit
            difference at the final position.
        clean_cache: optional TransformerLens ``ActivationCache`` (or any mapping of hook
            names) of the clean run, so patched values are bit-for-bit the ones TL would use;
            computed by the engine's own forward when omitted.
        corrupted_cache: likewise for the corrupted run, to save the engine's own forward.
        max_rows: upper bound on variants x prompts per batched forward (memory budget); at
            least one variant always runs.
        share_prefix: skip the token prefix shared by every clean/corrupted pair (exact; turn
            off only to exercise the general path).
        check: compare the engine's corrupted-run metric with the model's own logits once and
            raise if they disagree (guards against architectures the engine misreads).
    """

    def __init__(
        self,
        model,
        clean_tokens: torch.Tensor,
        corrupted_tokens: torch.Tensor,
        answer_tokens: torch.Tensor,
        *,
        clean_cache: Optional[Mapping[str, torch.Tensor]] = None,
        corrupted_cache: Optional[Mapping[str, torch.Tensor]] = None,
        max_rows: int = 2048,
        share_prefix: bool = True,
        check: bool = True,
    ):
        _check_supported(model)
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
        cfg = model.cfg
        self.n_layers, self.n_heads, self.d_head = cfg.n_layers, cfg.n_heads, cfg.d_head
        self.max_rows = max_rows
        self.device = model.W_E.device
        self.batch, self.n_pos = clean_tokens.shape
        clean_tokens = clean_tokens.to(self.device)
        corrupted_tokens = corrupted_tokens.to(self.device)
        self.answer_tokens = answer_tokens.to(self.device)

        # Weights, detached and fused per layer: [d_model, heads * d_head] projections.
        def fuse_in(w):  # [layer, head, d_model, d_head] -> [layer, d_model, head * d_head]
            return w.detach().permute(0, 2, 1, 3).reshape(w.shape[0], w.shape[2], -1).contiguous()

        self.W_E, self.W_pos = model.W_E.detach(), model.W_pos.detach()
        self.W_Q, self.W_K, self.W_V = fuse_in(model.W_Q), fuse_in(model.W_K), fuse_in(model.W_V)
        self.b_Q = model.b_Q.detach().flatten(1)  # [layer, head * d_head]
        self.b_K = model.b_K.detach().flatten(1)
        self.b_V = model.b_V.detach().flatten(1)
        self.W_O = model.W_O.detach().flatten(1, 2).contiguous()  # [layer, head*d_head, d_model]
        self.b_O = model.b_O.detach()
        self.W_in, self.b_in = model.W_in.detach(), model.b_in.detach()
        self.W_out, self.b_out = model.W_out.detach(), model.b_out.detach()
        self.act_fn = _ACT_FNS[cfg.act_fn]
        self.eps = cfg.eps
        scale = cfg.attn_scale if getattr(cfg, "attn_scale", -1.0) > 0 else math.sqrt(cfg.d_head)
        self.attn_scale = scale if getattr(cfg, "use_attn_scale", True) else 1.0
        self.ln1 = [_norm_affine(model.blocks[l].ln1) for l in range(self.n_layers)]
        self.ln2 = [_norm_affine(model.blocks[l].ln2) for l in range(self.n_layers)]
        self.ln_final = _norm_affine(model.ln_final)
        # Only the two answer columns of the unembedding: [batch, d_model, 2] and [batch, 2].
        self.W_answer = model.W_U.detach()[:, self.answer_tokens].permute(1, 0, 2)
        self.b_answer = model.b_U.detach()[self.answer_tokens]

        with torch.inference_mode():
            self.corrupted = self._cached_run(corrupted_cache, corrupted_tokens, "corrupted")
            self.clean = self._cached_run(clean_cache, clean_tokens, "clean")
            final = get_act_name("resid_post", self.n_layers - 1)
            self.corrupted_logit_diff = self._readout(self.corrupted[final][None, :, -1:])[0]
            self.clean_logit_diff = self._readout(self.clean[final][None, :, -1:])[0]
            if check:
                self._check_against_model(model, corrupted_tokens)

        # Positions before `shared` hold the same tokens in every clean/corrupted pair.
        differs = (clean_tokens != corrupted_tokens).any(dim=0).nonzero()
        self.shared = (int(differs[0]) if len(differs) else self.n_pos) if share_prefix else 0

    # ---- the forward, one activation at a time -----------------------------------------

    def _norm(self, x, affine):
        x = x - x.mean(-1, keepdim=True)
        x = x / (x.pow(2).mean(-1, keepdim=True) + self.eps).sqrt()
        w, b = affine
        if w is not None:
            x = x * w
        if b is not None:
            x = x + b
        return x

    def _heads(self, x):  # [..., pos, head*d_head] -> [..., pos, head, d_head]
        return x.unflatten(-1, (self.n_heads, self.d_head))

    def _compute(self, name, layer, start, prefix, *xs):
        """One activation of block `layer` from its inputs (positions from `start` on)."""
        if name == "ln1":
            return self._norm(xs[0], self.ln1[layer])
        if name in ("q", "k", "v"):
            W = {"q": self.W_Q, "k": self.W_K, "v": self.W_V}[name][layer]
            b = {"q": self.b_Q, "k": self.b_K, "v": self.b_V}[name][layer]
            return self._heads(xs[0] @ W + b)
        if name == "pattern":
            q, k = xs
            k = _cat_positions(prefix["k"], k, dim=-3)  # keys at every position
            scores = q.transpose(-3, -2) @ k.transpose(-3, -2).transpose(-2, -1)
            scores = scores / self.attn_scale
            q_pos = torch.arange(start, self.n_pos, device=q.device)[-q.shape[-3] :]
            k_pos = torch.arange(self.n_pos, device=q.device)
            return scores.masked_fill(k_pos[None, :] > q_pos[:, None], float("-inf")).softmax(-1)
        if name == "z":
            pattern, v = xs
            v = _cat_positions(prefix["v"], v, dim=-3)
            return (pattern @ v.transpose(-3, -2)).transpose(-3, -2)
        if name == "attn_out":
            return xs[0].flatten(-2) @ self.W_O[layer] + self.b_O[layer]
        if name in ("resid_mid", "resid_post"):
            return xs[0] + xs[1]
        if name == "ln2":
            return self._norm(xs[0], self.ln2[layer])
        if name == "mlp_out":
            hidden = self.act_fn(xs[0] @ self.W_in[layer] + self.b_in[layer])
            return hidden @ self.W_out[layer] + self.b_out[layer]
        raise KeyError(name)

    def _run_block(self, layer, state, start, last_only=False):
        """Complete block `layer`: compute what depends on `state` (the changed activations,
        positions from `start` on), read everything else from the corrupted cache."""
        prefix = {  # keys and values before `start`: the corrupted run's
            kv: self.corrupted[get_act_name(kv, layer)][None, :, :start] if start else None
            for kv in _KEY_SIDE
        }
        for name in _BLOCK[1:]:
            if name in state or not any(x in state for x in _INPUTS[name]):
                continue
            every_pos = not last_only or name in _ALL_POSITIONS_IN_LAST_LAYER
            xs = [self._read(state, x, layer, start, every_pos) for x in _INPUTS[name]]
            state[name] = self._compute(name, layer, start, prefix, *xs)
        return state["resid_post"]

    def _read(self, state, name, layer, start, every_pos):
        x = state.get(name)
        if x is None:  # unchanged: the corrupted run's, from `start` on
            full = self.corrupted[get_act_name(name, layer)][None]
            x = full.narrow(_pos_dim(name), start, self.n_pos - start)
        if not every_pos and name not in _KEY_SIDE:
            x = x.narrow(_pos_dim(name), x.shape[_pos_dim(name)] - 1, 1)
        return x

    def _full_run(self, tokens) -> Dict[str, torch.Tensor]:
        """An unpatched forward, caching every activation under its TransformerLens name."""
        cache: Dict[str, torch.Tensor] = {}
        resid = (self.W_E[tokens] + self.W_pos[: tokens.shape[1]])[None]
        for layer in range(self.n_layers):
            state = {"resid_pre": resid}
            resid = self._run_block(layer, state, start=0)
            for name in _BLOCK:
                if name not in ("ln1", "ln2"):
                    cache[get_act_name(name, layer)] = state[name][0]
        return cache

    def _cached_run(self, cache, tokens, which) -> Dict[str, torch.Tensor]:
        """The activations of a run: the caller's cache (on this device) or a fresh forward."""
        if cache is None:
            return self._full_run(tokens)
        names = [get_act_name(n, l) for l in range(self.n_layers) for n in _BLOCK if n[:2] != "ln"]
        missing = [n for n in names if n not in cache]
        if missing:
            raise ValueError(
                f"{which}_cache lacks {missing[0]} (and {len(missing) - 1} more hooks); pass a "
                f"full run_with_cache() cache or leave {which}_cache out"
            )
        return {n: cache[n].to(self.device) for n in names}

    def _readout(self, resid_final):
        """[V, B, 1, d_model] final residual -> [V, B] logit differences."""
        x = self._norm(resid_final[:, :, -1], self.ln_final)
        logits = torch.einsum("vbd,bdk->vbk", x, self.W_answer) + self.b_answer
        return logits[..., 0] - logits[..., 1]

    def _check_against_model(self, model, corrupted_tokens, n_prompts=4):
        """Compare the engine's corrupted-run metric with the model's own, on a few prompts."""
        expected = logit_diff(model(corrupted_tokens[:n_prompts]), self.answer_tokens[:n_prompts])
        got = self.corrupted_logit_diff[:n_prompts]
        tol = 1e-3 if got.dtype in (torch.float32, torch.float64) else 5e-2
        err = float((got - expected).abs().max())
        if err > tol * max(1.0, float(expected.abs().max())):
            raise NotImplementedError(
                f"generator.engine's forward disagrees with the model's logits by {err:.3g} on "
                "the corrupted prompts, so this architecture is not reproduced exactly. Use "
                "transformer_lens.patching's sweeps for it instead."
            )

    # ---- sweeps -----------------------------------------------------------------------

    def sweep(self, target: str, *, per_prompt: bool = False) -> torch.Tensor:
        """Patch each clean activation of `target` into the corrupted run, one index at a time.

        Returns the mean logit difference per index, shaped like the matching TransformerLens
        sweep (``TARGETS[target].tl_equivalent``): ``[layer, pos]``, ``[layer, head]``,
        ``[layer, pos, head]`` or ``[layer, head, pos]``; with ``per_prompt=True`` a trailing
        ``[batch]`` axis holds the values per prompt instead of their mean.
        """
        if target not in TARGETS:
            raise ValueError(f"unknown patch target {target!r}; choose one of {sorted(TARGETS)}")
        spec = TARGETS[target]
        sizes = {"layer": self.n_layers, "pos": self.n_pos, "head": self.n_heads}
        shape = tuple(sizes[a] for a in spec.axes)
        indices = list(itertools.product(*(range(n) for n in shape)))
        out = self.corrupted_logit_diff.expand(len(indices), -1).clone()  # no-op patches

        # Group the variants that start at the same layer and position.
        groups: Dict[Tuple[int, int], List[int]] = {}
        for i, index in enumerate(indices):
            start = index[spec.axes.index("pos")] if "pos" in spec.axes else 0
            if start < self.shared:  # inside the shared prefix: clean == corrupted here
                if "pos" in spec.axes:
                    continue
                start = self.shared
            if start < self.n_pos:
                groups.setdefault((index[0], start), []).append(i)

        per_chunk = max(1, self.max_rows // self.batch)
        with torch.inference_mode():
            for (layer, start), members in groups.items():
                for c in range(0, len(members), per_chunk):
                    chunk = members[c : c + per_chunk]
                    out[chunk] = self._patched_runs(spec, [indices[i] for i in chunk], layer, start)
        out = out.reshape(*shape, self.batch)
        return out if per_prompt else out.mean(-1)

    def _patched_runs(self, spec: Target, chunk: Sequence[Tuple[int, ...]], layer, start):
        """Logit differences [variant, prompt] for variants patching `layer` from `start` on."""
        name = spec.activation
        corrupted = self.corrupted[get_act_name(name, layer)][None]
        act = corrupted.narrow(_pos_dim(name), start, self.n_pos - start)
        act = act.expand(len(chunk), *act.shape[1:]).clone()
        clean = self.clean[get_act_name(name, layer)]
        for i, index in enumerate(chunk):
            spec.setter(act, i, index, clean, start)
        state = {name: act}
        for l in range(layer, self.n_layers):
            resid = self._run_block(l, state, start, last_only=l == self.n_layers - 1)
            state = {"resid_pre": resid}
        return self._readout(state["resid_pre"])


def _cat_positions(prefix: Optional[torch.Tensor], suffix: torch.Tensor, dim: int) -> torch.Tensor:
    """Join cached earlier positions to recomputed later ones, broadcasting the variant axis."""
    if prefix is None:
        return suffix
    lead = torch.broadcast_shapes(prefix.shape[:1], suffix.shape[:1])
    return torch.cat(
        [prefix.expand(*lead, *prefix.shape[1:]), suffix.expand(*lead, *suffix.shape[1:])], dim
    )


def patch_sweep(
    model,
    target: str,
    clean_tokens: torch.Tensor,
    corrupted_tokens: torch.Tensor,
    answer_tokens: torch.Tensor,
    *,
    clean_cache: Optional[Mapping[str, torch.Tensor]] = None,
    corrupted_cache: Optional[Mapping[str, torch.Tensor]] = None,
    max_rows: int = 2048,
    per_prompt: bool = False,
) -> torch.Tensor:
    """One sweep in one call: ``PatchingEngine(...).sweep(target)``. Build a
    :class:`PatchingEngine` once instead when running several targets on the same prompts."""
    engine = PatchingEngine(
        model, clean_tokens, corrupted_tokens, answer_tokens,
        clean_cache=clean_cache, corrupted_cache=corrupted_cache, max_rows=max_rows,
    )  # fmt: skip
    return engine.sweep(target, per_prompt=per_prompt)
