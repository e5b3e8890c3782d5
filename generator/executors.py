"""Where the models' experiments run: `local` (one model after another, in this process: the
default) or `ray` (each model one Ray task, on a laptop, a multi-GPU workstation or a cluster).

Either way this process is the only writer of the results store: a Ray task runs the model's
stale experiments against a scratch store of its own (holding the model's stored results that
they read), and returns the files it wrote; the driver saves each through Store.save, which
writes `dumps` of the same record, so the store's bytes are those the local executor writes.
A failed model fails the build with its one-line error once the others have finished and been
stored; Ctrl-C cancels the tasks still running."""

from __future__ import annotations

import json
import re
import sys
import tempfile
from pathlib import Path

from generator import ReportError
from generator.config import Config
from generator.store import Store

EXECUTORS = ("local", "ray")
RAY_EXTRA = "pip install 'capcircuit[ray]' (or pip install ray)"


def get(name: str, address: str | None = None):
    """The runner of an executor: runner(config, {model: stale plans}, store, log) -> summary rows."""
    if name == "local":
        if address:
            raise ReportError(f"--address {address!r} is for --executor ray; the local executor runs here")
        return run_local
    if name == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise ReportError(f"--executor ray needs Ray, which is not installed here: {RAY_EXTRA}") from None
        return lambda config, todo, store, log: run_ray(config, todo, store, log, address)
    raise ReportError(f"--executor {name!r}: unknown executor (allowed: {', '.join(EXECUTORS)})")


def run_local(config: Config, todo: dict, store: Store, log) -> list[dict]:
    from generator.pipeline import run_model

    summary = []
    for model_name, stale in todo.items():
        summary += run_model(config, model_name, stale, store, log)
    return summary


def model_task(config: Config, model_name: str, stale: list, stored: dict[str, tuple[str, str]]) -> dict:
    """One model's stale experiments, run where Ray placed them. `stored`: {experiment: (record
    text, timing text)} of the model's stored results its experiments may read. Returns
    {"rows", "files": {experiment: (record text, timing text)}} or {"error": one line}."""
    from generator import experiments, tasks
    from generator.fingerprint import source_fingerprint
    from generator.pipeline import run_model
    from generator.versions import current_versions

    def log(message: str) -> None:
        print(f"[{model_name}] {message}", file=sys.stderr, flush=True)

    try:
        # the driver computed the keys: refuse to file results under them if this node's
        # packages or code differ from the driver's (the key would then misstate them)
        for p in stale:
            spec = experiments.get(p.experiment)
            if p.key_parts["versions"] != current_versions():
                raise ReportError("this Ray node's package versions differ from the driver's: install the same ones")
            if p.key_parts["code"] != source_fingerprint(spec.module):
                raise ReportError(f"this Ray node's capcircuit code for {p.experiment} differs from the driver's")
            here = {t: tasks.load_task(t).digest() for t in (spec.task, *spec.extra_tasks)}
            there = {spec.task: p.key_parts["task"], **p.key_parts.get("extra_tasks", {})}
            if here != there:
                raise ReportError(
                    f"this Ray node's task files for {p.experiment} ({', '.join(sorted(here))}) differ from the "
                    "driver's: install the same capcircuit on every node"
                )
        if config.device.startswith("cuda"):
            config = config.model_copy(update={"device": "cuda"})  # Ray shows the task only its own GPU
        with tempfile.TemporaryDirectory(prefix="capcircuit-ray-") as scratch:
            store = Store(Path(scratch))
            slug = stale[0].slug
            for experiment, texts in stored.items():
                paths = (store.path(slug, experiment), store.path(slug, experiment, ".timing.json"))
                for path, text in zip(paths, texts):
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text(text, encoding="utf-8")
            rows = run_model(config, model_name, stale, store, log)
            files = {p.experiment: read_pair(store, slug, p.experiment) for p in stale}
        return {"rows": rows, "files": files}
    except ReportError as e:
        return {"error": str(e)}
    except Exception as e:  # noqa: BLE001 - a bug or a crash inside the task: one line, as the CLI says it
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        return {"error": f"unexpected {type(e).__name__}: {first[:300]}"}


def last_line(error: BaseException) -> str:
    """What a Ray error says last (the exception under Ray's traceback, e.g. "ModuleNotFoundError:
    No module named 'generator'" on a node without capcircuit), without terminal colours."""
    lines = [line.strip() for line in re.sub(r"\x1b\[[0-9;]*m", "", str(error)).splitlines() if line.strip()]
    return (lines[-1] if lines else type(error).__name__)[:300]


def read_pair(store: Store, slug: str, experiment: str) -> tuple[str, str]:
    return (
        store.path(slug, experiment).read_text(encoding="utf-8"),
        store.path(slug, experiment, ".timing.json").read_text(encoding="utf-8"),
    )


def stored_inputs(store: Store, stale: list) -> dict[str, tuple[str, str]]:
    """The model's stored results that are not re-run (its experiments may read them)."""
    from generator import experiments

    slug, running = stale[0].slug, {p.experiment for p in stale}
    wanted = {dep for p in stale for dep in experiments.get(p.experiment).after} - running
    return {e: read_pair(store, slug, e) for e in sorted(wanted) if store.path(slug, e).exists()}


def wants_gpu(device: str, ray) -> bool:
    """A task asks Ray for a GPU when the config names CUDA, or says auto and the cluster has one."""
    if device.startswith("cuda"):
        return True
    return device == "auto" and ray.cluster_resources().get("GPU", 0) >= 1


def run_ray(config: Config, todo: dict, store: Store, log, address: str | None) -> list[dict]:
    if not todo:
        return []
    import ray

    started = not ray.is_initialized()
    if started:
        try:
            # a new local cluster without its dashboard (a web server nobody asked for); an
            # existing cluster's settings are its own (Ray refuses them when connecting)
            ray.init(address=address, **({} if address else {"include_dashboard": False}))
        except (ConnectionError, RuntimeError, ValueError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            where = f"at {address}" if address else "(a new local one, or RAY_ADDRESS)"
            raise ReportError(f"cannot connect to a Ray cluster {where}: {first[:300]}") from None
    try:
        task = ray.remote(model_task).options(
            num_gpus=1 if wants_gpu(config.device, ray) else 0, max_retries=0, name="capcircuit-model"
        )
        pending = {task.remote(config, m, stale, stored_inputs(store, stale)): m for m, stale in todo.items()}
        log(f"ray: {len(pending)} model(s) submitted to {ray.get_runtime_context().gcs_address}")
        return collect(ray, pending, todo, store, log)
    finally:
        if started:
            ray.shutdown()


def collect(ray, pending: dict, todo: dict, store: Store, log) -> list[dict]:
    """Save each model's results as its task finishes; then fail with the first model's error,
    if any. Ctrl-C cancels what is still running."""
    summary, errors = [], []
    try:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            model_name = pending.pop(done[0])
            try:
                out = ray.get(done[0])
            except ray.exceptions.RayError as e:  # the task could not run (capcircuit missing there) or died
                said = last_line(e)
                hint = " (install capcircuit[run,ray], the same version, on every node)" if "No module" in said else ""
                out = {"error": f"its Ray task failed: {said}{hint}"}
            if "error" in out:
                errors.append(f"model {model_name}: {out['error']}")
                log(f"failed {model_name}: {out['error']}")
                continue
            slug = todo[model_name][0].slug
            for experiment, (record, timing) in out["files"].items():
                store.save(slug, experiment, json.loads(record), json.loads(timing))
            summary += out["rows"]
            log(f"stored {model_name} ({len(out['files'])} results)")
    except KeyboardInterrupt:
        for ref in pending:
            ray.cancel(ref, force=True)
        raise
    if errors:
        more = f" (and {len(errors) - 1} more model(s) failed; finished models are stored)" if len(errors) > 1 else ""
        raise ReportError(errors[0] + more)
    return summary
