"""The console: an aiohttp app with a JSON API first and server-rendered pages from the same data.

Parts (pure logic apart from I/O):
- spans.py: the span model in Jaeger's vocabulary, Zipkin v2 JSON -> spans (what sidecars send).
- jaeger.py: spans -> Jaeger query-API JSON (trace assembly, the span-id deduper, processes).
- query.py: Jaeger's /api/traces parameters parsed and matched as its memory store does.
- store.py: the bounded in-memory trace collector used when no Jaeger runs.
- collector.py: its HTTP face (Zipkin's POST /api/v2/spans, Jaeger's GET /api/services, /api/traces, ...).
- tracesource.py: where traces come from (the local store, or an external Jaeger's query API).
- mesh.py: what the control plane reports (/debug/syncz, /ready), read over HTTP.
- views.py: the overview's view data (the /api/status JSON and the page both render it), the trace page's rows.
- templates/: jinja2 pages (overview, trace) with inline CSS; nothing is fetched from elsewhere.
- app.py: the aiohttp application and `run()` behind `sandbox console`.
- reader.py (reads) and writer.py (writes, through `sandbox apply`'s planner): the only I/O of the
  Kiali views; data.py shapes them with the pure modules, api.py answers JSON, pages.py HTML.
- changes.py: Kiali's config API (create, replace, merge patch, delete) and the service wizards
  (wizards.py, wizard_state.py); edits.py turns bodies and the planner's verdict into JSON.
- access.py: the token and Origin every write needs; security.py: mTLS and authorization per workload.
"""
