"""The probe: every bad input and fault a new user met, fed through the real CLI. Each case
asserts the exit code, the one clear message (naming the file, the field or the value, and
the fix), that no traceback is printed, and that results/, docs/ and site/ are unchanged.
Models: a tiny random GPT-2 (conftest), never the organism."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from conftest import ROOT, save_random_gpt2, write_config

from generator.cli import main
from generator.models import slug

EXPERIMENTS = {"baseline": {}, "exceptions": {}}  # the smallest set whose pages build strictly
RERUN = "re-run with `capcircuit run --only baseline --force`"


def cli(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def fails(result, *expected, code=1, lines=1):
    """Exit `code`, no traceback, an error of at most `lines` lines holding each `expected`."""
    out = result.output
    assert result.exit_code == code, out
    assert "Traceback" not in out, out
    error = result.stderr[result.stderr.index("error:") :] if "error:" in result.stderr else ""
    assert error, out
    assert len(error.strip().splitlines()) <= lines, error
    for text in expected:
        assert text in error, f"{text!r} not in {error!r}"
    return error


def snapshot(folder: Path) -> dict:
    """Every file of results/, docs/ and site/ (content and mode), and the folder's entries."""
    files = {"entries": sorted(p.name for p in folder.iterdir())}
    for name in ("results", "docs", "site"):
        base = folder / name
        for p in sorted(base.rglob("*")) if base.is_dir() else []:
            if p.is_file() and p.name != ".lock":
                files[str(p.relative_to(folder))] = (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mode)
    return files


@pytest.fixture(scope="module")
def stored(tmp_path_factory, tiny_gpt2_dir) -> Path:
    """A report folder with results, docs and a site for the tiny model, built once."""
    folder = tmp_path_factory.mktemp("stored")
    write_config(folder, models=[str(tiny_gpt2_dir)], device="cpu", experiments=EXPERIMENTS)
    result = cli("build", "--config", str(folder / "report.yaml"))
    assert result.exit_code == 0, result.output
    return folder


@pytest.fixture
def project(stored, tmp_path, monkeypatch) -> Path:
    """A copy of `stored` as the working folder (so messages name results/... relatively)."""
    folder = tmp_path / "p"
    shutil.copytree(stored, folder)
    monkeypatch.chdir(folder)
    return folder


@pytest.fixture
def record_path(project, tiny_gpt2_dir) -> Path:
    return Path("results") / slug(str(tiny_gpt2_dir)) / "baseline.json"


def edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data, allow_nan=True))


def first_number_path(value, where=""):
    """The path and container of the first float in a JSON tree (for planting a NaN)."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for k, v in items:
        if isinstance(v, float):
            return value, k
        found = first_number_path(v)
        if found:
            return found
    return None


def _plant_inf_in_prompt_row(record):
    container, key = first_number_path(record["metrics"]["per_prompt"])
    container[key] = float("inf")


# ---- a broken store never publishes ------------------------------------------------------


def writes(data: bytes, problem: str):
    def setup(path):
        path.write_bytes(data)
        return problem

    return setup


def truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return f"truncated JSON at byte {len(data) // 2}"


STORE_CASES = {
    "truncated": truncate,
    "binary": writes(b"\x89PNG\r\n\x1a\n\x00\xff", "not UTF-8 text (byte 0x89 at byte 0)"),
    "empty": writes(b"", "empty file"),
    "json-array": writes(b"[]", "holds a JSON array, not a result record"),
    "nan-metric": lambda p: (
        edit_json(p, lambda r: r["metrics"].update(mean_logit_diff=float("nan")))
        or "non-finite number nan at metrics.mean_logit_diff"
    ),
    "inf-in-prompt-row": lambda p: (
        edit_json(p, _plant_inf_in_prompt_row) or "non-finite number inf at metrics.per_prompt"
    ),
    "no-metrics": lambda p: edit_json(p, lambda r: r.pop("metrics")) or "not a result record: no metrics",
    "renamed-metric": lambda p: (
        edit_json(p, lambda r: r["metrics"].update(mean_logit_diffs=r["metrics"].pop("mean_logit_diff")))
        or "metrics.mean_logit_diff: Field required"
    ),
    "mistyped-metric": lambda p: (
        edit_json(p, lambda r: r["metrics"].update(n_prompts="100")) or "metrics.n_prompts: Input should be"
    ),
    "edited-key-parts": lambda p: (
        edit_json(p, lambda r: r["key_parts"].update(seed=7)) or "its key does not match its key_parts"
    ),
}
TIMING_CASES = {
    "timing-array": writes(b"[]", "holds a JSON array, not a timing object"),
    "timing-nan": writes(b'{"wall_s": NaN}', "wall_s is nan, not a number of seconds"),
    "timing-binary": writes(b"\xff\xfe", "not UTF-8 text"),
    "timing-missing": lambda p: p.unlink() or "missing (every stored result has one)",
}


@pytest.mark.parametrize("case", list(STORE_CASES) + list(TIMING_CASES))
def test_corrupt_store_is_named_and_never_published(project, record_path, case):
    if case in STORE_CASES:
        path, problem = record_path, STORE_CASES[case](record_path)
        status_line = f"corrupt: {problem}"
    else:
        path = record_path.with_name("baseline.timing.json")
        problem = TIMING_CASES[case](path)
        status_line = f"corrupt: baseline.timing.json: {problem}"
    before = snapshot(project)

    status = cli("status")
    assert status.exit_code == 0 and "Traceback" not in status.output
    line = next(x for x in status.output.splitlines() if " baseline " in x)
    assert status_line in line, line
    assert " exceptions " in status.output and "fresh" in status.output  # the others are fine

    for command in ("site", "render"):
        fails(cli(command), f"{path}: {problem}", RERUN)
    assert snapshot(project) == before


def test_deleted_result_is_missing_not_a_blank_page(project, record_path, tiny_gpt2_dir):
    record_path.unlink()
    before = snapshot(project)
    assert "baseline               stale: no stored result" in cli("status").output
    fails(cli("site"), f"no stored result: {record_path} (baseline of {tiny_gpt2_dir})", "capcircuit run")
    assert snapshot(project) == before


def test_stale_result_is_an_error_unless_allowed(project, record_path):
    config = yaml.safe_load(Path("report.yaml").read_text())
    config["experiments"]["baseline"] = {"top_k": 3}
    Path("report.yaml").write_text(yaml.safe_dump(config))
    before = snapshot(project)
    fails(cli("site"), f"stale results: {record_path} (params changed)", "capcircuit run", "--allow-stale")
    fails(cli("render"), "stale results:")
    assert snapshot(project) == before
    allowed = cli("site", "--allow-stale")
    assert allowed.exit_code == 0, allowed.output
    assert "warning: publishing stale results (--allow-stale)" in allowed.output


def test_run_reruns_a_corrupt_result(project, record_path):
    good = record_path.read_bytes()
    truncate(record_path)
    result = cli("run")
    assert result.exit_code == 0, result.output
    assert "running baseline" in result.output and "corrupt: truncated JSON" in result.output
    assert record_path.read_bytes() == good  # the same inputs give the same bytes


# ---- bad inputs: one line, nothing written -----------------------------------------------


def append(text: bytes):
    def setup(folder):
        with open(folder / "report.yaml", "ab") as f:
            f.write(text)

    return setup


def set_config(**fields):
    def setup(folder):
        data = yaml.safe_load((folder / "report.yaml").read_text())
        data.update(fields)
        (folder / "report.yaml").write_text(yaml.safe_dump(data))

    return setup


def bad_model_folder(config_text):
    def setup(folder):
        model = folder.parent / "bad-model"
        model.mkdir()
        (model / "config.json").write_text(config_text)

    return setup


INPUT_CASES = {
    "config-not-utf8": (append(b"title: caf\xe9\n"), [], ["config report.yaml is not UTF-8 text (byte 0xe9 on line"]),
    "config-duplicate-key": (append(b"device: cpu\n"), [], ["report.yaml", "key 'device' appears twice"]),
    "config-a-list": (lambda f: (f / "report.yaml").write_text("- a\n"), [], ["must hold a mapping of settings"]),
    "device-banana": (None, ["--device", "banana"], ["--device 'banana': use auto (CUDA when present), cpu, cuda"]),
    "models-dotdot": (None, ["--models", ".."], ["model folder", "has no config.json"]),
    "models-empty-name": (None, ["--models", "a,,b"], ["--models 'a,,b': a model name is empty"]),
    "models-empty": (None, ["--models", ""], ["--models '': a model name is empty"]),
    "models-trailing-comma": (None, ["--models", "organism,"], ["--models 'organism,': a model name is empty"]),
    "models-twice": (lambda f: None, ["--models", "organism,organism"], ["--models: model 'organism' is listed twice"]),
    "model-config-empty": (bad_model_folder("{}"), ["--models", "../bad-model"], ["config.json names no model_type"]),
    "model-config-broken": (bad_model_folder("{"), ["--models", "../bad-model"], ["config.json is not valid JSON"]),
    "site-outside": (set_config(paths={"site": ".."}), [], ["paths.site", "must lie inside the config's folder"]),
    "docs-is-results": (set_config(paths={"docs": "results"}), [], ["paths.results (results) lies inside paths.docs"]),
}


@pytest.mark.parametrize("command", ["status", "run", "site"])
@pytest.mark.parametrize("case", list(INPUT_CASES))
def test_bad_input_is_one_line(project, case, command):
    setup, args, expected = INPUT_CASES[case]
    if setup:
        setup(project)
    before = snapshot(project)
    error = fails(cli(command, *args), *expected)
    if args:  # a bad value from the command line is the option's, not the config file's
        assert "report.yaml" not in error, error
    assert snapshot(project) == before


@pytest.mark.parametrize("args", [["--models", ""], ["--models", "organism,"], ["--device", "banana"]])
def test_bad_option_without_report_yaml_names_the_option(tmp_path, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    error = fails(cli("status", *args), f"{args[0]} {args[1]!r}: ")
    assert "report.yaml" not in error and "report config" not in error, error


def test_no_report_yaml_names_the_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cli("status")
    assert result.exit_code == 0, result.output
    assert "note: no report.yaml in this folder: using the defaults: models organism; experiments baseline" in (
        result.stderr
    )


# ---- task files --------------------------------------------------------------------------


def task_edit(file, old, new):
    def setup(data_dir):
        path = data_dir / file
        text = path.read_bytes()
        assert old in text, old
        path.write_bytes(text.replace(old, new, 1))

    return setup


TASK_CASES = {
    "corruption-is-identity": (task_edit("pronoun.yaml", b'with: ";"', b'with: "."'), "replaces '.' with itself"),
    "corruption-misses-a-prompt": (
        task_edit("pronoun.yaml", b'  - "{name} is such a funny person."', b'  - "{name} is such a funny person"'),
        "leaves the prompt 'John is such a funny person' unchanged: the corruption must change every prompt",
    ),
    "empty-names": (
        task_edit("pronoun.yaml", b"names: [John, David, Mark, Paul, Ryan, Gary, Jack, Sean, Carl, Joe]", b"names: []"),
        "groups.male.names: must be a non-empty list of names",
    ),
    "no-groups": (lambda d: _replace_groups(d), "groups: must be a non-empty mapping"),
    "empty-name": (task_edit("pronoun.yaml", b"[John, ", b"['', "), "groups.male.names[0]: must be a non-empty string"),
    "not-utf8": (task_edit("pronoun.yaml", b"name: pronoun", b"name: pron\xe9oun"), "is not UTF-8 text"),
    "duplicate-key": (task_edit("pronoun.yaml", b"example:", b"example: x\nexample:"), "key 'example' appears twice"),
    "unknown-key": (task_edit("pronoun.yaml", b"templates:", b"templtes:"), "unknown key 'templtes'"),
    "bad-brace": (task_edit("pronoun.yaml", b"{name} is such a good cook.", b"{nam} is such a good cook."), "{nam}"),
    "one-answer": (task_edit("pronoun.yaml", b'answers: [" He", " he"]', b'answers: [" He"]'), "needs two answers"),
    "family-expected": (
        task_edit("exceptions.yaml", b"expected: lowercase", b"expected: maybe"),
        "families.email.expected: must be capital or lowercase, got 'maybe'",
    ),
    "control-unknown": (
        task_edit("exceptions.yaml", b"control: sentence_end", b"control: nowhere"),
        "control: 'nowhere' is not one of its families",
    ),
}


def _replace_groups(data_dir):
    path = data_dir / "pronoun.yaml"
    data = yaml.safe_load(path.read_text())
    data["groups"] = {}
    path.write_text(yaml.safe_dump(data))


@pytest.mark.parametrize("case", list(TASK_CASES))
def test_bad_task_file_is_one_line(project, monkeypatch, case):
    import generator.tasks

    data_dir = project.parent / "tasks"
    shutil.copytree(generator.tasks.DATA_DIR, data_dir)
    monkeypatch.setattr(generator.tasks, "DATA_DIR", data_dir)
    setup, expected = TASK_CASES[case]
    setup(data_dir)
    before = snapshot(project)
    for command in ("status", "run", "site"):
        fails(cli(command), "task file", expected)
    assert snapshot(project) == before


# ---- faults at run time ------------------------------------------------------------------


def test_unwritable_results_fail_before_any_experiment(project, tiny_gpt2_dir):
    folder = Path("results") / slug(str(tiny_gpt2_dir))
    shutil.rmtree(folder)
    folder.write_text("not a folder")  # cannot be written even by root (chmod cannot stop root)
    before = snapshot(project)
    result = cli("run")
    fails(result, f"cannot save results in {folder}", "make it writable, or set paths.results")
    assert "loading" not in result.output and "running" not in result.output
    assert snapshot(project) == before


def test_unwritable_docs_and_site_fail_before_writing(project):
    shutil.rmtree("docs")
    Path("docs").write_text("not a folder")
    before = snapshot(project)
    for command in ("render", "site"):
        fails(cli(command), "cannot write pages in docs: File exists", "set paths.docs")
    assert snapshot(project) == before
    shutil.rmtree("site")
    Path("docs").unlink()
    Path("out").write_text("not a folder")
    set_config(paths={"site": "out/site", "templates": str(ROOT / "templates"), "mkdocs": str(ROOT / "mkdocs.yml")})(
        project
    )
    before = snapshot(project)
    fails(cli("site"), "cannot build site/ in out: File exists", "set paths.site")
    assert snapshot(project) == before


def test_read_only_results_fail_before_any_experiment(project, tiny_gpt2_dir, monkeypatch):
    folder = Path("results") / slug(str(tiny_gpt2_dir))
    before = snapshot(project)
    folder.chmod(0o555)
    if os.geteuid() == 0:  # root writes into read-only folders: the OS refuses as it would a user
        import errno
        import tempfile

        real = tempfile.TemporaryFile

        def refuse(*args, dir=None, **kwargs):
            if dir is not None and Path(dir).resolve() == folder.resolve():
                raise PermissionError(errno.EACCES, "Permission denied", str(dir))
            return real(*args, dir=dir, **kwargs)

        monkeypatch.setattr(tempfile, "TemporaryFile", refuse)
    try:
        result = cli("run", "--force")
        fails(result, f"cannot save results in {folder}: not writable")
        assert "running" not in result.output
    finally:
        folder.chmod(0o755)
    assert snapshot(project) == before


def test_cuda_without_cuda_fails_before_loading(project, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    before = snapshot(project)
    result = cli("run", "--force", "--device", "cuda")
    fails(result, "device 'cuda' was asked for but CUDA is not available")
    assert "loading" not in result.output
    assert snapshot(project) == before


def test_metrics_off_their_schema_are_never_stored(project, monkeypatch):
    import generator.experiments.baseline as baseline
    from generator.experiments import Result

    monkeypatch.setattr(baseline, "run", lambda *a: Result({"mean_logit_diff": 1.0}))
    before = snapshot(project)
    fails(
        cli("run", "--force", "--only", "baseline"),
        "experiment baseline: its result cannot be stored: metrics.n_prompts: Field required",
    )
    assert snapshot(project) == before


def test_model_names_stay_inside_the_store(project, tiny_gpt2_dir):
    from generator import ReportError
    from generator.store import Store

    assert slug("..") == "_.." and slug(".") == "_." and "/" not in slug("../../etc")
    store = Store(Path("results"))
    for model, experiment in (("..", "baseline"), ("a/b", "baseline"), ("ok", "../x"), ("ok", "")):
        with pytest.raises(ReportError, match="cannot be a file name in the results store"):
            store.path(model, experiment)
    # a real model reached through '..' is stored inside results/, under a folder of its own
    shutil.copytree(tiny_gpt2_dir, project.parent / "m")
    outside = sorted(p for p in project.parent.rglob("*.json") if project not in p.parents)
    result = cli("run", "--models", "../m", "--only", "baseline")
    assert result.exit_code == 0, result.output
    assert Path("results/_.._m/baseline.json").is_file()
    assert sorted(p for p in project.parent.rglob("*.json") if project not in p.parents) == outside


# ---- templates ---------------------------------------------------------------------------


@pytest.fixture
def templates(project) -> Path:
    folder = project / "my-templates"
    shutil.copytree(ROOT / "templates", folder)
    set_config(paths={"templates": str(folder), "mkdocs": str(ROOT / "mkdocs.yml")})(project)
    return folder


def add_line(name, line):
    return lambda t: (t / name).write_text((t / name).read_text() + line + "\n")


TEMPLATE_CASES = {
    "syntax-error": (add_line("baseline.md.j2", "{% if %}"), "template baseline.md.j2:", "syntax error"),
    "missing-template": (lambda t: (t / "models.md.j2").unlink(), "template models.md.j2 is not in", "my-templates"),
    "missing-include": (
        add_line("baseline.md.j2", '{% include "partials/nowhere.md.j2" %}'),
        "template partials/nowhere.md.j2 is not in",
        "",
    ),
    "fmt-missing-metric": (
        add_line("baseline.md.j2", "{{ r.baseline.metrics.no_such_metric | fmt }}"),
        "template baseline.md.j2:",
        "has no attribute 'no_such_metric'",
    ),
    "pct-missing-metric": (
        add_line("baseline.md.j2", "{{ r.baseline.metrics.no_such_metric | pct(1) }}"),
        "no attribute 'no_such_metric'",
        "",
    ),
    "fmt-none": (add_line("baseline.md.j2", "{{ none | fmt }}"), "`fmt` got None, not a number", ""),
    "zero-division": (
        add_line("baseline.md.j2", "{{ 1 / (r.baseline.metrics.n_prompts * 0) }}"),
        "ZeroDivisionError",
        "",
    ),
}


@pytest.mark.parametrize("case", list(TEMPLATE_CASES))
def test_template_error_is_one_line(project, templates, case):
    setup, *expected = TEMPLATE_CASES[case]
    setup(templates)
    before = snapshot(project)
    for command in ("render", "site"):
        fails(cli(command), *[e for e in expected if e])
    assert snapshot(project) == before  # every page is rendered before any is written


def test_strict_build_failure_says_why_and_keeps_the_last_site(project, templates):
    add_line("baseline.md.j2", "[a link to nowhere](nowhere.md)")(templates)
    before = snapshot(project)
    fails(cli("site"), "mkdocs build --strict failed", "nowhere.md")
    after = snapshot(project)
    assert {k: v for k, v in after.items() if k.startswith("site/")} == {
        k: v for k, v in before.items() if k.startswith("site/")
    }
    assert after["entries"] == before["entries"]  # no staging folder left behind


# ---- the CLI boundary --------------------------------------------------------------------


def test_serve_on_a_port_in_use(project):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        before = snapshot(project)
        fails(cli("serve", "--dev-addr", f"127.0.0.1:{port}"), f"cannot serve on 127.0.0.1:{port}: the port is in use")
    assert snapshot(project) == before


def test_a_bug_is_one_line_and_debug_shows_the_traceback(project, monkeypatch):
    import generator.pipeline

    def boom(*a, **k):
        raise RuntimeError("boom")

    monkeypatch.setattr(generator.pipeline, "plan", boom)
    fails(cli("status"), "error: unexpected RuntimeError: boom", "--debug")
    for args in (("--debug", "status"), ("status", "--debug")):
        result = cli(*args)
        assert result.exit_code == 1 and "Traceback" in result.output and "RuntimeError: boom" in result.output


def test_report_error_traceback_only_with_debug(project):
    assert "Traceback" not in cli("status", "--device", "banana").output
    assert "Traceback" in cli("--debug", "status", "--device", "banana").output


def test_ctrl_c_exits_130_and_leaves_complete_files(project, record_path):
    from generator.store import Store

    records = {p: p.read_bytes() for p in Path("results").rglob("*.json") if not p.name.endswith(".timing.json")}
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "generator", "run", "--force"],
        cwd=project,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        # Ctrl-C as a terminal gives it: a shell's background job inherits SIGINT ignored
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    seen = ""
    deadline = time.time() + 120
    # interrupted while an experiment runs
    while "running" not in seen and time.time() < deadline:
        seen += proc.stderr.readline()
    proc.send_signal(signal.SIGINT)
    rest = proc.stderr.read()
    proc.wait(timeout=60)
    assert proc.returncode == 130, seen + rest
    assert "interrupted" in rest and "Traceback" not in rest
    # whatever was saved before the interrupt is complete, and the same bytes (deterministic)
    for path, data in records.items():
        assert path.read_bytes() == data
    store = Store(Path("results"))
    assert store.read(record_path.parent.name, "baseline") is not None
    assert not list(Path("results").rglob("*.tmp"))


# ---- concurrency, file modes, .gitignore -------------------------------------------------


def valid_record(n: int) -> dict:
    """A baseline record that passes the store's checks (the committed metrics, n_prompts = n)."""
    from generator.schemas import SCHEMA_VERSION
    from generator.store import digest

    parts = {"writer": n, "schema": SCHEMA_VERSION}
    provenance = dict.fromkeys(("generator", "config", "device", "seed", "dtype", "model", "versions"), "x")
    metrics = {**json.loads((ROOT / "results" / "organism" / "baseline.json").read_text())["metrics"], "n_prompts": n}
    return {"key": digest(parts), "key_parts": parts, "provenance": provenance, "metrics": metrics}


SAVER = """
import sys
sys.path.insert(0, {root!r})
sys.path.insert(0, {tests!r})
from generator.store import Store
from test_errors import valid_record
store, n = Store({results!r}), int(sys.argv[1])
record = valid_record(n)
for i in range(60):
    store.save("m", "baseline", record, {{"wall_s": n}})
"""


def test_concurrent_saves_keep_record_and_timing_together(tmp_path):
    from generator.store import Store

    script = tmp_path / "saver.py"
    script.write_text(SAVER.format(root=str(ROOT), tests=str(ROOT / "tests"), results=str(tmp_path / "results")))
    procs = [subprocess.Popen([sys.executable, str(script), str(n)], cwd=ROOT) for n in (1, 2, 3)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    store = Store(tmp_path / "results")
    record = store.load("m", "baseline")
    assert store.timing("m", "baseline")["wall_s"] == record["metrics"].n_prompts
    assert not list((tmp_path / "results").rglob("*.tmp"))


def test_save_removes_only_temp_files_of_dead_processes(tmp_path):
    from generator.store import Store

    folder = tmp_path / "results" / "m"
    folder.mkdir(parents=True)
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        in_flight = folder / f".baseline.json.{alive.pid}.abc123.tmp"
        left_over = folder / f".baseline.json.{dead.pid}.def456.tmp"
        other = folder / f".exceptions.json.{dead.pid}.ghi789.tmp"  # another file's: not this save's
        for p in (in_flight, left_over, other):
            p.write_text("{")
        Store(tmp_path / "results").save("m", "baseline", valid_record(1), {"wall_s": 1.0})
        assert in_flight.exists() and not left_over.exists() and other.exists()
    finally:
        alive.kill()
        alive.wait()


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_written_files_follow_the_umask(tmp_path, mask, mode):
    from generator.files import write_atomic
    from generator.store import Store

    old = os.umask(mask)
    try:
        Store(tmp_path / "results").save("m", "baseline", valid_record(1), {"wall_s": 1.0})
        write_atomic(tmp_path / "docs" / "index.md", "# page\n")
    finally:
        os.umask(old)
    for path in (tmp_path / "results/m/baseline.json", tmp_path / "results/m/baseline.timing.json"):
        assert path.stat().st_mode & 0o777 == mode, path
    assert (tmp_path / "docs" / "index.md").stat().st_mode & 0o777 == mode


@pytest.mark.parametrize(
    "path, ignored",
    [
        ("results/organism/.baseline.json.4242.k3j_x9.tmp", True),
        ("results/organism/.baseline.timing.json.4242.k3j_x9.tmp", True),
        ("results/.lock", True),
        (".site.4242.building/index.html", True),
        (".site.4242.old/index.html", True),
        (".site.4242.kept/index.html", True),
        ("docs/.index.md.4242.k3j_x9.tmp", True),
        ("results/organism/baseline.json", False),
        ("results/organism/baseline.timing.json", False),
    ],
)
def test_gitignore_matches_the_real_temp_names(path, ignored):
    done = subprocess.run(["git", "check-ignore", "-q", "--no-index", path], cwd=ROOT)
    assert done.returncode == (0 if ignored else 1), path


# ---- determinism -------------------------------------------------------------------------


def test_stored_numbers_do_not_depend_on_the_thread_count(tmp_path):
    """Without the fixed thread count, this model's baseline differs between 1 and 2 threads
    in the last stored digit (checked when the fix was made); the tiny model's does not."""
    import torch

    model = save_random_gpt2(tmp_path / "model", n_layer=2, n_embd=128, n_head=4, n_positions=64)
    config = write_config(tmp_path, models=[str(model)], device="cpu", experiments={"baseline": {}})
    before = torch.get_num_threads()
    runs = []
    try:
        for threads in (2, 1):
            torch.set_num_threads(threads)
            result = cli("run", "--force", "--config", str(config))
            assert result.exit_code == 0, result.output
            assert torch.get_num_threads() == threads  # restored after the run
            runs.append(next((tmp_path / "results").glob("*/baseline.json")).read_bytes())
    finally:
        torch.set_num_threads(before)
    assert runs[0] == runs[1]


# ---- HTML in task data and titles is text --------------------------------------------------

XSS = "</script><script>alert(1)</script><img src=x onerror=alert(2)>"
RAW = ("<script>alert(1)", "<img src=x", "<b>is</b>", "\\&lt;")


def test_html_in_prompts_and_titles_is_shown_as_text(tmp_path, monkeypatch, tiny_gpt2_dir):
    from conftest import small_tasks

    import generator.tasks

    data_dir = tmp_path / "tasks"
    shutil.copytree(generator.tasks.DATA_DIR, data_dir)
    small_tasks(data_dir)  # every group and family, few prompts: what is checked is how they print
    pronoun = yaml.safe_load((data_dir / "pronoun.yaml").read_text())
    pronoun["description"] += " " + XSS
    pronoun["templates"] = [f"{XSS} " + t.replace("{name} is", "{name} <b>is</b>") for t in pronoun["templates"]]
    pronoun["example"] = f"{XSS} " + pronoun["example"].replace(" is", " <b>is</b>")
    (data_dir / "pronoun.yaml").write_text(yaml.safe_dump(pronoun))
    exceptions = yaml.safe_load((data_dir / "exceptions.yaml").read_text())
    exceptions["description"] += " " + XSS
    for family in exceptions["families"].values():
        family["description"] += " " + XSS
        for prompt in family["prompts"]:
            prompt["text"] = f"{XSS} {prompt['text']}"
    (data_dir / "exceptions.yaml").write_text(yaml.safe_dump(exceptions))
    monkeypatch.setattr(generator.tasks, "DATA_DIR", data_dir)

    config = write_config(
        tmp_path,
        title=f"Report {XSS}",
        example_prompt=f"{XSS} John is great.",
        models=[str(tiny_gpt2_dir)],
        device="cpu",
        experiments=EXPERIMENTS,
    )
    result = cli("build", "--config", str(config))
    assert result.exit_code == 0, result.output
    checked = 0
    site = tmp_path / "site"
    for path in [*site.rglob("*.html"), *site.rglob("*.xml"), site / "search" / "search_index.json"]:
        if path.is_file():  # (downloads/*.json are data: their prompts are raw text, as they should be)
            text = path.read_text(encoding="utf-8")
            checked += 1
            for raw in RAW:
                assert raw not in text, f"{raw!r} in {path}"
    assert checked > 5
    index = (tmp_path / "site" / "index.html").read_text()
    assert "Report &lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;" in index
    assert "&amp;lt;" not in index  # escaped once, not twice


# ---- prompts longer than the model's context -----------------------------------------------


def lengthen(data_dir: Path, file: str, words: int) -> None:
    """Put `words` words before every prompt of a task file (past the tiny model's 64 positions)."""
    data = yaml.safe_load((data_dir / file).read_text())
    prefix = "and " * words
    if "templates" in data:
        data["templates"] = [prefix + t for t in data["templates"]]
    else:
        for family in data["families"].values():
            for prompt in family["prompts"]:
                prompt["text"] = prefix + prompt["text"]
    (data_dir / file).write_text(yaml.safe_dump(data))


@pytest.mark.parametrize(
    "file, experiments",
    [
        ("pronoun.yaml", {"baseline": {}}),  # the clean and the corrupted prompts
        ("exceptions.yaml", {"baseline": {}, "exceptions": {}}),  # a task of prompts of many lengths
        ("exceptions.yaml", {"baseline": {}, "circuit": {}}),  # an extra task (circuit reads exceptions too)
    ],
)
def test_prompts_longer_than_the_context_fail_before_any_experiment(project, monkeypatch, file, experiments):
    """Unchecked, the tokenizer cut every prompt to its first 64 tokens: clean and corrupted
    became the same text and the pages stated what that wrongly implied."""
    import generator.tasks

    data_dir = project.parent / "tasks"
    shutil.copytree(generator.tasks.DATA_DIR, data_dir)
    monkeypatch.setattr(generator.tasks, "DATA_DIR", data_dir)
    lengthen(data_dir, file, 70)
    set_config(experiments=experiments)(project)
    before = snapshot(project)
    result = cli("run", "--force")
    task = file.removesuffix(".yaml")
    fails(result, f"task {task}: the prompt 'and and and", "tokens, longer than the context of", "(64 tokens, n_ctx)")
    assert "running" not in result.output
    assert snapshot(project) == before


def test_a_prompt_of_exactly_the_context_length_is_accepted(tiny_gpt2):
    """The limit is the model's n_ctx, counted untruncated: n_ctx tokens fit, n_ctx + 1 do not."""
    import dataclasses

    from generator import ReportError
    from generator.tasks import check_context, load_task

    spec = load_task("pronoun")
    base = len(tiny_gpt2.to_tokens(spec.prompts[0].text, truncate=False)[0])
    for extra, fits in ((tiny_gpt2.cfg.n_ctx - base, True), (tiny_gpt2.cfg.n_ctx - base + 1, False)):
        text = " and" * extra + spec.prompts[0].text
        assert len(tiny_gpt2.to_tokens(text, truncate=False)[0]) == tiny_gpt2.cfg.n_ctx + (0 if fits else 1)
        prompt = dataclasses.replace(spec.prompts[0], text=text, corrupted=text.replace(".", ";"))
        one = dataclasses.replace(spec, prompts=(prompt,), example="")
        if fits:
            check_context(one, tiny_gpt2)
        else:
            with pytest.raises(ReportError, match=f"is {tiny_gpt2.cfg.n_ctx + 1} tokens"):
                check_context(one, tiny_gpt2)


# ---- other model families: GPT-NeoX (parallel residual) and Llama (grouped-query attention) ----

# every experiment; patching with the key sweeps too (per key/value head under GQA), and without
# the slowest sweep (head_out_by_pos) the page does not need
PATCH_TARGETS = ["resid_pre", "attn_out", "mlp_out", "head_out", "head_v", "head_pattern", "head_k", "head_v_by_pos"]
ALL_EXPERIMENTS = {name: {} for name in ("baseline", "attribution", "attention", "exceptions")} | {
    "patching": {"targets": PATCH_TARGETS},
    "path_patching": {},
    "circuit": {},
}


@pytest.fixture(scope="module", params=["neox", "llama"])
def family_build(request, tmp_path_factory):
    """A whole `capcircuit build` of every experiment on a tiny random model of the family, on
    the task files cut to a few prompts."""
    from conftest import save_random_llama, save_random_neox, small_tasks

    import generator.tasks

    folder = tmp_path_factory.mktemp(request.param)
    model = (save_random_neox if request.param == "neox" else save_random_llama)(folder / "model")
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setattr(generator.tasks, "DATA_DIR", small_tasks(folder / "tasks"))
    write_config(folder, models=[str(model)], device="cpu", experiments=ALL_EXPERIMENTS)
    try:
        result = cli("build", "--config", str(folder / "report.yaml"))
    finally:
        monkeypatch.undo()
    return request.param, folder, model, result


def test_every_experiment_builds_on_other_families(family_build):
    family, folder, model, result = family_build
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output and "error:" not in result.output
    from generator.config import load_config
    from generator.render import pages

    config = load_config(folder / "report.yaml")
    for spec in pages(config):
        name = spec.page.file.removesuffix(".md")
        html = folder / "site" / ("index.html" if name == "index" else f"{name}/index.html")
        assert html.is_file(), html
    # the circuit engine computes GPT-2-style blocks only: skipped before it ran, the page says why
    assert any(line.split()[:1] == ["skipped"] and " circuit " in line for line in result.output.splitlines())
    circuit = (folder / "docs" / "circuit.md").read_text()
    record = json.loads(next((folder / "results").glob("*/circuit.json")).read_text())
    assert record["skipped"].strip() and not record["metrics"]  # circuit.unsupported's reason
    assert "was skipped" in circuit and "because" in circuit
    assert (
        json.loads(next((folder / "results").glob("*/patching.json")).read_text())["metrics"]["backend"]
        == "transformer_lens"
    )


def test_parallel_residual_lens_has_no_mid_stream(family_build):
    """GPT-NeoX's attention and MLP both read the block's input: there is no resid_mid, and the
    pieces still add up to the total attribution."""
    family, folder, model, result = family_build
    if family != "neox":
        return
    metrics = json.loads(next((folder / "results").glob("*/attribution.json")).read_text())["metrics"]
    assert metrics["lens"]["labels"] and not any("mid" in label for label in metrics["lens"]["labels"])
    assert len(metrics["lens"]["labels"]) == 2 + 1  # pre of each of 2 layers + final
    assert metrics["decomposition_error"] < 1e-4


def test_grouped_query_sweeps_are_per_query_head_as_transformer_lens_maps_them(family_build):
    """The k / v sweeps run per key/value head (TransformerLens's own sweeps) and are laid out
    per query head: heads 0 and 1 read key/value head 0, heads 2 and 3 key/value head 1. Path
    patching patches queries only and says why."""
    family, folder, model_dir, result = family_build
    if family != "llama":
        return
    import torch
    from conftest import load, small_tasks
    from transformer_lens import patching as tl_patching

    import generator.tasks
    from generator.metrics import logit_diff, mean_logit_diff_metric
    from generator.tasks import build, load_task

    metrics = json.loads(next((folder / "results").glob("*/patching.json")).read_text())["metrics"]
    model = load(model_dir)
    data_dir = small_tasks(folder / "tasks-check")
    original = generator.tasks.DATA_DIR
    generator.tasks.DATA_DIR = data_dir
    try:
        batch = build(load_task("pronoun"), model)
    finally:
        generator.tasks.DATA_DIR = original
    with torch.no_grad():
        clean_logits, cache = model.run_with_cache(batch.clean_tokens)
        corrupted = logit_diff(model(batch.corrupted_tokens), batch.answer_tokens).mean()
        clean = logit_diff(clean_logits, batch.answer_tokens).mean()
        for target, sweep in (
            ("head_v", "get_act_patch_attn_head_v_all_pos"),
            ("head_k", "get_act_patch_attn_head_k_all_pos"),
        ):
            per_kv = getattr(tl_patching, sweep)(
                model, batch.corrupted_tokens, cache, mean_logit_diff_metric(batch.answer_tokens)
            )
            assert per_kv.shape == (2, 2)  # n_layers x n_key_value_heads
            expected = (per_kv - corrupted) / (clean - corrupted)
            got = metrics["sweeps"][target]
            for layer in range(2):
                for head in range(4):
                    assert abs(got[layer][head] - float(expected[layer, head // 2])) < 1e-4, (target, layer, head)
    for row in metrics["top_heads"]:  # the table reads a query head's key/value head
        v = metrics["sweeps"]["head_v"][row["layer"]][row["head"]]
        assert abs(row["value"] - v) < 1e-6
    paths = json.loads(next((folder / "results").glob("*/path_patching.json")).read_text())["metrics"]
    assert paths["components"] == ["q", "mlp", "logits"] and paths["left_out"] == ["k", "v"]
    assert "Queries only" in (folder / "docs" / "path-patching.md").read_text()
    assert metrics["n_key_value_heads"] == 2
    assert "4 query heads share 2 key/value heads" in " ".join((folder / "docs" / "patching.md").read_text().split())


# ---- filesystem faults: one line naming the file, nothing half-written ----------------------


def full_disk_after(monkeypatch, n: int) -> None:
    """Every write after the first `n` temp files fails as on a full disk."""
    import errno

    import generator.files

    real, calls = generator.files._write_temp, []

    def write(path, text):
        calls.append(path)
        if len(calls) > n:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, text)

    monkeypatch.setattr(generator.files, "_write_temp", write)


def temp_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*.tmp")]


def test_full_disk_during_run_names_the_file_and_keeps_the_pair(project, record_path, monkeypatch):
    """The timing file's temp is written, the record's fails: neither file is replaced (the
    timing file, which differs run to run, was replaced alone before)."""
    full_disk_after(monkeypatch, 1)
    before = snapshot(project)
    fails(
        cli("run", "--force", "--only", "baseline"),
        f"cannot write {record_path}: No space left on device",
        "free some disk space",
    )
    assert snapshot(project) == before
    assert not temp_files(project)


def test_run_checks_free_space_before_running(project, monkeypatch):
    import shutil as shutil_module
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil_module, "disk_usage", lambda path: usage(10**9, 10**9 - 10**6, 10**6))
    before = snapshot(project)
    result = cli("run", "--force")
    fails(result, "cannot save results in results: 1.0 MB free on its disk", "free some space")
    assert "loading" not in result.output and "running" not in result.output
    assert snapshot(project) == before


def test_full_disk_during_render_leaves_docs_as_they_were(project, monkeypatch):
    import generator.files

    real = generator.files._write_temp
    for page in Path("docs").glob("*.md"):  # every page then differs from what render writes
        page.write_text(page.read_text() + "\nan older render\n")
    before = snapshot(project)
    full_disk_after(monkeypatch, 3)
    fails(cli("render"), "cannot write docs/", "No space left on device", "free some disk space")
    assert snapshot(project) == before  # all pages old, none new
    assert not temp_files(project)
    monkeypatch.setattr(generator.files, "_write_temp", real)  # the disk has room again
    assert cli("render").exit_code == 0
    assert all("an older render" not in page.read_text() for page in Path("docs").glob("*.md"))


def test_render_rewrites_only_changed_files(project):
    """mkdocs serve watches docs/: an unchanged page keeps its file (and mtime)."""
    stamps = {p: p.stat().st_mtime_ns for p in Path("docs").rglob("*") if p.is_file()}
    index = Path("docs/index.md")
    index.write_text(index.read_text() + "\nedited\n")
    result = cli("render")
    assert result.exit_code == 0 and "(1 files changed)" in result.output, result.output
    for path, stamp in stamps.items():
        if path != index:
            assert path.stat().st_mtime_ns == stamp, path


def busy_site(monkeypatch):
    """site/ behaves as a mount point: renaming it fails with EBUSY."""
    import errno
    import pathlib

    real = pathlib.Path.rename
    site = Path("site").resolve()

    def rename(self, target):
        if Path(self).resolve() == site:
            raise OSError(errno.EBUSY, "Device or resource busy", str(self))
        return real(self, target)

    monkeypatch.setattr(pathlib.Path, "rename", rename)


def test_site_that_is_a_mount_point_has_its_contents_swapped(project, templates, monkeypatch):
    add_line("baseline.md.j2", "A new sentence on the baseline page.")(templates)
    busy_site(monkeypatch)
    inode = Path("site").stat().st_ino
    result = cli("site")
    assert result.exit_code == 0, result.output
    assert Path("site").stat().st_ino == inode  # the same folder, new contents
    assert "A new sentence on the baseline page." in Path("site/baseline/index.html").read_text()
    assert not [p for p in Path("site").iterdir() if p.name.startswith(".capcircuit")]
    assert sorted(p.name for p in project.iterdir()) == sorted(snapshot(project)["entries"])
    assert not [p for p in project.iterdir() if p.name.startswith(".site.")]


def test_site_contents_swap_that_fails_names_the_fix_and_keeps_the_site(project, templates, monkeypatch):
    import errno

    import generator.site.swap

    add_line("baseline.md.j2", "A new sentence on the baseline page.")(templates)
    busy_site(monkeypatch)
    moved = []

    def move(source, target):
        if moved:
            raise OSError(errno.ENOSPC, "No space left on device", target)
        moved.append(target)
        return shutil.move(source, target)

    monkeypatch.setattr(generator.site.swap.shutil, "move", move, raising=True)
    before = {k: v for k, v in snapshot(project).items() if k.startswith("site/")}
    fails(cli("site"), "cannot replace site with the new build", "No space left on device", "free some disk space")
    assert {k: v for k, v in snapshot(project).items() if k.startswith("site/")} == before
    assert not [p for p in project.iterdir() if p.name.startswith(".site.")]


# ---- litter of killed builds ----------------------------------------------------------------


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_folders_of_a_killed_build_are_removed_by_the_next(project):
    pid = dead_pid()
    for name in (f".site.{pid}.building", f".site.{pid}.old", f"site/.capcircuit.{pid}.old"):
        Path(name, "index.html").parent.mkdir(parents=True)
        Path(name, "index.html").write_text("left by a killed build")
    Path(f"docs/.index.md.{pid}.k3j_x9.tmp").write_text("half a page")
    Path(f"docs/downloads/.x.json.{pid}.abc.tmp").parent.mkdir(exist_ok=True)
    Path(f"docs/downloads/.x.json.{pid}.abc.tmp").write_text("half")
    result = cli("site")
    assert result.exit_code == 0, result.output
    assert not [p for p in project.iterdir() if p.name.startswith(".site.")]
    assert not list(Path("site").glob(".capcircuit.*"))
    assert not temp_files(Path("docs"))


def test_a_swap_killed_between_its_renames_is_finished_first(project, templates):
    """Killed after site/ became .site.PID.old and before the new build became site/: the next
    run restores site/ before anything else, so even a failing build leaves the last good site."""
    before = {k: v for k, v in snapshot(project).items() if k.startswith("site/")}
    Path("site").rename(f".site.{dead_pid()}.old")
    add_line("baseline.md.j2", "[a link to nowhere](nowhere.md)")(templates)
    result = cli("site")
    fails(result, "mkdocs build --strict failed", "nowhere.md")
    assert "restored site from .site." in result.output
    assert {k: v for k, v in snapshot(project).items() if k.startswith("site/")} == before
    assert not [p for p in project.iterdir() if p.name.startswith(".site.")]


def test_a_plain_mkdocs_build_killed_mid_build_is_undone_first(project, templates):
    """Killed while mkdocs wrote into site/: the good site waits in .site.PID.kept and wins over
    the half-built site/, even when the next build fails."""
    before = {k: v for k, v in snapshot(project).items() if k.startswith("site/")}
    Path("site").rename(f".site.{dead_pid()}.kept")
    Path("site").mkdir()
    Path("site/index.html").write_text("half a build")
    add_line("baseline.md.j2", "[a link to nowhere](nowhere.md)")(templates)
    fails(cli("site"), "mkdocs build --strict failed")
    assert {k: v for k, v in snapshot(project).items() if k.startswith("site/")} == before
    assert not [p for p in project.iterdir() if p.name.startswith(".site.")]


def test_a_running_builds_folders_are_left_alone(project):
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        staging = Path(f".site.{alive.pid}.building")
        staging.mkdir()
        assert cli("site").exit_code == 0
        assert staging.is_dir()
    finally:
        alive.kill()
        alive.wait()


# ---- plain mkdocs build keeps the last good site -------------------------------------------


def plain_mkdocs(project: Path, *args) -> subprocess.CompletedProcess:
    """`mkdocs build` in the project, with a mkdocs.yml beside its report.yaml (the hook reads it)."""
    config = (
        (ROOT / "mkdocs.yml").read_text().replace("generator/mkdocs_hooks.py", str(ROOT / "generator/mkdocs_hooks.py"))
    )
    (project / "mkdocs.yml").write_text(config)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", *args], cwd=project, env=env, capture_output=True, text=True
    )


def test_plain_mkdocs_build_keeps_the_last_good_site_when_strict_fails(project, templates):
    good = plain_mkdocs(project)
    assert good.returncode == 0, good.stderr
    before = {k: v for k, v in snapshot(project).items() if k.startswith("site/")}
    assert any(k.endswith("baseline/index.html") for k in before)
    add_line("baseline.md.j2", "[a link to nowhere](nowhere.md)")(templates)
    failed = plain_mkdocs(project)
    assert failed.returncode == 1 and "nowhere.md" in failed.stderr
    assert {k: v for k, v in snapshot(project).items() if k.startswith("site/")} == before
    assert not [p for p in project.iterdir() if p.name.startswith(".site.")]
    (templates / "baseline.md.j2").write_text((ROOT / "templates/baseline.md.j2").read_text() + "A new line.\n")
    again = plain_mkdocs(project)
    assert again.returncode == 0, again.stderr
    assert "A new line." in Path("site/baseline/index.html").read_text()
    assert not [p for p in project.iterdir() if p.name.startswith(".site.")]


# ---- options and configs named in one line ---------------------------------------------------


def test_serve_port_out_of_range_names_dev_addr(project):
    fails(cli("serve", "--dev-addr", "127.0.0.1:99999"), "--dev-addr '127.0.0.1:99999': the port must be 1 to 65535")


def test_invalid_mkdocs_yml_is_one_line_with_the_line(project):
    Path("mkdocs.yml").write_text((ROOT / "mkdocs.yml").read_text() + "nav:\n  - a: [\n")
    set_config(paths={"mkdocs": "mkdocs.yml", "templates": str(ROOT / "templates")})(project)
    before = snapshot(project)
    for command in ("site", "serve"):
        fails(cli(command), "mkdocs config mkdocs.yml is not valid YAML (line", "expected the node content")
    assert snapshot(project) == before


def test_organism_train_checks_out_before_training(project, monkeypatch):
    def train(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr("generator.organism.train.train", train, raising=False)
    Path("a-file").write_text("not a folder")
    fails(
        cli("organism", "train", "--model", "organism", "--out", "a-file/model"),
        "cannot save the trained model in a-file/model",
        "pass --out",
    )


def test_circuit_runs_on_gpt2_style_models(tiny_gpt2, organism):
    """`circuit` is skipped only where its engine cannot compute the blocks, never on GPT-2's."""
    from generator.experiments.circuit import unsupported

    assert unsupported(tiny_gpt2) is None
    assert unsupported(organism) is None


def test_an_oserror_anywhere_is_one_line_naming_the_file(project, monkeypatch):
    """A write this code does not wrap itself (here: copying the JS bundles) is still the disk's
    fault, named with its file, not "a bug"."""
    import errno

    import generator.site.assets

    def copy(source, target, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(target))

    shutil.rmtree("docs/assets")  # copied again by the next build
    monkeypatch.setattr(generator.site.assets.shutil, "copyfile", copy)
    result = cli("site")
    error = fails(result, "error: docs/assets/", ": No space left on device", "check the disk")
    assert "a bug" not in error
