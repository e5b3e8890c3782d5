"""One-layer attention-only GPT-2s with a planted mechanism for the capital after ".", built
from the real GPT-2 tokenizer (tests/fixtures/gpt2-tokenizer), so that a verdict's right answer
is known by construction:

- `general`: the "." token's embedding writes the capitalisation direction u straight to the
  logits (the head writes nothing): a general "capitalise next" feature, whatever the context;
- `copying`: the single head attends from "." to capitalised tokens and writes u from them:
  the capital is copied from a capitalised token in context;
- `context`: a context route, as an e-mail address needs one. The "." embedding writes u (a
  capital after every period), and of two heads, head CONTEXT_HEAD attends from "." to an
  earlier token holding "@" and writes −u from it (no capital after "john@gmail."); the other
  head is random, in directions orthogonal to the planted ones.

In both, every capital token's unembedding is its lowercase partner's plus u (He/he included),
and every other weight is random and orthogonal to the planted directions."""

from __future__ import annotations

from pathlib import Path

D, V_SCALE = 64, 0.1
CONTEXT_HEAD = (0, 1)  # (layer, head) of the `context` model's planted head


def planted_pairs(tokenizer) -> list[tuple[int, int]]:
    """(" Word", " word") ids, found by encoding (independent of the experiment's decoding)."""
    pairs = []
    for text, i in tokenizer.get_vocab().items():
        word = tokenizer.convert_tokens_to_string([text])
        if word[:1] == " " and len(word) > 2 and word[1:].isascii() and word[1:].isalpha() and word[1:].istitle():
            low = tokenizer(word.lower(), add_special_tokens=False)["input_ids"]
            if len(low) == 1:
                pairs.append((i, low[0]))
    return pairs


def save_planted(path: Path, kind: str) -> Path:
    import torch
    from conftest import gpt2_tokenizer
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(1)
    tok = gpt2_tokenizer()
    vocab = len(tok)
    n_head = 2 if kind == "context" else 1
    config = GPT2Config(vocab_size=vocab, n_layer=1, n_embd=D, n_head=n_head, n_positions=64, tie_word_embeddings=False)
    model = GPT2LMHeadModel(config)
    # orthonormal planted directions, all orthogonal to the all-ones vector (centring keeps them)
    basis, _ = torch.linalg.qr(torch.cat([torch.ones(D, 1), torch.randn(D, 3)], 1))
    e_cap, e_dot, u = basis[:, 1], basis[:, 2], basis[:, 3]
    planted = basis[:, :4]

    def orthogonal(x):  # rows with no component along ones, e_cap, e_dot, u
        return x - (x @ planted) @ planted.T

    capital = torch.tensor([tok.decode([i]).strip()[:1].isupper() for i in range(vocab)])
    dot = tok.encode(".")[0]
    W_E = orthogonal(torch.randn(vocab, D) * V_SCALE)
    W_U = orthogonal(torch.randn(vocab, D))
    for cap, low in planted_pairs(tok):
        W_U[cap] = W_U[low] + 5 * u
    sd = model.state_dict()
    zero = {k: torch.zeros_like(v) for k, v in sd.items() if k.startswith("transformer.h.0.") and "ln" not in k}
    sd.update(zero)
    sd["transformer.wpe.weight"] = torch.zeros_like(sd["transformer.wpe.weight"])
    sd["lm_head.weight"] = W_U
    if kind == "general":
        W_E[dot] += 10 * u
    elif kind == "copying":
        W_E[capital] += 3 * e_cap
        W_E[dot] += 3 * e_dot
        key = torch.zeros(D)
        key[0] = 1.0
        w_q = 6 * torch.outer(e_dot, key)  # the "." query ...
        w_k = 6 * torch.outer(e_cap, key)  # ... matches capitalised keys
        w_v = torch.outer(e_cap, key)  # reads "capitalised"
        sd["transformer.h.0.attn.c_attn.weight"] = torch.cat([w_q, w_k, w_v], 1)
        sd["transformer.h.0.attn.c_proj.weight"] = torch.outer(key, u)  # writes u
    elif kind == "context":
        e_at = e_cap  # the "@" direction
        at = torch.tensor(["@" in tok.decode([i]) for i in range(vocab)])
        W_E[at] += 3 * e_at
        W_E[dot] += 10 * u + 3 * e_dot
        d_head = D // n_head
        head = CONTEXT_HEAD[1]
        key = torch.zeros(D)
        key[head * d_head] = 1.0  # the planted head's first dimension
        w_q = 6 * torch.outer(e_dot, key)  # the "." query ...
        w_k = 6 * torch.outer(e_at, key)  # ... matches "@" keys
        w_v = torch.outer(e_at, key)  # reads "@"
        c_proj = -2 * torch.outer(key, u)  # writes −u: no capital
        other = slice((1 - head) * d_head, (2 - head) * d_head)  # the random head's dimensions
        w_q[:, other], w_k[:, other], w_v[:, other] = (orthogonal(torch.randn(d_head, D)).T for _ in range(3))
        c_proj[other] = orthogonal(torch.randn(d_head, D) * 0.3)
        sd["transformer.h.0.attn.c_attn.weight"] = torch.cat([w_q, w_k, w_v], 1)
        sd["transformer.h.0.attn.c_proj.weight"] = c_proj
    else:
        raise ValueError(kind)
    sd["transformer.wte.weight"] = W_E
    model.load_state_dict(sd)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path
