"""What differs between the model families the experiments accept (GPT-2, GPT-NeoX/Pythia,
Llama-style), read from TransformerLens's config, in one place.

- A parallel residual (GPT-NeoX, Pythia: attention and MLP both read the block's input) has no
  residual stream between them, so TransformerLens caches no `hook_resid_mid`.
- Grouped-query attention (Llama-style `n_key_value_heads < n_heads`): TransformerLens's
  `hook_k` / `hook_v` carry one vector per key/value head, and query head h reads key/value
  head h // (n_heads / n_key_value_heads) (its `repeat_interleave`). Heads are indexed by
  query head everywhere else."""

from __future__ import annotations


def has_resid_mid(model) -> bool:
    """Whether a residual stream lies between a block's attention and its MLP."""
    return not getattr(model.cfg, "parallel_attn_mlp", False)


def n_kv_heads(model) -> int:
    """The number of key/value heads (n_heads without grouped-query attention)."""
    return getattr(model.cfg, "n_key_value_heads", None) or model.cfg.n_heads


def kv_head(model, head: int) -> int:
    """The key/value head that query head `head` reads (TransformerLens's mapping)."""
    return head // (model.cfg.n_heads // n_kv_heads(model))


def per_query_head(model, values, axes: tuple[str, ...]):
    """A sweep or estimate over key/value heads (TransformerLens's k / v sweeps under
    grouped-query attention) laid out per query head: each query head gets the value of the
    key/value head it reads, so every head table and figure has n_heads columns. Unchanged
    without grouped-query attention, or when the head axis already has n_heads entries."""
    group = model.cfg.n_heads // n_kv_heads(model)
    if group == 1 or "head" not in axes or values.shape[axes.index("head")] == model.cfg.n_heads:
        return values
    dim = axes.index("head")
    return values.repeat_interleave(group, dim=dim)
