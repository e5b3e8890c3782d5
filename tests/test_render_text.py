"""render/text.py, unit by unit, against naive expectations: every hostile character comes out
as text (escaped for HTML and for markdown), wherever it is in the string and however often;
numbers print as their filter says, and a missing or non-finite number is refused."""

from __future__ import annotations

import html
import math
import re

import jinja2
import pytest
from markupsafe import Markup

from generator.render import text

HOSTILE = "<script>alert('x')</script> *a* _b_ |c| `d` [x](y) {{ e }} &amp; #h \\ \t\nend"


MARKDOWN = set("\\`*_[]|#{}~<>")  # what markdown (or HTML) could read inside a code span


def inside(got) -> str:
    assert isinstance(got, Markup) and got.startswith("<code>") and got.endswith("</code>")
    return got.removeprefix("<code>").removesuffix("</code>")


def bare(inner: str) -> set:
    """The characters of a code span outside its entities."""
    return set(re.sub(r"&#\d+;|&amp;|&lt;|&gt;", "", inner))


def test_code_shows_every_character_as_text():
    value = HOSTILE + "'\"" + HOSTILE  # twice: every occurrence, not the first
    inner = inside(text.code(value))
    assert not MARKDOWN & bare(inner), MARKDOWN & bare(inner)
    assert html.unescape(inner) == value.replace(" ", "␣").replace("\n", "↵").replace("\t", "⇥")


def test_verbatim_keeps_spaces_and_escapes_the_rest():
    value = HOSTILE + "'\"" + HOSTILE
    inner = inside(text.verbatim(value))
    assert not MARKDOWN & bare(inner), MARKDOWN & bare(inner)
    assert html.unescape(inner) == value and inner.count(" ") == value.count(" ")


@pytest.mark.parametrize("char", list("\\`*_[]|#"))
def test_as_text_escapes_each_markdown_character_everywhere(char):
    value = f"{char}a{char}{char}b{char}"
    assert text.as_text(value) == value.replace(char, "\\" + char)


def test_as_text_leaves_markup_html_and_numbers_alone():
    assert text.as_text("<b> & c") == "<b> & c"  # autoescape's job, not markdown's
    m = Markup("<code>*x*</code>")
    assert text.as_text(m) is m
    assert text.as_text(3) == 3 and text.as_text(2.5) == 2.5 and text.as_text(None) is None
    for bad in (math.inf, -math.inf, math.nan):
        with pytest.raises(ValueError, match="non-finite"):
            text.as_text(bad)


@pytest.mark.parametrize(
    ("call", "value", "want"),
    [
        (text.pct, 0.1234, "12%"),
        (lambda x: text.pct(x, 2), 0.1234, "12.34%"),
        (text.fmt, 2.0 / 3, "0.67"),
        (lambda x: text.fmt(x, 4), -2.0 / 3, "-0.6667"),
        (text.sig, 0.000024123, "2.41e-05"),
        (lambda x: text.sig(x, 2), 123456, "1.2e+05"),
        (text.seconds, 119.94, "119.9 s"),
        (text.seconds, 120, "2.0 min"),
        (text.seconds, 90 * 60, "90.0 min"),
        (text.fmt, 7, "7.00"),
    ],
)
def test_numbers_print_as_their_filter_says(call, value, want):
    assert call(value) == want


@pytest.mark.parametrize("name", ["pct", "fmt", "sig", "seconds"])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, "3", True, None])
def test_numbers_refuse_what_is_not_a_finite_number(name, bad):
    with pytest.raises(ValueError, match=f"`{name}` got"):
        getattr(text, name)(bad)


def test_a_missing_number_names_itself():
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    env.filters["fmt"] = text.fmt
    with pytest.raises(jinja2.UndefinedError, match="'missing_value' is undefined"):
        env.from_string("{{ missing_value | fmt }}").render()


# ---- intervals: the fewest decimals at which the bounds and the estimate keep their order ------


def naive_digits(estimate, low, high, digits=2, most=8):
    """The first d from `digits` at which the three printed values compare as the values do."""

    def pattern(a, b, c):  # signs of estimate − low, high − estimate, high − low
        return [(x > y) - (x < y) for x, y in ((b, a), (c, b), (c, a))]

    for d in range(digits, most + 1):
        printed = [float(format(v, f".{d}f")) for v in (low, estimate, high)]
        if pattern(*printed) == pattern(low, estimate, high):
            return d
    return most


def span(low, high, d):
    """How the tests expect a pair of bounds: an en dash, or "to" where one is negative."""
    lo, hi = format(low, f".{d}f"), format(high, f".{d}f")
    return f"{lo} to {hi}" if lo.startswith("-") or hi.startswith("-") else f"{lo}–{hi}"


@pytest.mark.parametrize(
    ("estimate", "low", "high"),
    [
        (0.98612, 0.98534, 0.98701),  # 3 decimals: at 2 all three print 0.99
        (0.5, 0.3, 0.7),  # 2 are enough
        (0.5, 0.5, 0.7),  # a bound equal to the estimate prints equal
        (0.5, 0.5, 0.5),
        (0.5, 0.4999, 0.50001),
        (1.0, 1.0 - 1e-12, 1.0 + 1e-12),  # never apart at 8 decimals: 8
        (0.5, 0.4999999, 0.5),  # apart at 7 decimals, one short of the cap
        (-2.51, -2.516, -2.5049),
        (0.1234, 0.1, 0.12344),
    ],
)
def test_interval_digits_keep_the_order_of_bounds_and_estimate(estimate, low, high):
    d = naive_digits(estimate, low, high)
    assert text.interval_digits(estimate, low, high) == d
    assert text.interval(estimate, (low, high)) == f"{estimate:.{d}f} ({span(low, high, d)})"
    assert text.interval_only((low, high), estimate) == f"({span(low, high, d)})"
    assert text.interval_bounds((low, high), estimate) == span(low, high, d)
    for digits in (1, 4):
        d = naive_digits(estimate, low, high, digits)
        assert d >= digits and text.interval_digits(estimate, low, high, digits) == d
        assert text.interval(estimate, (low, high), digits) == f"{estimate:.{d}f} ({span(low, high, d)})"
        assert text.interval_only((low, high), estimate, digits) == f"({span(low, high, d)})"
        assert text.interval_bounds((low, high), estimate, digits) == span(low, high, d)
    assert text.interval_digits(estimate, low, high, 2, most=2) == 2  # never beyond `most`


def test_interval_digits_examples_by_hand():
    assert text.interval(0.98612, (0.98534, 0.98701)) == "0.986 (0.985–0.987)"
    assert text.interval(0.5, (0.5, 0.7)) == "0.50 (0.50–0.70)"
    assert text.interval(-4.3, (-4.51, -4.13)) == "-4.30 (-4.51 to -4.13)"  # never "-4.51–-4.13"
    # float32 rounding around 0 prints as 0, not as an effect with an interval that excludes 0
    assert text.interval(-7.6e-7, (-8.4e-7, -1.6e-7)) == "0.00 (0.00–0.00)"
    assert text.interval(0.0, (-1e-4, 2e-4)) == "0.0000 (-0.0001 to 0.0002)"
    assert text.interval_bounds((-0.2, 0.3), 0.1) == "-0.20 to 0.30"
    assert text.interval_digits(1.0, 1.0 - 1e-12, 1.0 + 1e-12) == 8
    assert text.interval_digits(1.0, 1.0 - 1e-12, 1.0 + 1e-12, most=5) == 5
    # a bound that differs prints differently, and one equal to the estimate prints equal
    assert text.interval_digits(0.5, 0.5, 0.5004) == 4 and text.interval_digits(0.5004, 0.5, 0.5004) == 4
    assert text.interval_digits(0.5, 0.4996, 0.5) == 4 and text.interval_digits(0.4996, 0.4996, 0.5) == 4


@pytest.mark.parametrize("bad", [("x", (0.1, 0.2)), (0.1, (None, 0.2)), (0.1, (0.0, math.nan))])
def test_interval_refuses_what_is_not_a_finite_number(bad):
    with pytest.raises(ValueError, match="^`interval` got "):
        text.interval(*bad)
    with pytest.raises(ValueError, match="^`interval` got "):
        text.interval_only(bad[1], bad[0])
