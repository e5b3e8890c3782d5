"""generator/engine against transformer_lens.patching's sweeps (float32, to the 1e-5 it promises).

Every target is compared with the TransformerLens sweep it replaces (``TARGETS[t].tl_equivalent``)
on a tiny random GPT-2 booted through the bridge with the seed's processing, both with the
seed's corruption (clean and corrupted differ only in the final token) and with one that
differs early, so that the shared-prefix shortcut and the general path are both exercised. The
GPT-2-small-shaped model and the bundled organism are checked on a subset of indices.
"""

from __future__ import annotations

import dataclasses
import math

import pandas as pd
import pytest
import torch
from conftest import PROMPTS, TOL, load, save_random_gpt2, subset, worker
from transformer_lens import patching

from generator.engine import PatchingEngine, patch_sweep
from generator.metrics import logit_diff
from generator.patch_targets import TARGETS
from generator.tasks import build, load_task


def tl_sweep(model, target, corrupted_tokens, clean_cache, answers, index_df=None):
    """The TransformerLens sweep the engine replaces, with the same metric."""
    metric = lambda logits: logit_diff(logits, answers).mean()  # noqa: E731
    sweep = getattr(patching, TARGETS[target].tl_sweep)
    with torch.no_grad():
        if index_df is None:
            return sweep(model, corrupted_tokens, clean_cache, metric)
        return sweep(model, corrupted_tokens, clean_cache, metric, index_axis_names=None, index_df=index_df)


# ---- tiny random GPT-2: every target (all indices, or 16 spread over the 3-axis sweeps) ----


@pytest.fixture(scope="module")
def tiny(tiny_gpt2):
    model = tiny_gpt2
    batch = subset(build(load_task("pronoun"), model), PROMPTS)
    with torch.no_grad():
        _, cache = model.run_with_cache(batch.clean_tokens)
    return model, batch, cache


def early_corruption(batch):
    """Corrupted prompts that also differ at position 1 (another prompt's name)."""
    corrupted = batch.corrupted_tokens.clone()
    corrupted[:, 1] = batch.clean_tokens.roll(1, dims=0)[:, 1]
    assert (corrupted[:, 1] != batch.clean_tokens[:, 1]).all()
    return corrupted


@pytest.mark.parametrize("target", sorted(TARGETS))
@pytest.mark.parametrize("corruption", ["seed", "early"])
def test_matches_transformer_lens(tiny, target, corruption):
    model, batch, cache = tiny
    if corruption == "early":
        batch = dataclasses.replace(batch, corrupted_tokens=early_corruption(batch))
    # max_rows=5 forces several chunks per group; share_prefix=False runs the general path.
    for share_prefix in (True, False):
        engine = PatchingEngine(
            model, batch.clean_tokens, batch.corrupted_tokens, batch.answer_tokens,
            clean_cache=cache, max_rows=5, share_prefix=share_prefix,
        )  # fmt: skip
        assert engine.shared == (0 if not share_prefix else 7 if corruption == "seed" else 1)
        compare(model, batch, cache, engine, target, max_indices=16)


def test_own_clean_cache_and_baselines(tiny):
    """Without a clean cache the engine runs its own clean forward; its baselines are the
    model's own logit differences."""
    model, batch, cache = tiny
    engine = PatchingEngine(model, batch.clean_tokens, batch.corrupted_tokens, batch.answer_tokens)
    with torch.no_grad():
        clean = logit_diff(model(batch.clean_tokens), batch.answer_tokens)
        corrupted = logit_diff(model(batch.corrupted_tokens), batch.answer_tokens)
    torch.testing.assert_close(engine.clean_logit_diff, clean, atol=TOL, rtol=0)
    torch.testing.assert_close(engine.corrupted_logit_diff, corrupted, atol=TOL, rtol=0)
    for target in ("resid_pre", "head_out"):
        expected = tl_sweep(model, target, batch.corrupted_tokens, cache, batch.answer_tokens)
        torch.testing.assert_close(engine.sweep(target), expected, atol=TOL, rtol=0)
    # The seed's corruption is the final token: patching resid_pre there restores the clean run.
    torch.testing.assert_close(engine.sweep("resid_pre")[0, -1], clean.mean(), atol=TOL, rtol=0)


def test_per_prompt_values_equal_transformer_lens_on_each_prompt_alone(tiny):
    """per_prompt=True: each prompt's value is TransformerLens's sweep run on that prompt alone."""
    model, batch, cache = tiny
    args = (model, "head_out_by_pos", batch.clean_tokens, batch.corrupted_tokens, batch.answer_tokens)
    per_prompt = patch_sweep(*args, clean_cache=cache, per_prompt=True)
    assert per_prompt.shape == (2, 8, 4, len(PROMPTS))
    rows = spread([2, 8, 4], 12)
    index_df = pd.DataFrame(rows, columns=list(TARGETS["head_out_by_pos"].axes))
    for i in range(len(PROMPTS)):
        one = slice(i, i + 1)
        with torch.no_grad():
            _, one_cache = model.run_with_cache(batch.clean_tokens[one])
        expected = tl_sweep(
            model, "head_out_by_pos", batch.corrupted_tokens[one], one_cache, batch.answer_tokens[one], index_df
        )
        got = torch.stack([per_prompt[(*r, i)] for r in rows])
        torch.testing.assert_close(got, expected, atol=TOL, rtol=0)
    torch.testing.assert_close(per_prompt.mean(-1), patch_sweep(*args, clean_cache=cache), atol=TOL, rtol=0)


def test_transformer_lens_caches(tiny):
    """Both runs may come from TransformerLens's run_with_cache (no engine forward then)."""
    model, batch, cache = tiny
    with torch.no_grad():
        _, corrupted_cache = model.run_with_cache(batch.corrupted_tokens)
    engine = PatchingEngine(
        model, batch.clean_tokens, batch.corrupted_tokens, batch.answer_tokens,
        clean_cache=cache, corrupted_cache=corrupted_cache,
    )  # fmt: skip
    for target in ("mlp_out", "head_pattern", "head_k_by_pos"):
        compare(model, batch, cache, engine, target, max_indices=16)
    partial = {k: v for k, v in cache.items() if "hook_pattern" not in k}
    with pytest.raises(ValueError, match="clean_cache lacks blocks.0.attn.hook_pattern"):
        PatchingEngine(model, batch.clean_tokens, batch.corrupted_tokens, batch.answer_tokens, clean_cache=partial)


def count_rows(engine) -> list[int]:
    """Record the variants of every patched run from now on (each ends in one readout)."""
    rows, readout = [], engine.readout
    engine.readout = lambda resid: rows.append(resid.shape[0]) or readout(resid)
    return rows


def test_by_position_sweeps_reuse_the_all_positions_sweep_where_only_the_last_differs(tiny):
    """With the seed's corruption (only the last token differs) a by-position variant at the
    last position patches what its all-positions sibling patches: it is read from that sweep,
    with no run of its own, and the other positions are the corrupted run. Repeated sweeps are
    kept, and what a caller does to a returned sweep does not reach the kept one."""
    model, batch, cache = tiny
    engine = PatchingEngine(model, batch.clean_tokens, batch.corrupted_tokens, batch.answer_tokens, clean_cache=cache)
    rows = count_rows(engine)
    whole = engine.sweep("head_out", per_prompt=True)
    assert sum(rows) == 2 * 4  # a run per layer x head
    by_pos = engine.sweep("head_out_by_pos", per_prompt=True)
    pattern = engine.sweep("head_pattern_by_pos", per_prompt=True)  # its sibling runs; its own variants do not
    assert sum(rows) == 2 * 4 + 2 * 4
    assert torch.equal(by_pos[:, -1], whole)
    assert torch.equal(by_pos[:, :-1], engine.corrupted_logit_diff.expand(2, 7, 4, -1))
    assert torch.equal(pattern[:, :, -1], engine.sweep("head_pattern", per_prompt=True))
    again = engine.sweep("head_out", per_prompt=True)
    again += 1.0
    assert torch.equal(engine.sweep("head_out", per_prompt=True), whole)
    assert sum(rows) == 2 * 4 + 2 * 4  # nothing ran again
    # a source of its own, or some layers only, is run: nothing kept stands in for it
    engine.sweep("head_out", source=engine.clean, layers=[1])
    assert sum(rows) == 2 * 4 + 2 * 4 + 4


def test_a_patch_that_changes_nothing_is_not_run(tiny):
    """Corrupted prompts that differ at position 1 and the last: before the first layer the
    residual stream at positions 2-6 is the embedding of a token both prompts share, so those
    patches are the corrupted run, exactly, and run nothing; every other patch runs."""
    model, batch, cache = tiny
    batch = dataclasses.replace(batch, corrupted_tokens=early_corruption(batch))
    engine = PatchingEngine(model, batch.clean_tokens, batch.corrupted_tokens, batch.answer_tokens, clean_cache=cache)
    rows = count_rows(engine)
    resid = engine.sweep("resid_pre")
    assert sum(rows) == 2 * 7 - 5  # positions 1-7 of both layers, but 2-6 of the first
    assert torch.equal(resid[0, 2:7], engine.corrupted_logit_diff.mean().expand(5))
    assert not torch.equal(resid[1, 2:7], engine.corrupted_logit_diff.mean().expand(5))
    compare(model, batch, cache, engine, "resid_pre")


def test_runs_side_by_side_give_one_threads_numbers(tiny):
    """On two threads a sweep's patched runs (each start's chunk of variants) go side by side,
    one per worker on one intra-op thread (generator.engine.threads): every number is the one a
    single thread computes, bit for bit, in its place."""
    model, batch, cache = tiny
    batch = dataclasses.replace(batch, corrupted_tokens=early_corruption(batch))
    before, out = torch.get_num_threads(), []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            engine = PatchingEngine(
                model, batch.clean_tokens, batch.corrupted_tokens, batch.answer_tokens, clean_cache=cache, max_rows=8
            )
            workers, readout = set(), engine.readout
            engine.readout = lambda resid, seen=workers, read=readout: seen.add(worker()) or read(resid)
            out.append(([engine.sweep(t, per_prompt=True) for t in ("resid_pre", "head_out", "head_v")], workers))
            assert torch.get_num_threads() == n
    finally:
        torch.set_num_threads(before)
    (alone, one), (together, two) = out
    assert one == {"MainThread"} and two == {"0", "1"}
    assert all(torch.equal(a, b) for a, b in zip(alone, together))
    compare(model, batch, cache, engine, "head_v")


def test_errors_name_the_problem(tiny, monkeypatch):
    model, batch, _ = tiny
    with pytest.raises(ValueError, match="same shape"):
        PatchingEngine(model, batch.clean_tokens, batch.corrupted_tokens[:, :-1], batch.answer_tokens)
    with pytest.raises(ValueError, match=r"answer_tokens must be \[batch, 2\]"):
        PatchingEngine(model, batch.clean_tokens, batch.corrupted_tokens, batch.answer_tokens[:, 0])
    engine = PatchingEngine(model, batch.clean_tokens, batch.corrupted_tokens, batch.answer_tokens)
    with pytest.raises(ValueError, match="unknown patch target 'resid_post'"):
        engine.sweep("resid_post")
    with pytest.raises(ValueError, match="positions= needs a by-position target; 'head_out' patches every"):
        engine.sweep("head_out", positions=[7])
    monkeypatch.setattr(model.cfg, "act_fn", "solu_ln")
    with pytest.raises(NotImplementedError, match="act_fn='solu_ln'.*transformer_lens.patching"):
        PatchingEngine(model, batch.clean_tokens, batch.corrupted_tokens, batch.answer_tokens)


def spread(shape, n):
    """About `n` indices spread over a grid of `shape`, always including the last one."""
    total = math.prod(shape)
    flat = sorted({i * total // n for i in range(n)} | {total - 1})
    return [list(map(int, torch.unravel_index(torch.tensor(f), shape))) for f in flat]


def compare(model, batch, cache, engine, target, max_indices=None):
    """The engine's sweep equals TransformerLens's, on every index or on a spread of them
    (TL's index_df mode: one full forward per index is what makes TL slow)."""
    got = engine.sweep(target)
    if max_indices is None or got.numel() <= max_indices:
        expected = tl_sweep(model, target, batch.corrupted_tokens, cache, batch.answer_tokens)
        assert got.shape == expected.shape
    else:
        rows = spread(list(got.shape), max_indices)
        index_df = pd.DataFrame(rows, columns=list(TARGETS[target].axes))
        expected = tl_sweep(model, target, batch.corrupted_tokens, cache, batch.answer_tokens, index_df)
        got = torch.stack([got[tuple(r)] for r in rows])
    torch.testing.assert_close(got, expected, atol=TOL, rtol=0, msg=lambda m: f"{target}: {m}")


# ---- larger models: a spread of indices ------------------------------------------------------


def check_spread(model, batch, targets, max_indices):
    with torch.no_grad():
        _, cache = model.run_with_cache(batch.clean_tokens)
    engine = PatchingEngine(model, batch.clean_tokens, batch.corrupted_tokens, batch.answer_tokens, clean_cache=cache)
    for target in targets:
        compare(model, batch, cache, engine, target, max_indices)


def test_gpt2_small_shape(tmp_path_factory):
    """GPT2Config() with the real tokenizer (random weights), two of the notebook's prompts,
    through the project's loader (the seed's processing, refactor included)."""
    model = load(save_random_gpt2(tmp_path_factory.mktemp("gpt2-small")))
    batch = subset(build(load_task("pronoun"), model), [0, 33])
    assert batch.clean_tokens.shape == (2, 8)
    assert batch.answer_tokens[0].tolist() == [679, 339]  # " He", " he"
    check_spread(model, batch, ("resid_pre", "attn_out", "mlp_out", "head_out", "head_v"), 6)


def test_organism(organism, few_prompts):
    check_spread(organism, few_prompts, sorted(TARGETS), 16)
