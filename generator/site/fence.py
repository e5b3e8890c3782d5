"""Figures between render and mkdocs: render writes each figure as a ```report-figure fence
holding its JSON (a fence, not raw HTML, so a figure also works inside content tabs and
admonitions); at site build `figure_fence`, a pymdownx.superfences custom fence declared in
mkdocs.yml, turns it into an element plus its JSON, which assets/report.js draws."""

from __future__ import annotations

import html
import json
import re

FIGURE_KINDS = ("plotly", "circuitsvis")


def figure_html(spec: dict, element_id: str, caption: str) -> str:
    """A `report-figure` fence holding the figure's JSON; at site build, generator.site's
    fence formatter turns it into an element the loader (assets/report.js) draws. A fence,
    not raw HTML, so a figure also works inside content tabs and admonitions: indent it there
    with `{{ figure(...) | indent(4) }}`."""
    data = json.dumps(
        {"caption": caption, "id": element_id, "spec": spec},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )
    return f"```report-figure\n{data}\n```\n"


def figure_element(element_id: str, caption: str, spec: dict) -> str:
    """A figure's HTML: the element report.js draws into, holding its JSON, and its caption."""
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", element_id):
        raise ValueError(f"figure id {element_id!r}: use letters, digits, '-' and '_'")
    if spec.get("kind") not in FIGURE_KINDS:
        raise ValueError(f"figure {element_id}: kind {spec.get('kind')!r} is not one of {', '.join(FIGURE_KINDS)}")
    if not caption.strip():
        raise ValueError(f"figure {element_id} has no caption: every figure needs one")
    # The JSON sits in an attribute, not a <script type="application/json">: material's
    # instant navigation re-creates inline scripts without their type and would run it.
    data = json.dumps(spec, sort_keys=True, separators=(",", ":"), allow_nan=False)
    data = html.escape(data, quote=False).replace("'", "&#x27;")
    return (
        f'<figure class="report-figure">\n'
        f'<div class="report-{spec["kind"]}" id="{element_id}" data-figure=\'{data}\'></div>\n'
        f"<figcaption>{html.escape(caption)}</figcaption>\n</figure>"
    )


def figure_fence(source, language, css_class, options, md, **kwargs) -> str:
    """pymdownx.superfences formatter for ```report-figure fences (see mkdocs.yml). A broken
    fence stops the build (SuperFencesException) rather than showing as code."""
    from pymdownx.superfences import SuperFencesException

    try:
        fence = json.loads(source)
        return figure_element(fence["id"], fence["caption"], fence["spec"])
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise SuperFencesException(f"bad report-figure fence ({e}): {source[:120]}") from e
