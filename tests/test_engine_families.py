"""generator.engine.ops and generator.engine.families: the patching engine and the circuit
runner compute one forward pass through the same block operations, and the engine says in one
line which models' families it does not implement.

How "one implementation" is tested: an op of ops is replaced by a different one (a sharper
attention pattern, a rescaled LayerNorm, a rescaled MLP). If both runners call it, both runs
change, and they still agree with each other, head by head; a runner with an attention (or
norm, or MLP) of its own would keep its old numbers and disagree with the other.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import PROMPTS, TOL, gpt2_tokenizer, load, subset

from generator.engine import PatchingEngine, families, ops, unsupported
from generator.engine.families import gpt2
from generator.engine.graph import CircuitRunner
from generator.tasks import build, load_task


@pytest.fixture(scope="module")
def tiny(tiny_gpt2):
    return tiny_gpt2, subset(build(load_task("pronoun"), tiny_gpt2), PROMPTS)


def both_runs(model, batch):
    """(engine, runner) on the same prompts; the engine's check against the model's own logits
    is off because a replaced op makes them differ on purpose."""
    args = (model, batch.clean_tokens, batch.corrupted_tokens, batch.answer_tokens)
    return PatchingEngine(*args, check=False), CircuitRunner(*args)


def head_writes(engine: PatchingEngine, runner: CircuitRunner, which: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Every head's write z_h @ W_O[h] [layer, head, B, P, D] at the positions the runner
    computes, from the engine's cached z and from the runner's recorded writers."""
    cache, writers = (
        (engine.clean, runner.clean_writers) if which == "clean" else (engine.corrupted, runner.corrupted_writers)
    )
    H, start = engine.n_heads, runner.start
    from_engine, from_runner = [], []
    for layer in range(engine.n_layers):
        z = cache[f"blocks.{layer}.attn.hook_z"][:, start:]  # [B, P, H, d]
        W_O = engine.w.layers[layer].W_O.unflatten(0, (H, -1))  # [H, d, D]
        writes = torch.stack([z[:, :, h] @ W_O[h] for h in range(H)])
        if layer == engine.n_layers - 1:  # the runner runs the last layer at the final position only
            writes[:, :, :-1] = 0
        from_engine.append(writes)
        from_runner.append(torch.stack([writers[runner.graph.writers.index(("head", layer, h))] for h in range(H)]))
    return torch.stack(from_engine), torch.stack(from_runner)


REPLACEMENTS = {
    # each: ops' function name -> a different op of the same signature, built from the original
    "attention_pattern": lambda original: (
        lambda q, k, scale, key_mask=None, prefix=None: original(0 * q, k, scale, key_mask, prefix)
    ),
    "layer_norm": lambda original: lambda x, affine, eps: 1.5 * original(x, affine, eps),
    "mlp": lambda original: lambda x, layer, act_fn: 0.5 * original(x, layer, act_fn),
}


@pytest.mark.parametrize("name", sorted(REPLACEMENTS))
def test_both_runners_compute_with_the_one_op(tiny, monkeypatch, name):
    model, batch = tiny
    engine, runner = both_runs(model, batch)
    assert runner.start > 0  # the shared prefix (computed by the family's block table) is exercised
    torch.testing.assert_close(engine.clean_logit_diff, runner.clean_metric, atol=TOL, rtol=0)
    before = engine.clean_logit_diff

    monkeypatch.setattr(ops, name, REPLACEMENTS[name](getattr(ops, name)))
    engine, runner = both_runs(model, batch)
    # the replacement changed the numbers of both runners ...
    assert (engine.clean_logit_diff - before).abs().max() > 100 * TOL
    assert (runner.clean_metric - before).abs().max() > 100 * TOL
    # ... and they still compute the same forward: per head, and at the logits
    for which in ("clean", "corrupted"):
        got, expected = head_writes(engine, runner, which)
        torch.testing.assert_close(got, expected, atol=TOL, rtol=0, msg=lambda m, w=which: f"{w} head writes: {m}")
    torch.testing.assert_close(engine.clean_logit_diff, runner.clean_metric, atol=TOL, rtol=0)
    torch.testing.assert_close(engine.corrupted_logit_diff, runner.corrupted_metric, atol=TOL, rtol=0)


def test_attention_against_a_naive_loop():
    """ops.attention (the one causal attention) against a loop over prompts, heads and query
    positions, with queries at the last P of N positions as the runners pass them."""
    torch.manual_seed(0)
    B, N, P, H, d = 2, 6, 4, 3, 5
    q, k, v = torch.randn(B, P, H, d), torch.randn(B, N, H, d), torch.randn(B, N, H, d)
    z = ops.attention(q, k, v, scale=2.0)
    for b in range(B):
        for h in range(H):
            for i in range(P):
                pos = N - P + i  # this query's position: it sees keys 0..pos
                weights = torch.softmax(k[b, : pos + 1, h] @ q[b, i, h] / 2.0, dim=0)
                torch.testing.assert_close(z[b, i, h], weights @ v[b, : pos + 1, h])


def test_attention_reads_a_shared_prefix_as_the_joined_keys_and_values():
    """The patching engine's variants share the cached keys and values of the first S
    positions: read beside each variant's later ones, they give what the joined ones give,
    whether the queries or the keys carry the variants."""
    torch.manual_seed(0)
    V, B, S, P, H, d = 3, 2, 4, 2, 3, 5
    pk, pv = torch.randn(1, B, S, H, d), torch.randn(1, B, S, H, d)
    for q, k, v in (
        (torch.randn(V, B, P, H, d), torch.randn(V, B, P, H, d), torch.randn(V, B, P, H, d)),
        (torch.randn(1, B, P, H, d), torch.randn(V, B, P, H, d), torch.randn(1, B, P, H, d)),
    ):
        joined_k, joined_v = ops.join_positions(pk, k, dim=-3), ops.join_positions(pv, v, dim=-3)
        pattern = ops.attention_pattern(q, k, 2.0, prefix=pk)
        torch.testing.assert_close(pattern, ops.attention_pattern(q, joined_k, 2.0).expand_as(pattern))
        z = ops.mix_values(pattern, v, pv)
        torch.testing.assert_close(z, ops.mix_values(pattern, joined_v))


def test_attention_layer_norm_and_softmax_are_written_once():
    """No module of the engine but ops computes a softmax or a LayerNorm."""
    engine_dir = Path(families.__file__).parent.parent
    for needle in (".softmax(", "F.layer_norm(", "act_fn(x @"):
        where = [p.name for p in sorted(engine_dir.rglob("*.py")) for _ in range(p.read_text().count(needle))]
        assert where == ["ops.py"], (needle, where)


# ---- which models the engine runs ----------------------------------------------------------


def save_random(path: Path, model_class, config_class, **config) -> Path:
    torch.manual_seed(0)
    tokenizer = gpt2_tokenizer()
    model_class(config_class(vocab_size=len(tokenizer), **config)).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def neox(tmp_path_factory):
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    shape = dict(hidden_size=64, num_hidden_layers=1, num_attention_heads=4, intermediate_size=128)
    return load(save_random(tmp_path_factory.mktemp("neox"), GPTNeoXForCausalLM, GPTNeoXConfig, **shape))


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    from transformers import LlamaConfig, LlamaForCausalLM

    shape = dict(
        hidden_size=64, num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2, intermediate_size=128
    )
    return load(save_random(tmp_path_factory.mktemp("llama"), LlamaForCausalLM, LlamaConfig, **shape))


def test_unsupported_is_none_for_gpt2(tiny_gpt2, organism):
    for model in (tiny_gpt2, organism):
        assert unsupported(model) is None
        assert unsupported(model.cfg) is None
        assert families.family_of(model) is gpt2


@pytest.mark.parametrize(
    "which, expected",
    [
        ("neox", ["GPTNeoXForCausalLM", "positional_embedding_type='rotary'", "parallel_attn_mlp=True"]),
        ("llama", ["LlamaForCausalLM", "normalization_type='RMS'", "gated_mlp=True", "n_key_value_heads=2"]),
    ],
)
def test_unsupported_names_what_differs(request, which, expected):
    model = request.getfixturevalue(which)
    reason = unsupported(model)
    assert isinstance(reason, str) and "\n" not in reason
    assert reason.startswith("generator.engine implements GPT-2-style blocks (")
    for field in expected:
        assert field in reason, (field, reason)
    assert "act_fn" not in reason  # gelu / silu: what the engine has is not named as missing
    assert families.family_of(model) is None
    # the runners refuse it with that same reason
    tokens = torch.zeros(1, 3, dtype=torch.long)
    for runner in (PatchingEngine, CircuitRunner):
        with pytest.raises(NotImplementedError) as e:
            runner(model, tokens, tokens, torch.zeros(1, 2, dtype=torch.long))
        assert str(e.value).startswith(reason)


def test_circuit_runner_refuses_a_family_it_does_not_lay_out(tiny, monkeypatch):
    """A family with a parallel residual (GPT-NeoX) gets a reason, not a wrong edge graph."""
    model, batch = tiny
    assert unsupported(model, circuit=True) is None
    monkeypatch.setattr(gpt2, "RESIDUAL", "parallel")
    reason = unsupported(model, circuit=True)
    assert reason and "sequential-residual" in reason and "a parallel residual." in reason
    assert unsupported(model) is None  # the patching engine runs its block table as it is
    with pytest.raises(NotImplementedError) as e:
        CircuitRunner(model, batch.clean_tokens, batch.corrupted_tokens, batch.answer_tokens)
    assert str(e.value) == reason
