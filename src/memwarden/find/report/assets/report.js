(function () {
  "use strict";
  // The page is complete without this script: it adds tooltips, series
  // toggles and worker tabs. It reads data only from the JSON element and
  // writes text only through textContent.
  document.documentElement.classList.add("js");
  var plots = {};
  try {
    var source = document.getElementById("mw-data");
    plots = JSON.parse(source ? source.textContent : "{}").plots || {};
  } catch (err) {
    plots = {};
  }

  function toViewBox(svg, clientX, clientY) {
    var matrix = svg.getScreenCTM();
    if (!matrix) { return null; }
    var point = svg.createSVGPoint();
    point.x = clientX;
    point.y = clientY;
    return point.matrixTransform(matrix.inverse());
  }

  function toClient(svg, x, y) {
    var matrix = svg.getScreenCTM();
    var point = svg.createSVGPoint();
    point.x = x;
    point.y = y;
    return matrix ? point.matrixTransform(matrix) : point;
  }

  function nearest(xs, x) {
    var lo = 0, hi = xs.length - 1;
    while (hi - lo > 1) {
      var mid = (lo + hi) >> 1;
      if (xs[mid] < x) { lo = mid; } else { hi = mid; }
    }
    return Math.abs(xs[hi] - x) < Math.abs(xs[lo] - x) ? hi : lo;
  }

  function showTip(figure, tip, lines, clientX, clientY) {
    while (tip.firstChild) { tip.removeChild(tip.firstChild); }
    lines.forEach(function (line, i) {
      var row = document.createElement("div");
      row.textContent = line;
      if (i === 0) { row.className = "mw-tip-head"; }
      tip.appendChild(row);
    });
    tip.hidden = false;
    var box = figure.getBoundingClientRect();
    var left = clientX - box.left + 14;
    if (left + tip.offsetWidth > box.width) { left = clientX - box.left - tip.offsetWidth - 14; }
    var top = clientY - box.top + 14;
    if (top + tip.offsetHeight > box.height) { top = clientY - box.top - tip.offsetHeight - 10; }
    tip.style.left = Math.max(0, left) + "px";
    tip.style.top = Math.max(0, top) + "px";
  }

  function seriesOff(svg, k) {
    var group = svg.querySelector('.mw-series[data-series="' + k + '"]');
    return group !== null && group.classList.contains("mw-off");
  }

  function wireLinePlot(figure, svg, tip, spec) {
    var hover = svg.querySelector(".mw-hover");
    var cross = svg.querySelector(".mw-cross");
    var dots = svg.querySelectorAll(".mw-dot");
    var frame = spec.frame;
    var current = -1;
    if (!hover || !spec.x.length) { return; }

    function hide() {
      hover.setAttribute("visibility", "hidden");
      tip.hidden = true;
      current = -1;
    }

    function show(i, clientX, clientY) {
      current = i;
      var x = spec.x[i];
      cross.setAttribute("x1", x);
      cross.setAttribute("x2", x);
      var firstY = null;
      for (var k = 0; k < dots.length; k++) {
        var y = spec.y[i][k];
        if (y === null || y === undefined || seriesOff(svg, k)) {
          dots[k].setAttribute("visibility", "hidden");
          continue;
        }
        if (firstY === null) { firstY = y; }
        dots[k].setAttribute("visibility", "visible");
        dots[k].setAttribute("cx", x);
        dots[k].setAttribute("cy", y);
      }
      hover.setAttribute("visibility", "visible");
      if (clientX === undefined) {
        var at = toClient(svg, x, firstY === null ? frame[1] : firstY);
        clientX = at.x;
        clientY = at.y;
      }
      showTip(figure, tip, spec.tip[i], clientX, clientY);
    }

    svg.addEventListener("mousemove", function (event) {
      var p = toViewBox(svg, event.clientX, event.clientY);
      if (!p || p.x < frame[0] - 8 || p.x > frame[2] + 8 || p.y < frame[1] - 8 ||
          p.y > frame[3] + 8) {
        hide();
        return;
      }
      show(nearest(spec.x, p.x), event.clientX, event.clientY);
    });
    svg.addEventListener("mouseleave", hide);
    svg.addEventListener("blur", hide);
    svg.addEventListener("keydown", function (event) {
      var step = event.shiftKey ? 10 : 1;
      if (event.key === "ArrowRight" || event.key === "ArrowLeft") {
        var next = current < 0 ? 0 : current + (event.key === "ArrowRight" ? step : -step);
        show(Math.max(0, Math.min(spec.x.length - 1, next)));
        event.preventDefault();
      } else if (event.key === "Escape") {
        hide();
      }
    });
  }

  function wireBars(figure, svg, tip, spec) {
    var rows = svg.querySelectorAll(".mw-bar-row");
    function hide() {
      tip.hidden = true;
      rows.forEach(function (row) { row.classList.remove("mw-active"); });
    }
    svg.addEventListener("mousemove", function (event) {
      var p = toViewBox(svg, event.clientX, event.clientY);
      var found = -1;
      if (p) {
        spec.bands.forEach(function (band) {
          if (p.y >= band[0] && p.y < band[1]) { found = band[2]; }
        });
      }
      if (found < 0) { hide(); return; }
      rows.forEach(function (row) {
        row.classList.toggle("mw-active", row.getAttribute("data-row") === String(found));
      });
      showTip(figure, tip, spec.tip[found], event.clientX, event.clientY);
    });
    svg.addEventListener("mouseleave", hide);
  }

  document.querySelectorAll(".mw-figure[data-plot]").forEach(function (figure) {
    var spec = plots[figure.getAttribute("data-plot")];
    var svg = figure.querySelector("svg");
    var tip = figure.querySelector(".mw-tip");
    if (!spec || !svg || !tip) { return; }
    if (spec.kind === "rows") {
      wireBars(figure, svg, tip, spec);
    } else {
      wireLinePlot(figure, svg, tip, spec);
    }
  });

  // Legend buttons hide or show a series (and its axis) in their own plot.
  document.querySelectorAll(".mw-key[data-series]").forEach(function (button) {
    button.addEventListener("click", function () {
      var block = button.closest(".mw-plotblock");
      var svg = block ? block.querySelector("svg") : null;
      if (!svg) { return; }
      var on = button.getAttribute("aria-pressed") !== "true";
      button.setAttribute("aria-pressed", on ? "true" : "false");
      var k = button.getAttribute("data-series");
      svg.querySelectorAll('[data-series="' + k + '"]').forEach(function (node) {
        if (!node.classList.contains("mw-dot")) { node.classList.toggle("mw-off", !on); }
      });
    });
  });

  // Worker tabs: one life at a time, or all of them.
  document.querySelectorAll(".mw-lives").forEach(function (container) {
    var tabs = container.querySelectorAll(".mw-tab");
    var lives = container.querySelectorAll(".mw-life");
    function select(key) {
      tabs.forEach(function (tab) {
        tab.setAttribute("aria-selected", tab.getAttribute("data-life") === key ? "true" : "false");
      });
      lives.forEach(function (life) {
        life.hidden = !(key === "all" || life.getAttribute("data-life") === key);
      });
    }
    tabs.forEach(function (tab) {
      tab.addEventListener("click", function () { select(tab.getAttribute("data-life")); });
    });
    if (lives.length > 1) { select(container.getAttribute("data-default") || "all"); }
  });

  // A link to a worker (from the workers table) opens its tab first.
  document.addEventListener("click", function (event) {
    var link = event.target.closest ? event.target.closest('a[href^="#"]') : null;
    if (!link) { return; }
    var target = document.getElementById(link.getAttribute("href").slice(1));
    if (!target || !target.classList.contains("mw-life")) { return; }
    var container = target.closest(".mw-lives");
    var tab = container ? container.querySelector('.mw-tab[data-life="' + target.id + '"]') : null;
    if (tab) { tab.click(); }
  });
})();
