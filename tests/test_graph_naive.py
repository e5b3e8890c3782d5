"""generator/engine/graph.py and generator/engine/ops.py on a tiny random GPT-2 (2 layers, 2 heads,
d_model 8, float64) built directly as the engine's weight tables, against a naive forward
written here: Python loops over heads, prompts and positions, every reader's input summed
writer by writer, each edge's writer output taken from the live or the other run as the
ablation says. No TransformerLens model is loaded, so the whole file runs in about a second
and `make mutation` runs it for every mutant of the two modules. The same code against
TransformerLens and MIB on real models is tested in test_circuit.py and test_engine*.py."""

from __future__ import annotations

import math
import re

import pytest
import torch

from generator.engine import graph as graph_module
from generator.engine import ops
from generator.engine.families import gpt2
from generator.engine.graph import CircuitRunner, EdgeGraph
from generator.engine.weights import LayerWeights, ModelWeights

TOL = 1e-9  # float64 throughout: only the order of the sums differs
L, H, D, d, M, V, N, B = 2, 2, 8, 3, 10, 13, 5, 3


def gelu(x):
    return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))


def tiny_weights(seed=0) -> ModelWeights:
    """A random GPT-2-style model as the engine's tables (LayerNorms with a real affine part)."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape, scale=0.5):
        return torch.randn(*shape, generator=g, dtype=torch.float64) * scale

    def affine():
        return (1 + r(D, scale=0.2), r(D, scale=0.2))

    layers = tuple(
        LayerWeights(
            W_Q=r(D, H * d), W_K=r(D, H * d), W_V=r(D, H * d), b_Q=r(H * d), b_K=r(H * d), b_V=r(H * d),
            W_O=r(H * d, D), b_O=r(D), W_in=r(D, M), b_in=r(M), W_out=r(M, D), b_out=r(D),
            ln1=affine(), ln2=affine(),
        )
        for _ in range(L)
    )  # fmt: skip
    return ModelWeights(
        W_E=r(V, D, scale=1.0), W_pos=r(N + 2, D), W_U=r(D, V, scale=1.0), b_U=r(V), layers=layers,
        ln_final=affine(), n_heads=H, d_head=d, eps=1e-5, attn_scale=math.sqrt(d) * 1.3, act_fn=gelu,
        family=gpt2,
    )  # fmt: skip


W = tiny_weights()
G = EdgeGraph(L, H)
CLEAN = torch.tensor([[1, 2, 3, 4, 5], [1, 2, 6, 7, 8], [1, 2, 9, 10, 11]])
CORRUPTED = torch.tensor([[1, 2, 3, 12, 5], [1, 2, 0, 7, 8], [1, 2, 9, 10, 4]])  # shared prefix: 2 tokens
ANSWERS = torch.tensor([[3, 4], [7, 0], [12, 2]])


def runner(clean=CLEAN, corrupted=CORRUPTED, answers=ANSWERS, reason=None, **kwargs) -> CircuitRunner:
    """The circuit runner on the tiny tables (the loader's TransformerBridge step skipped)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(graph_module, "model_weights", lambda model: model)
        # asked of this model and of the circuit runner's graph (which takes fewer families)
        mp.setattr(graph_module, "unsupported", lambda model, circuit=False: reason if model is W and circuit else None)
        return CircuitRunner(W, clean, corrupted, answers, **kwargs)


# ---- the naive forward ------------------------------------------------------------------------


def norm(x, affine):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + W.eps) * affine[0] + affine[1]


def naive_run(embed, ablate=None, other=None, taps=None, masks=None):
    """(writer outputs [W, B, N, D], per-prompt logit differences [B]) of a run from token
    embeddings [B, N, D] (every position), each reader's input summed writer by writer:
    edge (w, r) carries a·other_w + (1 − a)·live_w at each position, a = ablate[w, r(, pos)]."""
    writers: list[torch.Tensor] = []

    def reader_input(reader, const):
        r = G.readers.index(reader)
        x = const.expand(B, N, D)
        for w, live in enumerate(writers):  # every writer computed so far: the upstream ones
            a = 0.0 if ablate is None else ablate[w, r]
            a = a[:, None] if torch.is_tensor(a) and a.dim() == 1 else a  # one weight per position
            x = x + (live if ablate is None else (1 - a) * live + a * other[w])
        return x + taps[r] if taps is not None else x

    writers.append(embed)
    const = W.W_pos[:N]
    for layer, lw in enumerate(W.layers):
        heads = []
        inputs = {(c, h): reader_input((c, layer, h), const) for c in "qkv" for h in range(H)}
        for h in range(H):
            cols = slice(h * d, (h + 1) * d)
            q, k, v = (norm(inputs[(c, h)], lw.ln1) @ Wc[:, cols] + bc[cols] for c, Wc, bc in (
                ("q", lw.W_Q, lw.b_Q), ("k", lw.W_K, lw.b_K), ("v", lw.W_V, lw.b_V)))  # fmt: skip
            z = torch.zeros(B, N, d, dtype=torch.float64)
            for b in range(B):
                for p in range(N):
                    logits = torch.stack([q[b, p] @ k[b, j] / W.attn_scale for j in range(p + 1)])
                    z[b, p] = sum(a * v[b, j] for j, a in enumerate(torch.softmax(logits, 0)))
            heads.append(z @ lw.W_O[cols])
        writers += heads
        const = const + lw.b_O
        x = norm(reader_input(("mlp", layer), const), lw.ln2)
        writers.append(gelu(x @ lw.W_in + lw.b_in) @ lw.W_out + lw.b_out)
    x = norm(reader_input(("logits",), const)[:, -1], W.ln_final)
    if masks is not None:  # the capital log-odds readout instead of the answers' difference
        odds = [naive_log_odds(x[b] @ W.W_U + W.b_U, *masks) for b in range(B)]
        return torch.stack(writers), torch.tensor(odds, dtype=torch.float64)
    diff = [
        float(x[b] @ W.W_U[:, ANSWERS[b, 0]] + W.b_U[ANSWERS[b, 0]])
        - float(x[b] @ W.W_U[:, ANSWERS[b, 1]] + W.b_U[ANSWERS[b, 1]])
        for b in range(B)
    ] if taps is None else None  # fmt: skip
    if taps is not None:  # differentiable: the same sum as a tensor
        logits = torch.einsum("bd,dbk->bk", x, W.W_U[:, ANSWERS]) + W.b_U[ANSWERS]
        return torch.stack(writers), logits[:, 0] - logits[:, 1]
    return torch.stack(writers), torch.tensor(diff, dtype=torch.float64)


def naive_log_odds(logits, upper, lower) -> float:
    """log Σ exp over the capital-initial tokens − log Σ exp over the lowercase-initial ones."""
    return math.log(sum(math.exp(float(logits[t])) for t in range(V) if upper[t])) - math.log(
        sum(math.exp(float(logits[t])) for t in range(V) if lower[t])
    )


# two parts of the vocabulary, neither all of it, together not all of it either
UPPER = torch.tensor([t in (1, 4, 5, 9) for t in range(V)])
LOWER = torch.tensor([t in (0, 2, 7, 8, 12) for t in range(V)])


def embed(tokens):
    return W.W_E[tokens]


CLEAN_RUN = naive_run(embed(CLEAN))
CORRUPTED_RUN = naive_run(embed(CORRUPTED))


def close(got, expected):
    torch.testing.assert_close(got, expected, atol=TOL, rtol=0)


def random_mask(shape, density, seed):
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed)) < density


# ---- the edge graph ---------------------------------------------------------------------------


def test_writers_and_readers_in_computation_order():
    assert G.writers == [("embed",)] + [
        w for layer in range(L) for w in [("head", layer, h) for h in range(H)] + [("mlp", layer)]
    ]
    assert G.readers == [
        r for layer in range(L) for r in [(c, layer, h) for c in "qkv" for h in range(H)] + [("mlp", layer)]
    ] + [("logits",)]
    for layer in range(L):
        assert [G.readers[i] for i in range(len(G.readers))[G.reader_slice(layer, "attn")]] == [
            (c, layer, h) for c in "qkv" for h in range(H)
        ]
        assert [G.readers[i] for i in range(len(G.readers))[G.reader_slice(layer, "mlp")]] == [("mlp", layer)]
        before = [w for w in G.writers if w[0] == "embed" or w[1] < layer]
        assert G.writers_before(layer) == len(before)
        assert G.writers_before(layer, mlp=True) == len(before) + H


@pytest.mark.parametrize(("layers", "heads"), [(2, 2), (3, 1), (1, 4), (12, 12)])
def test_an_edge_joins_a_writer_to_each_reader_after_it(layers, heads):
    g = EdgeGraph(layers, heads)

    def when_written(w):  # the sub-step after which a writer's output exists
        return -1 if w[0] == "embed" else 2 * w[1] + (0 if w[0] == "head" else 1)

    def when_read(r):
        return 2 * layers if r[0] == "logits" else 2 * r[1] + (1 if r[0] == "mlp" else 0)

    expected = torch.tensor([[when_written(w) < when_read(r) for r in g.readers] for w in g.writers])
    assert torch.equal(g.upstream(), expected)
    if (layers, heads) == (12, 12):
        assert int(expected.sum()) == 32491  # MIB's count for GPT-2 small


def test_node_ids_and_transformer_lens_nodes_round_trip():
    for i, w in enumerate(G.writers):
        assert G.writer_id(i) == dict(zip(("kind", "layer", "head"), w))
    for i, r in enumerate(G.readers):
        assert G.reader_id(i) == dict(zip(("kind", "layer", "head"), r))
    kinds = {"embed": "embed", "head": "attn_head_out", "mlp": "mlp_out"}
    readers = {"q": "q_input", "k": "k_input", "v": "v_input", "mlp": "mlp_in", "logits": "logits"}
    for w, r in zip(*G.upstream().nonzero(as_tuple=True)):
        wn, rn = G.to_transformer_lens(int(w), int(r), position=3)
        assert (wn.kind, wn.position, wn.layer, wn.head) == (
            kinds[G.writers[w][0]], 3, *(G.writers[w][1:] + (None, None))[:2])  # fmt: skip
        reader = G.readers[r]
        where = (L - 1, None) if reader[0] == "logits" else (reader[1:] + (None,))[:2]
        assert (rn.kind, rn.position, rn.layer, rn.head) == (readers[reader[0]], 3, *where)
        assert G.from_transformer_lens(wn) == (int(w), 3)
        assert G.from_transformer_lens(rn) == (int(r), 3)


# ---- runs -------------------------------------------------------------------------------------


def recorded(writers: torch.Tensor) -> torch.Tensor:
    """The naive run's writers as the runner records them: past the last layer's keys and values
    only the final position is read, so the last layer's heads and MLP write there alone (zero
    at the other positions)."""
    out = writers.clone()
    out[G.writers_before(L - 1) :, :, :-1] = 0
    return out


def test_clean_and_corrupted_runs_and_the_shared_prefix():
    r = runner()
    assert (r.n_pos, r.start) == (N, 2)
    close(r.clean_metric, CLEAN_RUN[1])
    close(r.corrupted_metric, CORRUPTED_RUN[1])
    close(r.clean_writers, recorded(CLEAN_RUN[0][:, :, 2:]))  # writers from the first differing position
    close(r.corrupted_writers, recorded(CORRUPTED_RUN[0][:, :, 2:]))
    assert not CLEAN_RUN[0][G.writers_before(L - 1) :, :, :-1].eq(0).all()  # so zeros there are the runner's
    whole = runner(share_prefix=False)
    assert whole.start == 0
    close(whole.clean_writers, recorded(CLEAN_RUN[0]))
    close(whole.corrupted_metric, CORRUPTED_RUN[1])
    same = runner(corrupted=CLEAN)  # nothing differs: only the final position is computed
    assert same.start == N - 1
    close(same.corrupted_metric, CLEAN_RUN[1])
    late = CLEAN.clone()
    late[0, -1] = 0
    assert runner(corrupted=late).start == N - 1
    first = CLEAN.clone()
    first[2, 0] = 0
    assert runner(corrupted=first).start == 0


def test_runner_refuses_what_its_graph_lacks():
    with pytest.raises(NotImplementedError, match="^no graph for this$"):
        runner(reason="no graph for this")


@pytest.mark.parametrize("density", [0.1, 0.5, 0.9])
@pytest.mark.parametrize("position_aware", [False, True])
def test_circuit_runs_equal_the_naive_sum_over_edges(density, position_aware):
    """evaluate: the clean run with every edge outside the circuit fed the corrupted writer's
    output (sparse and dense circuits take the two forms of the sum)."""
    r = runner()
    shape = (len(G.writers), len(G.readers)) + ((N,) if position_aware else ())
    upstream = G.upstream()[..., None].expand(shape) if position_aware else G.upstream()
    for seed in range(3):
        keep = random_mask(shape, density, seed) & upstream
        ablate = (~keep).double()
        expected = naive_run(embed(CLEAN), ablate, CORRUPTED_RUN[0])[1]
        close(r.evaluate(keep), expected)


def test_left_padding_changes_no_number():
    """A prompt left-padded into a longer batch (CircuitRunner's pad, the contrast pairs' pools)
    gets the numbers of its run alone: metrics, circuit runs on both graphs, patched edges and
    scores; padding that reaches past the shared prefix is refused."""
    short_clean, short_corrupted = torch.tensor([[1, 2, 6, 7]]), torch.tensor([[1, 2, 0, 7]])
    clean = torch.cat([CLEAN[:2], torch.nn.functional.pad(short_clean, (1, 0))])
    corrupted = torch.cat([CORRUPTED[:2], torch.nn.functional.pad(short_corrupted, (1, 0))])
    padded = runner(clean, corrupted, ANSWERS, pad=torch.tensor([0, 0, 1]))
    full, alone = runner(CLEAN[:2], CORRUPTED[:2], ANSWERS[:2]), runner(short_clean, short_corrupted, ANSWERS[2:])
    assert padded.start == 2 and alone.start == 2  # the short prompt's prefix: one real token, one pad

    def both(fn, mask=None):  # the full prompts' and the short one's values, as the pool orders them
        cut = None if mask is None else (mask[..., 1:] if mask.dim() == 3 else mask)
        return torch.cat([fn(full, mask), fn(alone, cut)])

    close(padded.clean_metric, both(lambda r, _: r.clean_metric))
    close(padded.corrupted_metric, both(lambda r, _: r.corrupted_metric))
    for position_aware in (False, True):
        shape = (len(G.writers), len(G.readers)) + ((N,) if position_aware else ())
        for seed, density in enumerate((0.1, 0.5, 0.9)):
            keep = random_mask(shape, density, seed)
            close(padded.evaluate(keep), both(lambda r, m: r.evaluate(m), keep))
            close(padded.patch_edges(keep), both(lambda r, m: r.patch_edges(m), keep))
    want = full.scores(2) * 2 / 3
    want[..., 1:] += alone.scores(2) / 3
    close(padded.scores(2), want)
    message = (
        "pad: 3 padding tokens reach past the shared prefix (2 positions); allowed: padding within the "
        "positions every pair shares"
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        runner(clean, corrupted, ANSWERS, pad=torch.tensor([0, 0, 3]))
    # padding up to the shared prefix's end: the short prompt has no earlier token at all
    first_clean, first_corrupted = torch.tensor([[6, 7, 8]]), torch.tensor([[0, 7, 8]])
    clean = torch.cat([CLEAN[:2], torch.nn.functional.pad(first_clean, (2, 0))])
    corrupted = torch.cat([CORRUPTED[:2], torch.nn.functional.pad(first_corrupted, (2, 0))])
    padded = runner(clean, corrupted, ANSWERS, pad=torch.tensor([0, 0, 2]))
    alone = runner(first_clean, first_corrupted, ANSWERS[2:])
    assert padded.start == 2 and alone.start == 0
    keep = random_mask((len(G.writers), len(G.readers)), 0.5, 7)
    close(padded.evaluate(keep), torch.cat([full.evaluate(keep), alone.evaluate(keep)]))
    close(padded.clean_metric, torch.cat([full.clean_metric, alone.clean_metric]))


def test_runners_on_prompts_that_begin_alike_share_the_prefix_once(monkeypatch):
    """prefix_cache: runners whose clean prompts have the same tokens before the first position
    where a pair differs (the same sentences with another last token) compute the keys and
    values there once, with their own numbers; another prefix, or padding, gets its own."""
    computed = []
    inner = CircuitRunner._prefix_keys_values
    monkeypatch.setattr(CircuitRunner, "_prefix_keys_values", lambda self: computed.append(1) or inner(self))
    cache: dict = {}
    first = runner(prefix_cache=cache)
    last = CLEAN.clone()
    last[:, -1] = torch.tensor([6, 0, 3])  # another final token: the same 2-token prefix
    second, alone = runner(last, prefix_cache=cache), runner(last)
    assert len(computed) == 2 and len(cache) == 1 and second.prefix_kv is first.prefix_kv
    keep = random_mask((len(G.writers), len(G.readers)), 0.5, 3)
    close(second.clean_metric, alone.clean_metric)
    close(second.evaluate(keep), alone.evaluate(keep))
    close(second.evaluate(keep), naive_run(embed(last), (~keep).double(), CORRUPTED_RUN[0])[1])
    other, other_corrupted = CLEAN.clone(), CORRUPTED.clone()
    other[1, 1] = other_corrupted[1, 1] = 5  # another prefix token, in both members
    assert runner(other, other_corrupted, prefix_cache=cache).start == 2 and len(computed) == 3 and len(cache) == 2
    shorter = CLEAN.clone()
    shorter[:, 1] = CORRUPTED[:, 1] + 1  # now the pairs differ from position 1: a prefix of one token
    assert runner(shorter, prefix_cache=cache).start == 1 and len(computed) == 4 and len(cache) == 3
    padded = runner(prefix_cache=cache, pad=torch.tensor([0, 0, 1]))
    assert len(computed) == 5 and len(cache) == 4 and padded.prefix_kv is not first.prefix_kv


def test_final_attention_of_the_recorded_runs():
    """final_attention: each head's softmax over the positions for the final query, from each
    layer's input summed writer by writer (naive), in the clean and the corrupted run; with
    padding, zero on the padding and the prompt's own run's pattern after it."""
    r = runner()
    for run, (writers, _) in (("clean", CLEAN_RUN), ("corrupted", CORRUPTED_RUN)):
        got, const = r.final_attention(run), W.W_pos[:N]
        assert got.shape == (B, L, H, N)
        for layer, lw in enumerate(W.layers):
            x = norm(const + writers[: G.writers_before(layer)].sum(0), lw.ln1)
            for h in range(H):
                cols = slice(h * d, (h + 1) * d)
                q, k = x[:, -1] @ lw.W_Q[:, cols] + lw.b_Q[cols], x @ lw.W_K[:, cols] + lw.b_K[cols]
                close(got[:, layer, h], torch.softmax((k @ q[..., None])[..., 0] / W.attn_scale, -1))
            const = const + lw.b_O
    short_clean, short_corrupted = torch.tensor([[1, 2, 6, 7]]), torch.tensor([[1, 2, 0, 7]])
    clean = torch.cat([CLEAN[:2], torch.nn.functional.pad(short_clean, (1, 0))])
    corrupted = torch.cat([CORRUPTED[:2], torch.nn.functional.pad(short_corrupted, (1, 0))])
    padded = runner(clean, corrupted, ANSWERS, pad=torch.tensor([0, 0, 1]))
    alone = runner(short_clean, short_corrupted, ANSWERS[2:])
    for run in ("clean", "corrupted"):
        got = padded.final_attention(run)
        close(got[:2], r.final_attention(run)[:2])
        close(got[2, ..., 0], torch.zeros(L, H, dtype=torch.float64))
        close(got[2, ..., 1:], alone.final_attention(run)[0])
    with pytest.raises(ValueError, match=re.escape("final_attention: run='patched'; allowed: 'clean' or 'corrupted'")):
        r.final_attention("patched")


def test_whole_and_empty_circuits_and_one_layer_ablated():
    r = runner()
    upstream = G.upstream()
    close(r.evaluate(upstream), CLEAN_RUN[1])
    close(r.evaluate(torch.zeros_like(upstream)), CORRUPTED_RUN[1])
    for reader in (G.reader_slice(1, "attn"), G.reader_slice(1, "mlp"), slice(len(G.readers) - 1, None)):
        keep = upstream.clone()
        keep[:, reader] = False  # only readers of the last layer (or the logits) ablated
        ablate = (~keep).double()
        close(r.evaluate(keep), naive_run(embed(CLEAN), ablate, CORRUPTED_RUN[0])[1])


@pytest.mark.parametrize("position_aware", [False, True])
def test_patching_edges_equals_the_naive_sum_over_edges(position_aware):
    """patch_edges: the corrupted run with the patched edges fed the clean writer's output."""
    r = runner()
    shape = (len(G.writers), len(G.readers)) + ((N,) if position_aware else ())
    for seed, density in ((0, 0.02), (1, 0.3), (2, 0.95)):
        patched = random_mask(shape, density, seed)
        expected = naive_run(embed(CORRUPTED), patched.double(), CLEAN_RUN[0])[1]
        close(r.patch_edges(patched), expected)


def edges_into(readers) -> torch.Tensor:
    """[W, R] bool: every edge into the readers `readers` (a slice or a list of indices)."""
    mask = torch.zeros_like(G.upstream())
    mask[:, readers] = G.upstream()[:, readers]
    return mask


@pytest.mark.parametrize(
    "readers",
    [[G.readers.index(("q", 1, 0))], G.reader_slice(1, "attn"), G.reader_slice(1, "mlp"), [-1], [7, 14]],
    ids=["one query of layer 1", "layer 1's attention", "layer 1's MLP", "the logits", "layer 1 and the logits"],
)
def test_patching_edges_into_late_readers_only(readers):
    """A run whose first patched edge reads at layer 1 (or only the logits) starts there, from
    the corrupted run's recorded writers: it must equal the naive run from the start."""
    r = runner()
    for patched in (edges_into(readers), edges_into(readers) & random_mask(G.upstream().shape, 0.5, 3)):
        expected = naive_run(embed(CORRUPTED), patched.double(), CLEAN_RUN[0])[1]
        close(r.patch_edges(patched), expected)
        positions = patched[..., None].expand(*patched.shape, N).clone()
        positions[..., : N - 1] = False  # the last position only
        expected = naive_run(embed(CORRUPTED), positions.double(), CLEAN_RUN[0])[1]
        close(r.patch_edges(positions), expected)


def test_a_base_without_ablation_is_the_plain_run():
    r = runner()
    close(r.forward(r.embed(CLEAN), base=r.corrupted_writers), CLEAN_RUN[1])
    ablate = edges_into([-1]).double()  # only the logits: without `base` the run starts at layer 0
    close(r.forward(r.embed(CLEAN), ablate, r.corrupted_writers), naive_run(embed(CLEAN), ablate, CORRUPTED_RUN[0])[1])


def test_one_runner_answers_every_question_in_any_order():
    """The runner keeps running sums of its recorded runs: a run from another `other` in
    between must not be answered from (or stored as) them."""
    r = runner()
    g = torch.Generator().manual_seed(9)
    other = torch.randn(len(G.writers), B, N, D, generator=g, dtype=torch.float64)
    other[:, :, : r.start] = CLEAN_RUN[0][:, :, : r.start]
    dense = (random_mask(G.upstream().shape, 0.9, 4) & G.upstream()).double()  # mostly ablated
    keep = random_mask(G.upstream().shape, 0.2, 5) & G.upstream()
    for _ in range(2):
        close(r.forward(r.embed(CLEAN), dense, other[:, :, r.start :]), naive_run(embed(CLEAN), dense, other)[1])
        close(r.evaluate(keep), naive_run(embed(CLEAN), (~keep).double(), CORRUPTED_RUN[0])[1])
        close(r.patch_edges(keep), naive_run(embed(CORRUPTED), keep.double(), CLEAN_RUN[0])[1])


@pytest.mark.parametrize("share_prefix", [True, False])
def test_fractional_ablation_from_any_other_run(share_prefix):
    """forward with weights between 0 and 1 and an `other` that no run recorded."""
    r = runner(share_prefix=share_prefix)
    g = torch.Generator().manual_seed(5)
    other = torch.randn(len(G.writers), B, N, D, generator=g, dtype=torch.float64)
    other[:, :, : r.start] = CLEAN_RUN[0][:, :, : r.start]  # what every run has on the shared prefix
    for density in (0.2, 0.8):
        a = torch.rand(len(G.writers), len(G.readers), generator=g, dtype=torch.float64)
        a = a * (torch.rand(a.shape, generator=g) < density) * G.upstream()
        expected = naive_run(embed(CLEAN), a, other)[1]
        close(r.forward(r.embed(CLEAN), a, other[:, :, r.start :]), expected)
        base = r.forward(r.embed(CLEAN), a, other[:, :, r.start :], base=r.clean_writers)
        close(base, expected)
    mask = random_mask(G.upstream().shape, 0.5, 6) & G.upstream()  # a bool mask: the shares 0 and 1
    other_run = other[:, :, r.start :]
    close(r.forward(r.embed(CLEAN), mask, other_run), r.forward(r.embed(CLEAN), mask.double(), other_run))
    writers, metric = r.forward(r.embed(CORRUPTED), record=True)
    close(writers, recorded(CORRUPTED_RUN[0][:, :, r.start :]))
    close(metric, CORRUPTED_RUN[1])


# ---- gradient scores --------------------------------------------------------------------------


def naive_scores(alphas):
    """[W, R, N] (clean − corrupted writer output) · the gradient of the mean logit difference
    with respect to each reader's input, averaged over runs from embeddings corrupted + α·(clean
    − corrupted); zero where no edge is."""
    grads = torch.zeros(len(G.readers), B, N, D, dtype=torch.float64)
    for alpha in alphas:
        taps = torch.zeros(len(G.readers), B, N, D, dtype=torch.float64, requires_grad=True)
        e = embed(CORRUPTED) + alpha * (embed(CLEAN) - embed(CORRUPTED))
        naive_run(e, taps=taps)[1].mean().backward()
        grads += taps.grad / len(alphas)
    delta = CLEAN_RUN[0] - CORRUPTED_RUN[0]
    out = torch.zeros(len(G.writers), len(G.readers), N, dtype=torch.float64)
    for w in range(len(G.writers)):
        for r in range(len(G.readers)):
            if G.upstream()[w, r]:
                out[w, r] = (delta[w] * grads[r]).sum((0, 2))
    return out


@pytest.mark.parametrize(
    ("steps", "at", "alphas"),
    [(1, "corrupted", [0.0]), (1, "clean", [1.0]), (3, "corrupted", [0.0, 1 / 3, 2 / 3])],
)
def test_scores_are_gradient_times_difference_by_hand(steps, at, alphas):
    r = runner()
    scores = r.scores(steps, at)
    assert scores.shape == (len(G.writers), len(G.readers), N)
    close(scores, naive_scores(alphas))
    assert r.scores(steps, at) is scores  # computed once
    if (steps, at) == (1, "corrupted"):  # the default: attribution patching
        close(r.scores(), scores)


def test_scores_refuse_what_is_not_eap():
    r = runner()
    for steps, at in ((1, "middle"), (2, "clean")):
        with pytest.raises(ValueError, match=f"at='{at}' with {steps} steps"):
            r.scores(steps, at)


# ---- the block operations, each against its formula ------------------------------------------------


def rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_layer_norm_and_its_scale():
    x = rand(2, 4, D) * 3 + 1
    w, b = rand(D, seed=1), rand(D, seed=2)
    close(ops.layer_norm(x, (w, b), 1e-5), norm(x, (w, b)))
    close(ops.layer_norm(x, (None, None), 1e-5), norm(x, (torch.ones(D), torch.zeros(D))))
    wide = (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + 0.5)
    close(ops.layer_norm(x, (None, None), 0.5), wide)  # the model's eps, not a default
    var = ((x - x.mean(-1, keepdim=True)) ** 2).mean(-1, keepdim=True)
    close(ops.layer_norm_scale(x, 0.5), torch.sqrt(var + 0.5))


def test_projections_head_by_head():
    x, Wq, bq = rand(3, N, D), rand(D, H * d, seed=1), rand(H * d, seed=2)
    out = ops.project(x, Wq, bq, H)
    assert out.shape == (3, N, H, d)
    for h in range(H):
        close(out[..., h, :], x @ Wq[:, h * d : (h + 1) * d] + bq[h * d : (h + 1) * d])
    own = rand(2, 3, N, D, seed=3)  # two heads, each with an input of its own
    for heads in (torch.tensor([1, 0]), slice(None)):
        got = ops.project_heads(own, Wq, bq, heads, H)
        idx = [1, 0] if torch.is_tensor(heads) else [0, 1]
        assert got.shape == (3, N, 2, d)
        for i, h in enumerate(idx):
            close(got[..., i, :], own[i] @ Wq[:, h * d : (h + 1) * d] + bq[h * d : (h + 1) * d])


def test_causal_attention_at_the_last_positions():
    n_all, n_q = 6, 3  # queries at the last 3 of 6 positions (a cached prefix before them; 3 ≠ H)
    q, k, v = rand(3, n_q, H, d), rand(3, n_all, H, d, seed=1), rand(3, n_all, H, d, seed=2)
    pattern = ops.attention_pattern(q, k, 0.7)
    z = ops.attention(q, k, v, 0.7)
    assert pattern.shape == (3, H, n_q, n_all) and z.shape == (3, n_q, H, d)
    for b in range(3):
        for h in range(H):
            for i in range(n_q):
                p = n_all - n_q + i
                logits = torch.stack([q[b, i, h] @ k[b, j, h] / 0.7 for j in range(p + 1)])
                weights = torch.softmax(logits, 0)
                close(pattern[b, h, i], torch.cat([weights, torch.zeros(n_all - p - 1, dtype=torch.float64)]))
                close(z[b, i, h], sum(a * v[b, j, h] for j, a in enumerate(weights)))
    close(ops.mix_values(pattern, v), z)
    # the patching engine's leading [V, B]: each variant as on its own
    qs, ks, vs = (torch.stack([t, t * 0.5 + 1]) for t in (q, k, v))
    pattern5, z5 = ops.attention_pattern(qs, ks, 0.7), ops.attention(qs, ks, vs, 0.7)
    assert pattern5.shape == (2, 3, H, n_q, n_all) and z5.shape == (2, 3, n_q, H, d)
    close(pattern5[1], ops.attention_pattern(qs[1], ks[1], 0.7))
    close(z5[1], ops.attention(qs[1], ks[1], vs[1], 0.7))
    close(ops.mix_values(pattern5, vs)[1], ops.mix_values(pattern5[1], vs[1]))
    lw = W.layers[0]
    close(ops.head_writes(z5, lw.W_O)[1], ops.head_writes(z5[1], lw.W_O))


def test_what_attention_and_the_mlp_write():
    z, lw = rand(3, N, H, d), W.layers[0]
    heads = ops.head_writes(z, lw.W_O)
    for h in range(H):
        close(heads[..., h, :], z[..., h, :] @ lw.W_O[h * d : (h + 1) * d])
    close(ops.attention_out(z, lw.W_O, lw.b_O), heads.sum(-2) + lw.b_O)
    variants = torch.stack([z, z * 2])  # the patching engine's [V, B, P, H, d]
    close(ops.attention_out(variants, lw.W_O, lw.b_O)[1], ops.head_writes(z * 2, lw.W_O).sum(-2) + lw.b_O)
    x = rand(3, N, D, seed=1)
    close(ops.mlp(x, lw, gelu), gelu(x @ lw.W_in + lw.b_in) @ lw.W_out + lw.b_out)


def test_logit_difference_of_each_prompts_answers():
    x = rand(2, B, D)  # two variants of B prompts
    W_answer, b_answer = W.W_U[:, ANSWERS].permute(1, 0, 2), W.b_U[ANSWERS]
    out = ops.logit_diff(x, W_answer, b_answer)
    for v in range(2):
        for b in range(B):
            logits = x[v, b] @ W.W_U + W.b_U
            assert float(out[v, b]) == pytest.approx(float(logits[ANSWERS[b, 0]] - logits[ANSWERS[b, 1]]), abs=TOL)


def test_capital_log_odds_of_each_prompt():
    x = rand(2, B, D)  # two variants of B prompts
    out = ops.vocabulary_log_odds(x, W.W_U, W.b_U, UPPER, LOWER)
    assert out.shape == (2, B)
    for v in range(2):
        for b in range(B):
            expected = naive_log_odds(x[v, b] @ W.W_U + W.b_U, UPPER, LOWER)
            assert float(out[v, b]) == pytest.approx(expected, abs=1e-5)  # computed in float32
    half = (x[0] @ W.W_U + W.b_U).half()  # half-precision logits are summed in float32
    out = ops.capital_log_odds(half, UPPER, LOWER)
    assert out.dtype == torch.float32
    for b in range(B):
        assert float(out[b]) == pytest.approx(naive_log_odds(half[b].double(), UPPER, LOWER), abs=1e-5)


def test_the_capital_log_odds_readout_of_every_run():
    """case_masks: every metric of the runner (the clean and corrupted runs, a circuit, patched
    edges) is the capital log-odds of the next token, with no answer pair."""
    r = runner(answers=None, case_masks=(UPPER, LOWER))
    clean, corrupted = (naive_run(embed(t), masks=(UPPER, LOWER)) for t in (CLEAN, CORRUPTED))

    def near(got, expected):
        torch.testing.assert_close(got.double(), expected, atol=1e-5, rtol=0)

    near(r.clean_metric, clean[1])
    near(r.corrupted_metric, corrupted[1])
    assert not torch.allclose(clean[1], corrupted[1], atol=1e-3)  # the two runs differ
    keep = random_mask((len(G.writers), len(G.readers)), 0.5, 0) & G.upstream()
    near(r.evaluate(keep), naive_run(embed(CLEAN), (~keep).double(), corrupted[0], masks=(UPPER, LOWER))[1])
    patched = random_mask((len(G.writers), len(G.readers)), 0.3, 1)
    near(r.patch_edges(patched), naive_run(embed(CORRUPTED), patched.double(), clean[0], masks=(UPPER, LOWER))[1])


def test_join_positions_broadcasts_the_cached_prefix():
    suffix = rand(4, 3, 2, H, d)  # 4 variants
    assert ops.join_positions(None, suffix, dim=-3) is suffix
    prefix = rand(1, 3, 5, H, d, seed=1)  # one cached prefix shared by the variants
    out = ops.join_positions(prefix, suffix, dim=-3)
    assert out.shape == (4, 3, 7, H, d)
    for i in range(4):
        close(out[i, :, :5], prefix[0])
        close(out[i, :, 5:], suffix[i])
    close(ops.join_positions(suffix[:1], prefix, dim=-3)[0, :, 2:], prefix[0])
    out = ops.join_positions(suffix, prefix, dim=-3)  # the prefix with the variants, the suffix shared
    assert out.shape == (4, 3, 7, H, d)
    for i in range(4):
        close(out[i, :, :2], suffix[i])
        close(out[i, :, 2:], prefix[0])


def test_a_block_table_runs_in_order_and_keeps_what_is_given():
    calls = []

    def op(name, f):
        return ops.Op(tuple(name), lambda s, *xs: calls.append(f) or f(*xs))

    table = {"b": ops.Op(("a",), lambda s, a: calls.append("b") or a + 1), "c": op("ab", lambda a, b: a * b)}
    step = ops.Step(W, W.layers[0], 0, N, None, None)
    state = ops.run_ops(table, step, {"a": torch.tensor(3.0)})
    assert float(state["c"]) == 12 and calls[0] == "b"
    calls.clear()
    state = ops.run_ops(table, step, {"a": torch.tensor(3.0), "b": torch.tensor(10.0)})
    assert float(state["c"]) == 30 and len(calls) == 1  # "b" given: not recomputed
    assert [ops.position_dim(n) for n in ("q", "k", "v", "z", "resid_pre", "pattern", "attn_out")] == [-3] * 4 + [
        -2
    ] * 3
