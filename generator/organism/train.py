"""Train the model organism: a byte-level BPE tokenizer and a small GPT-2 on the synthetic corpus.

    from generator.organism.train import train
    train(Path("generator/assets/organism"))      # or: capcircuit organism train

Everything is seeded and runs on the CPU with a fixed thread count and deterministic kernels,
so the same seed reproduces the checkpoint. The output directory is replaced atomically: the
model is trained and evaluated in a temporary sibling directory that is renamed at the end.
"""

import contextlib
import json
import math
import os
import pathlib
import random
import shutil
import time

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from tqdm.auto import tqdm

from generator.organism import corpus

BOS = "<|endoftext|>"

# Sized so that train() takes ~8 minutes on one busy CPU core and the checkpoint is ~4 MB.
HPARAMS = dict(
    n_paragraphs=60_000,  # one pass of training (steps x batch_size) uses 48,000 of them
    max_vocab=4096,  # an upper bound: the grammar's words need only ~1,200 tokens
    n_layer=4,
    n_head=4,
    n_embd=128,
    n_positions=128,  # paragraphs are < 100 tokens; the seed prompts are 8
    batch_size=32,
    steps=1500,  # the gender circuit forms after ~350 steps; the rest is margin
    lr=5e-3,
    min_lr=5e-4,
    warmup_steps=50,
    weight_decay=0.1,
    grad_clip=1.0,
    # One thread: on a shared machine two OpenMP threads wait on each other and run up to
    # ten times slower, and a single thread also fixes the order of float reductions.
    threads=1,
)


def train_tokenizer(texts: list[str], max_vocab: int) -> Tokenizer:
    """GPT-2 style byte-level BPE: a word after a space becomes one token with the space (" He")."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=max_vocab,
        min_frequency=2,
        special_tokens=[BOS],  # id 0: BOS, EOS, UNK and padding, as in GPT-2
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    return tok


def check_tokenizer(tok: Tokenizer) -> None:
    """Fail loudly unless every seed prompt is 7 tokens (8 with BOS) and every answer is one token."""
    for answer in [" He", " he", " She", " she"]:
        ids = tok.encode(answer).ids
        assert len(ids) == 1, f"answer {answer!r} tokenizes to {tok.encode(answer).tokens}"
    for name in corpus.MALE_NAMES + corpus.FEMALE_NAMES:
        for form in [name, " " + name]:
            assert len(tok.encode(form).ids) == 1, f"name {form!r} is {tok.encode(form).tokens}"
    for template in corpus.HELD_OUT_TEMPLATES:
        for name in corpus.MALE_NAMES[:10] + corpus.FEMALE_NAMES[:10]:
            for prompt in [template.format(name=name), template.format(name=name)[:-1] + ";"]:
                tokens = tok.encode(prompt).tokens
                assert len(tokens) == 7, f"prompt {prompt!r} tokenizes to {tokens}, not 7 tokens"


def batches(rows: list[list[int]], batch_size: int, rng: random.Random):
    """Yield (input_ids, labels) forever; rows of similar length share a batch to save padding."""
    while True:
        order = list(range(len(rows)))
        rng.shuffle(order)
        chunk = batch_size * 50
        groups = []
        for i in range(0, len(order), chunk):
            by_len = sorted(order[i:i + chunk], key=lambda j: len(rows[j]))
            groups += [by_len[k:k + batch_size] for k in range(0, len(by_len), batch_size)]
        rng.shuffle(groups)
        for group in groups:
            width = max(len(rows[j]) for j in group)
            ids = torch.zeros(len(group), width, dtype=torch.long)  # pad with BOS (id 0) ...
            labels = torch.full((len(group), width), -100, dtype=torch.long)  # ... not learned
            for r, j in enumerate(group):
                ids[r, :len(rows[j])] = torch.tensor(rows[j])
                labels[r, 1:len(rows[j])] = ids[r, 1:len(rows[j])]  # never predict the BOS
            yield ids, labels


def lr_at(step: int, hp: dict) -> float:
    """Linear warmup, then cosine decay to min_lr."""
    if step < hp["warmup_steps"]:
        return hp["lr"] * (step + 1) / hp["warmup_steps"]
    progress = (step - hp["warmup_steps"]) / max(1, hp["steps"] - hp["warmup_steps"])
    return hp["min_lr"] + 0.5 * (hp["lr"] - hp["min_lr"]) * (1 + math.cos(math.pi * progress))


@contextlib.contextmanager
def _reproducible_torch(threads: int):
    """Fixed thread count and deterministic kernels for the duration of training only."""
    old_threads, old_det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det)


def fit(model, rows: list[list[int]], hp: dict, seed: int, progress: bool) -> list[float]:
    """AdamW over `steps` batches of paragraphs; returns the loss of every step."""
    import transformers

    decay = [p for p in model.parameters() if p.dim() >= 2]  # matrices and embeddings only
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": hp["weight_decay"]},
         {"params": no_decay, "weight_decay": 0.0}],
        lr=hp["lr"], betas=(0.9, 0.95),
    )
    data = batches(rows, hp["batch_size"], random.Random(seed))
    losses = []
    # Padding sits after each row's last token, so causal attention never sees it; silence
    # transformers' advice to pass an attention mask (and its loss_type note).
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    model.train()
    try:
        bar = tqdm(range(hp["steps"]), disable=not progress, desc="organism", unit="step")
        for step in bar:
            for group in opt.param_groups:
                group["lr"] = lr_at(step, hp)
            ids, labels = next(data)
            loss = model(input_ids=ids, labels=labels).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), hp["grad_clip"])
            opt.step()
            losses.append(loss.item())
            if step % 50 == 0:
                bar.set_postfix(loss=f"{sum(losses[-50:]) / len(losses[-50:]):.3f}")
    finally:
        transformers.logging.set_verbosity(verbosity)
    model.eval()
    return losses


def train(out_dir: pathlib.Path, *, seed: int = 0, progress: bool = True, **overrides) -> dict:
    """Generate the corpus, train tokenizer and model, evaluate, and write the checkpoint.

    `overrides` change HPARAMS (e.g. steps=50 for a smoke test; then pass check=False, since
    such a model fails the acceptance thresholds). Returns the metrics, which also go into
    training.json and the model card. Raises, leaving `out_dir` untouched, when the trained
    model misses evaluate.ACCEPTANCE.
    """
    import transformers
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    from generator.organism import evaluate

    check = overrides.pop("check", True)
    unknown = set(overrides) - set(HPARAMS)
    assert not unknown, f"unknown hyper-parameters {sorted(unknown)}; known: {sorted(HPARAMS)}"
    hp = {**HPARAMS, **overrides}
    out_dir = pathlib.Path(out_dir)
    log = print if progress else (lambda *a, **k: None)
    t0 = time.time()

    with _reproducible_torch(hp["threads"]):
        torch.manual_seed(seed)
        texts = corpus.paragraphs(hp["n_paragraphs"], seed=seed)
        tok = train_tokenizer(texts, hp["max_vocab"])
        check_tokenizer(tok)
        bos_id = tok.token_to_id(BOS)
        rows = [[bos_id] + enc.ids for enc in tok.encode_batch(texts)]
        longest = max(len(r) for r in rows)
        assert longest <= hp["n_positions"], f"a paragraph has {longest} tokens > n_positions"
        n_tokens = sum(len(r) for r in rows)
        log(f"corpus: {len(texts)} paragraphs, {n_tokens} tokens, vocab {tok.get_vocab_size()} "
            f"({time.time() - t0:.0f}s)")

        config = GPT2Config(
            vocab_size=tok.get_vocab_size(), n_positions=hp["n_positions"], n_embd=hp["n_embd"],
            n_layer=hp["n_layer"], n_head=hp["n_head"], activation_function="gelu_new",
            resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,  # endless fresh data: no dropout
            bos_token_id=bos_id, eos_token_id=bos_id, pad_token_id=bos_id,
            tie_word_embeddings=True,
        )
        model = GPT2LMHeadModel(config)
        losses = fit(model, rows, hp, seed, progress)
    final_loss = sum(losses[-100:]) / len(losses[-100:])
    log(f"trained {hp['steps']} steps, final loss {final_loss:.4f} ({time.time() - t0:.0f}s)")

    # Write into a temporary sibling, evaluate it exactly as the report will load it, then swap.
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    hf_bars = transformers.utils.logging.is_progress_bar_enabled()
    if not progress:
        transformers.utils.logging.disable_progress_bar()  # "Writing model shards", "Loading weights"
    try:
        model.save_pretrained(tmp)
        GPT2TokenizerFast(  # bos_token lets TransformerBridge.to_tokens prepend BOS
            tokenizer_object=tok, bos_token=BOS, eos_token=BOS, unk_token=BOS, pad_token=BOS,
            model_max_length=hp["n_positions"],
        ).save_pretrained(tmp)
        metrics = evaluate.evaluate(tmp)
        metrics["final_loss"] = round(final_loss, 4)
        metrics["train_seconds"] = round(time.time() - t0, 1)
        log(json.dumps(metrics, indent=2))
        if check:
            evaluate.check_acceptance(metrics)
        record = {"seed": seed, "hparams": hp, "n_tokens": n_tokens,
                  "vocab_size": tok.get_vocab_size(), "n_params": model.num_parameters(),
                  "metrics": metrics}
        (tmp / "training.json").write_text(json.dumps(record, indent=2) + "\n")
        (tmp / "README.md").write_text(model_card(record))
        for f in tmp.iterdir():
            f.chmod(0o644)  # save_pretrained leaves the weights readable by the owner only
        _replace_dir(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if hf_bars:
            transformers.utils.logging.enable_progress_bar()
    return metrics


def _replace_dir(new: pathlib.Path, target: pathlib.Path) -> None:
    """Swap `new` in for `target` with renames, so no reader ever sees a half-written directory."""
    old = target.parent / f".{target.name}.old-{os.getpid()}"
    if target.exists():
        target.rename(old)
    new.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def model_card(record: dict) -> str:
    hp, m = record["hparams"], record["metrics"]
    exceptions = "\n".join(f"| {family} | `{m['exception_prompts'][family]}` | {p:.3f} |"
                           for family, p in m["exception_capital_prob"].items())
    return f"""# capcircuit model organism

A {hp['n_layer']}-layer GPT-2-architecture causal language model ({record['n_params']:,} parameters,
d_model {hp['n_embd']}, {hp['n_head']} heads, context {hp['n_positions']}, GELU, layer norm, tied embeddings)
with a byte-level BPE tokenizer of {record['vocab_size']} tokens. It was trained from scratch on a synthetic English corpus generated by `generator/organism/corpus.py`,
so that the report's question (" He" after a sentence-ending period, " he" after ";") has a
known answer on a model that ships with the project.

## The grammar

Paragraphs of 2-4 sentences about one person, each starting right after `<|endoftext|>`:

- a sentence ending in ". " is followed by a capital ("John has a nice car. He ..."); ";" and
  "," are followed by a lowercase word ("John has a nice car; he ...", "When John ..., he ...");
- pronouns agree with the subject's gender: {len(corpus.MALE_NAMES)} male and {len(corpus.FEMALE_NAMES)} female first
  names (the seed's 20 among them, used most often) and "Mr./Mrs./Ms. Surname";
- periods that do not end a sentence: e-mail addresses (`john@gmail.com`), domains
  (`google.com`), file names (`notes.txt`), method calls (`list.append()`), and "e.g.", "i.e.",
  "n.b." followed by a lowercase word. Titles ("Mr. Brown") and "P.S." are followed by a
  capital, as in ordinary English ("P.S. She says hello.");
- the seed's five templates are held out: "is a really great friend", "went to the big store",
  "has a very nice house", "likes to play the piano" and "was at the school today" never occur,
  but each of their words does, so every seed prompt is 8 tokens with BOS.

## Training

| hyper-parameter | value |
|---|---|
""" + "\n".join(f"| {k} | {v} |" for k, v in hp.items()) + f"""
| seed | {record['seed']} |
| corpus tokens | {record['n_tokens']:,} |

Final training loss (mean of the last 100 steps): **{m['final_loss']}**. `train()` took
{m['train_seconds']:.0f} s in all (corpus, tokenizer, {hp['steps']} steps, evaluation) with
{hp['threads']} torch thread(s).

## Pronoun task (seed prompts, through TransformerLens's TransformerBridge)

100 prompts (5 held-out templates x 20 names), processed with fold_ln, center_writing_weights,
center_unembed and refactor_factored_attn_matrices:

| metric | value |
|---|---|
| mean logit diff, capital - lowercase pronoun after "." | {m['mean_logit_diff_clean']:.3f} |
| mean logit diff after ";" (the corruption) | {m['mean_logit_diff_corrupted']:.3f} |
| right-gender capital beats the other gender's capital | {m['gender_accuracy']:.0%} |

Probability that the next token starts with a capital letter, after a period that does not end
a sentence (mean over the seed's 20 names):

| context | example prompt | P(capital) |
|---|---|---|
{exceptions}

## Retraining

    capcircuit organism train

or `python -c "from pathlib import Path; from generator.organism.train import train;
train(Path('generator/assets/organism'))"`. The corpus, tokenizer and weights are seeded and
torch runs with deterministic algorithms on {hp['threads']} thread(s), so the same seed with the
same software on the same kind of CPU gives the same checkpoint.
"""
