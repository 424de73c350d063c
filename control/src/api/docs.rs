//! `GET /docs`: a self-contained HTML page (no CDN, no external assets) whose inline script
//! fetches `/api/openapi.json` and renders its operations and schemas.

use axum::http::header;
use axum::response::{IntoResponse, Response};

pub async fn serve() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        PAGE,
    )
        .into_response()
}

const PAGE: &str = r##"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>sling API</title>
<style>
  :root { color-scheme: light dark; --fg:#1d1f24; --muted:#5b6170; --bg:#fff; --card:#f5f6f8; --line:#dfe2e7; }
  @media (prefers-color-scheme: dark) { :root { --fg:#e6e8ec; --muted:#9aa1ad; --bg:#15171b; --card:#1e2127; --line:#2c3038; } }
  body { font: 15px/1.5 system-ui, -apple-system, Segoe UI, sans-serif; margin: 0; color: var(--fg); background: var(--bg); }
  main { max-width: 960px; margin: 0 auto; padding: 24px 16px 64px; }
  h1 { margin: 0 0 4px; } p.lead { color: var(--muted); margin-top: 0; }
  details { background: var(--card); border: 1px solid var(--line); border-radius: 8px; margin: 8px 0; }
  summary { cursor: pointer; padding: 10px 12px; display: flex; gap: 10px; align-items: baseline; flex-wrap: wrap; }
  .m { font: 600 12px ui-monospace, monospace; text-transform: uppercase; padding: 2px 6px; border-radius: 4px; color: #fff; min-width: 52px; text-align: center; }
  .get { background: #2f7d32; } .post { background: #1565c0; } .patch { background: #8e24aa; } .put { background: #ef6c00; } .delete { background: #c62828; }
  code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 13px; }
  .path { font-weight: 600; } .scope { color: var(--muted); font-size: 13px; margin-left: auto; }
  .body { padding: 0 12px 12px; } pre { background: var(--bg); border: 1px solid var(--line); padding: 10px; border-radius: 6px; overflow: auto; }
  table { border-collapse: collapse; width: 100%; } td, th { text-align: left; border-bottom: 1px solid var(--line); padding: 4px 6px; vertical-align: top; }
  #err { color: #c62828; }
</style>
</head>
<body>
<main>
  <h1>sling API</h1>
  <p class="lead">Rendered from <a href="/api/openapi.json">/api/openapi.json</a>. Authenticate with
  <code>Authorization: Bearer sk_…</code>, <code>X-API-Key</code> or <code>?key=</code>.</p>
  <p id="err"></p>
  <h2>Operations</h2><div id="ops">Loading…</div>
  <h2>Schemas</h2><div id="schemas"></div>
</main>
<script>
"use strict";
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  return e;
}
function pre(v) { return el("pre", {}, JSON.stringify(v, null, 2)); }
function render(doc) {
  const ops = document.getElementById("ops");
  ops.textContent = "";
  for (const [path, methods] of Object.entries(doc.paths || {})) {
    for (const [method, op] of Object.entries(methods)) {
      const body = el("div", { class: "body" });
      if (op.description) body.append(el("p", {}, op.description));
      if (op.parameters && op.parameters.length) {
        const t = el("table", {}, el("tr", {}, el("th", {}, "parameter"), el("th", {}, "in"), el("th", {}, "schema"), el("th", {}, "description")));
        for (const p of op.parameters) t.append(el("tr", {}, el("td", {}, el("code", {}, p.name)), el("td", {}, p.in), el("td", {}, el("code", {}, JSON.stringify(p.schema))), el("td", {}, p.description || "")));
        body.append(t);
      }
      if (op.requestBody) { body.append(el("h4", {}, "Request body")); body.append(pre(op.requestBody.content)); }
      const r = el("table", {}, el("tr", {}, el("th", {}, "status"), el("th", {}, "meaning")));
      for (const [code, resp] of Object.entries(op.responses || {})) r.append(el("tr", {}, el("td", {}, code), el("td", {}, resp.description || "")));
      body.append(el("h4", {}, "Responses"), r);
      const sum = el("summary", {}, el("span", { class: "m " + method }, method), el("span", { class: "path" }, path), el("span", {}, op.summary || ""));
      if (op["x-required-scope"]) sum.append(el("span", { class: "scope" }, "scope: " + op["x-required-scope"]));
      ops.append(el("details", {}, sum, body));
    }
  }
  const schemas = document.getElementById("schemas");
  for (const [name, schema] of Object.entries((doc.components || {}).schemas || {})) {
    schemas.append(el("details", {}, el("summary", {}, el("span", { class: "path" }, name)), el("div", { class: "body" }, pre(schema))));
  }
}
fetch("/api/openapi.json").then(r => r.json()).then(render).catch(e => {
  document.getElementById("err").textContent = "Could not load the OpenAPI document: " + e;
});
</script>
</body>
</html>
"##;
