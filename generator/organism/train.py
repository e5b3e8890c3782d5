"""Train the model organisms: a byte-level BPE tokenizer and a small GPT-2 on English text.

    from generator.organism.train import train
    train(Path("generator/assets/organism"), model="organism")   # or: capcircuit organism train

Two models come from the same corpus (corpus.py: Jane Austen's novels, the Jargon File and the
Debian Reference, with the report's prompts held out), tokenizer recipe and training loop
(MODELS): `organism`, a 4-layer GPT-2, and `organism-attn-only-1l`, one attention layer whose
MLP is held at exactly zero (HF's GPT-2 always has an MLP; see `hold_mlps_at_zero`). Nothing
in the text or the training targets the report's rules: what the models do after ". " or
"john@gmail." is what they learned from the text. Everything is seeded and runs on the CPU
with a fixed thread count and deterministic kernels, so the same seed reproduces the
checkpoint byte for byte. The output folder is replaced atomically: the model is written and
measured in a temporary sibling folder that is renamed at the end.
"""

import contextlib
import hashlib
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
from generator.organism import corpus, sources
from generator.tasks import load_task

BOS = "<|endoftext|>"

# Shared by both models. Sized so that training both takes under 20 minutes on two busy CPU
# cores, one thread each, one after the other.
HPARAMS = dict(
    max_vocab=4096,  # BPE merges learnt from the corpus (plus the whole-word tokens below)
    n_positions=128,  # rows are cut to fit (corpus.MAX_CHARS); longer ones are truncated
    batch_size=32,
    lr=3e-3,
    min_lr=3e-4,
    warmup_steps=100,
    weight_decay=0.1,
    grad_clip=1.0,
    # One thread: on a shared machine two OpenMP threads wait on each other and run up to
    # ten times slower, and a single thread also fixes the order of float reductions.
    threads=1,
)
MODELS = {
    "organism": dict(n_layer=4, n_head=4, n_embd=128, attn_only=False, steps=1200),
    # The notebook's attn-only-1l has 8 heads.
    "organism-attn-only-1l": dict(n_layer=1, n_head=8, n_embd=128, attn_only=True, steps=1200),
}
# The step after which the parameters' digest is recorded, so that a test can retrain the
# beginning of the committed run and compare (the whole run is `organism train --verify`).
PREFIX_STEPS = 20


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


def prompt_words() -> list[str]:
    """The words of the notebook's pronoun prompts, as the prompts tokenise them: each name with
    and without a leading space, each template word after a space, and the four answers."""
    task = load_task("pronoun")
    names = sorted({p.name for p in task.prompts})
    words = {w for t in task.templates for w in t.format(name="").rstrip(".").split()}
    answers = {a for p in task.prompts for a in p.answers}
    return names + [" " + n for n in names] + sorted(" " + w for w in words) + sorted(answers)


def add_whole_words(tok: Tokenizer, words: list[str]) -> tuple[Tokenizer, list[str]]:
    """Give each word that the learnt merges split a token of its own, as GPT-2's vocabulary has
    for these names and words: merges appended after the learnt ones (so they apply only
    where a word is still split at the end) join its pieces left to right. Returns the
    tokenizer and the words that needed it. The text is untouched; only its segmentation."""
    added = []
    for word in words:
        pieces = tok.encode(word).tokens
        if len(pieces) == 1:
            continue
        data = json.loads(tok.to_str())
        vocab, merges = data["model"]["vocab"], data["model"]["merges"]
        while len(pieces) > 1:
            merges.append([pieces[0], pieces[1]])
            vocab.setdefault(pieces[0] + pieces[1], len(vocab))
            pieces = [pieces[0] + pieces[1]] + pieces[2:]
        tok = Tokenizer.from_str(json.dumps(data))
        added.append(word)
    return tok, added


def check_tokenizer(tok: Tokenizer) -> None:
    """Fail loudly unless every pronoun prompt and its corruption is 7 tokens (8 with BOS), as
    with GPT-2, and every answer and notebook name is one token."""
    task = load_task("pronoun")
    for word in prompt_words():
        assert len(tok.encode(word).ids) == 1, f"{word!r} tokenizes to {tok.encode(word).tokens}"
    for p in task.prompts:
        for prompt in (p.text, p.corrupted):
            tokens = tok.encode(prompt).tokens
            assert len(tokens) == 7, f"prompt {prompt!r} tokenizes to {tokens}, not 7 tokens"


def params_digest(model) -> str:
    """sha256 of every parameter's name, dtype, shape and bytes, in state-dict order."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.detach().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


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


def checkpoint_steps(total: int, n: int) -> list[int]:
    """`n` log-spaced steps from 1 to `total` (fewer where small totals round two to one step):
    training changes most early, so early checkpoints lie close together, as Pythia's do."""
    if n <= 0:
        return []
    if n == 1 or total <= 1:
        return [total]
    return sorted({max(1, round(total ** (i / (n - 1)))) for i in range(n)})


def fit(
    model,
    rows: list[list[int]],
    hp: dict,
    seed: int,
    progress: bool,
    desc: str,
    stop_after: int | None = None,
    on_step=None,
) -> tuple[list[float], str | None]:
    """AdamW over `steps` batches of rows (or only the first `stop_after` of them, on the same
    schedule); returns the loss of every step and the parameters' digest after PREFIX_STEPS.
    `on_step(steps_done, model)`, if given, is called after every step (to keep checkpoints:
    it reads the model and draws no random numbers, so the run stays the same)."""
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
    losses, prefix = [], None
    # Padding sits after each row's last token, so causal attention never sees it; silence
    # transformers' advice to pass an attention mask (and its loss_type note).
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    model.train()
    try:
        n = hp["steps"] if stop_after is None else min(stop_after, hp["steps"])
        bar = tqdm(range(n), disable=not progress, desc=desc, unit="step")
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
            if on_step:
                on_step(step + 1, model)
                model.train()
            if step + 1 == PREFIX_STEPS:
                prefix = params_digest(model)
            if step % 50 == 0:
                bar.set_postfix(loss=f"{sum(losses[-50:]) / len(losses[-50:]):.3f}")
    finally:
        transformers.logging.set_verbosity(verbosity)
    model.eval()
    return losses, prefix


def prepare(hp: dict, log=lambda *a, **k: None) -> tuple[corpus.Corpus, Tokenizer, list[list[int]], dict]:
    """Fetch and build the corpus, train the tokenizer, tokenise the rows (BOS + row, cut to
    n_positions). Returns them with a record of what was done."""
    sources.fetch(log=log)
    text = corpus.build()
    tok = train_tokenizer(text.rows, hp["max_vocab"])
    tok, added = add_whole_words(tok, prompt_words())
    check_tokenizer(tok)
    bos_id = tok.token_to_id(BOS)
    full = [[bos_id] + enc.ids for enc in tok.encode_batch(text.rows)]
    rows = [r[: hp["n_positions"]] for r in full]
    info = {
        "corpus_sha256": text.sha256(),
        "n_rows": len(rows),
        "n_tokens": sum(len(r) for r in rows),
        "rows_truncated": sum(len(r) > hp["n_positions"] for r in full),
        "tokens_truncated": sum(max(0, len(r) - hp["n_positions"]) for r in full),
        "whole_word_tokens_added": added,
        "vocab_size": tok.get_vocab_size(),
    }
    return text, tok, rows, info


def new_model(hp: dict, tok: Tokenizer, seed: int):
    """A freshly initialised GPT-2 (seeded) for this tokenizer."""
    from transformers import GPT2Config, GPT2LMHeadModel

    bos_id = tok.token_to_id(BOS)
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
        attn_pdrop=0.0,  # a few passes over the text at most: no dropout
        bos_token_id=bos_id,
        eos_token_id=bos_id,
        pad_token_id=bos_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    net = GPT2LMHeadModel(config)
    if hp["attn_only"]:
        hold_mlps_at_zero(net)
    return net


def retrain_prefix(model: str = "organism", seed: int = 0) -> dict:
    """The committed run's first PREFIX_STEPS steps, redone: the corpus's and the tokenizer's
    bytes and the parameters' digest, to compare with training.json and tokenizer.json."""
    hp = hparams(model, {})
    with _reproducible_torch(hp["threads"]):
        _, tok, rows, info = prepare(hp)
        net = new_model(hp, tok, seed)
        _, prefix = fit(net, rows, hp, seed, progress=False, desc=model, stop_after=PREFIX_STEPS)
    return {**info, "tokenizer": json.loads(tok.to_str()), f"params_sha256_after_{PREFIX_STEPS}_steps": prefix}


def train(
    out_dir: pathlib.Path,
    *,
    model: str = "organism",
    seed: int = 0,
    progress: bool = True,
    check: bool = True,
    checkpoints: int = 0,
    checkpoint_dir: pathlib.Path | None = None,
    **overrides,
) -> dict:
    """Fetch and build the corpus, train tokenizer and model `model` (a key of MODELS),
    measure it through the report's pipeline, and write the checkpoint with its model card.

    `overrides` change the hyper-parameters (e.g. steps=3 for a smoke test; then pass
    check=False, since such a model misses its acceptance). `checkpoints` > 0 keeps that many
    log-spaced checkpoints (checkpoint_steps) in `checkpoint_dir`, one Hugging Face folder per
    step (step-000008, ...), with a sweep.yaml a report config can use. Returns the training record, which
    also goes into training.json and the model card. Raises, leaving `out_dir` untouched, when
    the trained model misses evaluate.ACCEPTANCE[model].
    """
    import transformers

    from generator.organism import card, evaluate

    hp = hparams(model, overrides)
    out_dir = pathlib.Path(out_dir)
    log = print if progress else (lambda *a, **k: None)
    t0 = time.time()

    with _reproducible_torch(hp["threads"]):
        text, tok, rows, info = prepare(hp, log)
        log(
            f"corpus: {info['n_rows']} rows, {info['n_tokens']} tokens, vocab {info['vocab_size']} "
            f"({time.time() - t0:.0f}s)"
        )
        net = new_model(hp, tok, seed)
        keep = checkpoint_keeper(checkpoint_dir, checkpoint_steps(hp["steps"], checkpoints), tok, hp, model)
        losses, prefix = fit(net, rows, hp, seed, progress, desc=model, on_step=keep)
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
        save_hf(net, tok, hp, tmp)
        metrics = evaluate.measure(tmp)
        record = {
            "model": model,
            "seed": seed,
            "hparams": hp,
            "held_out": corpus.held_out(),
            "corpus": {**text.stats, **{k: v for k, v in info.items() if k != "vocab_size"}},
            "vocab_size": info["vocab_size"],
            "n_params": net.num_parameters(),
            "epochs": round(hp["steps"] * hp["batch_size"] / info["n_rows"], 2),
            "final_loss": round(final_loss, 4),
            "train_seconds": round(train_seconds, 1),  # corpus, tokenizer and training steps
            "total_seconds": round(time.time() - t0, 1),  # ... and writing and measuring
            "sha256": {
                "model.safetensors": _sha256(tmp / "model.safetensors"),
                "tokenizer.json": _sha256(tmp / "tokenizer.json"),
                f"params_after_{PREFIX_STEPS}_steps": prefix,
            },
            "metrics": metrics,
            "acceptance": evaluate.acceptance(metrics, model),
        }
        record["summary"] = card.summary(record)
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


def save_hf(net, tok: Tokenizer, hp: dict, folder: pathlib.Path) -> None:
    """The model and its tokenizer as a Hugging Face folder (without transformers' progress bar)."""
    from transformers import GPT2TokenizerFast
    from transformers.utils import logging

    bars = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        net.save_pretrained(folder)
    finally:
        if bars:
            logging.enable_progress_bar()
    GPT2TokenizerFast(  # bos_token lets TransformerBridge.to_tokens prepend BOS
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=BOS,
        unk_token=BOS,
        pad_token=BOS,
        model_max_length=hp["n_positions"],
    ).save_pretrained(folder)


def checkpoint_keeper(folder: pathlib.Path | None, steps: list[int], tok: Tokenizer, hp: dict, model: str):
    """fit's on_step that saves the model at `steps` into folder/step-NNNNNN (each written into a
    temporary sibling and renamed), and writes folder/sweep.yaml, the `sweep:` section of a report
    config over them, once the last is saved. None when no checkpoints are asked for."""
    if not steps:
        return None
    if folder is None:
        raise ReportError("keeping checkpoints needs a folder for them (--checkpoint-dir)")
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)

    def keep(step: int, net) -> None:
        if step not in steps:
            return
        name = f"step-{step:06d}"
        tmp = folder / f".{name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            save_hf(net, tok, hp, tmp)
            for f in tmp.iterdir():
                f.chmod(0o644)
            _replace_dir(tmp, folder / name)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        if step == steps[-1]:
            import yaml

            sweep = {
                "title": f"{model} during training",
                "axis": "step",
                "models": [{"model": f"{folder}@step-{s:06d}", "label": f"step {s}", "order": s} for s in steps],
            }
            (folder / "sweep.yaml").write_text(yaml.safe_dump(sweep, sort_keys=False))

    return keep


def _sha256(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _replace_dir(new: pathlib.Path, target: pathlib.Path) -> None:
    """Swap `new` in for `target` with renames, so no reader ever sees a half-written folder."""
    old = target.parent / f".{target.name}.old-{os.getpid()}"
    if target.exists():
        target.rename(old)
    new.rename(target)
    shutil.rmtree(old, ignore_errors=True)
