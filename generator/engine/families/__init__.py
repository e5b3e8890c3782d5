"""Model families: what is specific to one kind of transformer block, one module each.

The engine's runners know no architecture. The patching engine runs a family's block table
(`OPS`); the circuit runner calls the family's `norm`, `mlp` and `positions` and the shared
attention of generator.engine.ops; path patching (engine.paths) its `norm_scale`. A family
module (gpt2.py is the one there is) defines:

- `NAME`, `SHAPE`: words for messages ("GPT-2-style"; "pre-LayerNorm, learned positions, ...").
- `mismatches(cfg) -> list[str]`: the TransformerLens config fields, as `field=value`, whose
  values the family does not implement; empty means it claims the model.
- `read_weights(model) -> ModelWeights`: the bridge's weights into the engine's tables, heads
  fused per layer, with `family` set to the module itself.
- `norm(x, affine, eps)`, `norm_scale(x, eps)`, `mlp(x, layer, act_fn)`, `positions(w, start,
  stop)`: picked from ops' primitives (written once there: a new norm or MLP kind goes to ops).
- `OPS` (the block as a table of hook names, inputs and ops, in compute order), `CACHED`
  (the hooks TransformerLens caches), `ALL_POSITIONS_IN_LAST_LAYER`, `RESIDUAL`, `ROTARY`.

GPT-NeoX/Pythia (neox.py): `positions` gives zeros; `OPS` applies a rotary op (ops.rotary, at
the last P of positions s.start..s.n_pos-1, as attention_pattern counts them) to q and k;
`RESIDUAL = "parallel"`: no resid_mid, ln2 reads resid_pre, resid_post = resid_pre + attn_out
+ mlp_out. Llama-style (llama.py): `norm` = ops.rms_norm, `mlp` = ops.gated_mlp (LayerWeights
gains W_gate), rotary q/k as NeoX, and grouped-query attention: k and v project
n_key_value_heads heads, repeated to n_heads before ops.attention_pattern / mix_values. Each is
added to FAMILIES below. The circuit runner refuses (unsupported(model, circuit=True)) a
parallel residual or rotary positions until its edge graph (an MLP then reads only the writers
before its layer) and its per-head q/k projection take them.
"""

from __future__ import annotations

import weakref
from types import ModuleType

from generator.engine.families import gpt2
from generator.engine.weights import ModelWeights

FAMILIES: tuple[ModuleType, ...] = (gpt2,)


def family_of(model) -> ModuleType | None:
    """The family that implements `model` (a TransformerBridge, or its `cfg`), or None."""
    cfg = getattr(model, "cfg", model)
    return next((f for f in FAMILIES if not f.mismatches(cfg)), None)


def unsupported(model, *, circuit: bool = False) -> str | None:
    """None if the engine runs `model` (a TransformerBridge, or its `cfg`); otherwise one line
    saying why not: the fields its family differs in from every family the engine implements.
    `circuit`: whether the circuit runner (generator.engine.graph) runs it, which also needs a
    sequential residual and learned positions (its edge graph assumes them)."""
    cfg = getattr(model, "cfg", model)
    family = family_of(cfg)
    if family is not None:
        if circuit and (family.RESIDUAL != "sequential" or family.ROTARY):
            has = f"a {family.RESIDUAL} residual" + (" and rotary positions" if family.ROTARY else "")
            return (
                "generator.engine's circuit runner takes sequential-residual blocks with learned "
                f"positions; {family.NAME} blocks have {has}."
            )
        return None
    arch = getattr(cfg, "architecture", None) or getattr(cfg, "original_architecture", None)
    this = f"this model ({arch})" if arch else "this model"
    differs = "; ".join(f"{f.NAME} blocks ({f.SHAPE}), and {this} has {', '.join(f.mismatches(cfg))}" for f in FAMILIES)
    return f"generator.engine implements {differs}."


_cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def model_weights(model) -> ModelWeights:
    """The engine's tables for `model`, read once per model by its family (the bridge stacks
    each weight from its blocks on every access, which is slow). Refuses a model no family
    implements (NotImplementedError) and a model in training mode (ValueError)."""
    reason = unsupported(model)
    if reason:
        raise NotImplementedError(f"{reason} Use transformer_lens.patching's sweeps for it instead.")
    training = [name or "<root>" for name, mod in model.named_modules() if mod.training]
    if training:
        raise ValueError(
            f"activation patching needs the model in eval mode; {training[0]} is training. Call model.eval() first."
        )
    if model not in _cache:
        _cache[model] = family_of(model).read_weights(model)
    return _cache[model]
