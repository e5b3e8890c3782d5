"""Publishing under other package versions (issue 25): a result computed under other versions of
torch, TransformerLens or transformers is stale for `run` but publishable, and so is a result
that reads it (its key holds the upstream key without the upstream's versions); a real change
upstream (its parameters) still blocks a downstream page. The version lookup is patched to
simulate a machine with newer packages."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest
from click.testing import CliRunner
from conftest import repo_config, write_config

import generator.versions
from generator import ReportError
from generator.cli import main
from generator.config import load_config
from generator.models import slug
from generator.render import as_text
from generator.store import Store

NEWER = {"torch": "99.1.0", "transformer_lens": "99.2.0", "transformers": "99.3.0"}
DOWNSTREAM = {"attention": ("attribution", "patching"), "path_patching": ("patching",)}


def report(tmp_path, store, **experiments):
    """A report config in tmp_path over a copy of `store`, with the repository's experiments
    (some overridden)."""
    shutil.copytree(store, tmp_path / "results")
    repo = repo_config()
    fields = {"models": repo["models"], "experiments": {**repo["experiments"], **experiments}, "device": "cpu"}
    return load_config(write_config(tmp_path, **fields))


@pytest.fixture
def newer_packages(monkeypatch):
    """This machine reports other versions of the packages in every key."""
    real = generator.versions.package_version
    monkeypatch.setattr(generator.versions, "package_version", lambda name: NEWER.get(name) or real(name))


def status(config) -> dict[tuple[str, str], str]:
    out = CliRunner().invoke(main, ["status", "--config", str(config.root / "report.yaml")], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    rows = {}
    for line in out.output.splitlines():
        model, experiment, state = line.split(None, 2)
        rows[model, experiment] = state
    return rows


def naive_input_key(record: dict) -> str:
    """An upstream record's key parts without versions, hashed as the store hashes."""
    parts = {k: v for k, v in record["key_parts"].items() if k != "versions"}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def test_downstream_keys_hold_upstream_keys_without_versions(fresh_results):
    config = repo_config()
    checked = 0
    for model in config["models"]:
        store = Store(fresh_results)
        for experiment, upstreams in DOWNSTREAM.items():
            inputs = store.load(slug(model), experiment)["key_parts"]["inputs"]
            assert sorted(inputs) == sorted(upstreams)
            for upstream in upstreams:
                record = store.load(slug(model), upstream)
                assert inputs[upstream] == naive_input_key(record)
                assert inputs[upstream] != record["key"]  # the full key holds the versions
                checked += 1
    assert checked == 3 * len(config["models"])


def test_site_publishes_results_computed_under_other_versions(tmp_path, fresh_results, newer_packages):
    from generator.pipeline import plan
    from generator.site import build_site

    config = report(tmp_path, fresh_results)
    rows = status(config)
    assert len(rows) == len(config.models) * len(config.experiments)
    assert set(rows.values()) == {"stale: versions changed"}  # no "inputs changed" downstream
    # `run` would re-run every result under the new versions, downstream ones too
    assert all(p.reasons == ["versions changed"] for p in plan(config))
    # render (CLI) and site (library, through the mkdocs hook) both publish
    out = CliRunner().invoke(main, ["render", "--config", str(config.root / "report.yaml")], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    assert "computed under other package versions" in out.output
    build_site(config, log=lambda message: None)
    assert (config.path("site") / "path-patching" / "index.html").exists()
    # the reproducibility page: stored versions per model, and the rendering machine's
    page = (config.path("docs") / "reproducibility.md").read_text()
    stored = Store(config.path("results")).load(slug(config.models[0]), "baseline")["provenance"]["versions"]
    for package, newer in NEWER.items():
        shown = as_text(package)  # transformer\_lens: markdown's _ escaped
        row = next(line for line in page.splitlines() if line.startswith(f"| {shown} |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells == [shown, *([stored[package]] * len(config.models)), newer], row
    assert "rendered this site had other versions of torch, transformer\\_lens, transformers\n" in page


def test_reproducibility_page_says_when_versions_match(tmp_path, fresh_results):
    config = report(tmp_path, fresh_results)
    from generator.render import load_results, render_pages

    text = render_pages(config, load_results(config, log=lambda m: None))["reproducibility.md"]
    assert "rendered with the versions its results were computed with" in text
    assert "had other versions" not in text


@pytest.mark.parametrize("newer", [False, True])
def test_upstream_parameter_change_still_blocks_publishing(tmp_path, fresh_results, monkeypatch, newer):
    from generator.site import build_site

    if newer:
        real = generator.versions.package_version
        monkeypatch.setattr(generator.versions, "package_version", lambda name: NEWER.get(name) or real(name))
    top_heads = repo_config()["experiments"]["patching"].get("top_heads", 10)
    config = report(tmp_path, fresh_results, patching={"top_heads": top_heads + 1})
    rows = status(config)
    also = "; versions changed" if newer else ""
    for model in config.models:
        assert rows[model, "patching"] == f"stale: params changed{also}"
        assert rows[model, "path_patching"] == f"stale: inputs changed{also}"
        assert rows[model, "attention"] == f"stale: inputs changed{also}"
        assert rows[model, "baseline"] == ("stale: versions changed" if newer else "fresh")
    with pytest.raises(ReportError) as error:
        build_site(config, log=lambda message: None)
    message = str(error.value)
    assert message.startswith("stale results:")
    for model in config.models:
        for experiment in ("patching", "path_patching", "attention"):
            assert f"{slug(model)}/{experiment}.json" in message
        assert f"{slug(model)}/baseline.json" not in message
    assert not config.path("site").exists()
