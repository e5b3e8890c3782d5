"""Run the configured experiments, re-running only those whose cache key changed.

`run` reads as its phases: plan (which (model, experiment) pairs are stale, and why), then
per model: load (the model and the task batches, only if something is stale), execute (each
stale experiment, in dependency order) and record (the result, atomically, with its key).

Determinism: torch runs on STORED_THREADS CPU threads while a model is loaded and its
experiments run, whatever the machine's default, so that the thread count (which changes
the order of floating-point reductions, hence the last stored digit) never changes a stored
number. See README "What the store promises"."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field

from generator import ReportError, __version__
from generator.config import Config
from generator.fingerprint import source_fingerprint
from generator.schemas import SCHEMA_VERSION
from generator.store import Store, digest, stale_reasons
from generator.versions import current_versions, require_run_packages

# torch CPU threads while computing what the store keeps: a fixed count, so results do not
# depend on the machine's cores; two, because the target machines have two cores (a GPT-2-
# small-shaped build: 4.4 min on 2 threads against 6.8 min on 1, on 2 idle cores)
STORED_THREADS = 2


@dataclass
class Plan:
    """One (model, experiment) pair: its cache key parts and whether the store has it."""

    model: str
    slug: str
    experiment: str
    key_parts: dict
    reasons: list[str] = field(default_factory=list)  # empty: fresh
    corrupt: str = ""  # why the stored record cannot be used ("" when it can, or there is none)

    @property
    def fresh(self) -> bool:
        return not self.reasons

    @property
    def state(self) -> str:
        """What `status` shows: fresh, corrupt: <why>, or stale: <why>."""
        if self.corrupt:
            return f"corrupt: {self.corrupt}"
        return "fresh" if self.fresh else "stale: " + "; ".join(self.reasons)


def input_key(parts: dict) -> str:
    """What a downstream key holds for an upstream result it reads: the upstream's key parts
    without their package versions, hashed. A real upstream change (its params, code, task,
    model, its own inputs) changes it; other package versions do not, so that a downstream
    result is "inputs changed" only when what it read was computed from something else, and
    publishing under newer packages (which tolerates "versions changed") is not blocked by it.
    `run` still re-runs a downstream result under new versions: its own `versions` part changed."""
    return digest({k: v for k, v in parts.items() if k != "versions"})


def model_part(ref) -> dict:
    """The model's part of every key: computed once per model (hashing a local model's weights
    reads every weight file)."""
    from generator import models

    location = ref.location if ref.source == "hub" else ref.source
    part = {"name": ref.name, "source": ref.source, "location": location, "weights": models.fingerprint(ref)}
    if ref.revision:  # only where named: the keys of models without one stay as they were
        part["revision"] = ref.revision
    return part


def key_parts(config: Config, model: dict, experiment: str, upstream: dict[str, str], digests: dict) -> dict:
    """Everything that determines a result. `model`: model_part(ref); `upstream`: input_key of
    the experiments it reads; `digests`: task name -> digest, filled in as tasks are first read."""
    from generator import experiments, tasks

    spec = experiments.get(experiment)
    for task in (spec.task, *spec.extra_tasks):
        if task not in digests:
            digests[task] = tasks.load_task(task).digest()
    return {
        "inputs": {name: upstream[name] for name in spec.after},
        "model": model,
        "task": digests[spec.task],
        **({"extra_tasks": {t: digests[t] for t in spec.extra_tasks}} if spec.extra_tasks else {}),
        "params": config.experiments[experiment],
        "code": source_fingerprint(spec.module),
        "versions": current_versions(),
        "seed": config.seed,
        "dtype": config.dtype,
        "schema": SCHEMA_VERSION,
    }


def comparable(parts: dict, record: dict | None) -> dict:
    """`parts` as this machine can know them: a hub model that is not in the local cache has
    weights "uncached" (its revision is unknown here), which says nothing against the stored
    revision, so a committed result is reused (and published) rather than called stale."""
    if record is None or parts["model"]["weights"] != "uncached":
        return parts
    stored = record["key_parts"].get("model")
    if not isinstance(stored, dict) or "weights" not in stored:
        return parts
    return {**parts, "model": {**parts["model"], "weights": stored["weights"]}}


def ordered(config: Config) -> list[str]:
    """The configured experiments, each after those it reads (a topological order); a missing
    dependency or a cycle is an error."""
    from generator import experiments

    after = {name: experiments.get(name).after for name in config.experiments}
    for name, deps in after.items():
        for dep in deps:
            if dep not in after:
                raise ReportError(
                    f"experiments.{name} reads the results of {dep!r}, which is not "
                    f"configured: add `{dep}: {{}}` under experiments"
                )
    done: list[str] = []
    while len(done) < len(after):
        ready = [n for n in after if n not in done and all(d in done for d in after[n])]
        if not ready:
            stuck = [n for n in after if n not in done]
            raise ReportError(
                f"experiments {', '.join(stuck)} read each other's results in a cycle "
                "(`after` in generator/experiments/__init__.py)"
            )
        done += ready
    return done


def plan(config: Config, force: bool = False, only: tuple[str, ...] = ()) -> list[Plan]:
    from generator import models

    store = Store(config.path("results"))
    for name in only:
        if name not in config.experiments:
            raise ReportError(
                f"--only {name}: not an experiment in the config (configured: {', '.join(config.experiments)})"
            )
    plans, digests, order = [], {}, ordered(config)
    for model_name in config.models:
        ref = models.resolve(model_name, stored=lambda name=model_name: stored_model(store, name, order))
        model, keys = model_part(ref), {}
        for experiment in order:
            record, corrupt = store.inspect(ref.slug, experiment)
            parts = comparable(key_parts(config, model, experiment, keys, digests), record)
            keys[experiment] = input_key(parts)
            reasons = [f"corrupt: {corrupt}"] if corrupt else stale_reasons(record, parts)
            if force and (not only or experiment in only):
                reasons = reasons or ["--force"]
            elif only and experiment not in only:
                reasons = []  # --only: leave the others as they are
            plans.append(Plan(model_name, ref.slug, experiment, parts, reasons, corrupt or ""))
    return plans


def stored_model(store: Store, name: str, experiments: list[str]) -> dict | None:
    """The model part of the key of a stored result of `name` (the first that can be read):
    what a publishing install, which cannot resolve hub names, knows of a hub model."""
    from generator.models import slug

    for experiment in experiments:
        record, _ = store.inspect(slug(name), experiment)
        if record is not None and isinstance(record["key_parts"].get("model"), dict):
            return record["key_parts"]["model"]
    return None


def load(config: Config, model_name: str, stale: list[Plan]):
    """The model and the task batches its stale experiments need."""
    from generator import experiments, models

    model = models.load_model(models.resolve(model_name), config.device, config.dtype)
    main = {experiments.get(p.experiment).task for p in stale}
    extra = {t for p in stale for t in experiments.get(p.experiment).extra_tasks}
    return model, build_batches(model, model_name, main, extra)


def build_batches(model, model_name: str, main: set[str], extra: set[str]) -> dict:
    """The task batches for one model: every task's prompts checked against its context first
    (before any is built), the main tasks built, and each extra task built or, where this
    model's tokenizer breaks it, passed on as tasks.Unbuildable with the reason."""
    from generator import tasks

    extra = set(extra) - set(main)
    specs = {task: tasks.load_task(task) for task in sorted(set(main) | extra)}
    for spec in specs.values():  # every task, before any is built or any experiment runs
        tasks.check_context(spec, model, model_name)
    batches = {task: tasks.build(specs[task], model) for task in sorted(main)}
    for task in sorted(extra):
        # an extra prompt set this model's tokenizer breaks (e.g. unequal lengths) is passed on
        # as unbuildable, with the reason, for the experiment to report; a main task must build
        try:
            batches[task] = tasks.build(specs[task], model)
        except ReportError as e:
            batches[task] = tasks.Unbuildable(task, str(e))
    return batches


def execute(config: Config, p: Plan, model, batches: dict, store: Store):
    """Run one experiment; returns (result, seconds)."""
    import torch

    from generator import experiments
    from generator.metrics import check_finite

    spec = experiments.get(p.experiment)
    reason = skip_reason(p, model, store)
    if reason:
        return Skipped(reason), 0.0
    inputs = {}
    for dep in spec.after:
        record = store.read(p.slug, dep)
        if record is None:
            raise ReportError(
                f"{p.experiment} reads the results of {dep}, which has not run for {p.model}: "
                f"run without --only, or with --only {dep} first"
            )
        inputs[dep] = store.load(p.slug, dep)["metrics"]  # typed (generator.schemas)
    if spec.extra_tasks:
        inputs["tasks"] = {t: batches[t] for t in spec.extra_tasks}
    torch.manual_seed(config.seed)
    start = time.perf_counter()
    result = experiments.module(p.experiment).run(
        model, batches[spec.task], spec.params(**config.experiments[p.experiment]), inputs
    )
    seconds = time.perf_counter() - start
    check_finite(p.experiment, result.metrics)
    return result, seconds


@dataclass
class Skipped:
    """An experiment that cannot run on a model: stored with its reason, so that its page says
    why for that model and the other models' pages are unaffected."""

    reason: str
    timings: dict = field(default_factory=dict)


def skip_reason(p: Plan, model, store: Store) -> str | None:
    """Why this experiment cannot run on this model (its module's `unsupported(model)`, or an
    experiment it reads was skipped), decided before it runs; None when it can."""
    from generator import experiments

    for dep in experiments.get(p.experiment).after:
        record = store.read(p.slug, dep)
        if record is not None and "skipped" in record:
            return f"it reads {dep}, which was skipped: {record['skipped']}"
    check = getattr(experiments.module(p.experiment), "unsupported", None)
    return check(model) if check else None


def record(config: Config, p: Plan, result, seconds: float, device: str, store: Store) -> None:
    """Store the result with its key and provenance (the timing apart: it varies run to run)."""
    outcome = {"metrics": {}, "skipped": result.reason} if isinstance(result, Skipped) else {"metrics": result.metrics}
    store.save(
        p.slug,
        p.experiment,
        {
            **outcome,
            "key": digest(p.key_parts),
            "key_parts": p.key_parts,
            "provenance": {
                "generator": __version__,
                "config": config.digest(),
                "device": device,
                "seed": config.seed,
                "dtype": config.dtype,
                "model": p.model,
                "versions": p.key_parts["versions"],
            },
        },
        {"wall_s": round(seconds, 3), **({"parts_s": result.timings} if result.timings else {})},
    )


@contextlib.contextmanager
def stored_threads():
    """torch on STORED_THREADS CPU threads for the duration (restored after): reductions then
    run in one order on every machine, whatever its cores. Leaves cores beyond two unused on
    larger CPUs; CUDA kernels are not affected (their results are not promised to match the
    CPU's: the device is in provenance)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(STORED_THREADS)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def preflight(config: Config, store: Store, stale: list[Plan], check_device: bool = True) -> None:
    """Check what would otherwise fail after an experiment has run: the device exists and the
    results can be saved. (Config, model names, model folders and task files were checked
    while planning.) `check_device`: False where the models run elsewhere (a Ray cluster's
    nodes, whose devices this machine cannot see)."""
    from generator.models import pick_device

    require_run_packages("running experiments")
    if check_device:
        pick_device(config.device)
    store.check_writable(sorted({p.slug for p in stale}))


def not_run_row(p: Plan, store: Store) -> dict:
    """The summary row of a pair that did not run: reused, or left alone by --only (and then
    perhaps never run, or corrupt: `status` says so)."""
    row = {"model": p.model, "experiment": p.experiment, "status": "reused", "seconds": None}
    if p.corrupt:
        row["status"] = "corrupt"
    elif not store.path(p.slug, p.experiment).exists():
        row["status"] = "not run"
    else:
        row["seconds"] = store.timing(p.slug, p.experiment)["wall_s"]
    return row


def run(
    config: Config,
    force: bool = False,
    only: tuple[str, ...] = (),
    log=print,
    executor: str = "local",
    address: str | None = None,
) -> list[dict]:
    """Run every stale (model, experiment); return a summary row per pair. `executor`: "local"
    (one model after another in this process) or "ray" (each model a Ray task on the cluster at
    `address`; generator.executors), which store the same bytes."""
    from generator import executors

    runner = executors.get(executor, address)  # an unknown executor or a missing ray: before planning
    store = Store(config.path("results"))
    plans = plan(config, force, only)
    if any(not p.fresh for p in plans):
        preflight(config, store, [p for p in plans if not p.fresh], check_device=executor == "local")
    summary = []
    todo = {}
    for model_name in config.models:
        mine = [p for p in plans if p.model == model_name]
        summary += [not_run_row(p, store) for p in mine if p.fresh]
        if any(not p.fresh for p in mine):  # everything reused: the model is never loaded
            todo[model_name] = [p for p in mine if not p.fresh]
    summary += runner(config, todo, store, log)
    place = {(p.model, p.experiment): i for i, p in enumerate(plans)}  # the plan's order, however they ran
    return sorted(summary, key=lambda row: place[(row["model"], row["experiment"])])


def run_model(config: Config, model_name: str, stale: list[Plan], store: Store, log) -> list[dict]:
    """Load one model, run its stale experiments in order and save each; its summary rows."""
    summary = []
    with stored_threads():
        log(f"loading {model_name} ...")
        model, batches = load(config, model_name, stale)
        for p in stale:
            log(f"running {p.experiment} on {model_name} ({'; '.join(p.reasons)})")
            result, seconds = execute(config, p, model, batches, store)
            record(config, p, result, seconds, str(model.cfg.device), store)
            if isinstance(result, Skipped):
                log(f"skipped {p.experiment} on {model_name}: {result.reason}")
            status = "skipped" if isinstance(result, Skipped) else "ran"
            summary.append(
                {"model": p.model, "experiment": p.experiment, "status": status, "seconds": round(seconds, 3)}
            )
        del model
    return summary
