// Draws the report's figures from the JSON embedded next to each element.
//
// Each figure is <div class="report-plotly|report-circuitsvis" id="X" data-figure='{spec}'>
// (generator/site.py figure_element).
// This file loads after the page content (mkdocs extra_javascript), so it draws on
// mkdocs-material's document$ (first load and every instant navigation), or on
// DOMContentLoaded where document$ is absent. Plotly figures take the palette's colours and
// are redrawn when the reader switches light/dark; they are redrawn at the new width whenever
// their box changes width (content tabs, sidebar, window), and purged when navigation
// removes them.
(function () {
  "use strict";

  var PALETTES = {
    light: { font: "#1f2329", grid: "#e3e5e8", line: "#c4c8cf", hover: "#ffffff" },
    dark: { font: "#e2e4e9", grid: "#363a45", line: "#4a4f5c", hover: "#2e303e" },
  };
  var drawn = [];  // plotly elements drawn so far (purged once navigation removes them)
  var widths = new WeakMap();

  function scheme() {
    return document.body.getAttribute("data-md-color-scheme") === "slate" ? "dark" : "light";
  }

  function spec(el) {
    var data = el.getAttribute("data-figure");
    if (!data) throw new Error("figure " + el.id + " has no data-figure JSON");
    return JSON.parse(data);
  }

  // a copy of `obj` (a layout part) whose font has the given colour, other font settings kept
  function coloured(obj, color) {
    obj = obj || {};
    return Object.assign({}, obj, { font: Object.assign({}, obj.font || {}, { color: color }) });
  }

  function axis(a, p) {
    return Object.assign({}, a, {
      color: p.font, gridcolor: p.grid, zerolinecolor: p.line, linecolor: p.line,
      automargin: true,  // long tick labels push the margin out instead of being cut off
      title: coloured(typeof a.title === "string" ? { text: a.title } : a.title, p.font),
    });
  }

  // The stored layout with the palette's colours: transparent paper so the page shows
  // through, text and grid lines in the theme's colours.
  function themed(layout) {
    var p = PALETTES[scheme()];
    var out = Object.assign({}, layout, {
      paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)",
      font: Object.assign({}, layout.font || {}, { color: p.font }),
      hoverlabel: Object.assign(coloured(layout.hoverlabel, p.font), { bgcolor: p.hover }),
      legend: coloured(layout.legend, p.font),
      autosize: true,
    });
    delete out.width;  // the figure fills its column
    Object.keys(out).forEach(function (k) {
      if (/^[xy]axis\d*$/.test(k)) out[k] = axis(out[k], p);
    });
    // A title above subplot titles needs room of its own.
    var subplotTitles = (out.annotations || []).some(function (a) { return a.yref === "paper" && a.y >= 1; });
    if (out.title && subplotTitles) {
      out.margin = Object.assign({}, out.margin || {});
      out.margin.t = Math.max(out.margin.t || 0, 90);
    }
    if (out.annotations) {  // subplot titles and labels
      out.annotations = out.annotations.map(function (a) {
        return coloured(a, p.font);
      });
    }
    return out;
  }

  function themedData(data) {
    var p = PALETTES[scheme()];
    return data.map(function (trace) {
      if (!trace.colorbar) return trace;
      var bar = Object.assign({}, trace.colorbar, {
        tickfont: Object.assign({}, trace.colorbar.tickfont || {}, { color: p.font }),
        outlinecolor: p.line,
      });
      if (bar.title) bar.title = coloured(typeof bar.title === "string" ? { text: bar.title } : bar.title, p.font);
      return Object.assign({}, trace, { colorbar: bar });
    });
  }

  // plotly never wraps text: a title longer than its room runs into its neighbour or off the
  // figure (on a phone: two subplot titles or x titles side by side, a long figure title).
  // Once drawn, each title is measured against its room (the figure, its subplot's width, its
  // axis's length) and broken into lines at spaces where it does not fit; on a narrow figure
  // the legend moves under the plot, so the plot keeps the width. Then one relayout.
  var NARROW = 600;
  function wrap(text, room, charWidth) {
    var max = Math.max(6, Math.floor(room / charWidth));
    if (text.length <= max) return text;
    var lines = [""];
    text.split(" ").forEach(function (word) {
      var line = lines[lines.length - 1];
      if (line && (line + " " + word).length > max) lines.push(word);
      else lines[lines.length - 1] = line ? line + " " + word : word;
    });
    return lines.join("<br>");
  }

  // [text, room] -> wrapped text and the height its extra lines take
  function fit(node, text, room) {
    if (!node || typeof text !== "string" || !text || text.indexOf("<br>") >= 0) return null;
    var width = node.getBBox().width;
    if (width <= room) return null;
    var out = wrap(text, room, width / text.length), line = node.getBBox().height;
    return { text: out, line: line, height: out.split("<br>").length * line };
  }

  // On a narrow figure the legend goes under the plot, so the plot keeps the width; then
  // the titles are fitted to the room that leaves.
  function fitFigure(el, layout) {
    var L = el._fullLayout, legend = el.querySelector(".legend");
    if (!(L.width < NARROW && L.showlegend && legend && L.legend.orientation !== "h")) {
      return fitText(el, layout);
    }
    var b = L._size.b;
    return Plotly.relayout(el, {
      "legend.orientation": "h", "legend.x": 0, "legend.xanchor": "left",
      "legend.yref": "container", "legend.y": 0, "legend.yanchor": "bottom",
    }).then(function () {
      var height = el.querySelector(".legend").getBBox().height + 12;
      return Plotly.relayout(el, { "margin.b": b + height, height: L.height + height });
    }).then(function () { return fitText(el, layout); });
  }

  function fitText(el, layout) {
    var L = el._fullLayout, update = {};
    var title = layout.title && (typeof layout.title === "string" ? layout.title : layout.title.text);
    var titleNode = el.querySelector(".g-gtitle .gtitle");
    var t = fit(titleNode, title, L.width - 20);
    if (t) update["title.text"] = t.text;
    var grown = 0, subplotTitles = 0;
    (layout.annotations || []).forEach(function (a, i) {
      if (a.yref !== "paper" || !(a.y >= 1)) return;  // subplot titles
      var domain = [0, 1];
      Object.keys(L).forEach(function (k) {
        var d = /^xaxis\d*$/.test(k) && L[k].domain;
        if (d && d[0] <= a.x && a.x <= d[1]) domain = d;
      });
      var node = el.querySelector('.annotation[data-index="' + i + '"] .annotation-text');
      var f = fit(node, a.text, L._size.w * (domain[1] - domain[0]));
      if (node) subplotTitles = Math.max(subplotTitles, f ? f.height : node.getBBox().height);
      if (f) { update["annotations[" + i + "].text"] = f.text; grown = 1; }
    });
    Object.keys(L).forEach(function (k) {
      var m = /^([xy])axis(\d*)$/.exec(k), axis = L[k];
      if (!m || !axis.title || !axis.title.text) return;
      var f = fit(el.querySelector("." + m[1] + m[2] + "title"), axis.title.text, axis._length);
      if (f) update[k + ".title.text"] = f.text;
    });
    var top = 0;
    if (t || grown) {  // the title from the top down, then the subplot titles, then the plot
      var titleHeight = t ? t.height : titleNode ? titleNode.getBBox().height : 0;
      top = Math.max(0, 16 + titleHeight + 10 + subplotTitles + 8 - L._size.t);
      update["margin.t"] = L._size.t + top;
      // 16 px from the top (a multi-line title's top, anchored, sits a line's padding higher)
      Object.assign(update, { "title.yref": "container", "title.y": 1 - 16 / (L.height + top), "title.yanchor": "top" });
    }
    if (!Object.keys(update).length) return null;
    if (top) update.height = L.height + top;
    return Plotly.relayout(el, update);
  }

  // Drawn at the figure's width now, with its stored height: the ResizeObserver below redraws
  // it at each new width. Not plotly's own `responsive` mode or Plots.resize: both relayout
  // with autosize, which drops the height a narrow figure was given for its legend, and the
  // figure then took the height of its empty box (0) after the window was widened.
  function drawPlotly(el) {
    var fig = spec(el).figure;
    el.setAttribute("data-scheme", scheme());
    var first = !el.hasAttribute("data-drawn");
    var layout = themed(fig.layout || {});
    if (el.clientWidth) layout.width = el.clientWidth;  // hidden (a tab): autosized, redrawn when shown
    return Plotly.react(el, themedData(fig.data || []), layout, {
      displaylogo: false, modeBarButtonsToRemove: ["select2d", "lasso2d"],
    }).then(function () {
      return el.clientWidth ? fitFigure(el, layout) : null;  // hidden (a tab): when shown
    }).then(function () {
      el.setAttribute("data-drawn", "1");
      if (first) {
        drawn.push(el);
        resizer.observe(el);
      }
    });
  }

  function drawCircuitsVis(el) {
    if (el.hasAttribute("data-drawn")) return;
    var s = spec(el);
    var component = CircuitsVis[s.function];
    if (!component) throw new Error("figure " + el.id + ": circuitsvis has no visualisation " + s.function);
    CircuitsVis.render(el.id, component, s.props);
    el.setAttribute("data-drawn", "1");
  }

  // Redraw at the new width when a figure's box changes (a content tab shown, the window
  // resized); a hidden figure (width 0) waits until it is shown.
  var resizer = new ResizeObserver(function (entries) {
    entries.forEach(function (entry) {
      var el = entry.target, width = Math.round(entry.contentRect.width);
      var before = widths.get(el);
      widths.set(el, width);
      if (before === undefined || width === 0 || before === width || !el.isConnected) return;
      // redrawn, not only resized: where its text wraps depends on the width
      drawPlotly(el).catch(function () {});
    });
  });

  function purgeRemoved() {
    drawn = drawn.filter(function (el) {
      if (el.isConnected) return true;
      resizer.unobserve(el);
      Plotly.purge(el);
      return false;
    });
  }

  function each(selector, draw) {
    document.querySelectorAll(selector).forEach(function (el) {
      try {
        var done = draw(el);
        if (done && done.catch) done.catch(function (e) { console.error(e); });
      } catch (e) {
        console.error(e);
      }
    });
  }

  // plotly.js puts its CSS in <style id="plotly.js-style-global"> in <head> when it loads;
  // material's instant navigation drops every head element the next page's HTML lacks. Keep a
  // copy of its rules and put it back when it goes missing (else a plot's SVG layers stack
  // one under the other and the toolbar loses its styling). Per-plot rules are re-made by
  // each new plot.
  var PLOTLY_STYLE = "plotly.js-style-global";
  var plotlyCss = "";
  function keepPlotlyStyles() {
    var style = document.getElementById(PLOTLY_STYLE);
    if (style && style.sheet && style.sheet.cssRules.length) {
      plotlyCss = Array.prototype.map.call(style.sheet.cssRules, function (r) { return r.cssText; }).join("\n");
    } else if (!style && plotlyCss) {
      style = document.createElement("style");
      style.id = PLOTLY_STYLE;
      style.textContent = plotlyCss;
      document.head.appendChild(style);
    }
  }

  function drawAll() {
    if (typeof Plotly !== "undefined") {
      keepPlotlyStyles();
      purgeRemoved();
      each(".report-plotly", drawPlotly);
    } else if (document.querySelector(".report-plotly")) {
      console.error("report.js: plotly.js did not load (assets/vendor/plotly.min.js)");
    }
    if (typeof CircuitsVis !== "undefined") {
      each(".report-circuitsvis", drawCircuitsVis);
    } else if (document.querySelector(".report-circuitsvis")) {
      console.error("report.js: circuitsvis did not load (assets/vendor/circuitsvis.js)");
    }
  }

  // Palette switch: material sets data-md-color-scheme on <body>.
  new MutationObserver(function () {
    if (typeof Plotly === "undefined") return;
    each(".report-plotly[data-drawn]", function (el) {
      return el.getAttribute("data-scheme") === scheme() ? null : drawPlotly(el);
    });
  }).observe(document.body, { attributes: true, attributeFilter: ["data-md-color-scheme"] });

  if (typeof document$ !== "undefined") {
    document$.subscribe(drawAll);
  } else if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", drawAll);
  } else {
    drawAll();
  }
})();
