// Draws the report's figures from the JSON embedded next to each element.
// Runs on first load and after mkdocs-material's instant navigation (document$), and
// redraws plotly figures in the current palette when the reader switches light/dark.
(function () {
  "use strict";

  function palette() {
    var dark = document.body.getAttribute("data-md-color-scheme") === "slate";
    return dark
      ? { font: "#e2e4e9", grid: "#3b3f4a", bg: "rgba(0,0,0,0)" }
      : { font: "#1f2329", grid: "#e3e5e8", bg: "rgba(0,0,0,0)" };
  }

  function themed(layout) {
    var p = palette();
    var out = Object.assign({}, layout, {
      paper_bgcolor: p.bg, plot_bgcolor: p.bg,
      font: Object.assign({}, layout.font || {}, { color: p.font }),
    });
    Object.keys(out).forEach(function (k) {
      if (/^[xy]axis\d*$/.test(k)) {
        out[k] = Object.assign({}, out[k], { gridcolor: p.grid, zerolinecolor: p.grid, color: p.font });
      }
    });
    return out;
  }

  function spec(el) {
    var data = document.getElementById(el.getAttribute("data-figure"));
    return data ? JSON.parse(data.textContent) : null;
  }

  function drawPlotly(el) {
    var s = spec(el);
    if (!s || typeof Plotly === "undefined") return;
    var fig = s.figure;
    el.setAttribute("data-drawn", "1");
    Plotly.react(el, fig.data, themed(fig.layout || {}), { responsive: true, displaylogo: false });
  }

  function drawCircuitsVis(el) {
    var s = spec(el);
    if (!s || typeof CircuitsVis === "undefined" || el.getAttribute("data-drawn")) return;
    el.setAttribute("data-drawn", "1");
    CircuitsVis.render(el.id, CircuitsVis[s.function], s.props);
  }

  function drawAll() {
    document.querySelectorAll(".report-plotly").forEach(drawPlotly);
    document.querySelectorAll(".report-circuitsvis").forEach(drawCircuitsVis);
  }

  function redrawPlotly() {
    document.querySelectorAll(".report-plotly[data-drawn]").forEach(drawPlotly);
  }

  // Palette switch: material sets data-md-color-scheme on <body>.
  new MutationObserver(redrawPlotly).observe(document.body, {
    attributes: true, attributeFilter: ["data-md-color-scheme"],
  });

  // Figures inside content tabs are drawn at zero width: resize when a tab is shown.
  document.addEventListener("change", function (e) {
    if (e.target && e.target.matches && e.target.matches(".tabbed-set > input")) {
      document.querySelectorAll(".report-plotly[data-drawn]").forEach(function (el) {
        if (el.offsetParent !== null && typeof Plotly !== "undefined") Plotly.Plots.resize(el);
      });
    }
  });

  if (typeof document$ !== "undefined") {
    document$.subscribe(drawAll);
  } else if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", drawAll);
  } else {
    drawAll();
  }
})();
