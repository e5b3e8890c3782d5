"""Render: pages from the store alone. A figure's look is in no result's key (changing a title
re-renders, never re-runs); an experiment skipped for a model says why on its page."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import yaml
from conftest import ROOT, build_report, repo_config

from generator.experiments import EXPERIMENTS
from generator.fingerprint import source_modules


def test_no_experiment_key_depends_on_a_figure_module():
    for name, spec in EXPERIMENTS.items():
        modules = source_modules(spec.module)
        assert spec.module in modules
        assert not [m for m in modules if m.startswith("generator.figures")], name
        assert "generator.render" not in modules and "generator.site" not in modules, name


def copy_project(dest):
    """The repository's tracked files (code, templates, committed results), as a fresh clone has them."""
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for f in files:
        (dest / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, dest / f)
    return dest


def capcircuit(folder, *args):
    env = {**os.environ, "PYTHONPATH": str(folder)}
    return subprocess.run(
        [sys.executable, "-m", "generator", *args], cwd=folder, env=env, capture_output=True, text=True, timeout=300
    )


def test_changing_a_figure_title_rerenders_without_rerunning(tmp_path):
    project = copy_project(tmp_path / "p")
    module = project / "generator" / "figures" / "baseline.py"
    old = "Logit difference (capital − lowercase) per prompt"
    new = "Per-prompt logit difference, retitled by a test"
    assert old in module.read_text()
    module.write_text(module.read_text().replace(old, new))
    status = capcircuit(project, "status")
    assert status.returncode == 0, status.stderr
    rows = [line for line in status.stdout.splitlines() if line.strip()]
    assert rows and all("fresh" in line for line in rows), status.stdout
    # the site of the retitled figure's experiment alone (the others' pages would not change)
    config = yaml.safe_load((project / "report.yaml").read_text())
    config["experiments"] = {"baseline": config["experiments"]["baseline"]}
    (project / "report.yaml").write_text(yaml.safe_dump(config))
    site = capcircuit(project, "site")
    assert site.returncode == 0, site.stderr
    page = (project / "site" / "baseline" / "index.html").read_text()
    assert new in page and old not in page


def test_a_skipped_experiment_says_why_on_its_page(tmp_path):
    """A record the pipeline stored as skipped (the experiment cannot run on that model) is
    published as its reason, and the pages of the other experiments are unaffected."""
    import json

    from generator.store import Store

    results = tmp_path / "results"
    shutil.copytree(ROOT / "results", results)
    store = Store(results)
    path = store.path("organism", "path_patching")
    record = json.loads(path.read_text())
    record.update(metrics={}, skipped="the engine has no block for this family (a test's reason)")
    path.write_text(json.dumps(record))
    # the skipped experiment, what it reads, one page beside it and baseline (every report has
    # it): the other pages need not be built
    repo = repo_config()["experiments"]
    experiments = {name: repo[name] for name in ("baseline", "patching", "path_patching", "circuit")}
    config = build_report(tmp_path / "site", results=results, allow_stale=False, experiments=experiments)
    page = (config.path("site") / "path-patching" / "index.html").read_text()
    assert "was not run on" in page and "a test&#39;s reason" in page or "a test's reason" in page
    assert "organism-attn-only-1l" in page  # it ran there
    circuit = (config.path("site") / "circuit" / "index.html").read_text()
    assert "was not run on" not in circuit


def test_every_experiment_page_shows_every_model_in_its_own_tab(published_site):
    """Each experiment page holds a tab per configured model, and each tab states that model's
    own numbers (not the first model's)."""
    from generator.render import load_results
    from generator.render.jinja import ALL_MODELS

    config = published_site
    results = load_results(config, log=lambda m: None)
    models = list(results)
    assert len(models) >= 2
    docs = config.path("docs")
    for name, spec in EXPERIMENTS.items():
        for page in spec.pages:
            text = (docs / page.file).read_text()
            assert ALL_MODELS not in text
            if not page.per_model:
                continue
            starts = [text.index(f'=== "{m}"') for m in models]
            assert starts == sorted(starts), page.file  # one tab per model, in the config's order
            if name == "path_patching":
                for m, start, end in zip(models, starts, starts[1:] + [len(text)]):
                    tab = text[start:end]
                    assert f"({results[m]['path_patching']['metrics'].corrupted_logit_diff:.2f})" in tab, m


# ---- how numbers and route sentences print ---------------------------------------------------

INTERVALS = [
    (0.986, 0.9851, 0.9874),  # "0.986 (0.99–0.99)" at 2 digits
    (0.986, 0.986, 0.9874),  # a bound equal to the estimate
    (0.5, 0.1, 0.9),
    (0.99996, 0.99994, 1.0),
    (-0.0007, -0.003, 0.0012),
    (0.3, 0.31, 0.4),  # a percentile interval need not contain its estimate: never shown inside
    (12.345678, 12.345677, 12.345679),
    (0.005, 0.004999, 0.005001),
    (1.0, 1.0, 1.0),
]


def test_interval_prints_the_estimate_where_it_lies():
    import re

    from generator.render.text import interval, interval_only

    for est, low, high in INTERVALS:
        text = interval(est, [low, high])
        m = re.fullmatch(r"(-?[\d.]+) \((-?[\d.]+)(?:–| to )(-?[\d.]+)\)", text)
        assert m, text
        e, lo, hi = (float(x) for x in m.groups())
        for a, b, sa, sb in ((low, est, lo, e), (est, high, e, hi), (low, high, lo, hi)):
            assert (a < b) == (sa < sb) and (a == b) == (sa == sb), (est, low, high, text)
        assert len(m.group(1).split(".")[1]) >= 2  # at least the default digits
        assert interval_only([low, high], est) == text[text.index("(") :]
    assert interval(0.5, [0.1, 0.9]) == "0.50 (0.10–0.90)"  # no more digits than needed
    assert interval(0.986, [0.9851, 0.9874]) == "0.986 (0.985–0.987)"


def test_route_sentence_names_each_receiver_with_its_share():
    from generator.words import receiver_kinds, route_phrase

    route = [
        {"receiver": {"kind": "mlp", "layer": 0}, "effect": 0.347, "share": 0.683},
        {"receiver": {"kind": "logits"}, "effect": 0.0253, "share": 0.0497},
        {"receiver": {"kind": "v", "layer": 2, "head": 1}, "effect": -0.012, "share": -0.024},
    ]
    assert route_phrase(route) == (
        "through MLP0 (0.347, 68% of it), straight to the logits (0.0253, 5%) and "
        "through L2H1's value input (-0.012, -2%)"
    )
    assert receiver_kinds(["q", "k", "v", "mlp", "logits"]) == (
        "later heads' query, key and value inputs, the MLPs' inputs and the logits directly"
    )
    assert receiver_kinds(["mlp"]) == "the MLPs' inputs"
