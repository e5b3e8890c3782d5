"""Train the model organisms: a byte-level BPE tokenizer and a small GPT-2 on the synthetic corpus.

    from generator.organism.train import train
    train(Path("generator/assets/organism"), model="organism")   # or: capcircuit organism train

Two models come from the same corpus, tokenizer recipe and training loop (MODELS): `organism`,
a 4-layer GPT-2, and `organism-attn-only-1l`, one attention layer whose MLP is held at exactly
zero (HF's GPT-2 always has an MLP; see `hold_mlps_at_zero`). Everything is seeded and runs on
the CPU with a fixed thread count and deterministic kernels, so the same seed reproduces the
checkpoint byte for byte. The output folder is replaced atomically: the model is written and
measured in a temporary sibling folder that is renamed at the end.
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

from generator import ReportError
from generator.organism import corpus

BOS = "<|endoftext|>"

# Shared by both models. Sized so that training both takes well under 15 minutes on two busy
# CPU cores, one thread each, one after the other.
HPARAMS = dict(
    n_paragraphs=64_000,  # one pass of the longest training (steps x batch_size)
    max_vocab=4096,  # an upper bound: the grammar's words need fewer
    n_positions=128,  # paragraphs are < 100 tokens; the pronoun prompts are 8
    batch_size=32,
    lr=5e-3,
    min_lr=5e-4,
    warmup_steps=50,
    weight_decay=0.1,
    grad_clip=1.0,
    # One thread: on a shared machine two OpenMP threads wait on each other and run up to
    # ten times slower, and a single thread also fixes the order of float reductions.
    threads=1,
)
MODELS = {
    "organism": dict(n_layer=4, n_head=4, n_embd=128, attn_only=False, steps=2000),
    # The notebook's attn-only-1l has 8 heads; a small d_model keeps the checkpoint under 2 MB.
    "organism-attn-only-1l": dict(n_layer=1, n_head=8, n_embd=128, attn_only=True, steps=1500),
}


def hparams(model: str, overrides: dict) -> dict:
    """The model's hyper-parameters: HPARAMS, then MODELS[model], then `overrides`."""
    if model not in MODELS:
        raise ReportError(f"unknown organism {model!r}; known: {', '.join(MODELS)}")
    hp = {**HPARAMS, **MODELS[model]}
    unknown = set(overrides) - set(hp)
    if unknown:
        raise ReportError(f"unknown hyper-parameters {sorted(unknown)}; known: {sorted(hp)}")
    return {**hp, **overrides}


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
    """Fail loudly unless every pronoun prompt and its corruption is 7 tokens (8 with BOS) and
    every answer and notebook name is one token."""
    for answer in [" He", " he", " She", " she"]:
        assert len(tok.encode(answer).ids) == 1, f"answer {answer!r} tokenizes to {tok.encode(answer).tokens}"
    for name in corpus.NOTEBOOK_NAMES:
        for form in [name, " " + name]:
            assert len(tok.encode(form).ids) == 1, f"name {form!r} tokenizes to {tok.encode(form).tokens}"
    for template in corpus.HELD_OUT_TEMPLATES:
        for name in corpus.NOTEBOOK_NAMES:
            for prompt in [template.format(name=name), template.format(name=name).replace(".", ";")]:
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
            by_len = sorted(order[i : i + chunk], key=lambda j: len(rows[j]))
            groups += [by_len[k : k + batch_size] for k in range(0, len(by_len), batch_size)]
        rng.shuffle(groups)
        for group in groups:
            width = max(len(rows[j]) for j in group)
            ids = torch.zeros(len(group), width, dtype=torch.long)  # pad with BOS (id 0) ...
            labels = torch.full((len(group), width), -100, dtype=torch.long)  # ... not learned
            for r, j in enumerate(group):
                ids[r, : len(rows[j])] = torch.tensor(rows[j])
                labels[r, 1 : len(rows[j])] = ids[r, 1 : len(rows[j])]  # never predict the BOS
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


def hold_mlps_at_zero(model) -> None:
    """Make a GPT-2 attention-only: every MLP's weights and biases are zero and frozen.

    Hugging Face's GPT-2 has no attention-only variant and TransformerBridge boots Hugging Face
    folders, so the MLP stays in the graph (n_inner=1 keeps it tiny) but computes exactly 0:
    c_fc gives 0, gelu(0) = 0, c_proj gives 0. Weight processing keeps it 0 (fold_ln scales
    and shifts zero weights by the ln_2 parameters; centring a zero matrix leaves it zero). The
    ln_2 parameters only feed that zero MLP, so they get no gradient and are frozen too."""
    for block in model.transformer.h:
        for p in block.mlp.parameters():
            p.data.zero_()
        block.mlp.requires_grad_(False)
        block.ln_2.requires_grad_(False)


def fit(model, rows: list[list[int]], hp: dict, seed: int, progress: bool, desc: str) -> list[float]:
    """AdamW over `steps` batches of paragraphs; returns the loss of every step."""
    import transformers

    params = [p for p in model.parameters() if p.requires_grad]  # not the held-at-zero MLPs
    opt = torch.optim.AdamW(
        [
            {"params": [p for p in params if p.dim() >= 2], "weight_decay": hp["weight_decay"]},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
        ],
        lr=hp["lr"],
        betas=(0.9, 0.95),
    )
    data = batches(rows, hp["batch_size"], random.Random(seed))
    losses = []
    # Padding sits after each row's last token, so causal attention never sees it; silence
    # transformers' advice to pass an attention mask (and its loss_type note).
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    model.train()
    try:
        bar = tqdm(range(hp["steps"]), disable=not progress, desc=desc, unit="step")
        for step in bar:
            for group in opt.param_groups:
                group["lr"] = lr_at(step, hp)
            ids, labels = next(data)
            loss = model(input_ids=ids, labels=labels).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, hp["grad_clip"])
            opt.step()
            losses.append(loss.item())
            if step % 50 == 0:
                bar.set_postfix(loss=f"{sum(losses[-50:]) / len(losses[-50:]):.3f}")
    finally:
        transformers.logging.set_verbosity(verbosity)
    model.eval()
    return losses


def train(
    out_dir: pathlib.Path,
    *,
    model: str = "organism",
    seed: int = 0,
    progress: bool = True,
    check: bool = True,
    **overrides,
) -> dict:
    """Generate the corpus, train tokenizer and model `model` (a key of MODELS), measure it
    through the report's pipeline, and write the checkpoint with its model card.

    `overrides` change the hyper-parameters (e.g. steps=3 for a smoke test; then pass
    check=False, since such a model misses its acceptance). Returns the training record, which
    also goes into training.json and the model card. Raises, leaving `out_dir` untouched, when
    the trained model misses evaluate.ACCEPTANCE[model].
    """
    import transformers
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    from generator.organism import card, evaluate

    hp = hparams(model, overrides)
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
        log(
            f"corpus: {len(texts)} paragraphs, {n_tokens} tokens, vocab {tok.get_vocab_size()} "
            f"({time.time() - t0:.0f}s)"
        )

        config = GPT2Config(
            vocab_size=tok.get_vocab_size(),
            n_positions=hp["n_positions"],
            n_embd=hp["n_embd"],
            n_layer=hp["n_layer"],
            n_head=hp["n_head"],
            activation_function="gelu_new",
            n_inner=1 if hp["attn_only"] else None,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,  # endless fresh data: no dropout
            bos_token_id=bos_id,
            eos_token_id=bos_id,
            pad_token_id=bos_id,
            tie_word_embeddings=True,
        )
        net = GPT2LMHeadModel(config)
        if hp["attn_only"]:
            hold_mlps_at_zero(net)
        losses = fit(net, rows, hp, seed, progress, desc=model)
    train_seconds = time.time() - t0
    final_loss = sum(losses[-100:]) / len(losses[-100:])
    log(f"trained {hp['steps']} steps, final loss {final_loss:.4f} ({train_seconds:.0f}s)")

    # Write into a temporary sibling, measure it exactly as the report will load it, then swap.
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    hf_bars = transformers.utils.logging.is_progress_bar_enabled()
    if not progress:
        transformers.utils.logging.disable_progress_bar()  # "Writing model shards", "Loading weights"
    try:
        net.save_pretrained(tmp)
        GPT2TokenizerFast(  # bos_token lets TransformerBridge.to_tokens prepend BOS
            tokenizer_object=tok,
            bos_token=BOS,
            eos_token=BOS,
            unk_token=BOS,
            pad_token=BOS,
            model_max_length=hp["n_positions"],
        ).save_pretrained(tmp)
        metrics = evaluate.measure(tmp)
        record = {
            "model": model,
            "seed": seed,
            "hparams": hp,
            "n_paragraphs": len(texts),
            "n_tokens": n_tokens,
            "vocab_size": tok.get_vocab_size(),
            "n_params": net.num_parameters(),
            "final_loss": round(final_loss, 4),
            "train_seconds": round(train_seconds, 1),  # corpus, tokenizer and training steps
            "total_seconds": round(time.time() - t0, 1),  # ... and writing and measuring
            "held_out": card.held_out_rules(),
            "metrics": metrics,
            "acceptance": evaluate.acceptance(metrics, model),
        }
        log(json.dumps({k: record[k] for k in ("final_loss", "train_seconds", "acceptance")}, indent=1))
        if check:
            evaluate.check_acceptance(record["acceptance"], model)
        # plain writes: they land in the temporary folder, whose rename below is the atomic step
        (tmp / "training.json").write_text(json.dumps(record, indent=2) + "\n")
        (tmp / "README.md").write_text(card.model_card(record))
        for f in tmp.iterdir():
            f.chmod(0o644)  # save_pretrained leaves the weights readable by the owner only
        _replace_dir(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if hf_bars:
            transformers.utils.logging.enable_progress_bar()
    return record


def _replace_dir(new: pathlib.Path, target: pathlib.Path) -> None:
    """Swap `new` in for `target` with renames, so no reader ever sees a half-written folder."""
    old = target.parent / f".{target.name}.old-{os.getpid()}"
    if target.exists():
        target.rename(old)
    new.rename(target)
    shutil.rmtree(old, ignore_errors=True)
