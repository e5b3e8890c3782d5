"""How values print on a page: every value is text (markdown and HTML escaped), task data is
shown as code, numbers through filters that refuse a non-finite or missing value."""

from __future__ import annotations

import html
import math
import re

import jinja2
from markupsafe import Markup

# Markdown reads its syntax inside inline HTML too (`<code>[x](y)</code>` becomes a link): in
# code spans every character markdown could read is an entity, which it leaves alone.
CODE_ENTITIES = str.maketrans({c: f"&#{ord(c)};" for c in "\\`*_[]|#{}~"})


def _code(text: str) -> Markup:
    return Markup("<code>" + html.escape(text, quote=False).translate(CODE_ENTITIES) + "</code>")


def code(text) -> Markup:
    """Text as inline code that survives markdown and tables: spaces shown as ␣, newlines as
    ↵, HTML escaped, pipes as entities. Task data (prompts, tokens) is always shown this way
    or escaped as plain text, never as markup."""
    return _code(str(text).replace(" ", "␣").replace("\n", "↵").replace("\t", "⇥"))


def verbatim(text) -> Markup:
    """Text as inline code, spaces kept (prompts, templates)."""
    return _code(str(text))


# Not < > &: autoescape turns them into entities, which markdown shows as text (a backslash
# before them would survive as a visible "\&lt;").
MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]|#])")


def as_text(value):
    """Every value a template prints is text: markdown's special characters are escaped here,
    HTML by autoescape; values that are already markup (figures, code) pass unchanged. A
    non-finite number is never printed."""
    if isinstance(value, str) and not isinstance(value, Markup):
        return MARKDOWN_SPECIAL.sub(r"\\\1", value)
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"the template would print {value}: a page never shows a non-finite number")
    return value


def number(value, filter_name: str) -> float:
    """A filter's argument as a finite number; a missing value raises Jinja's UndefinedError,
    which names it (not "StrictUndefined.__format__")."""
    if isinstance(value, jinja2.Undefined):
        value._fail_with_undefined_error()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"`{filter_name}` got {value!r}, not a number")
    if not math.isfinite(value):
        raise ValueError(f"`{filter_name}` got {value}: a page never shows a non-finite number")
    return value


def pct(x, digits: int = 0) -> str:
    return f"{100 * number(x, 'pct'):.{digits}f}%"


def fmt(x, digits: int = 2) -> str:
    return f"{number(x, 'fmt'):.{digits}f}"


def sig(x, digits: int = 3) -> str:
    """A number to `digits` significant digits (small effects stay readable: 2.4e-05)."""
    return f"{number(x, 'sig'):.{digits}g}"


def seconds(s) -> str:
    s = number(s, "seconds")
    return f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min"


# An interval's values are of order one (faithfulness, logit differences, log-odds) computed in
# float32: parts below this are rounding, not measurement ("-0.00000076 (-0.00000084 to
# -0.00000016)" for a circuit whose edges change nothing), and print as 0.
ROUNDING = 5e-6


def as_printed(value) -> float:
    """An interval's value as it is printed: 0 below ROUNDING."""
    x = number(value, "interval")
    return 0.0 if abs(x) < ROUNDING else x


def interval_digits(estimate, low, high, digits: int = 2, most: int = 8) -> int:
    """The fewest decimals (at least `digits`) at which low, estimate and high print in the
    order they have: a bound that differs from the estimate prints differently, and none
    crosses it ("0.986 (0.985–0.987)", never "0.986 (0.99–0.99)")."""
    values = [as_printed(v) for v in (low, estimate, high)]
    for d in range(digits, most + 1):
        shown = [float(f"{v:.{d}f}") for v in values]
        if all((a < b) == (sa < sb) and (a == b) == (sa == sb) for a, b, sa, sb in _pairs(values, shown)):
            return d
    return most


def _pairs(values, shown):
    (low, est, high), (s_low, s_est, s_high) = values, shown
    return [(low, est, s_low, s_est), (est, high, s_est, s_high), (low, high, s_low, s_high)]


def interval(estimate, bounds, digits: int = 2) -> str:
    """'estimate (low–high)', all at the digits interval_digits picks."""
    low, high = bounds
    d = interval_digits(estimate, low, high, digits)
    return f"{as_printed(estimate):.{d}f} ({span(low, high, d)})"


def interval_only(bounds, estimate, digits: int = 2) -> str:
    """'(low–high)' of an estimate printed elsewhere, at the digits interval_digits picks."""
    return f"({interval_bounds(bounds, estimate, digits)})"


def interval_bounds(bounds, estimate, digits: int = 2) -> str:
    """'low–high' of an estimate printed elsewhere, at the digits interval_digits picks."""
    low, high = bounds
    return span(low, high, interval_digits(estimate, low, high, digits))


def span(low, high, d: int) -> str:
    """'0.10–0.90'; 'to' where a bound is negative ('-4.51 to -4.13', not '-4.51–-4.13')."""
    lo, hi = f"{as_printed(low):.{d}f}", f"{as_printed(high):.{d}f}"
    return f"{lo} to {hi}" if "-" in lo + hi else f"{lo}–{hi}"
