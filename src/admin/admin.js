// The operator page's script (served as a file: helmet's CSP allows no inline script). It reads
// /admin/usage (the browser resends the Basic credentials it was asked for) and draws the last 24 h
// with uPlot, loaded before it from /admin/assets/uPlot.iife.min.js.
const REFRESH_MS = 30_000;
const COLORS = ['#d2402e', '#e59a1a', '#8e44ad', '#16a085', '#7f8c8d', '#c0392b', '#2c3e50', '#d35400'];

const $ = (id) => document.getElementById(id);
const count = new Intl.NumberFormat('en-US');
const usd = new Intl.NumberFormat('en-US', { style: 'currency', currency: 'USD', minimumFractionDigits: 2, maximumFractionDigits: 2 });
const when = new Intl.DateTimeFormat('en-GB', { dateStyle: 'short', timeStyle: 'short', timeZone: 'UTC' });

let chart;

function meter(barId, used, limit) {
  const bar = $(barId);
  const share = limit ? Math.min(1, used / limit) : 0;
  bar.firstElementChild.style.width = `${(share * 100).toFixed(1)}%`;
  bar.classList.toggle('warn', share >= 0.8 && share < 1);
  bar.classList.toggle('full', share >= 1);
  bar.hidden = !limit;
}

function renderCards(report) {
  const { global } = report;
  $('global-mints').textContent = count.format(global.mints);
  $('mints-limit').textContent =
    global.mints_limit === null ? 'no daily budget (GLOBAL_MINTS_PER_DAY unset)' : `of ${count.format(global.mints_limit)} a day`;
  meter('mints-bar', global.mints, global.mints_limit);
  $('global-spend').textContent = usd.format(global.spend_usd);
  $('spend-limit').textContent =
    global.spend_limit_usd === null ? 'no spend cap (GLOBAL_SPEND_PER_DAY_USD unset)' : `of ${usd.format(global.spend_limit_usd)} a day`;
  meter('spend-bar', global.spend_usd, global.spend_limit_usd);
  $('active-calls').textContent = count.format(report.clients.reduce((sum, c) => sum + c.active_calls, 0));
  const resets = global.resets_at ? `, the window resets ${when.format(new Date(global.resets_at))} UTC` : '';
  $('store').textContent = `Counted in ${report.store === 'redis' ? 'Redis (all replicas)' : report.store === 'fallback' ? 'this process (Redis unreachable)' : 'this process'}${resets}.`;
}

function renderClients(report) {
  const body = $('clients').tBodies[0];
  const rows = report.clients.map((c) => {
    const row = document.createElement('tr');
    const cells = [
      [c.client, 'client'],
      [count.format(c.mints), 'num'],
      [usd.format(c.spend_usd), 'num'],
      [count.format(c.active_calls), 'num'],
      [`${when.format(new Date(c.resets_at))} UTC`, ''],
    ];
    for (const [text, className] of cells) {
      const cell = document.createElement('td');
      cell.textContent = text;
      if (className) cell.className = className;
      row.append(cell);
    }
    return row;
  });
  if (rows.length === 0) {
    const row = document.createElement('tr');
    const cell = document.createElement('td');
    cell.colSpan = 5;
    cell.className = 'muted';
    cell.textContent = 'No client has minted in the current window.';
    row.append(cell);
    rows.push(row);
  }
  body.replaceChildren(...rows);
}

function renderChart(report) {
  const hours = report.hourly;
  const reasons = [...new Set(hours.flatMap((h) => Object.keys(h.refusals)))].sort();
  const data = [
    hours.map((h) => Date.parse(h.hour) / 1000),
    hours.map((h) => h.mints),
    ...reasons.map((reason) => hours.map((h) => h.refusals[reason] ?? 0)),
    hours.map((h) => h.spend_usd),
  ];
  const container = $('chart');
  const width = Math.max(320, container.clientWidth - 16);
  const options = {
    width,
    height: 300,
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), 'Etc/UTC'),
    // Half an hour either side, so the first and last hours' bars are drawn whole.
    scales: { x: { time: true, range: (_u, min, max) => [min - 1800, max + 1800] }, count: { auto: true }, usd: { auto: true } },
    axes: [
      {},
      { scale: 'count', label: 'mints, refusals' },
      { scale: 'usd', side: 1, label: 'spend (USD)', grid: { show: false }, values: (_u, ticks) => ticks.map((t) => `$${t}`) },
    ],
    series: [
      { label: 'hour (UTC)' },
      { label: 'mints', scale: 'count', stroke: '#2f7de1', fill: 'rgba(47,125,225,0.35)', paths: uPlot.paths.bars({ size: [0.6, 40] }) },
      ...reasons.map((reason, i) => ({ label: `refused: ${reason}`, scale: 'count', stroke: COLORS[i % COLORS.length], width: 2 })),
      { label: 'spend (USD)', scale: 'usd', stroke: '#16a34a', width: 2, dash: [6, 4], value: (_u, v) => (v === null ? '' : usd.format(v)) },
    ],
  };
  chart?.destroy();
  chart = new uPlot(options, data, container);
}

async function refresh() {
  try {
    const response = await fetch('/admin/usage', { cache: 'no-store', credentials: 'same-origin' });
    if (!response.ok) throw new Error(`/admin/usage answered ${response.status}`);
    const report = await response.json();
    renderCards(report);
    renderClients(report);
    renderChart(report);
    $('error').textContent = '';
    $('updated').textContent = `Updated ${when.format(new Date())} UTC.`;
    document.body.dataset.ready = 'true';
  } catch (error) {
    $('error').textContent = `Could not load the usage: ${error.message}`;
  }
}

await refresh();
setInterval(refresh, REFRESH_MS);
