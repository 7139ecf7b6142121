/* Compare page: render the per-sample rows of window.MB_COMPARE (loaded from <model>.data.js),
   filter by topic and text, sort by gain or loss; each answer shows its length in words. A metric
   whose direction is null describes the answers (their length): it sorts by increase and is never
   coloured as better or worse. All text goes in via textContent (inert). */
(function () {
  "use strict";
  var data = window.MB_COMPARE;
  var tbody = document.getElementById("cmp-rows");
  if (!data || !tbody) return;
  var PAGE = 200;
  var el = function (id) { return document.getElementById(id); };
  var taskSel = el("cmp-task"), metricSel = el("cmp-metric"), topicSel = el("cmp-topic");
  var sortSel = el("cmp-sort"), search = el("cmp-search"), count = el("cmp-count"), more = el("cmp-more");
  var overall = el("cmp-overall");
  var limit = PAGE;
  el("cmp-controls").hidden = false;

  function option(sel, value, label) {
    var o = document.createElement("option");
    o.value = value;
    o.textContent = label;
    sel.appendChild(o);
  }
  function fmt(x) {
    if (x === null || x === undefined) return "—";
    return Math.abs(x) <= 1.5 ? x.toFixed(3) : x.toFixed(1);
  }
  function pval(p) { return p < 0.001 ? "p < 0.001" : "p = " + p.toFixed(3); }
  function signed(x) { return (x > 0 ? "+" : x < 0 ? "−" : "±") + Math.abs(x).toFixed(3); }
  function labelled(n, label) {
    n.setAttribute("data-label", label);
    return n;
  }
  function node(tag, cls, text) {
    var n = document.createElement(tag);
    if (cls) n.className = cls;
    if (text !== undefined) n.textContent = text;
    return n;
  }

  function setupTask() {
    var t = data.tasks[taskSel.value];
    metricSel.textContent = "";
    t.metrics.forEach(function (m, i) {
      var note = t.higher[i] === null ? " (describes the answers)" : t.higher[i] ? "" : " (lower is better)";
      option(metricSel, String(i), m + note);
    });
    var pref = t.metrics.indexOf(data.primary);
    metricSel.value = String(pref >= 0 ? pref : 0);
    var topics = {};
    t.rows.forEach(function (r) { topics[r[1]] = (topics[r[1]] || 0) + 1; });
    topicSel.textContent = "";
    option(topicSel, "", "All topics (" + t.rows.length + ")");
    Object.keys(topics).sort().forEach(function (k) { option(topicSel, k, k + " (" + topics[k] + ")"); });
    t.lower = t.rows.map(function (r) { return (r[0] + "\n" + r[2] + "\n" + r[3] + "\n" + r[4] + "\n" + r[5]).toLowerCase(); });
  }

  function render() {
    var t = data.tasks[taskSel.value];
    var m = parseInt(metricSel.value, 10);
    var sign = t.higher[m] === false ? -1 : 1;
    var neutral = t.higher[m] === null;
    sortSel.options[0].textContent = neutral ? "Largest increase first" : "Largest gain first";
    sortSel.options[1].textContent = neutral ? "Largest decrease first" : "Largest loss first";
    var c = t.comparison[m];
    overall.textContent = c === null ? "" : "Over all " + t.rows.length + " questions, " + t.metrics[m] + " changes by " + signed(c[0]) +
      (c[1] === null ? " (no paired test)" : " (" + pval(c[1]) + (c[2] === null ? "" : ", MDE " + fmt(c[2])) + ")") + ".";
    var topic = topicSel.value;
    var q = search.value.trim().toLowerCase();
    var picked = [];
    t.rows.forEach(function (r, i) {
      if (topic && r[1] !== topic) return;
      if (q && t.lower[i].indexOf(q) === -1) return;
      var b = r[6][m], a = r[7][m];
      picked.push({ r: r, i: i, gain: a === null || b === null ? null : sign * (a - b) });
    });
    var mode = sortSel.value;
    if (mode !== "id") {
      picked.sort(function (x, y) {
        if (x.gain === null && y.gain === null) return x.i - y.i;
        if (x.gain === null) return 1;
        if (y.gain === null) return -1;
        var c = mode === "gain" ? y.gain - x.gain : x.gain - y.gain;
        return c !== 0 ? c : x.i - y.i;
      });
    }
    var frag = document.createDocumentFragment();
    picked.slice(0, limit).forEach(function (p) {
      var r = p.r, tr = document.createElement("tr");
      var qcell = labelled(node("td"), "Question");
      qcell.appendChild(node("span", "meta", r[0] + " · " + r[1]));
      qcell.appendChild(document.createTextNode(r[2]));
      tr.appendChild(qcell);
      [[r[3], "Reference"], [r[4], "Base answer"], [r[5], "Tuned answer"]].forEach(function (f, j) {
        var td = labelled(node("td"), f[1]);
        var words = t.generated ? r[8][j] : null;
        if (words !== null) td.appendChild(node("span", "meta words", words + (words === 1 ? " word" : " words")));
        td.appendChild(document.createTextNode(f[0]));
        tr.appendChild(td);
      });
      var sc = labelled(node("td", "scores"), "Scores");
      var d = r[7][m] !== null && r[6][m] !== null ? r[7][m] - r[6][m] : null;
      var cls = neutral || p.gain === null || p.gain === 0 ? "" : p.gain > 0 ? "better" : "worse";
      sc.appendChild(node("span", "primary " + cls, t.metrics[m] + ": " + fmt(r[6][m]) + " → " + fmt(r[7][m]) + (d === null ? "" : " (" + signed(d) + ")")));
      if (t.metrics.length > 1) {
        var details = node("details");
        details.appendChild(node("summary", "", "all scores"));
        var ul = node("ul", "all");
        t.metrics.forEach(function (name, j) {
          if (j !== m) ul.appendChild(node("li", "", name + " " + fmt(r[6][j]) + " → " + fmt(r[7][j])));
        });
        details.appendChild(ul);
        sc.appendChild(details);
      }
      tr.appendChild(sc);
      frag.appendChild(tr);
    });
    tbody.textContent = "";
    tbody.appendChild(frag);
    var shown = Math.min(limit, picked.length);
    count.textContent = "Showing " + shown + " of " + picked.length + " matching samples (" + t.rows.length + " in " + taskSel.value + "). Scores are base → tuned.";
    more.hidden = picked.length <= limit;
  }

  function reset() { limit = PAGE; render(); }
  taskSel.addEventListener("change", function () { setupTask(); reset(); });
  [metricSel, topicSel, sortSel].forEach(function (s) { s.addEventListener("change", reset); });
  search.addEventListener("input", reset);
  more.addEventListener("click", function () { limit += PAGE; render(); });
  setupTask();
  render();
})();
