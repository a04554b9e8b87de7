// The Istio config editor: the object's YAML in CodeMirror (5) with the analyzer's diagnostics marked
// at their lines (messages on hover, the list beside it), validated as you type by the same planner
// `sandbox apply` runs (the config API's dryRun), saved through it, then the `wait --synced` view.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
  const data = JSON.parse($("editor-data").textContent);
  const SEVERITY = {error: "error", warning: "warning", unknown: "info"};
  const state = {checks: data.checks || [], saved: null, cm: null, validations: 0};
  window.sandboxEditor = state;  // tests and curious users read the editor from here

  function url(dryRun) {
    const base = data.create
      ? "/api/namespaces/" + encodeURIComponent($("new-namespace").value) + "/istio/" + encodeURIComponent($("new-kind").value)
      : "/api/namespaces/" + encodeURIComponent(data.namespace) + "/istio/" + encodeURIComponent(data.plural) + "/" + encodeURIComponent(data.name);
    return base + (dryRun ? "?dryRun=All" : "");
  }

  function message(kind, html) {
    $("editor-message").innerHTML = html ? '<div class="notice ' + kind + '">' + html + "</div>" : "";
  }

  function annotations(checks) {
    const cm = state.cm;
    return checks.map((c) => {
      const line = Math.min(Math.max(0, (c.line || 1) - 1), cm.lineCount() - 1);
      const text = cm.getLine(line) || "";
      const start = Math.min(text.length, Math.max(text.search(/\S/), 0));
      return {
        from: CodeMirror.Pos(line, start), to: CodeMirror.Pos(line, Math.max(text.length, start + 1)),
        message: c.code + " " + c.message + (c.path ? "  [" + c.path + "]" : ""), severity: SEVERITY[c.severity] || "info",
      };
    });
  }

  function summary(checks) {
    const errors = checks.filter((c) => c.severity === "error").length;
    const warnings = checks.filter((c) => c.severity === "warning").length;
    if (!checks.length) return '<span class="badge state-SYNCED">Valid</span>';
    if (errors) return '<span class="badge h-Failure">' + errors + " error" + (errors > 1 ? "s" : "") + "</span>";
    if (warnings) return '<span class="badge h-Degraded">' + warnings + " warning" + (warnings > 1 ? "s" : "") + "</span>";
    return '<span class="badge state-UNKNOWN">' + checks.length + " info</span>";
  }

  function showChecks(checks) {
    $("validation-summary").innerHTML = summary(checks);
    $("checks").innerHTML = checks.length ? checks.map((c, i) => '<div class="check" data-index="' + i + '" data-code="' + esc(c.code) +
      '" data-line="' + (c.line || 0) + '"><span class="code sev-' + esc(c.severity) + '">' + esc(c.code) + "</span>" +
      '<span class="muted">line ' + (c.line || "–") + "</span><div>" + esc(c.message) + '</div><div class="mono muted">' + esc(c.path || "") +
      "</div></div>").join("") : '<div class="empty">No findings: the analyzer has nothing to say about this object.</div>';
    document.body.dataset.checks = checks.map((c) => c.code + "@" + (c.line || 0)).join(",");
  }

  function jump(line) {
    const at = {line: Math.max(0, (line || 1) - 1), ch: 0};
    state.cm.scrollIntoView(at, 120);
    state.cm.setCursor(at);
    state.cm.focus();
  }

  async function send(method, body, dryRun) {
    const resp = await fetch(url(dryRun), {
      method, body, headers: body === undefined ? {} : {"Content-Type": "application/yaml"}, credentials: "same-origin"});
    let result;
    try { result = await resp.json(); } catch (err) { result = {error: resp.status + " " + resp.statusText}; }
    return {status: resp.status, result};
  }

  // CodeMirror's lint add-on calls this (debounced) on every change: the same validation Save runs.
  // One dry run at a time (planning a big mesh takes a while): edits made meanwhile are validated
  // together once it answers, never queued one by one.
  function lint(text, update) {
    if (!data.editable || text === state.saved) {
      update(annotations(state.checks));
      showChecks(state.checks);
      return;
    }
    if (state.inflight) { state.next = [text, update]; return; }
    state.inflight = true;
    $("editor-status").textContent = "Validating…";
    send(data.create ? "POST" : "PUT", text, true).then(({status, result}) => {
      state.inflight = false;
      $("editor-status").textContent = "";
      if (state.next) { const [t, u] = state.next; state.next = null; lint(t, u); return; }
      state.validations += 1;
      if (status === 200 || status === 422) {
        state.checks = result.checks || [];
        message(status === 422 ? "bad" : "", status === 422 ? esc(result.error) : "");
      } else {
        state.checks = result.checks || [];
        message("bad", esc(result.error || "the console could not validate this text"));
      }
      update(annotations(state.checks));
      showChecks(state.checks);
      document.body.dataset.validations = String(state.validations);
    }).catch((err) => {
      state.inflight = false;
      $("editor-status").textContent = "";
      message("bad", "The console did not answer (" + esc(err.message) + "): is the mesh still up?");
    });
  }

  function changed(result) {
    return (result.changes || []).map((c) => esc(c.kind.toLowerCase() + "/" + c.name + " " + c.action) +
      (c.file ? ' <span class="mono muted">' + esc(c.file) + "</span>" : "")).join("<br>");
  }

  async function save() {
    const text = state.cm.getValue();
    $("save").disabled = true;
    $("editor-status").textContent = "Validating and saving…";
    const {status, result} = await send(data.create ? "POST" : "PUT", text, false);
    $("save").disabled = false;
    $("editor-status").textContent = "";
    state.checks = result.checks || state.checks;
    state.cm.performLint();
    if (status === 422) {
      message("bad", "<strong>Not saved.</strong> " + esc(result.error));
      document.body.dataset.saved = "refused";
      const first = (result.refused || []).find((c) => c.inRequest) || state.checks[0];
      if (first) jump(first.line);
      return;
    }
    if (status >= 300) {
      message("bad", "<strong>Not saved.</strong> " + esc(result.error || status));
      document.body.dataset.saved = "failed";
      return;
    }
    state.saved = text;
    const warnings = (result.warnings || []).map((w) => esc(w.code + " " + w.message)).join("<br>");
    message(warnings ? "warn" : "ok", "<strong>" + (result.written ? "Saved" : "Nothing to save") + ".</strong> " + changed(result) +
      (warnings ? "<br>Warnings: " + warnings : ""));
    document.body.dataset.saved = result.written ? "written" : "unchanged";
    if (result.written) {
      $("sync").hidden = false;
      await window.sandboxSync($("sync-body"));
      if (data.create) {
        const c = (result.changes || [])[0];
        if (c) location.href = "/console/namespaces/" + c.namespace + "/istio/" + c.kind.toLowerCase() + "/" + c.name;
      }
    }
  }

  async function remove() {
    if (!confirm("Delete " + data.kind + " " + data.namespace + "/" + data.name + "?")) return;
    const {status, result} = await send("DELETE", undefined, false);
    if (status !== 200) {
      message("bad", "<strong>Not deleted.</strong> " + esc(result.error || status));
      return;
    }
    message("ok", "<strong>Deleted.</strong> " + changed(result));
    $("sync").hidden = false;
    await window.sandboxSync($("sync-body"));
    location.href = "/console/istio?namespaces=" + encodeURIComponent(data.namespace);
  }

  document.addEventListener("DOMContentLoaded", () => {
    state.cm = CodeMirror.fromTextArea($("yaml"), {
      mode: "yaml", lineNumbers: true, readOnly: !data.editable, tabSize: 2, indentUnit: 2, lineWrapping: false,
      gutters: ["CodeMirror-lint-markers", "CodeMirror-linenumbers"],
      extraKeys: {Tab: (cm) => cm.replaceSelection("  "), "Ctrl-S": () => save(), "Cmd-S": () => save()},
      lint: {getAnnotations: lint, async: true, highlightLines: true, delay: 600},
    });
    state.saved = state.cm.getValue();
    if ($("save")) $("save").addEventListener("click", save);
    if ($("reload")) $("reload").addEventListener("click", () => location.reload());
    if ($("delete")) $("delete").addEventListener("click", remove);
    $("checks").addEventListener("click", (ev) => {
      const row = ev.target.closest(".check");
      if (row) jump(Number(row.dataset.line));
    });
    if (data.create) ["new-kind", "new-namespace"].forEach((id) => $(id).addEventListener("change", () => {
      if (id === "new-kind") location.href = "/console/istio/new?kind=" + $("new-kind").value + "&namespaces=" + $("new-namespace").value;
    }));
    document.body.dataset.editor = "ready";
  });
})();
