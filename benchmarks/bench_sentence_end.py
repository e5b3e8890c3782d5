"""Time the sentence_end experiment on a model of GPT-2 small's exact shape.

Not a test. A randomly initialised GPT2Config() model with the real GPT-2 tokenizer (random
weights cost what GPT-2's cost), booted through the project's loader, the notebook's 100
prompts and the exceptions and contrast tasks, as the pipeline builds them. The experiment
reads the circuit experiment's stored circuit; here a stand-in circuit that names every MLP
(the worst case for the neuron analysis, which scores every neuron of every named MLP) and
whose edges are each MLP's edge into the logits, so no circuit run is needed first.

    OMP_NUM_THREADS=1 python benchmarks/bench_sentence_end.py    # one thread, as measured
    python benchmarks/bench_sentence_end.py --threads 2           # the store's fixed 2 threads
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("TQDM_DISABLE", "1")

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.timed import Timer  # noqa: E402
from generator.experiments import get, sentence_end  # noqa: E402
from generator.experiments.params import SentenceEnd  # noqa: E402
from generator.experiments.sentence_end import endings, neurons, probe  # noqa: E402
from generator.models import load_model, resolve  # noqa: E402
from generator.pipeline import build_batches  # noqa: E402
from generator.tasks import build, load_task  # noqa: E402

TOKENIZER = ROOT / "tests" / "fixtures" / "gpt2-tokenizer"


def save_gpt2_small_shaped(folder: Path) -> Path:
    """GPT2Config() with random weights (seed 0) and GPT-2's tokenizer, saved to `folder`."""
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config()).save_pretrained(folder)
    GPT2TokenizerFast.from_pretrained(str(TOKENIZER)).save_pretrained(folder)
    return folder


def gpt2_small_shaped(folder: Path, device: str):
    """save_gpt2_small_shaped's model, through the project's loader."""
    return load_model(resolve(str(save_gpt2_small_shaped(folder))), device=device)


def model_and_tasks(args, experiment: str):
    """The GPT-2-small-shaped model on args.threads threads and args.device, the pronoun batch,
    and the batches of the experiment's extra tasks, as the pipeline builds them."""
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        model = gpt2_small_shaped(Path(tmp), args.device)
        print(f"model: GPT2Config() random weights, loaded in {time.perf_counter() - start:.1f} s", flush=True)
    batch = build(load_task("pronoun"), model)
    return model, batch, build_batches(model, "bench", set(), set(get(experiment).extra_tasks))


def stand_in_circuit(n_layers: int):
    """Circuit metrics as sentence_end reads them: every MLP named, each MLP -> logits edge."""
    node = SimpleNamespace
    edges = [node(writer=node(kind="mlp", layer=i), reader=node(kind="logits")) for i in range(n_layers)]
    mlps = [node(kind="mlp", layer=i) for i in range(n_layers)]
    return node(circuit=node(edges=edges, mlps=mlps, smallest_faithful=None), faithful=0.8)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    model, batch, tasks = model_and_tasks(args, "sentence_end")
    inputs = {"circuit": stand_in_circuit(model.cfg.n_layers), "tasks": tasks}
    timer = Timer()
    for module, name in ((endings, "analyse"), (neurons, "analyse"), (neurons, "with_contexts"), (probe, "analyse")):
        timer.wrap(module, name, f"{module.__name__.rsplit('.', 1)[1]}.{name}")
    start, cpu = time.perf_counter(), time.process_time()
    with torch.no_grad():
        result = sentence_end.run(model, batch, SentenceEnd(), inputs)
    parts = ", ".join(f"{k} {v:.1f} s" for k, v in result.timings.items())
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(f"sentence_end: wall {wall:.1f} s, cpu {cpu:.1f} s on {args.threads} thread(s) ({parts})", flush=True)
    print(timer.report(), flush=True)


if __name__ == "__main__":
    main()
