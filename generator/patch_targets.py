"""Activation-patching targets: one row per target, from which everything else is derived —
the fast engine's patch (generator.engine), TransformerLens's equivalent sweep (the fallback
and the reference it is tested against), attribution patching's gradient hook and reduction,
the axes, the cell labels and the title. Like `transformer_lens.patching`, which declares each
sweep as one `partial` of `generic_activation_patch`; adding a target is adding a row.

Torch-free (setters only index tensors), so the render side can read titles and axes.

Engine activations are laid out like TransformerLens hooks with two leading axes
[variant, prompt] and only the positions from the run's start position `start` on:
  resid_pre / attn_out / mlp_out : [V, B, pos, d_model]
  q / k / v / z                  : [V, B, pos, head, d_head]
  pattern                        : [V, B, head, dest_pos, src_pos]   (dest from `start`)
A setter writes the source activation (the clean run's, TransformerLens-shaped [B, pos, ...])
into variant i's rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from generator.heads import head_name


def _set_pos(act, i, index, source, start):
    _, pos = index
    act[i, :, pos - start] = source[:, pos]


def _set_pos_head(act, i, index, source, start):
    _, pos, head = index
    act[i, :, pos - start, head] = source[:, pos, head]


def _set_head(act, i, index, source, start):
    _, head = index
    act[i, :, :, head] = source[:, start:, head]


def _set_head_pattern(act, i, index, source, start):
    _, head = index
    act[i, :, head] = source[:, head, start:]


def _set_head_pattern_dest(act, i, index, source, start):
    _, head, pos = index
    act[i, :, head, pos - start] = source[:, head, pos]


@dataclass(frozen=True)
class PatchTarget:
    name: str
    title: str
    activation: str  # the engine activation (and TransformerLens hook name) it patches
    axes: tuple[str, ...]  # the sweep's axes, in TransformerLens's order
    setter: Callable
    tl_sweep: str  # the transformer_lens.patching function that gives the same numbers
    reduce: str  # einops reduction of (clean − corrupted) · gradient to the sweep's axes (per layer)

    @property
    def hook(self) -> str:
        """The hook inside each block, e.g. attn.hook_z."""
        return f"attn.hook_{self.activation}" if self.activation in HEAD_ACTIVATIONS else f"hook_{self.activation}"

    @property
    def all_positions(self) -> str | None:
        """The target that patches the same activation at every position at once (head_out for
        head_out_by_pos), or None (resid_pre has no such row)."""
        axes = tuple(a for a in self.axes if a != "pos")
        if axes == self.axes:
            return None
        return next((t.name for t in TARGETS.values() if t.activation == self.activation and t.axes == axes), None)

    def cell_label(self, index: tuple[int, ...], positions: list[str]) -> str:
        """A hover label for one cell, e.g. 'L3 · ._7' or 'L2H1 · John_1'."""
        at = dict(zip(self.axes, index))
        where = head_name((at["layer"], at["head"])) if "head" in at else f"L{at['layer']}"
        return f"{where} · {positions[at['pos']]}" if "pos" in at else where


HEAD_ACTIVATIONS = ("q", "k", "v", "z", "pattern")

_ROWS = [
    # name, title, activation, axes, setter, TransformerLens sweep, attribution reduction
    (
        "resid_pre",
        "Residual stream (resid_pre)",
        "resid_pre",
        ("layer", "pos"),
        _set_pos,
        "get_act_patch_resid_pre",
        "b p d -> p",
    ),
    ("attn_out", "Attention output", "attn_out", ("layer", "pos"), _set_pos, "get_act_patch_attn_out", "b p d -> p"),
    ("mlp_out", "MLP output", "mlp_out", ("layer", "pos"), _set_pos, "get_act_patch_mlp_out", "b p d -> p"),
    (
        "head_out",
        "Head output (all positions)",
        "z",
        ("layer", "head"),
        _set_head,
        "get_act_patch_attn_head_out_all_pos",
        "b p h d -> h",
    ),
    (
        "head_out_by_pos",
        "Head output by position",
        "z",
        ("layer", "pos", "head"),
        _set_pos_head,
        "get_act_patch_attn_head_out_by_pos",
        "b p h d -> p h",
    ),
    ("head_q", "Head queries", "q", ("layer", "head"), _set_head, "get_act_patch_attn_head_q_all_pos", "b p h d -> h"),
    ("head_k", "Head keys", "k", ("layer", "head"), _set_head, "get_act_patch_attn_head_k_all_pos", "b p h d -> h"),
    ("head_v", "Head values", "v", ("layer", "head"), _set_head, "get_act_patch_attn_head_v_all_pos", "b p h d -> h"),
    (
        "head_pattern",
        "Head attention patterns",
        "pattern",
        ("layer", "head"),
        _set_head_pattern,
        "get_act_patch_attn_head_pattern_all_pos",
        "b h q k -> h",
    ),
    (
        "head_q_by_pos",
        "Head queries by position",
        "q",
        ("layer", "pos", "head"),
        _set_pos_head,
        "get_act_patch_attn_head_q_by_pos",
        "b p h d -> p h",
    ),
    (
        "head_k_by_pos",
        "Head keys by position",
        "k",
        ("layer", "pos", "head"),
        _set_pos_head,
        "get_act_patch_attn_head_k_by_pos",
        "b p h d -> p h",
    ),
    (
        "head_v_by_pos",
        "Head values by position",
        "v",
        ("layer", "pos", "head"),
        _set_pos_head,
        "get_act_patch_attn_head_v_by_pos",
        "b p h d -> p h",
    ),
    (
        "head_pattern_by_pos",
        "Head attention patterns by position",
        "pattern",
        ("layer", "head", "pos"),
        _set_head_pattern_dest,
        "get_act_patch_attn_head_pattern_by_pos",
        "b h q k -> h q",
    ),
]
# No "resid_mid": on a TransformerBridge, TL's hook_resid_mid is the input hook of ln2, so
# get_act_patch_resid_mid patches only the MLP's input (it equals get_act_patch_mlp_out).
TARGETS: dict[str, PatchTarget] = {row[0]: PatchTarget(*row) for row in _ROWS}
