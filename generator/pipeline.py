"""Run the configured experiments, re-running only those whose cache key changed."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from importlib.metadata import version

from generator import ReportError, __version__
from generator.config import Config
from generator.store import Store, digest, source_fingerprint, stale_reasons

KEY_PACKAGES = ("torch", "transformer_lens", "transformers")


@dataclass
class Plan:
    """One (model, experiment) pair: its cache key parts and whether the store has it."""

    model: str
    slug: str
    experiment: str
    key_parts: dict
    reasons: list[str] = field(default_factory=list)  # empty: fresh

    @property
    def fresh(self) -> bool:
        return not self.reasons


def key_parts(config: Config, ref, experiment: str, upstream: dict[str, str]) -> dict:
    """Everything that determines a result. `upstream`: cache keys of the experiments it reads."""
    from generator import experiments, models, tasks

    spec = experiments.get(experiment)
    return {
        "inputs": {name: upstream[name] for name in spec.after},
        "model": {"name": ref.name, "source": ref.source, "location": ref.location
                  if ref.source == "hub" else ref.source, "weights": models.fingerprint(ref)},
        "task": tasks.load_task(spec.task).digest(),
        "params": config.experiments[experiment],
        "code": source_fingerprint(spec.module),
        "versions": {p: version(p.replace("_", "-")) for p in KEY_PACKAGES},
        "seed": config.seed,
        "dtype": config.dtype,
    }


def ordered(config: Config) -> list[str]:
    """The configured experiments, each after those it reads; a missing one is an error."""
    from generator import experiments

    done: list[str] = []
    for name in config.experiments:
        for dep in experiments.get(name).after:
            if dep not in config.experiments:
                raise ReportError(f"experiments.{name} reads the results of {dep!r}, which is not "
                                  f"configured: add `{dep}: {{}}` under experiments")
    while len(done) < len(config.experiments):
        for name in config.experiments:
            if name not in done and all(d in done for d in experiments.get(name).after):
                done.append(name)
    return done


def plan(config: Config, force: bool = False, only: tuple[str, ...] = ()) -> list[Plan]:
    from generator import models

    store = Store(config.path("results"))
    for name in only:
        if name not in config.experiments:
            raise ReportError(f"--only {name}: not an experiment in the config (configured: {', '.join(config.experiments)})")
    plans = []
    for model_name in config.models:
        ref = models.resolve(model_name)
        keys: dict[str, str] = {}
        for experiment in ordered(config):
            parts = key_parts(config, ref, experiment, keys)
            keys[experiment] = digest(parts)
            reasons = stale_reasons(store.load(ref.slug, experiment), parts)
            if force and (not only or experiment in only):
                reasons = reasons or ["--force"]
            elif only and experiment not in only:
                reasons = []  # --only: leave the others as they are
            plans.append(Plan(model_name, ref.slug, experiment, parts, reasons))
    return plans


def run(config: Config, force: bool = False, only: tuple[str, ...] = (), log=print) -> list[dict]:
    """Run every stale (model, experiment); return a summary row per pair."""
    from generator import experiments, models, tasks
    from generator.experiments import check_finite

    store = Store(config.path("results"))
    plans = plan(config, force, only)
    summary = []
    for model_name in config.models:
        todo = [p for p in plans if p.model == model_name]
        for p in todo:
            if p.fresh:
                summary.append({"model": p.model, "experiment": p.experiment, "status": "reused",
                                "seconds": store.timing(p.slug, p.experiment).get("wall_s")})
        stale = [p for p in todo if not p.fresh]
        if not stale:
            continue  # everything reused: the model is never loaded
        import torch  # only now: a build with everything fresh never pays for it

        ref = models.resolve(model_name)
        log(f"loading {model_name} ...")
        model = models.load_model(ref, config.device, config.dtype)
        batches: dict[str, object] = {}
        for p in stale:
            spec, module = experiments.get(p.experiment), experiments.module(p.experiment)
            if spec.task not in batches:
                batches[spec.task] = tasks.build(tasks.load_task(spec.task), model)
            log(f"running {p.experiment} on {model_name} ({'; '.join(p.reasons)})")
            torch.manual_seed(config.seed)
            start = time.perf_counter()
            params = spec.params(**config.experiments[p.experiment])
            inputs = {}
            for dep in spec.after:
                record = store.load(p.slug, dep)
                if record is None:
                    raise ReportError(f"{p.experiment} reads the results of {dep}, which has not run "
                                      f"for {model_name}: run without --only, or with --only {dep} first")
                inputs[dep] = record["metrics"]
            result = module.run(model, batches[spec.task], params, inputs)
            seconds = time.perf_counter() - start
            check_finite(p.experiment, result.metrics)
            record = {
                "key": digest(p.key_parts),
                "key_parts": p.key_parts,
                "provenance": {"generator": __version__, "config": config.digest(),
                               "device": str(model.cfg.device), "seed": config.seed,
                               "dtype": config.dtype, "model": model_name,
                               "versions": p.key_parts["versions"]},
                "metrics": result.metrics,
                "figures": result.figures,
            }
            store.save(p.slug, p.experiment, record, {"wall_s": round(seconds, 3)})
            summary.append({"model": p.model, "experiment": p.experiment, "status": "ran",
                            "seconds": round(seconds, 3)})
        del model
    return summary
