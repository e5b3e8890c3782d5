"""The residual-stream edge graph of a GPT-2-style model, exact circuit runs and EAP(-IG) scores.

Writers are the token embedding, every attention head (its output z @ W_O) and every MLP;
readers are every head's query, key and value input, every MLP's input and the logits. An edge
joins a writer to each reader downstream of it (MIB's graph, and TransformerLens's
`attribution_patch` graph; 32,491 edges for GPT-2 small). Position embeddings and attention
output biases are in no writer: they are the same in every run.

Why hand-written: TransformerLens scores and evaluates circuits one prompt at a time with hooks
(`attribution_patch`, `faithfulness`), has no integrated gradients (EAP-IG), and builds a
Python dict per edge. Here one forward, in which every reader gets its own input,

    input_r = Σ_w live_w − Σ_w ablate[w, r] · (live_w − other_w)     (+ the constant terms)

does all of it on whole batches: with `ablate` = the edges outside a circuit and `other` = the
corrupted run's writer outputs, on the clean tokens, it is MIB's exact circuit evaluation
(one batched forward per circuit); with `ablate` = one edge and `other` = the clean run's, on
the corrupted tokens, it patches that edge alone (an edge's exact effect); with nothing
ablated and each reader's input tapped for its gradient, it gives EAP scores (the gradient at
the clean run, MIB's EAP; at the corrupted run, attribution patching), and averaged over
inputs interpolated from corrupted to clean, EAP-IG scores.

Positions before the first token where any clean/corrupted pair differs see the same tokens in
both runs, so every writer's output there is the same too: runs start after that shared prefix,
with the earlier keys and values taken from the clean run (exact, as in generator.engine).

The block's operations (LayerNorm, attention, MLP, readout) are generator.engine.ops's and the
model family's (generator.engine.families), the same the patching engine runs: only the
residual-stream bookkeeping of writers and readers is this module's.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from generator.engine import ops
from generator.engine.families import model_weights, unsupported


@dataclass(frozen=True)
class EdgeGraph:
    """Writers and readers of a model with `n_layers` × `n_heads`, and which edges exist."""

    n_layers: int
    n_heads: int

    @property
    def writers(self) -> list[tuple]:  # ("embed",), ("head", layer, head), ("mlp", layer)
        out = [("embed",)]
        for layer in range(self.n_layers):
            out += [("head", layer, h) for h in range(self.n_heads)] + [("mlp", layer)]
        return out

    @property
    def readers(self) -> list[tuple]:  # ("q"|"k"|"v", layer, head), ("mlp", layer), ("logits",)
        out = []
        for layer in range(self.n_layers):
            out += [(c, layer, h) for c in "qkv" for h in range(self.n_heads)] + [("mlp", layer)]
        return out + [("logits",)]

    def writers_before(self, layer: int, mlp: bool = False) -> int:
        """How many writers precede layer `layer`'s attention (or its MLP, which also reads
        that layer's heads)."""
        return 1 + layer * (self.n_heads + 1) + (self.n_heads if mlp else 0)

    def reader_slice(self, layer: int, kind: str) -> slice:
        """The readers of one layer: its 3 × n_heads attention inputs, or its MLP input."""
        first = layer * (3 * self.n_heads + 1)
        return (
            slice(first, first + 3 * self.n_heads)
            if kind == "attn"
            else slice(first + 3 * self.n_heads, first + 3 * self.n_heads + 1)
        )

    def upstream(self) -> torch.Tensor:
        """[n_writers, n_readers] bool: the edges of the graph."""
        mask = torch.zeros(len(self.writers), len(self.readers), dtype=torch.bool)
        for layer in range(self.n_layers):
            mask[: self.writers_before(layer), self.reader_slice(layer, "attn")] = True
            mask[: self.writers_before(layer, mlp=True), self.reader_slice(layer, "mlp")] = True
        mask[:, -1] = True  # every writer reaches the logits
        return mask

    def writer_id(self, i: int) -> dict:
        """The stored id of writer i: {"kind": "embed" | "head" | "mlp", "layer", "head"}."""
        return _node_id(self.writers[i])

    def reader_id(self, i: int) -> dict:
        """The stored id of reader i: {"kind": "q" | "k" | "v" | "mlp" | "logits", ...}."""
        return _node_id(self.readers[i])

    # ---- TransformerLens's graph (tools.analysis.Node), for interop and the tests against it ----

    def to_transformer_lens(self, w: int, r: int, position: int):
        """Edge (writer w, reader r) at a position as TransformerLens's (writer, reader) Nodes."""
        from transformer_lens.tools.analysis import Node

        writer, reader = self.writers[w], self.readers[r]
        kinds = {"embed": "embed", "head": "attn_head_out", "mlp": "mlp_out"}
        wn = Node(kinds[writer[0]], position, *writer[1:])
        if reader[0] == "logits":
            return wn, Node("logits", position, self.n_layers - 1)
        return wn, Node("mlp_in" if reader[0] == "mlp" else f"{reader[0]}_input", position, *reader[1:])

    def from_transformer_lens(self, node) -> tuple[int, int]:
        """A TransformerLens Node as (writer or reader index, position) of this graph."""
        kinds = {"embed": ("embed",), "attn_head_out": ("head",), "mlp_out": ("mlp",)}
        where = tuple(x for x in (node.layer, node.head) if x is not None)
        if node.kind in kinds:
            return self.writers.index(kinds[node.kind] + where), node.position
        if node.kind == "logits":
            return len(self.readers) - 1, node.position
        return self.readers.index(("mlp" if node.kind == "mlp_in" else node.kind[0],) + where), node.position


def _node_id(node: tuple) -> dict:
    return dict(zip(("kind", "layer", "head"), node))


class CircuitRunner:
    """Clean and corrupted runs of one task on one model, for exact circuit evaluations and
    EAP / EAP-IG scores over the edge graph. Shapes: B prompts, P positions computed (those
    after the shared prefix), D = d_model, W writers, R readers."""

    def __init__(
        self,
        model,
        clean_tokens: torch.Tensor,
        corrupted_tokens: torch.Tensor,
        answer_tokens: torch.Tensor | None,
        *,
        share_prefix: bool = True,
        case_masks: tuple[torch.Tensor, torch.Tensor] | None = None,
        pad: torch.Tensor | None = None,
        prefix_cache: dict | None = None,
    ):
        """case_masks: (upper, lower) bool masks over the vocabulary; given, every metric is the
        capital log-odds of the next token (ops.vocabulary_log_odds) instead of the answer
        pair's logit difference, and answer_tokens may be None.

        pad: [B] left padding of each prompt (prompts of several lengths in one batch, aligned
        at the final token, generator.engine.pooled): prompt i is tokens[i, pad[i]:], its
        positions counted from there, and no position reads its padding. The padding must lie
        in the shared prefix (every pad ≤ the first position where a pair differs), so that
        every computed position is a real token of every prompt.

        prefix_cache: a dict shared by runners on one model whose prompts may begin alike (the
        same sentences with other final tokens): the keys and values at the shared prefix are
        computed once per distinct prefix tokens and padding, and looked up after."""
        self.w = model_weights(model)
        self.family = self.w.family
        reason = unsupported(model, circuit=True)  # a family whose layout the edge graph lacks
        if reason:
            raise NotImplementedError(reason)
        self.graph = EdgeGraph(self.w.n_layers, self.w.n_heads)
        self.device = self.w.W_E.device
        self.clean_tokens, self.corrupted_tokens = clean_tokens.to(self.device), corrupted_tokens.to(self.device)
        if case_masks is None:
            self.answer_tokens = answer_tokens.to(self.device)
            # Only the two answer columns of the unembedding: [B, D, 2] and [B, 2].
            self.W_answer = self.w.W_U[:, self.answer_tokens].permute(1, 0, 2)
            self.b_answer = self.w.b_U[self.answer_tokens]
            self.readout = lambda x: ops.logit_diff(x, self.W_answer, self.b_answer)
        else:
            upper, lower = (m.to(self.device) for m in case_masks)
            self.readout = lambda x: ops.vocabulary_log_odds(x, self.w.W_U, self.w.b_U, upper, lower)
        self.n_pos = clean_tokens.shape[1]
        differs = (self.clean_tokens != self.corrupted_tokens).any(0).nonzero()
        self.start = (int(differs[0]) if len(differs) else self.n_pos - 1) if share_prefix else 0
        self.start = min(self.start, self.n_pos - 1)  # the final position is always computed
        self.pad = None if pad is None or not bool(pad.any()) else pad.to(self.device)
        if self.pad is not None and int(self.pad.max()) > self.start:
            raise ValueError(
                f"pad: {int(self.pad.max())} padding tokens reach past the shared prefix ({self.start} "
                "positions); allowed: padding within the positions every pair shares"
            )
        # [B, 1, 1, N]: the padding, which no query reads (None without padding)
        self.key_mask = (
            None
            if self.pad is None
            else (torch.arange(self.n_pos, device=self.device)[None] < self.pad[:, None])[:, None, None]
        )
        self._scores: dict[tuple, torch.Tensor] = {}
        self.memo: dict = {}  # derived quantities that callers compute once per runner
        with torch.no_grad():
            self.prefix_kv = self._cached_prefix(prefix_cache)
            self.clean_writers, self.clean_metric = self.forward(self.embed(self.clean_tokens), record=True)
            self.corrupted_writers, self.corrupted_metric = self.forward(self.embed(self.corrupted_tokens), record=True)

    # ---- the forward --------------------------------------------------------------------

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:  # [B, P, D], positions from `start`
        return self.w.W_E[tokens[:, self.start :]]

    def positions(self) -> torch.Tensor:
        """What the computed positions get besides the tokens: [1, P, D], or [B, P, D] with
        padding (each prompt's positions counted from its first real token)."""
        if self.pad is None:
            return self.family.positions(self.w, self.start, self.n_pos)[None]
        return torch.stack([self.family.positions(self.w, self.start - p, self.n_pos - p) for p in self.pad.tolist()])

    def _cached_prefix(self, cache: dict | None) -> list:
        if cache is None:
            return self._prefix_keys_values()
        prefix = self.clean_tokens[:, : self.start]
        pad = None if self.pad is None else tuple(self.pad.tolist())
        key = (tuple(prefix.shape), prefix.cpu().numpy().tobytes(), pad)
        if key not in cache:
            cache[key] = self._prefix_keys_values()
        return cache[key]

    def _prefix_keys_values(self) -> list[tuple[torch.Tensor | None, torch.Tensor | None]]:
        """Keys and values at the shared prefix ([B, start, H, d] per layer, None without a
        prefix): a plain forward through the family's block; with padding, one per amount of
        padding on the real tokens alone, zero at the padding (which no query reads)."""
        if not self.start:
            return [(None, None)] * self.w.n_layers
        pads = [0] if self.pad is None else sorted(set(self.pad.tolist()))
        out = None
        for p in pads:
            rows = slice(None) if self.pad is None else (self.pad == p).nonzero()[:, 0]
            kv = self._plain_prefix(self.clean_tokens[rows, p : self.start])
            if self.pad is None:
                return kv
            if out is None:
                out = [tuple(t.new_zeros(len(self.pad), self.start, *t.shape[2:]) for t in x) for x in kv]
            for (k_all, v_all), (k, v) in zip(out, kv):
                k_all[rows, p:], v_all[rows, p:] = k, v
        return out

    def _plain_prefix(self, tokens: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        if not tokens.shape[1]:  # all padding
            empty = self.w.W_E.new_zeros(len(tokens), 0, self.w.n_heads, self.w.d_head)
            return [(empty, empty)] * self.w.n_layers
        x = self.w.W_E[tokens] + self.family.positions(self.w, 0, tokens.shape[1])
        out = []
        for layer in self.w.layers:
            state = ops.run_ops(
                self.family.OPS, ops.Step(self.w, layer, 0, tokens.shape[1], None, None), {"resid_pre": x}
            )
            out.append((state["k"], state["v"]))
            x = state["resid_post"]
        return out

    def forward(
        self,
        embed: torch.Tensor,
        ablate: torch.Tensor | None = None,
        other: torch.Tensor | None = None,
        record: bool = False,
        taps: list | None = None,
        base: torch.Tensor | None = None,
    ):
        """Per-prompt logit differences [B] of one run from token embeddings `embed` [B, P, D].

        ablate: [W, R] or [W, R, n_pos] (position-aware) weights: the share of each edge's
            writer output replaced by `other`'s ([W, B, P, D]); None = an unablated run.
        record: also return the writers' outputs [W, B, P, D] (then returns (writers, metric)).
        taps: a list that receives each reader block's input tensor with its gradient retained.
        base: the writers' outputs of this run without ablation ([W, B, P, D], as `record` gives
            them): the run then starts at the first layer with an ablated edge, since everything
            before it is the base run's.
        """
        w, g = self.w, self.graph
        first = 0
        if base is not None and ablate is not None:
            readers = ablate.flatten(2).any(-1).any(0) if ablate.dim() == 3 else ablate.any(0)
            layers = [i for i, r in enumerate(g.readers) if r[0] != "logits" and bool(readers[i])]
            first = g.readers[layers[0]][1] if layers else w.n_layers
        const = self.positions()  # positions and, later, attention biases
        const = const + sum((L.b_O for L in w.layers[:first]), torch.zeros_like(const))
        live = [embed] if first == 0 else list(base[: g.writers_before(first)])
        total = embed if first == 0 else self.cumulative(base)[len(live) - 1]  # Σ live
        others = None if other is None else self.cumulative(other)  # Σ other, for the sparse form below
        # live − other per writer, each computed once as it is written (the reader blocks after
        # it all read it): [W, B, P, D], filled up to len(live); and which writers' outputs may
        # differ from other's: not those of a block whose readers all got other's input (they
        # write what they wrote in the other run, so are not recomputed)
        deltas = None
        if other is not None and ablate is not None:
            deltas = (other.new_empty(other.shape), torch.ones(len(other), dtype=torch.bool, device=other.device))
            deltas[0][: len(live)] = torch.stack(live) - other[: len(live)]
        for layer in range(first, w.n_layers):
            L, n = w.layers[layer], len(live)
            # past the last layer's keys and values only the final position is read (by the
            # logits): its queries, head writes and MLP run there alone, the other positions'
            # writes are zero in every run (so in every recorded run, and every delta)
            last = layer == w.n_layers - 1
            inputs = self._reader_inputs(const, total, n, deltas, others, ablate, g.reader_slice(layer, "attn"), taps)
            if untouched(inputs):  # every q, k, v input is other's: so is every head's output
                result = other[n : n + w.n_heads].movedim(0, 2)
                deltas[1][n : n + w.n_heads] = False
            else:
                q, k, v = self._queries_keys_values(L, inputs, final_query=last)
                pk, pv = self.prefix_kv[layer]
                k, v = ops.join_positions(pk, k, dim=-3), ops.join_positions(pv, v, dim=-3)
                z = ops.attention(q, k, v, w.attn_scale, self.key_mask)  # [B, P (1 if last), H, d]
                result = ops.head_writes(z, L.W_O)  # [B, P, H, D]
                result = self._at_final(result) if last else result
            if deltas is not None:
                deltas[0][n : n + w.n_heads] = result.movedim(2, 0) - other[n : n + w.n_heads]
            live += list(result.unbind(2))
            total = total + result.sum(2)
            const = const + L.b_O
            n = len(live)
            x = self._reader_inputs(const, total, n, deltas, others, ablate, g.reader_slice(layer, "mlp"), taps)
            if untouched(x):
                mlp_out = other[n]
                deltas[1][n] = False
            else:
                x = one_reader(x)[:, -1:] if last else one_reader(x)
                mlp_out = self.family.mlp(self.family.norm(x, L.ln2, w.eps), L, w.act_fn)
                mlp_out = self._at_final(mlp_out) if last else mlp_out
            if deltas is not None:
                deltas[0][n] = mlp_out - other[n]
            live.append(mlp_out)
            total = total + mlp_out
        final = self._reader_inputs(
            const, total, len(live), deltas, others, ablate, slice(len(g.readers) - 1, None), taps
        )
        x = self.family.norm(one_reader(final)[:, -1], w.ln_final, w.eps)  # [B, D]
        metric = self.readout(x)
        return (torch.stack(live), metric) if record else metric

    def _queries_keys_values(self, L, inputs, final_query: bool = False):
        """q, k, v [B, P, H, d] of one layer from its 3 × H readers' inputs: the shared input
        through each fused projection, then the readers whose input differs, head by head.
        final_query: the queries at the final position only ([B, 1, H, d])."""
        w, H, norm = self.w, self.w.n_heads, self.family.norm
        projections = ((L.W_Q, L.b_Q), (L.W_K, L.b_K), (L.W_V, L.b_V))
        cut = [slice(-1, None) if final_query else slice(None), slice(None), slice(None)]  # positions, per projection
        if isinstance(inputs, torch.Tensor):  # every reader's own input (tapped for gradients)
            x = norm(inputs, L.ln1, w.eps).unflatten(0, (3, H))  # [3, H, B, P, D]
            return [
                ops.project_heads(xi[..., c, :], W, b, slice(None), H) for xi, c, (W, b) in zip(x, cut, projections)
            ]
        shared, readers, differing, _ = inputs
        own = norm(differing, L.ln1, w.eps) if len(readers) else None  # [k, B, P, D]
        # `readers` ascends: each projection's readers are a run of rows of `own` (a view, no copy)
        ends = torch.searchsorted(readers, torch.tensor([H, 2 * H], device=readers.device)).tolist() + [len(readers)]
        x, out = None, []
        for i, (W, b) in enumerate(projections):
            rows = slice(ends[i - 1] if i else 0, ends[i])
            heads = readers[rows] % H
            if len(heads) == H:  # every head has an input of its own: the shared one is not needed
                out.append(ops.project_heads(own[rows][..., cut[i], :], W, b, slice(None), H))
                continue
            x = norm(shared, L.ln1, w.eps) if x is None else x
            y = ops.project(x[:, cut[i]], W, b, H)
            if len(heads):
                y[:, :, heads] = ops.project_heads(own[rows][..., cut[i], :], W, b, heads, H)
            out.append(y)
        return out

    def _at_final(self, x: torch.Tensor) -> torch.Tensor:
        """A last-layer write [B, 1, ...] at the final position, zero at the others: [B, P, ...]."""
        return torch.cat([x.new_zeros(x.shape[0], self.n_pos - self.start - 1, *x.shape[2:]), x], 1)

    def cumulative(self, writers: torch.Tensor) -> torch.Tensor:
        """Running sums of the writers' outputs ([W, B, P, D]), kept for the recorded runs."""
        for name in ("clean_writers", "corrupted_writers"):
            if writers is getattr(self, name, None):
                if name not in self.memo:
                    self.memo[name] = writers.cumsum(0)
                return self.memo[name]
        return writers.cumsum(0)

    def _reader_inputs(self, const, total, n, deltas, others, ablate, readers: slice, taps):
        """The inputs of a block of readers (a layer's 3 × H attention inputs, its MLP input or
        the logits): (shared [B, P, D], indices of the readers whose input differs from it, their
        inputs [k, B, P, D]); or, with `taps`, every reader's own input [R', B, P, D], tapped.

        Exact in two forms; the one that touches fewer writers is used (hand-written because the
        dense form, every upstream writer into every reader, dominates the cost): live −
        Σ_ablated a·(live − other), or other − Σ_kept (1 − a)·(live − other), the sums over
        writers with a nonzero weight; readers no such writer reaches get the shared input.
        n: how many writers precede these readers; deltas: (live − other per writer, which writers
        may have a nonzero one). A fourth element says whether `shared` is other's input (the
        second form) and no reader differs from it: the block's writers need not be computed."""
        n_readers = (readers.stop if readers.stop is not None else len(self.graph.readers)) - readers.start
        shared = const + total
        if taps is not None:  # gradients per reader: each reader gets a tensor of its own
            x = shared[None].expand(n_readers, *total.shape).clone()
            x.retain_grad()
            taps.append(x)
            return x
        none = torch.zeros(0, dtype=torch.long, device=total.device)
        if ablate is None:
            return shared, none, None, False
        delta, moved = deltas
        a = ablate[:n, readers].to(total.dtype)
        if a.dim() == 3:  # position-aware: one weight per position, computed ones only
            a = a[..., self.start :]
        ablated = a.flatten(1).ne(0).any(1).nonzero()[:, 0]
        kept = a.flatten(1).ne(1).any(1).nonzero()[:, 0]
        if len(ablated) <= len(kept):
            writers, weights, sign = ablated, a[ablated], -1
        else:
            shared = const + others[n - 1]
            writers, weights, sign = kept, 1 - a[kept], 1
        writers, weights = writers[moved[writers]], weights[moved[writers]]  # a zero delta adds nothing
        differ = weights.flatten(2).ne(0).any(-1).any(0) if weights.dim() == 3 else weights.ne(0).any(0)
        idx = differ.nonzero()[:, 0]
        if not len(idx):
            return shared, none, None, sign > 0
        if 2 * len(writers) > n:  # most writers: every one (a zero weight adds nothing), no copy
            writers, weights = slice(0, n), (a if sign < 0 else 1 - a)
        # weights first: the product is laid out [(p,) r, b, (p,) d], each reader's input whole
        spec = "nrp,nbpd->rbpd" if weights.dim() == 3 else "nr,nbpd->rbpd"
        mixed = torch.einsum(spec, weights[:, idx] if sign > 0 else -weights[:, idx], delta[writers])
        return shared, idx, mixed.add_(shared), False

    # ---- what the circuit experiment asks --------------------------------------------------

    @torch.no_grad()
    def evaluate(self, keep: torch.Tensor) -> torch.Tensor:
        """Per-prompt logit difference [B] of the clean run in which every edge outside `keep`
        ([W, R] or [W, R, n_pos] bool) carries the corrupted run's writer output (MIB)."""
        ablate = (~keep).to(self.w.W_E.dtype)
        return self.forward(self.embed(self.clean_tokens), ablate, self.corrupted_writers, base=self.clean_writers)

    @torch.no_grad()
    def final_attention(self, run: str = "clean") -> torch.Tensor:
        """[B, n_layers, H, n_pos] every head's attention from the final position to each
        position in the recorded clean or corrupted run (zero at padding), from the writers that
        run recorded: each layer's input rebuilt as the forward builds it, its keys joined to the
        shared prefix's (the same in both runs)."""
        if run not in ("clean", "corrupted"):
            raise ValueError(f"final_attention: run={run!r}; allowed: 'clean' or 'corrupted'")
        w, g = self.w, self.graph
        totals = self.cumulative(self.clean_writers if run == "clean" else self.corrupted_writers)
        const, out = self.positions(), []
        for layer, L in enumerate(w.layers):
            x = self.family.norm(const + totals[g.writers_before(layer) - 1], L.ln1, w.eps)
            k = ops.join_positions(self.prefix_kv[layer][0], ops.project(x, L.W_K, L.b_K, w.n_heads), dim=-3)
            q = ops.project(x[:, -1:], L.W_Q, L.b_Q, w.n_heads)
            out.append(ops.attention_pattern(q, k, w.attn_scale, self.key_mask)[..., 0, :])  # [B, H, n_pos]
            const = const + L.b_O
        return torch.stack(out, 1)

    @torch.no_grad()
    def patch_edges(self, patched: torch.Tensor) -> torch.Tensor:
        """Per-prompt logit difference [B] of the corrupted run in which the edges in `patched`
        carry the clean run's writer output (denoising: an edge's exact effect, which EAP
        approximates to first order; or a node's, with all of its edges)."""
        return self.forward(
            self.embed(self.corrupted_tokens),
            patched.to(self.w.W_E.dtype),
            self.clean_writers,
            base=self.corrupted_writers,
        )

    def scores(self, ig_steps: int = 1, at: str = "corrupted") -> torch.Tensor:
        """[W, R, n_pos] position-aware edge scores (clean − corrupted writer output) ·
        d(mean logit difference)/d(reader input), the gradient taken

        * at="clean", ig_steps = 1: at the clean run: MIB's EAP (hannamw/EAP-IG,
          src/eap/attribute.py get_scores_eap: the backward pass runs on the clean tokens,
          times corrupted − clean activations, of the loss −logit difference: the same sign);
        * at="corrupted", ig_steps = 1: at the corrupted run: attribution patching, as
          TransformerLens's `attribution_patch` (tested);
        * ig_steps = m > 1: averaged over inputs interpolated from corrupted to clean, EAP-IG
          (get_scores_eap_ig: token embeddings corrupted + α (clean − corrupted), α = k/m for
          k = 0..m−1, a left Riemann sum, so its first step is the corrupted run).

        Zero for edges not in the graph. Computed once per (steps, run)."""
        if at not in ("clean", "corrupted") or (at == "clean" and ig_steps != 1):
            raise ValueError(f"scores: at={at!r} with {ig_steps} steps; allowed: 'corrupted', or 'clean' with 1 step")
        if (ig_steps, at) not in self._scores:
            self._scores[(ig_steps, at)] = self._integrated_scores(ig_steps, at == "clean")
        return self._scores[(ig_steps, at)]

    def _integrated_scores(self, ig_steps: int, at_clean: bool = False) -> torch.Tensor:
        clean, corrupted = self.embed(self.clean_tokens), self.embed(self.corrupted_tokens)
        grads = None
        for k in range(ig_steps):
            taps: list[torch.Tensor] = []
            alpha = 1.0 if at_clean else k / ig_steps
            embed = (corrupted + alpha * (clean - corrupted)).detach().requires_grad_(True)
            with torch.enable_grad():
                self.forward(embed, taps=taps).mean().backward()
            g = torch.cat([t.grad for t in taps])  # [R, B, P, D], readers in graph order
            grads = g if grads is None else grads + g
        delta = self.clean_writers - self.corrupted_writers  # [W, B, P, D]
        scores = torch.einsum("wbpd,rbpd->wrp", delta, grads / ig_steps)
        full = torch.zeros(*scores.shape[:2], self.n_pos, dtype=scores.dtype, device=scores.device)
        full[..., self.start :] = scores
        return full * self.graph.upstream().to(full.device)[..., None]


def one_reader(inputs) -> torch.Tensor:
    """The input [B, P, D] of a block with a single reader (an MLP, the logits)."""
    if isinstance(inputs, torch.Tensor):
        return inputs[0]
    shared, readers, differing, _ = inputs
    return differing[0] if len(readers) else shared


def untouched(inputs) -> bool:
    """Whether every reader of a block gets the other run's input (so its writers write what
    they wrote in the other run)."""
    return not isinstance(inputs, torch.Tensor) and inputs[3]
