// The `sandbox wait --synced` view: after a change is written, poll /api/mesh/sync until the control
// plane has read it and every sidecar has ACKed the config it pushed (or a sidecar NACKs it).
"use strict";
(function () {
  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));

  // box: the element to draw in; resolves with the last answer (synced or not)
  window.sandboxSync = function (box, timeoutSeconds) {
    const started = performance.now();
    const limit = (timeoutSeconds || 60) * 1000;
    box.dataset.synced = "waiting";
    return new Promise((resolve) => {
      async function poll() {
        let data;
        try {
          const resp = await fetch("/api/mesh/sync", {cache: "no-store"});
          data = await resp.json();
          if (!resp.ok) throw new Error(data.error || resp.statusText);
        } catch (err) {
          box.innerHTML = '<span class="reason">' + esc(err.message) + "</span>";
          box.dataset.synced = "error";
          resolve(null);
          return;
        }
        const seconds = ((performance.now() - started) / 1000).toFixed(2);
        const nack = (data.problems || []).filter((p) => p.includes("NACK"));
        const share = data.expected ? (100 * data.acked / data.expected).toFixed(0) : "100";
        if (data.synced) {
          box.innerHTML = '<div class="notice ok">Every sidecar (' + data.expected + ") ACKed the new config in " + seconds +
            " s: the mesh runs it.</div>";
          box.dataset.synced = "synced";
          resolve(data);
          return;
        }
        const waiting = (data.pending || []).length ? "The control plane is reading the change…" :
          data.acked + " of " + data.expected + " sidecars ACKed the new config";
        box.innerHTML = "<div>" + esc(waiting) + '</div><div class="bar"><span style="width:' + share + '%"></span></div>' +
          (nack.length ? '<div class="reason">' + nack.map(esc).join("<br>") + "</div>" : "") +
          '<div class="muted">' + seconds + " s</div>";
        if (nack.length || performance.now() - started > limit) {
          box.dataset.synced = nack.length ? "nack" : "timeout";
          if (!nack.length) box.insertAdjacentHTML("beforeend", '<div class="reason">Not in sync after ' + seconds + " s: " +
            (data.problems || []).map(esc).join("; ") + "</div>");
          resolve(data);
          return;
        }
        setTimeout(poll, 200);
      }
      poll();
    });
  };
})();
