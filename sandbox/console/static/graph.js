// The traffic graph: Kiali's graph JSON (/api/namespaces/graph) drawn with Cytoscape.js and dagre,
// refreshed on an interval; edge labels, health colours, mTLS padlocks, node badges, find/hide.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
  const COLOR = {Healthy: "#3e8635", Degraded: "#f0ab00", Failure: "#c9190b", NA: "#8a8d90", "Not Ready": "#f0ab00"};
  const state = {data: null, refreshes: 0, cy: null, selected: null, timer: null, layoutKey: ""};
  window.sandboxGraph = state;  // tests and curious users read the graph from here

  const BADGES = [["hasVS", "VS"], ["hasCB", "CB"], ["hasFaultInjection", "FI"], ["hasTrafficShifting", "TS"],
    ["hasRequestRouting", "RR"], ["hasRequestTimeout", "RT"], ["hasMirroring", "MI"], ["isGateway", "GW"], ["isRoot", "ROOT"]];

  function nodeLabel(d) {
    let name = d.nodeType === "service" ? d.service : d.nodeType === "unknown" ? "unknown" :
      (d.app && d.nodeType === "app" ? d.app : d.workload || d.app);
    if (d.nodeType === "app" && d.version && d.version !== "latest" && d.version !== "unknown") name += "\n" + d.version;
    const badges = BADGES.filter(([k]) => d[k]).map(([, t]) => t);
    return badges.length ? name + "\n[" + badges.join(" ") + "]" : name;
  }

  const rate = (d, k) => parseFloat((d.traffic && d.traffic.rates && d.traffic.rates[k]) || "0");
  function edgeLabel(d) {
    const mode = $("edgeLabels").value;
    const p = d.traffic ? d.traffic.protocol : "http";
    const parts = [];
    if (mode === "rate" || mode === "all") {
      parts.push(p === "tcp" ? rate(d, "tcp").toFixed(0) + "bps" : rate(d, p).toFixed(2) + "rps");
    }
    const share = rate(d, p + "PercentReq");  // Kiali shows a share only when the source splits its traffic
    if ((mode === "distribution" || mode === "all") && share > 0 && share < 100) parts.push(share.toFixed(1) + "%");
    if ((mode === "rt" || mode === "all") && d.responseTime) {
      const ms = parseFloat(d.responseTime);
      parts.push(ms >= 1000 ? (ms / 1000).toFixed(2) + "s" : ms.toFixed(0) + "ms");
    }
    if ((mode === "errors" || mode === "all" || mode === "rate") && rate(d, p + "PercentErr") > 0) parts.push(rate(d, p + "PercentErr").toFixed(1) + "%err");
    return parts.join(mode === "all" ? " | " : "\n");
  }

  // -- Kiali's security display: a padlock beside the label of every edge whose traffic was mutual TLS
  // (isMTLS > 0, from connection_security_policy="mutual_tls"), drawn over the graph (no icon font ships)
  const LOCK = '<svg viewBox="0 0 14 16" width="14" height="16" aria-hidden="true"><path d="M3.5 7V4.8a3.5 3.5 0 0 1 7 0V7" ' +
    'fill="none" stroke="#3e8635" stroke-width="2"/><rect x="1" y="7" width="12" height="9" rx="1.5" fill="#3e8635"/>' +
    '<circle cx="7" cy="11.2" r="1.4" fill="#fff"/></svg>';
  let lockFrame = 0;
  function drawLocks() {
    lockFrame = 0;
    const layer = $("locks");
    if (!state.cy || !$("security").checked) { layer.innerHTML = ""; return; }
    const secure = state.cy.edges().filter((e) => parseFloat(e.data("isMTLS") || "0") > 0 && e.visible());
    layer.innerHTML = secure.map((e) => {
      const label = e.renderedBoundingBox({includeNodes: false, includeEdges: false, includeLabels: true});
      const mid = e.renderedMidpoint();
      const x = label.w > 0 ? label.x1 - 17 : mid.x - 7, y = label.h > 0 ? (label.y1 + label.y2) / 2 - 8 : mid.y - 8;
      return '<span class="lock" data-edge="' + e.id() + '" title="mTLS ' + esc(e.data("isMTLS")) + '% of requests" style="left:' +
        x.toFixed(1) + "px;top:" + y.toFixed(1) + 'px">' + LOCK + "</span>";
    }).join("");
    layer.dataset.locks = String(secure.length);
  }
  function scheduleLocks() { if (!lockFrame) lockFrame = requestAnimationFrame(drawLocks); }

  // -- find / hide: Kiali-style expressions ("rt > 130", "%error >= 5", "name = reviews", "a AND b")
  const FIELDS = {
    rt: (d) => parseFloat(d.responseTime || "NaN"), responsetime: (d) => parseFloat(d.responseTime || "NaN"),
    "%error": (d) => rate(d, (d.traffic || {}).protocol + "PercentErr"), "%err": (d) => rate(d, (d.traffic || {}).protocol + "PercentErr"),
    rps: (d) => rate(d, (d.traffic || {}).protocol), "%req": (d) => rate(d, (d.traffic || {}).protocol + "PercentReq"),
    "%httptraffic": (d) => rate(d, "httpPercentReq"), mtls: (d) => parseFloat(d.isMTLS || "0"),
    name: (d) => d.app || d.workload || d.service, app: (d) => d.app, version: (d) => d.version, workload: (d) => d.workload,
    service: (d) => d.service, namespace: (d) => d.namespace, node: (d) => d.nodeType, health: (d) => d.healthStatus,
  };
  function compile(text) {
    const clauses = text.split(/\s+(?:and|AND|&&)\s+/).map((c) => c.trim()).filter(Boolean);
    const tests = clauses.map((c) => {
      const m = c.match(/^(\S+)\s*(>=|<=|!=|=|>|<)\s*(.+)$/);
      if (!m || !FIELDS[m[1].toLowerCase()]) return null;
      const get = FIELDS[m[1].toLowerCase()], op = m[2], want = m[3].trim();
      return (d) => {
        const v = get(d);
        if (v === undefined || v === null || (typeof v === "number" && isNaN(v))) return false;
        const n = parseFloat(want), num = typeof v === "number" && !isNaN(n);
        switch (op) {
          case ">": return num && v > n; case "<": return num && v < n;
          case ">=": return num && v >= n; case "<=": return num && v <= n;
          case "=": return num ? v === n : String(v) === want; default: return num ? v !== n : String(v) !== want;
        }
      };
    });
    if (!tests.length || tests.includes(null)) return null;
    return (d) => tests.every((t) => t(d));
  }
  function applyFindHide() {
    const cy = state.cy;
    if (!cy) return;
    cy.elements().removeClass("found hidden");
    const find = compile($("find").value), hide = compile($("hide").value);
    $("find").style.borderColor = $("find").value && !find ? "#c9190b" : "";
    $("hide").style.borderColor = $("hide").value && !hide ? "#c9190b" : "";
    if (hide) cy.elements().filter((e) => hide(e.data())).addClass("hidden");
    if (hide) cy.nodes().filter((n) => n.connectedEdges().length && n.connectedEdges().every((e) => e.hasClass("hidden"))).addClass("hidden");
    if (find) cy.elements().filter((e) => find(e.data())).addClass("found");
  }

  function style() {
    return [
      {selector: "node", style: {
        label: "data(label)", "text-wrap": "wrap", "text-valign": "bottom", "text-margin-y": 6, "font-size": 12,
        "font-family": "system-ui, sans-serif", color: "#151515", "text-background-color": "#fff", "text-background-opacity": 0.85,
        "text-background-padding": 2, "background-color": "#fff", "border-width": 3, "border-color": "data(color)", "font-weight": 500,
        width: 36, height: 36, shape: "ellipse"}},
      {selector: "node[nodeType = 'app']", style: {shape: "round-rectangle", width: 44, height: 30}},
      {selector: "node[nodeType = 'service']", style: {shape: "diamond", width: 38, height: 38, "background-color": "#f5f9fd"}},
      {selector: "node[nodeType = 'unknown']", style: {"border-style": "dashed"}},
      {selector: "node[?isRoot]", style: {"background-color": "#e7f1fa"}},
      {selector: "node[?isOutside]", style: {"background-color": "#f0f0f0"}},
      {selector: "edge", style: {
        width: 2, "curve-style": "bezier", "target-arrow-shape": "triangle", "line-color": "data(color)",
        "target-arrow-color": "data(color)", label: "data(label)", "font-size": 11, "text-wrap": "wrap",
        "text-background-color": "#fff", "text-background-opacity": 0.9, "text-background-padding": 2, color: "#151515",
        "font-family": "system-ui, sans-serif"}},
      {selector: ":selected", style: {"overlay-color": "#0066cc", "overlay-opacity": 0.15, "border-color": "#0066cc", "line-color": "#0066cc", "target-arrow-color": "#0066cc"}},
      {selector: ".found", style: {"overlay-color": "#f0ab00", "overlay-opacity": 0.35, "overlay-padding": 6}},
      {selector: ".hidden", style: {display: "none"}},
    ];
  }

  function elements(data) {
    const nodes = data.elements.nodes.map((n) => ({group: "nodes", data: Object.assign({}, n.data, {
      label: nodeLabel(n.data), color: COLOR[n.data.healthStatus] || COLOR.NA})}));
    const edges = data.elements.edges.map((e) => ({group: "edges", data: Object.assign({}, e.data, {
      label: edgeLabel(e.data),
      color: e.data.traffic && e.data.traffic.protocol === "tcp" ? "#2b9af3" : (COLOR[e.data.healthStatus] || COLOR.NA)})}));
    return nodes.concat(edges);
  }

  function url() {
    const p = new URLSearchParams({
      namespaces: $("namespaces").value, graphType: $("graphType").value, duration: $("duration").value,
      injectServiceNodes: $("serviceNodes").checked ? "true" : "false", responseTime: "95"});
    // Kiali's appenders: response times (the costliest query) only when a label or find/hide uses them
    const rt = ["rt", "all"].includes($("edgeLabels").value) || /\b(rt|responsetime)\b/i.test($("find").value + " " + $("hide").value);
    p.set("appenders", "deadNode,istio,securityPolicy,health" + (rt ? ",responseTime" : ""));
    return "/api/namespaces/graph?" + p;
  }

  async function load() {
    let data;
    try {
      const resp = await fetch(url());
      data = await resp.json();
      if (!resp.ok) throw new Error(data.error || resp.statusText);
    } catch (err) {
      $("graph-status").innerHTML = '<span class="reason">' + esc(err.message) + "</span>";
      return;
    }
    data.hasRT = new URLSearchParams(url().split("?")[1]).get("appenders").includes("responseTime");
    state.data = data;
    state.refreshes += 1;
    draw(data);
    const when = new Date(data.timestamp * 1000).toLocaleTimeString();
    $("graph-status").textContent = data.elements.nodes.length + " nodes, " + data.elements.edges.length + " edges · last " +
      data.duration + "s · updated " + when + " (refresh #" + state.refreshes + ")";
    document.body.dataset.refreshes = String(state.refreshes);
  }

  function draw(data) {
    const els = elements(data);
    const key = els.map((e) => e.data.id).sort().join(",");
    $("graph-empty").style.display = data.elements.nodes.length ? "none" : "flex";
    if (!state.cy) {
      state.cy = cytoscape({container: $("cy"), elements: els, style: style(), wheelSensitivity: 0.3, minZoom: 0.2, maxZoom: 3});
      state.cy.on("tap", "node, edge", (ev) => { state.selected = ev.target.id(); side(ev.target); });
      state.cy.on("tap", (ev) => { if (ev.target === state.cy) { state.selected = null; side(null); } });
      state.cy.on("render viewport", scheduleLocks);
    } else if (key !== state.layoutKey) {
      state.cy.elements().remove();
      state.cy.add(els);
    } else {
      els.forEach((e) => state.cy.getElementById(e.data.id).data(e.data));
    }
    if (key !== state.layoutKey) {
      const layout = state.cy.layout({name: "dagre", rankDir: "LR", nodeSep: 45, rankSep: 120, fit: true, padding: 40});
      layout.one("layoutstop", () => {  // a small graph is drawn readable, not blown up to the whole pane
        if (state.cy.zoom() > 1.5) { state.cy.zoom(1.5); state.cy.center(); }
      });
      layout.run();
      state.layoutKey = key;
    }
    applyFindHide();
    scheduleLocks();
    const sel = state.selected && state.cy.getElementById(state.selected);
    side(sel && sel.length ? sel : null);
  }

  function ratesTable(traffic) {
    return (traffic || []).map((t) => "<table><thead><tr><th colspan=2>" + esc(t.protocol.toUpperCase()) + "</th></tr></thead><tbody>" +
      Object.entries(t.rates || {}).map(([k, v]) => "<tr><td>" + esc(k) + "</td><td class=num>" + esc(v) + "</td></tr>").join("") + "</tbody></table>").join("");
  }
  function side(el) {
    const title = $("side-title"), body = $("side-body");
    if (!el) {
      const d = state.data;
      title.textContent = "Namespace " + $("namespaces").value;
      if (!d) return;
      const http = d.elements.edges.reduce((s, e) => s + rate(e.data, "http"), 0);
      const errs = d.elements.edges.reduce((s, e) => s + rate(e.data, "http4xx") + rate(e.data, "http5xx"), 0);
      body.innerHTML = "<p><strong>" + d.elements.nodes.length + "</strong> nodes, <strong>" + d.elements.edges.length + "</strong> edges</p>" +
        "<p>HTTP traffic on all edges: <strong>" + http.toFixed(2) + " rps</strong>, " + (http ? (100 * errs / http).toFixed(1) : "0.0") + "% errors</p>" +
        '<p class="muted">Select a node or an edge to see its traffic.</p>';
      return;
    }
    const d = el.data();
    if (el.isNode()) {
      const kind = d.nodeType === "service" ? "services" : d.nodeType === "workload" ? "workloads" : "applications";
      const name = d.nodeType === "service" ? d.service : d.nodeType === "workload" ? d.workload : d.app;
      title.innerHTML = esc(d.nodeType) + ": " + (d.nodeType === "unknown" ? "unknown" :
        "<a href='/console/namespaces/" + esc(d.namespace) + "/" + kind + "/" + esc(name) + "'>" + esc(name) + "</a>") + (d.version ? " " + esc(d.version) : "");
      const badges = BADGES.filter(([k]) => d[k]).map(([k, t]) => "<span class=badge title='" + k + "'>" + t + "</span>").join(" ");
      body.innerHTML = "<p>namespace <strong>" + esc(d.namespace) + "</strong>" + (d.workload ? " · workload <a href='/console/namespaces/" + esc(d.namespace) +
        "/workloads/" + esc(d.workload) + "'>" + esc(d.workload) + "</a>" : "") + "</p><p>health <span class='badge h-" + esc(String(d.healthStatus).replace(" ", "-")) + "'>" + esc(d.healthStatus) + "</span> " + badges + "</p>" +
        (d.hasVS ? "<p>VirtualService hosts: " + esc((d.hasVS.hostnames || []).join(", ")) + "</p>" : "") +
        (d.isGateway ? "<p>Gateway hosts: " + esc(((d.isGateway.ingressInfo || d.isGateway.egressInfo || {}).hostnames || []).join(", ")) + "</p>" : "") + ratesTable(d.traffic);
    } else {
      const s = el.source().data(), t = el.target().data();
      title.textContent = "Edge " + (s.app || s.workload || s.service || "unknown") + " → " + (t.service || t.workload || t.app);
      const tr = d.traffic || {};
      const responses = Object.entries(tr.responses || {}).map(([code, det]) => "<tr><td>" + esc(code) + "</td><td>" +
        esc(Object.entries(det.flags || {}).map(([f, v]) => f + " " + v + "%").join(", ")) + "</td></tr>").join("");
      body.innerHTML = "<p>" + esc((tr.protocol || "").toUpperCase()) + " · health <span class='badge h-" + esc(String(d.healthStatus).replace(" ", "-")) + "'>" + esc(d.healthStatus) + "</span>" +
        (parseFloat(d.isMTLS || "0") > 0 ? " · <span class='badge tls-MTLS_ENABLED'>mTLS " + esc(d.isMTLS) + "%</span>" : " · no mTLS") + "</p>" +
        (d.responseTime ? "<p>response time p95 <strong>" + esc(d.responseTime) + " ms</strong></p>" : "") +
        ratesTable([tr]) + (responses ? "<table><thead><tr><th>Code</th><th>Flags (% of requests)</th></tr></thead><tbody>" + responses + "</tbody></table>" : "");
    }
  }

  function schedule() {
    clearInterval(state.timer);
    const seconds = parseInt($("refresh").value, 10);
    if (seconds > 0) state.timer = setInterval(load, seconds * 1000);
  }

  document.addEventListener("DOMContentLoaded", () => {
    ["namespaces", "graphType", "duration", "serviceNodes"].forEach((id) => $(id).addEventListener("change", () => { state.layoutKey = ""; load(); }));
    $("security").addEventListener("change", () => { if (state.data) draw(state.data); scheduleLocks(); });
    $("edgeLabels").addEventListener("change", () => (state.data && state.data.hasRT) ? draw(state.data) : load());
    ["find", "hide"].forEach((id) => $(id).addEventListener("input", () => {
      if (/\b(rt|responsetime)\b/i.test($(id).value) && state.data && !state.data.hasRT) load(); else applyFindHide();
    }));
    $("refresh").addEventListener("change", schedule);
    $("refresh-now").addEventListener("click", load);
    const q = new URLSearchParams(location.search);
    if (q.get("find")) $("find").value = q.get("find");
    if (q.get("hide")) $("hide").value = q.get("hide");
    if (q.get("edgeLabels") !== null) $("edgeLabels").value = q.get("edgeLabels");
    load();
    schedule();
  });
})();
