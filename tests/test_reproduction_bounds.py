"""The reproduction check's tolerances are symmetric and tested at both sides: every judged
value, moved just inside its tolerance up or down, still reproduces; moved just outside, up or
down, fails and is named. And its comparisons are ordered: the notebook's prompts in another
order do not reproduce, nor do its top tokens in another order."""

from __future__ import annotations

import copy

import pytest
from test_reproduction import REFERENCE, compare, metrics_from_reference

from generator import reproduction
from generator.schemas import validate

# (where in the baseline metrics, tolerance, the row's name)
VALUES = [
    ("mean", reproduction.TOL_LOGIT_DIFF, "mean logit difference"),
    ("corrupted", reproduction.TOL_CORRUPTED, "mean logit difference after “;”"),
    ("single", reproduction.TOL_LOGIT_DIFF, f"logit difference of “{REFERENCE['single_prompt_checks'][0]['prompt']}”"),
    ("prompt", reproduction.TOL_LOGIT_DIFF, "every per-prompt logit difference"),
    ("top_logit", reproduction.TOL_TOP_LOGIT, "top-10 next tokens"),
    ("top_prob", reproduction.TOL_TOP_PROB, "top-10 next tokens"),
]


def moved(where: str, by: float) -> dict:
    baseline, attribution = metrics_from_reference()
    if where == "mean":
        baseline["mean_logit_diff"] += by
    elif where == "corrupted":
        baseline["mean_logit_diff_corrupted"] += by
    elif where == "single":
        baseline["single_prompt"]["logit_diff"] += by
    elif where == "prompt":
        baseline["per_prompt"][57]["clean"] += by
    elif where == "top_logit":
        baseline["probes"][0]["top"][3]["logit"] += by
    else:
        baseline["probes"][0]["top"][3]["prob"] += by
    return compare(baseline, attribution, judge=True)


@pytest.mark.parametrize(("where", "tol", "name"), VALUES)
@pytest.mark.parametrize("sign", [1, -1])
def test_each_tolerance_holds_on_both_sides(where, tol, name, sign):
    inside = moved(where, sign * tol * 0.9)
    assert inside["reproduces"], (where, sign, inside["failed"])
    outside = moved(where, sign * tol * 1.1)
    assert not outside["reproduces"], (where, sign)
    assert [f for f in outside["failed"] if f.startswith(name)] == outside["failed"] != [], outside["failed"]


def test_prompts_in_another_order_do_not_reproduce():
    baseline, attribution = metrics_from_reference()
    rows = baseline["per_prompt"]
    rows[0], rows[1] = rows[1], rows[0]  # each prompt keeps its own value: only the order differs
    check = compare(baseline, attribution, judge=True)
    assert check["failed"] == ["per-prompt logit differences"]


def test_top_tokens_in_another_order_do_not_reproduce():
    """Ranks 4 and 5 swapped, logits and all: the same set of tokens, in another order."""
    baseline, attribution = metrics_from_reference()
    top = baseline["probes"][0]["top"]
    assert abs(top[4]["logit"] - top[5]["logit"]) > 0.005  # not tied in the notebook's print
    top[4], top[5] = top[5], top[4]
    assert compare(baseline, attribution, judge=True)["failed"] == ["top-10 next tokens after “.” alone (test_prompt)"]


def test_only_tokens_printed_with_equal_logits_may_swap():
    """Two tokens the notebook printed 0.02 apart (ranks 4 and 5) exchanged with the logits left
    in place: every logit is in tolerance, but the order of the tokens is not the notebook's, so
    both ranks are named. Two it printed equal (ranks 8 and 9, 9.24) may swap."""
    baseline, attribution = metrics_from_reference()
    ref = REFERENCE["test_prompt_period"]["top_tokens"]
    assert 0.005 < ref[4]["logit"] - ref[5]["logit"] < 0.05 and ref[8]["logit"] == ref[9]["logit"]
    top = baseline["probes"][0]["top"]
    top[4]["token"], top[5]["token"] = top[5]["token"], top[4]["token"]
    row = next(r for r in compare(baseline, attribution, judge=True)["rows"] if r["what"].startswith("top-10"))
    assert row["ok"] is False
    assert row["note"].split("; ") == [
        f"rank 4: {ref[5]['token']!r} instead of {ref[4]['token']!r}",
        f"rank 5: {ref[4]['token']!r} instead of {ref[5]['token']!r}",
    ]
    baseline, attribution = metrics_from_reference()
    top = baseline["probes"][0]["top"]
    top[8]["token"], top[9]["token"] = top[9]["token"], top[8]["token"]
    assert compare(baseline, attribution, judge=True)["reproduces"]


def test_each_row_shows_the_notebooks_value_this_builds_and_their_difference():
    baseline, attribution = metrics_from_reference()
    baseline["mean_logit_diff"] += 0.004
    baseline["per_prompt"][57]["clean"] -= 0.006
    rows = {r["what"].split(" (")[0]: r for r in compare(baseline, attribution, judge=True)["rows"]}
    want = {
        "mean logit difference": (REFERENCE["mean_logit_diff"], baseline["mean_logit_diff"]),
        "every per-prompt logit difference": (
            REFERENCE["per_prompt_logit_diff"][57],
            baseline["per_prompt"][57]["clean"],
        ),
        "mean logit difference after “;”": (
            REFERENCE["mean_logit_diff_corrupted_rounded"],
            baseline["mean_logit_diff_corrupted"],
        ),
        "direct logit attribution, total": (REFERENCE["direct_logit_attribution_total"], attribution["total"]),
    }
    for what, (notebook, this) in want.items():
        r = rows[what]
        assert (r["notebook"], r["this"]) == (notebook, this), what
        assert r["difference"] == pytest.approx(this - notebook), what
    assert "prompt 58" in next(r["what"] for r in rows.values() if r["what"].startswith("every per-prompt"))
    assert rows["mean logit difference"]["tolerance"] == reproduction.TOL_LOGIT_DIFF
    assert rows["mean logit difference after “;”"]["tolerance"] == reproduction.TOL_CORRUPTED
    top = rows["top-10 next tokens after “.” alone"]
    assert top["notebook"] == REFERENCE["test_prompt_period"]["top_tokens"][0]["logit"] == top["this"]
    assert top["difference"] == 0 and top["note"].startswith("same tokens in the same order")
    dla = rows["direct logit attribution, total"]
    assert dla["tolerance"] is None and dla["ok"] is None
    gap = REFERENCE["mean_logit_diff"] - REFERENCE["direct_logit_attribution_total"]
    assert f"a bias of {gap:.2f}" in dla["note"] and f"{attribution['total']:.2f} + (" in dla["note"]


def test_without_attribution_the_dla_row_is_empty_and_a_missing_top_token_is_named():
    baseline, attribution = metrics_from_reference()
    del baseline["probes"][0]["top"][9]
    check = reproduction.compare(validate("baseline", baseline), None, judge=True)
    dla = next(r for r in check["rows"] if r["what"].startswith("direct logit"))
    assert dla["this"] is None and dla["difference"] is None and "on this model" not in dla["note"]
    top = next(r for r in check["rows"] if r["what"].startswith("top-10"))
    assert top["ok"] is False and "rank 9: 'missing' instead of" in top["note"]


def test_the_tolerance_is_inclusive_at_exactly_its_bound(monkeypatch):
    """Values and tolerance in binary fractions, so that the difference is exactly the bound."""
    ref = copy.deepcopy(REFERENCE)
    ref["mean_logit_diff"] = 7.0
    ref["mean_logit_diff_corrupted_rounded"] = -1.0
    ref["single_prompt_checks"][0]["logit_diff"] = 6.0
    ref["per_prompt_logit_diff"] = [5.0] * len(ref["per_prompt_logit_diff"])
    for t in ref["test_prompt_period"]["top_tokens"]:
        t["logit"], t["prob"] = round(t["logit"] * 64) / 64, round(t["prob"] * 64) / 64
    monkeypatch.setattr(reproduction, "reference", lambda: ref)
    for name in ("TOL_LOGIT_DIFF", "TOL_CORRUPTED", "TOL_TOP_LOGIT", "TOL_TOP_PROB"):
        monkeypatch.setattr(reproduction, name, 2**-6)
    baseline, attribution = metrics_from_reference()
    baseline["mean_logit_diff"] = 7.0 + 2**-6
    baseline["mean_logit_diff_corrupted"] = -1.0 - 2**-6
    baseline["single_prompt"]["logit_diff"] = 6.0 + 2**-6
    for r in baseline["per_prompt"]:
        r["clean"] = 5.0 - 2**-6
    top = copy.deepcopy(ref["test_prompt_period"]["top_tokens"])
    top[2]["logit"] += 2**-6
    top[3]["prob"] -= 2**-6
    baseline["probes"][0]["top"] = top
    check = compare(baseline, attribution, judge=True)
    assert check["reproduces"], check["failed"]
    baseline["mean_logit_diff"] = 7.0 + 2**-5
    assert compare(baseline, attribution, judge=True)["failed"] == ["mean logit difference"]


def record(name="gpt2", source="hub", location="gpt2", shape=None) -> dict:
    baseline, _ = metrics_from_reference()
    if shape:
        baseline["model_shape"].update(shape)
    return {
        "key_parts": {"model": {"name": name, "source": source, "location": location}},
        "metrics": validate("baseline", baseline),
    }


GPT2_SHAPE = reproduction.GPT2_SMALL_SHAPE


@pytest.mark.parametrize(
    ("rec", "judged"),
    [
        (record("gpt2"), True),
        (record("gpt2-small", location="x"), True),
        (record("my-copy", location="openai-community/gpt2"), True),
        (record("gpt2-medium", location="gpt2-medium", shape=GPT2_SHAPE), False),  # the hub's, by name only
        (record("folder", source="local", location="local", shape=GPT2_SHAPE), True),  # a local copy
        (record("folder", source="local", location="local", shape={**GPT2_SHAPE, "n_layers": 6}), False),
        (record("folder", source="local", location="local", shape={**GPT2_SHAPE, "d_vocab": 50258}), False),
        (record("organism", source="local", location="local"), False),
    ],
)
def test_only_gpt2_small_is_judged(rec, judged):
    assert reproduction.is_gpt2_small(rec) is judged
    baseline, attribution = metrics_from_reference()
    records = {"baseline": rec, "attribution": {"metrics": validate("attribution", attribution)}}
    check = reproduction.for_model(records)
    assert check["judged"] is judged
    dla = next(r for r in check["rows"] if r["what"].startswith("direct logit"))
    assert dla["this"] == attribution["total"]
    alone = reproduction.for_model({"baseline": rec})
    assert next(r for r in alone["rows"] if r["what"].startswith("direct logit"))["this"] is None
    assert reproduction.for_model({"attribution": records["attribution"]}) is None


def test_rows_of_prompts_out_of_order_a_single_prompt_and_a_missing_probe():
    baseline, attribution = metrics_from_reference()
    check = compare(baseline, attribution, judge=True)
    mean = next(r for r in check["rows"] if r["what"] == "mean logit difference")
    assert mean["note"] == ""
    single = next(r for r in check["rows"] if r["what"].startswith("logit difference of"))
    ref = REFERENCE["single_prompt_checks"][0]
    assert (single["notebook"], single["this"], single["tolerance"]) == (
        ref["logit_diff"],
        baseline["single_prompt"]["logit_diff"],
        reproduction.TOL_LOGIT_DIFF,
    )
    baseline["per_prompt"].reverse()
    baseline["single_prompt"]["prompt"] = "Another prompt."
    baseline["probes"][0]["prompt"] = "Not the notebook's probe."
    rows = compare(baseline, attribution, judge=True)["rows"]
    mismatched = next(r for r in rows if r["what"] == "per-prompt logit differences")
    assert mismatched["tolerance"] == reproduction.TOL_LOGIT_DIFF and mismatched["ok"] is False
    assert mismatched["note"] == "this build's prompts are not the notebook's 100, in its order"
    assert not any(r["what"].startswith(("logit difference of", "top-10")) for r in rows)


def test_every_top_token_problem_is_named():
    baseline, attribution = metrics_from_reference()
    top = baseline["probes"][0]["top"]
    want = [t["token"] for t in REFERENCE["test_prompt_period"]["top_tokens"]]
    top[0], top[1] = top[1], top[0]
    top[6]["logit"] += 1.0
    top.pop()  # rank 9 missing
    row = next(r for r in compare(baseline, attribution, judge=True)["rows"] if r["what"].startswith("top-10"))
    assert row["note"].split("; ") == [
        f"rank 0: {want[1]!r} instead of {want[0]!r}",
        f"rank 1: {want[0]!r} instead of {want[1]!r}",
        f"rank 6 {want[6]!r}: logit {top[6]['logit']:.2f}, probability {top[6]['prob']:.4f}",
        f"rank 9: 'missing' instead of {want[9]!r}",
    ]
    assert row["difference"] == pytest.approx(max(abs(top[0]["logit"] - top[1]["logit"]), 1.0))
    baseline["probes"][0]["top"] = []
    row = next(r for r in compare(baseline, attribution, judge=True)["rows"] if r["what"].startswith("top-10"))
    assert row["this"] is None and row["difference"] is None and row["ok"] is False


def test_each_row_shows_its_own_tolerance():
    baseline, attribution = metrics_from_reference()
    rows = {r["what"].split(" (")[0]: r for r in compare(baseline, attribution, judge=True)["rows"]}
    assert rows["mean logit difference"]["tolerance"] == reproduction.TOL_LOGIT_DIFF
    assert rows["every per-prompt logit difference"]["tolerance"] == reproduction.TOL_LOGIT_DIFF
    assert rows["mean logit difference after “;”"]["tolerance"] == reproduction.TOL_CORRUPTED
