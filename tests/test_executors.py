"""The executors (generator/executors.py): a build through Ray stores the bytes the local
executor stores, a failing model fails the build with its one-line error while the others stay
stored, Ctrl-C cancels the tasks, and a missing Ray is one line. The Ray tests run on a local
cluster of 2 CPUs that this module starts once."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import ray
from click.testing import CliRunner
from conftest import write_config

from generator import ReportError, executors
from generator.cli import main
from generator.config import load_config
from generator.models import BUNDLED, slug
from generator.pipeline import run
from generator.store import Store

TWO = ["organism", "organism-attn-only-1l"]


@pytest.fixture(scope="module")
def cluster():
    # address="local": a new cluster of our own, even where `ray start` left one on this machine
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def stored_files(results: Path) -> dict[str, bytes]:
    """Every result file's bytes (not the timing files: wall-clock seconds differ run to run)."""
    return {
        str(p.relative_to(results)): p.read_bytes()
        for p in sorted(results.rglob("*.json"))
        if not p.name.endswith(".timing.json")
    }


def build(folder: Path, executor: str, experiments: dict, models=TWO) -> list[dict]:
    folder.mkdir(exist_ok=True)
    config = load_config(write_config(folder, models=models, experiments=experiments, device="cpu"))
    return run(config, log=lambda message: None, executor=executor)


def test_ray_stores_the_bytes_the_local_executor_stores(tmp_path, cluster):
    first = {"baseline": {}, "attribution": {}, "patching": {}}
    local = build(tmp_path / "local", "local", first)
    remote = build(tmp_path / "ray", "ray", first)
    assert [(r["model"], r["experiment"], r["status"]) for r in remote] == [
        (r["model"], r["experiment"], r["status"]) for r in local
    ]
    assert {r["status"] for r in remote} == {"ran"}
    ours, theirs = stored_files(tmp_path / "local" / "results"), stored_files(tmp_path / "ray" / "results")
    assert len(ours) == 2 * len(first) and ours == theirs
    # a downstream experiment alone: the Ray task reads the upstream results the driver holds
    second = {**first, "attention": {}}
    local = build(tmp_path / "local", "local", second)
    remote = build(tmp_path / "ray", "ray", second)
    assert [(r["experiment"], r["status"]) for r in remote if r["status"] == "ran"] == [("attention", "ran")] * 2
    assert [r["status"] for r in remote] == [r["status"] for r in local]
    assert stored_files(tmp_path / "local" / "results") == stored_files(tmp_path / "ray" / "results")
    # nothing stale: nothing is submitted, everything is reused
    assert {r["status"] for r in build(tmp_path / "ray", "ray", second)} == {"reused"}


def test_a_failing_model_fails_the_build_and_the_others_stay_stored(tmp_path, cluster):
    broken = tmp_path / "broken-model"
    shutil.copytree(BUNDLED["organism"], broken)
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")  # passes the folder check, fails to load
    with pytest.raises(ReportError) as e:
        build(tmp_path / "report", "ray", {"baseline": {}}, models=["organism", str(broken)])
    message = str(e.value)
    assert "\n" not in message
    assert message.startswith(f"model {broken}: cannot load model {str(broken)!r}")
    store = Store(tmp_path / "report" / "results")
    assert store.read("organism", "baseline")["metrics"].n_prompts == 100  # the finished model is stored
    assert store.read(slug(str(broken)), "baseline") is None  # nothing stored for the failed one


def test_a_node_whose_task_files_differ_refuses_to_run(tmp_path, cluster, monkeypatch):
    """The driver computes the keys; a node with other task files (here: the driver's are cut to
    a few prompts, the node's are not) would file its results under a key that misstates them."""
    from conftest import small_tasks

    import generator.tasks

    monkeypatch.setattr(generator.tasks, "DATA_DIR", small_tasks(tmp_path / "tasks"))
    with pytest.raises(
        ReportError, match=r"^model organism: this Ray node's task files for baseline \(pronoun\) differ"
    ):
        build(tmp_path / "report", "ray", {"baseline": {}}, models=["organism"])
    assert not list((tmp_path / "report" / "results").rglob("*.json"))


class FakeRay:
    """Just enough of ray for collect(): wait() raises KeyboardInterrupt (Ctrl-C), cancel() is recorded."""

    class exceptions:  # noqa: N801 - ray's own name
        RayError = RuntimeError

    def __init__(self, resources=None):
        self.cancelled, self.resources = [], resources or {}

    def wait(self, refs, num_returns):
        raise KeyboardInterrupt

    def cancel(self, ref, force):
        self.cancelled.append((ref, force))

    def cluster_resources(self):
        return self.resources


def test_ctrl_c_cancels_every_running_task(tmp_path):
    fake = FakeRay()
    with pytest.raises(KeyboardInterrupt):
        executors.collect(fake, {"ref-a": "a", "ref-b": "b"}, {}, Store(tmp_path), lambda m: None)
    assert fake.cancelled == [("ref-a", True), ("ref-b", True)]


@pytest.mark.parametrize(
    "device, gpus, wanted",
    [("cpu", 1, False), ("cuda", 0, True), ("cuda:1", 0, True), ("auto", 1, True), ("auto", 0, False)],
)
def test_a_task_asks_for_a_gpu_when_the_device_is_cuda(device, gpus, wanted):
    assert executors.wants_gpu(device, FakeRay({"CPU": 2, **({"GPU": gpus} if gpus else {})})) is wanted


def test_without_ray_the_executor_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now fails
    with pytest.raises(ReportError, match=r"--executor ray needs Ray.*pip install 'capcircuit\[ray\]'"):
        executors.get("ray")
    write_config(tmp_path, models=["organism"], experiments={"baseline": {}})
    result = CliRunner().invoke(main, ["run", "--config", str(tmp_path / "report.yaml"), "--executor", "ray"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "pip install 'capcircuit[ray]'" in lines[0]
    assert not (tmp_path / "results").exists()  # said before anything ran


def test_unknown_executor_and_misplaced_address_are_one_line():
    with pytest.raises(ReportError, match=r"--executor 'slurm': unknown executor \(allowed: local, ray\)"):
        executors.get("slurm")
    with pytest.raises(ReportError, match="--address 'x:1' is for --executor ray"):
        executors.get("local", "x:1")


def test_a_ray_error_is_said_by_its_last_line():
    error = RuntimeError(
        "Failed to unpickle the function:\n\n\x1b[36mray::capcircuit-model()\x1b[39m (pid=1, ip=10.0.0.2)\n"
        "   ^^^^^^\nModuleNotFoundError: No module named 'generator'\n"
    )
    assert executors.last_line(error) == "ModuleNotFoundError: No module named 'generator'"
    assert executors.last_line(RuntimeError("")) == "RuntimeError"
