/* Leaderboard: sort any table.sortable by any column (buttons in the last header row, aria-sort)
   and filter each question set's secondary table (and any charts in it) by task. Every table is complete
   without this script; it only reorders and hides, and never moves a row to another table. */
(function () {
  "use strict";
  var each = function (list, fn) { Array.prototype.forEach.call(list, fn); };

  function value(row, idx, numeric) {
    var cell = row.cells[idx];
    if (!cell) return null;
    var v = cell.getAttribute("data-v");
    if (v === null) v = cell.textContent.trim().toLowerCase();
    if (v === "") return null;
    if (!numeric) return v;
    var n = parseFloat(v);
    return isNaN(n) ? null : n;
  }

  function sortable(table) {
    var head = table.tHead.rows[table.tHead.rows.length - 1];
    var headers = Array.prototype.slice.call(head.cells);
    var tbody = table.tBodies[0];
    var section = table.closest("section");
    var status = section ? section.querySelector(".sort-status") : null;
    headers.forEach(function (th, idx) {
      var button = th.querySelector("button.sort");
      if (!button) return;
      button.addEventListener("click", function () {
        var numeric = th.getAttribute("data-type") === "num";
        var current = th.getAttribute("aria-sort");
        var dir;
        if (current === "descending") dir = "ascending";
        else if (current === "ascending") dir = "descending";
        else dir = numeric ? "descending" : "ascending";
        headers.forEach(function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", dir);
        var rows = Array.prototype.slice.call(tbody.rows);
        var keyed = rows.map(function (r, i) { return { row: r, v: value(r, idx, numeric), i: i }; });
        keyed.sort(function (a, b) {
          if (a.v === null && b.v === null) return a.i - b.i;
          if (a.v === null) return 1; /* missing values always last */
          if (b.v === null) return -1;
          var c = numeric ? a.v - b.v : String(a.v).localeCompare(String(b.v));
          if (c === 0) return a.i - b.i;
          return dir === "ascending" ? c : -c;
        });
        var frag = document.createDocumentFragment();
        keyed.forEach(function (k) { frag.appendChild(k.row); });
        tbody.appendChild(frag);
        if (status) status.textContent = "Sorted by " + button.textContent.replace(/\s+/g, " ").trim() + ", " + dir + ".";
      });
    });
  }

  function filter(select) {
    var table = document.getElementById(select.getAttribute("data-table"));
    var section = document.getElementById(select.getAttribute("data-section"));
    if (!table || !section) return;
    select.closest(".controls").hidden = false;
    var headers = Array.prototype.slice.call(table.tHead.rows[0].cells);
    var tbody = table.tBodies[0];
    var panels = section.querySelectorAll(".more-charts .panel[data-task]");
    var status = section.querySelector(".sort-status");
    select.addEventListener("change", function () {
      var task = select.value;
      var show = headers.map(function (th) {
        var t = th.getAttribute("data-task");
        return t === null || t === "" || task === "" || t === task;
      });
      var taskCols = headers.map(function (th) { return task !== "" && th.getAttribute("data-task") === task; });
      headers.forEach(function (th, i) { th.hidden = !show[i]; });
      each(tbody.rows, function (row) {
        var any = task === "";
        for (var i = 0; i < row.cells.length; i++) {
          row.cells[i].hidden = !show[i];
          if (taskCols[i] && row.cells[i].getAttribute("data-v")) any = true;
        }
        row.hidden = !any; /* a model never evaluated on this task is hidden */
      });
      each(panels, function (p) { p.hidden = task !== "" && p.getAttribute("data-task") !== task; });
      if (status) status.textContent = task ? "Showing task " + task + "." : "Showing all tasks.";
    });
  }

  each(document.querySelectorAll("table.sortable"), sortable);
  each(document.querySelectorAll("select.task-filter"), filter);
})();
