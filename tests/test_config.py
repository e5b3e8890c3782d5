"""The report config and model names: a bad field names the field, the value and what is
allowed; an unknown or unreachable model is one sentence saying what is accepted."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from click.testing import CliRunner
from conftest import ROOT, write_config

from generator.cli import main


def cli(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("models: [organism\n", "not valid YAML"),
        ("modles: [organism]\n", "modles: unknown field (allowed: title, models"),
        (
            "device: auto\nexperiments: {baseline: {top_kk: 3}}\n",
            "experiments.baseline.top_kk: unknown parameter (allowed: top_k, probes",
        ),
        ("experiments: {baseline: {top_k: 0}}\n", "experiments.baseline.top_k"),
        ("experiments: {patching: {}}\n", "experiments: `baseline` is required"),
        ("experiments: {baseline: {}, nonsense: {}}\n", "experiments.nonsense: unknown experiment (allowed: baseline"),
        ("dtype: float8\n", "dtype"),
    ],
)
def test_bad_config_names_the_field(tmp_path, text, expected):
    config = tmp_path / "report.yaml"
    config.write_text(text)
    result = cli("status", "--config", str(config))
    assert result.exit_code == 1
    assert expected in result.output
    assert "Traceback" not in result.output


def test_unknown_model_lists_accepted_forms(tmp_path):
    result = cli("status", "--config", str(write_config(tmp_path)), "--models", "gpt-seven")
    assert result.exit_code == 1
    assert "unknown model 'gpt-seven'" in result.output and "organism" in result.output


def test_hub_unreachable_is_one_sentence(tmp_path):
    """gpt2 is not in this (empty) cache and the hub is off: one sentence, non-zero exit."""
    config = write_config(tmp_path)
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "generator", "run", "--config", str(config), "--models", "gpt2-small"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1
    assert "cannot load model 'gpt2-small'" in done.stderr and "--models organism" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "results").exists() or not list((tmp_path / "results").rglob("*.json"))
