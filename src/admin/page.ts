/**
 * The operator's page: static markup filled in by /admin/assets/admin.js from /admin/usage.
 * No inline script (helmet's CSP allows scripts from this origin only); inline style is allowed.
 */
export function adminPage(): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>Parker token service: operator view</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/admin/assets/uPlot.min.css">
<style>
  :root { color-scheme: light; font-family: system-ui, sans-serif; color: #1d2330; background: #f6f7f9; }
  body { margin: 0 auto; max-width: 1100px; padding: 24px; }
  h1 { font-size: 1.4rem; margin: 0 0 4px; }
  h2 { font-size: 1.05rem; margin: 28px 0 10px; }
  .muted { color: #5c6475; font-size: 0.9rem; }
  .cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(240px, 1fr)); gap: 12px; margin-top: 16px; }
  .card { background: #fff; border: 1px solid #dde1e8; border-radius: 8px; padding: 14px 16px; }
  .card .label { font-size: 0.8rem; text-transform: uppercase; letter-spacing: 0.04em; color: #5c6475; }
  .card .value { font-size: 1.6rem; font-weight: 600; margin: 4px 0; font-variant-numeric: tabular-nums; }
  .bar { height: 8px; background: #e8ebf0; border-radius: 4px; overflow: hidden; }
  .bar > div { height: 100%; width: 0; background: #2f7de1; }
  .bar.warn > div { background: #e59a1a; }
  .bar.full > div { background: #d2402e; }
  #chart { background: #fff; border: 1px solid #dde1e8; border-radius: 8px; padding: 8px; min-height: 320px; }
  table { width: 100%; border-collapse: collapse; background: #fff; border: 1px solid #dde1e8; border-radius: 8px; }
  th, td { text-align: left; padding: 7px 10px; border-bottom: 1px solid #eef0f4; font-size: 0.92rem; }
  th { font-size: 0.78rem; text-transform: uppercase; letter-spacing: 0.04em; color: #5c6475; }
  td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
  td.client { font-family: ui-monospace, monospace; word-break: break-all; }
  #error { color: #b3261e; }
</style>
<script src="/admin/assets/uPlot.iife.min.js" defer></script>
<script src="/admin/assets/admin.js" type="module"></script>
</head>
<body>
<h1>Parker token service</h1>
<div class="muted">Operator view: the current 24 h windows. <span id="store"></span> <span id="updated"></span></div>
<div id="error" role="alert"></div>

<div class="cards">
  <div class="card" id="mints-card">
    <div class="label">Client secrets minted</div>
    <div class="value" id="global-mints">…</div>
    <div class="bar" id="mints-bar"><div></div></div>
    <div class="muted" id="mints-limit"></div>
  </div>
  <div class="card" id="spend-card">
    <div class="label">Spend</div>
    <div class="value" id="global-spend">…</div>
    <div class="bar" id="spend-bar"><div></div></div>
    <div class="muted" id="spend-limit"></div>
  </div>
  <div class="card">
    <div class="label">Active calls</div>
    <div class="value" id="active-calls">…</div>
    <div class="muted">relayed calls of the clients below</div>
  </div>
</div>

<h2>Last 24 hours, per hour</h2>
<div id="chart"></div>

<h2>Top clients <span class="muted">(by spend, then mints; at most 100)</span></h2>
<table id="clients">
  <thead><tr><th>Client</th><th class="num">Mints</th><th class="num">Spend (USD)</th><th class="num">Active calls</th><th>Window resets</th></tr></thead>
  <tbody></tbody>
</table>
</body>
</html>
`;
}
