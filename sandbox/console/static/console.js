// The detail pages' tabs: metrics charts (uPlot), traces, logs (follow by polling), Envoy config.
// Everything is drawn from the console's own JSON API.
"use strict";
(function () {
  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));
  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
  const loaded = {};

  function show(tab) {
    $$("#tabs a").forEach((a) => a.classList.toggle("active", a.dataset.tab === tab));
    $$(".tab").forEach((t) => t.classList.toggle("active", t.id === "tab-" + tab));
    if (!loaded[tab]) { loaded[tab] = true; (loaders[tab] || (() => {}))(); }
  }

  // -- metrics -----------------------------------------------------------------------------------
  const CHARTS = [
    ["request_count", "Request volume", "req/s", ["", "avg"]],
    ["request_error_count", "Request errors (4xx, 5xx)", "req/s", ["", "avg"]],
    ["request_duration_millis", "Request duration", "ms", ["avg", "0.5", "0.95", "0.99"]],
    ["request_size", "Request size", "bytes", ["avg", "0.5", "0.95", "0.99"]],
    ["response_size", "Response size", "bytes", ["avg", "0.5", "0.95", "0.99"]],
  ];
  const COLORS = {"": "#0066cc", "avg": "#0066cc", "0.5": "#3e8635", "0.95": "#f0ab00", "0.99": "#c9190b"};

  async function loadMetrics(container) {
    const duration = $(".metrics-duration", container.parentNode).value;
    container.innerHTML = '<div class="empty">Loading…</div>';
    let data;
    try {
      const resp = await fetch(container.dataset.metrics + "&duration=" + duration);
      data = await resp.json();
      if (!resp.ok) throw new Error(data.error || resp.statusText);
    } catch (err) { container.innerHTML = '<div class="empty reason">' + esc(err.message) + "</div>"; return; }
    container.innerHTML = "";
    for (const [name, title, unit, stats] of CHARTS) {
      const series = (data[name] || []).filter((s) => stats.includes(s.stat));
      const box = document.createElement("div");
      box.className = "chart";
      box.dataset.metric = name;
      box.innerHTML = "<h3>" + esc(title) + ' <span class="muted">(' + unit + ")</span></h3>";
      container.appendChild(box);
      const times = Array.from(new Set(series.flatMap((s) => s.datapoints.map((p) => p[0])))).sort((a, b) => a - b);
      if (!times.length) { box.insertAdjacentHTML("beforeend", '<div class="empty">No data in this window.</div>'); continue; }
      const columns = [times].concat(series.map((s) => {
        const byT = new Map(s.datapoints.map((p) => [p[0], p[1]]));
        return times.map((t) => (byT.has(t) ? byT.get(t) : null));
      }));
      const opts = {
        width: Math.max(360, box.clientWidth - 24), height: 190,
        series: [{}].concat(series.map((s) => ({
          label: s.stat === "" ? "total" : (s.stat === "avg" ? "average" : "p" + Math.round(parseFloat(s.stat) * 100)),
          stroke: COLORS[s.stat] || "#6a6e73", width: 2, spanGaps: true,
          value: (u, v) => (v == null ? "–" : v.toFixed(2)),
        }))),
        axes: [{stroke: "#6a6e73", grid: {stroke: "#ececec"}}, {stroke: "#6a6e73", grid: {stroke: "#ececec"}, size: 56}],
        legend: {live: true},
      };
      new uPlot(opts, columns, box);
    }
  }

  // -- traces ------------------------------------------------------------------------------------
  async function loadTraces() {
    const box = $("#traces-list");
    const resp = await fetch(box.dataset.traces);
    const data = await resp.json();
    const traces = (data.data || []).map((t) => {
      const start = Math.min(...t.spans.map((s) => s.startTime));
      const end = Math.max(...t.spans.map((s) => s.startTime + s.duration));
      const errors = t.spans.filter((s) => (s.tags || []).some((k) => k.key === "error" && (k.value === true || k.value === "true"))).length;
      const services = new Set(t.spans.map((s) => (t.processes[s.processID] || {}).serviceName));
      const root = t.spans.find((s) => !(s.references || []).length) || t.spans[0];
      return {id: t.traceID, start, duration: end - start, spans: t.spans.length, errors, services: services.size, op: root.operationName};
    });
    if (!traces.length) { box.innerHTML = '<div class="empty">' + (data.errors && data.errors.length ? esc(data.errors[0].msg) : "No traces in the last hour.") + "</div>"; return; }
    const longest = Math.max(...traces.map((t) => t.duration));
    box.innerHTML = "<table><thead><tr><th>When</th><th>Root operation</th><th class=num>Duration</th><th class=num>Spans</th><th>Errors</th><th>Trace</th></tr></thead><tbody>" +
      traces.map((t) => "<tr><td class=muted>" + new Date(t.start / 1000).toLocaleTimeString() + "</td><td class=mono>" + esc(t.op) +
        "</td><td class=num>" + (t.duration / 1000).toFixed(2) + " ms<div class=bar><span class='" + (t.errors ? "err" : "") + "' style='width:" + (100 * t.duration / longest).toFixed(1) + "%'></span></div></td><td class=num>" +
        t.spans + " <span class=muted>(" + t.services + " services)</span></td><td>" + (t.errors ? "<span class='badge code-err'>" + t.errors + " errors</span>" : "<span class=muted>none</span>") +
        "</td><td><a class=mono href='/console/traces/" + esc(t.id) + "'>" + esc(t.id.slice(0, 16)) + "</a></td></tr>").join("") + "</tbody></table>";
  }

  // -- logs --------------------------------------------------------------------------------------
  let logTimer = null;
  async function loadLogs() {
    const view = $("#logview");
    const params = new URLSearchParams({tailLines: $("#log-tail").value, filter: $("#log-filter").value});
    const resp = await fetch(view.dataset.logs + "?" + params);
    const data = await resp.json();
    const atBottom = view.scrollTop + view.clientHeight >= view.scrollHeight - 20;
    view.innerHTML = (data.entries || []).map((e) => "<div class='line c-" + esc(e.container) + "'><span class=ts>" +
      esc(e.timestamp ? e.timestamp.slice(11, 23) : "") + "</span><span class=ts>" + esc(e.container) + "</span>" + esc(e.message) + "</div>").join("") ||
      "<div class=line>No log lines" + ($("#log-filter").value ? " match the filter" : "") + ".</div>";
    $("#log-count").textContent = (data.entries || []).length + " lines" + (data.linesTruncated ? " (older lines cut)" : "");
    if (atBottom || !loaded.logsScrolled) { view.scrollTop = view.scrollHeight; loaded.logsScrolled = true; }
  }
  function followLogs() {
    clearInterval(logTimer);
    if ($("#log-follow").checked) logTimer = setInterval(loadLogs, 2000);
  }

  // -- envoy -------------------------------------------------------------------------------------
  async function loadEnvoy() {
    const out = $("#envoy-dump");
    const pod = $("#envoy-pod").value;
    if (!pod) { out.textContent = "This workload has no sidecar."; return; }
    const resp = await fetch("/api/namespaces/" + out.dataset.ns + "/pods/" + encodeURIComponent(pod) + "/config_dump/" + $("#envoy-resource").value);
    const data = await resp.json();
    out.textContent = resp.ok ? data.text : data.error;
  }

  const loaders = {
    inbound: () => loadMetrics($("#tab-inbound .charts")),
    outbound: () => loadMetrics($("#tab-outbound .charts")),
    traces: loadTraces,
    logs: () => { loadLogs(); followLogs(); },
    envoy: loadEnvoy,
  };

  document.addEventListener("DOMContentLoaded", () => {
    $$("#tabs a").forEach((a) => a.addEventListener("click", (ev) => { ev.preventDefault(); history.replaceState(null, "", "#" + a.dataset.tab); show(a.dataset.tab); }));
    $$(".metrics-duration").forEach((s) => s.addEventListener("change", () => loadMetrics($(".charts", s.closest(".tab")))));
    if ($("#logview")) {
      $("#log-tail").addEventListener("change", loadLogs);
      $("#log-filter").addEventListener("input", loadLogs);
      $("#log-follow").addEventListener("change", followLogs);
      $("#envoy-pod").addEventListener("change", loadEnvoy);
      $("#envoy-resource").addEventListener("change", loadEnvoy);
    }
    const params = new URLSearchParams(location.search);
    if (params.get("pod") && $("#envoy-pod")) $("#envoy-pod").value = params.get("pod");
    const wanted = params.get("tab") || location.hash.slice(1);
    if (wanted && $("#tab-" + wanted)) show(wanted);
  });
})();
