"""The store's validation (generator/store.py: read_json, record_problem, timing_problem,
non_finite, outdated, stale_reasons, dumps, digest) on records built here from one committed
record, each problem's whole message checked: what `status` shows must name what is wrong and
where. No model, no build: the file runs in a second, so `make mutation` runs it per mutant.
The store through the CLI is tested in test_store.py and test_errors.py."""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
from errno import EISDIR, ENOENT

import pytest
from conftest import ROOT

from generator import store
from generator.schemas import SCHEMA_VERSION
from generator.store import StoreError

GOOD = json.loads((ROOT / "results" / "organism" / "baseline.json").read_text())


def good():
    return copy.deepcopy(GOOD)


def rekeyed(record):
    record["key"] = store.digest(record["key_parts"])
    return record


def test_the_committed_record_has_no_problem():
    assert store.record_problem(good(), "baseline") is None


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda r: [1, 2],
            "holds a JSON array, not a result record (an object with key, key_parts, provenance, metrics)",
        ),
        (
            lambda r: "x",
            "holds a JSON string, not a result record (an object with key, key_parts, provenance, metrics)",
        ),
        (lambda r: None, "holds a JSON null, not a result record (an object with key, key_parts, provenance, metrics)"),
        (
            lambda r: True,
            "holds a JSON boolean, not a result record (an object with key, key_parts, provenance, metrics)",
        ),
        (
            lambda r: 2.5,
            "holds a JSON number, not a result record (an object with key, key_parts, provenance, metrics)",
        ),
        (lambda r: {k: v for k, v in r.items() if k != "key"}, "not a result record: no key"),
        (
            lambda r: {k: v for k, v in r.items() if k not in ("provenance", "metrics")},
            "not a result record: no provenance, metrics",
        ),
        (lambda r: {**r, "zeta": 1, "alpha": 2}, "not a result record: unexpected field alpha, zeta"),
        (lambda r: {**r, "key": 5}, "key is a JSON number, not a string"),
        (lambda r: {**r, "key": {}}, "key is a JSON object, not a string"),
        (lambda r: {**r, "key_parts": []}, "key_parts is a JSON array, not an object"),
        (lambda r: {**r, "provenance": "x"}, "provenance is a JSON string, not an object"),
        (lambda r: {**r, "metrics": None}, "metrics is a JSON null, not an object"),
        (
            lambda r: {**r, "provenance": {k: v for k, v in r["provenance"].items() if k not in ("seed", "dtype")}},
            "provenance has no seed, dtype",
        ),
        (
            lambda r: {**r, "metrics": {**r["metrics"], "mean_logit_diff": math.inf}},
            "non-finite number inf at metrics.mean_logit_diff",
        ),
        (
            lambda r: {**r, "metrics": {**r["metrics"], "top": [1.0, math.nan]}},
            "non-finite number nan at metrics.top[1]",
        ),
        (lambda r: {**r, "key": "0" * 16}, "its key does not match its key_parts (was it edited by hand?)"),
        (lambda r: {**r, "key_parts": {**r["key_parts"], "x": {1, 2}}}, "key_parts cannot be hashed"),
        (
            lambda r: rekeyed({**r, "skipped": "no GPU"}),
            "a skipped record holds a reason (skipped: text) and no metrics",
        ),
        (
            lambda r: rekeyed({**r, "skipped": " ", "metrics": {}}),
            "a skipped record holds a reason (skipped: text) and no metrics",
        ),
        (
            lambda r: rekeyed({**r, "skipped": 3, "metrics": {}}),
            "a skipped record holds a reason (skipped: text) and no metrics",
        ),
        (lambda r: {**r, "metrics": {**r["metrics"], "extra_number": 1.0}}, "metrics.extra_number: unknown field"),
    ],
)
def test_each_record_problem_is_named(edit, message):
    problem = store.record_problem(edit(good()), "baseline")
    assert problem is not None and problem.startswith(message), problem
    if "unknown field" not in message:
        assert problem == message


def test_a_skipped_record_with_a_reason_and_no_metrics_is_fine():
    assert store.record_problem(rekeyed({**good(), "skipped": "needs a GPU", "metrics": {}}), "baseline") is None
    tuples = good()  # metrics are validated as JSON reads them back (a tuple is a list)
    tuples["metrics"]["per_prompt"] = tuple(tuples["metrics"]["per_prompt"])
    assert store.record_problem(tuples, "baseline") is None


@pytest.mark.parametrize(
    ("timing", "message"),
    [
        ({"wall_s": 1.5}, None),
        ({"wall_s": 0, "parts_s": {"a": 0.5, "b": 2}}, None),
        ([1], "holds a JSON array, not a timing object ({'wall_s': seconds})"),
        ({"parts_s": {}}, "not a timing object: no wall_s"),
        ({"wall_s": 1, "when": 2, "at": 3}, "not a timing object: unexpected at, when"),
        ({"wall_s": 1, "parts_s": [1]}, "parts_s is not an object of seconds"),
        ({"wall_s": -0.5}, "wall_s is -0.5, not a number of seconds"),
        ({"wall_s": True}, "wall_s is True, not a number of seconds"),
        ({"wall_s": "3"}, "wall_s is '3', not a number of seconds"),
        ({"wall_s": math.inf}, "wall_s is inf, not a number of seconds"),
        ({"wall_s": 1, "parts_s": {"a": 1, "b": math.nan}}, "parts_s.b is nan, not a number of seconds"),
        ({"wall_s": 1, "parts_s": {"a": -1, "b": -2}}, "parts_s.a is -1, not a number of seconds"),
    ],
)
def test_each_timing_problem_is_named(timing, message):
    assert store.timing_problem(timing) == message


def test_non_finite_finds_the_first_in_reading_order():
    tree = {"a": [1.0, {"b": 2.0, "c": math.nan}], "d": -math.inf}
    assert store.non_finite(tree) == ("a[1].c", "nan")
    assert store.non_finite({"d": -math.inf, "a": [math.nan]}) == ("d", "-inf")
    assert store.non_finite([[0.0], [1.0, math.inf]]) == ("[1][1]", "inf")
    assert store.non_finite(math.nan) == ("top level", "nan")
    assert store.non_finite({"x": [1, 2.5, "nan", None, True]}) is None
    assert store.non_finite({"x": {"y": math.nan}}, "metrics") == ("metrics.x.y", "nan")


def test_outdated_is_a_record_of_another_schema():
    assert not store.outdated(good())
    assert store.outdated({"key_parts": {"schema": SCHEMA_VERSION - 1}})
    assert store.outdated({"key_parts": {}}) == (SCHEMA_VERSION != 1)  # schema 1 wrote none
    assert not store.outdated({"key_parts": []}) and not store.outdated([]) and not store.outdated({})


def test_a_record_without_a_schema_is_of_schema_1(monkeypatch):
    """Schema 1 wrote no `schema` key part: under a capcircuit that reads schema 1 such a record
    is current, and one that says 2 is not."""
    monkeypatch.setattr(store.schemas, "SCHEMA_VERSION", 1)
    assert not store.outdated({"key_parts": {}}) and not store.outdated({"key_parts": {"schema": 1}})
    assert store.outdated({"key_parts": {"schema": 2}})


def test_stale_reasons_name_every_part_that_changed():
    parts = {"a": 1, "b": {"x": 1}, "c": "same"}
    assert store.stale_reasons(None, parts) == ["no stored result"]
    assert store.stale_reasons({"key_parts": parts}, parts) == []
    old = {"key_parts": {"a": 2, "b": {"x": 2}, "c": "same", "gone": 1, "also": 2}}
    assert store.stale_reasons(old, parts) == ["a changed", "b changed", "also removed", "gone removed"]
    assert store.stale_reasons({}, {"a": None}) == []  # a part stored as nothing: unchanged
    assert store.stale_reasons({"key_parts": {}}, {"b": 1, "a": 1}) == ["a changed", "b changed"]


def test_dumps_and_digest_are_deterministic_json():
    data = {"b": [1, 2.5], "a": {"é": None}}
    assert store.dumps(data) == '{\n "a": {\n  "é": null\n },\n "b": [\n  1,\n  2.5\n ]\n}\n'
    assert json.loads(store.dumps(data)) == data
    with pytest.raises(ValueError):
        store.dumps({"x": math.nan})
    assert store.digest(data) == hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
    assert store.digest({"a": {"é": None}, "b": [1, 2.5]}) == store.digest(data)
    assert store.digest({"b": [2.5, 1], "a": {"é": None}}) != store.digest(data)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty file"),
        (b"  \n", "empty file"),
        (b'{"a": "\xff"}', "not UTF-8 text (byte 0xff at byte 7)"),
        (b'{"a": [1, 2', "truncated JSON at byte 11 (the file ends before its JSON does)"),
        (b'{"a": "text', "truncated JSON at byte 11 (the file ends before its JSON does)"),
        (b'{"a": 1,\n "b": x}', "invalid JSON at byte 15 (line 2, column 7): Expecting value"),
        (b'{"\xc3\xa9": 1 2}', "invalid JSON at byte 9 (line 1, column 9): Expecting ',' delimiter"),
        (b'{"a": 1} trailing', "truncated JSON at byte 17 (the file ends before its JSON does)"),
        # a file ending in a newline, as every stored one does: the error is still where it is
        (b'{"a": 1,\n "b": x}\n', "invalid JSON at byte 15 (line 2, column 7): Expecting value"),
        (b"[1 2]", "invalid JSON at byte 3 (line 1, column 4): Expecting ',' delimiter"),
        # ends in a bracket, but the error is at the very end (more was to come) or in a string
        # left open (its closing quote never came): both cut short
        (b'{"a": [1, 2]', "truncated JSON at byte 12 (the file ends before its JSON does)"),
        (b'{"a": "b}', "truncated JSON at byte 9 (the file ends before its JSON does)"),
        (b"[" * 100000 + b"]" * 100000, "JSON nested too deeply"),
    ],
)
def test_read_json_names_how_a_file_is_broken(tmp_path, content, message):
    path = tmp_path / "r.json"
    path.write_bytes(content)
    if message.startswith("invalid"):  # the byte offset of the offending character, not its column
        assert f"at byte {content.index(b'x' if b'x' in content else b'2')} " in message
    with pytest.raises(StoreError) as e:
        store.read_json(path, "re-run it")
    assert (e.value.path, e.value.problem, e.value.fix) == (path, message, "re-run it")


def test_read_json_reads_good_json_and_names_an_unreadable_file(tmp_path):
    path = tmp_path / "r.json"
    path.write_text('{"a": [1, NaN]}')
    data = store.read_json(path, "fix")
    assert data["a"][0] == 1 and math.isnan(data["a"][1])
    for missing, errno in ((tmp_path / "missing.json", ENOENT), (tmp_path, EISDIR)):
        with pytest.raises(StoreError) as e:
            store.read_json(missing, "fix")
        assert (e.value.problem, e.value.fix) == (f"cannot be read ({os.strerror(errno)})", "check its permissions")
