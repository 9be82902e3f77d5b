/**
 * The dashboard page, its stylesheet and its script, compiled into dist/ with the rest of the code
 * (the runtime image ships dist/ and node_modules only). No inline script or style: the page is
 * served with a strict Content-Security-Policy (`script-src 'self'`), and every text coming from
 * the API is written with textContent, never as HTML. The Overview tab is the live view below; the
 * admin console's other tabs live in ./dashboard/ (markup, styles, script).
 */
import { CONSOLE_CSS } from './dashboard/console-css.js';
import { CONSOLE_PANELS_HTML, CONSOLE_TABS_HTML } from './dashboard/console-html.js';

export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Floodgate · dashboard</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="dashboard/assets/dashboard.css">
</head>
<body>
<header class="top">
  <div class="brand"><span class="logo">≋</span> Floodgate</div>
  <div class="meta" id="meta">—</div>
  <div class="conn"><span class="dot" id="conn-dot"></span><span id="conn-text">not connected</span></div>
  <button type="button" id="forget-key" class="link" hidden>Forget key</button>
</header>

<section id="login" class="login" hidden>
  <form id="login-form" class="login-card" autocomplete="off">
    <h1>Floodgate dashboard</h1>
    <p>Enter an API key of an <strong>admin</strong> (or any role allowed to read status). It is kept in this browser tab only (sessionStorage) and sent as <code>Authorization: Bearer …</code> to this gateway's status API.</p>
    <label for="login-key">API key</label>
    <input id="login-key" name="key" type="password" placeholder="fg_…" spellcheck="false" autocomplete="off" required>
    <button id="login-submit" type="submit">Connect</button>
    <p id="login-error" class="error" role="alert"></p>
  </form>
</section>

<main id="app" hidden>
  ${CONSOLE_TABS_HTML}
  <div id="tab-overview" class="tab-panel">
  <section class="stats" aria-label="Totals">
    <div class="stat"><div class="label">HTTP requests</div><div class="value" id="stat-http-total">0</div><div class="rate" id="rate-http">0/s</div></div>
    <div class="stat"><div class="label">Relayed to providers</div><div class="value" id="stat-relayed-total">0</div><div class="rate" id="rate-relayed">0/s</div></div>
    <div class="stat"><div class="label">Client 429s (rate limited)</div><div class="value" id="stat-rate-limited">0</div><div class="rate" id="rate-limited">0/s</div></div>
    <div class="stat"><div class="label">Upstream 429s</div><div class="value" id="stat-upstream-429">0</div><div class="rate" id="rate-upstream-429">0/s</div></div>
    <div class="stat"><div class="label">Waiting in queues</div><div class="value" id="stat-queue-total">0</div><div class="rate" id="stat-queue-split">—</div></div>
    <div class="stat"><div class="label">Errors (5xx)</div><div class="value" id="stat-errors">0</div><div class="rate" id="stat-errors-split">—</div></div>
  </section>

  <section class="row">
    <div class="panel wide">
      <h2>Throughput <span class="hint">requests per second, last 5 minutes (this instance)</span></h2>
      <div class="chart-box tall"><canvas id="throughput-chart" aria-label="Throughput and 429s per second"></canvas></div>
    </div>
    <div class="panel side">
      <h2>Instances</h2>
      <ul id="instances" class="instances"></ul>
      <h2>Recent adaptive adjustments</h2>
      <div id="adjustments"></div>
    </div>
  </section>

  <section>
    <h2 class="section-title">Providers</h2>
    <div id="providers"></div>
  </section>
  <section>
    <h2 class="section-title">Breakers <span class="hint">circuit breaker per route target, shared by every instance</span></h2>
    <div id="breakers" class="panel"></div>
  </section>
  <section>
    <h2 class="section-title">Spend today / this month <span class="hint" id="spend-hint">UTC day and month, from the spend rollups, refreshed every 30 s</span></h2>
    <div id="spend" class="spend-grid">
      <div class="panel"><h2>By team</h2><div id="spend-teams"><div class="empty">Loading…</div></div></div>
      <div class="panel"><h2>By model</h2><div id="spend-models"><div class="empty">Loading…</div></div></div>
    </div>
  </section>
  <p id="sources-note" class="note"></p>
  </div>
  ${CONSOLE_PANELS_HTML}
</main>
<script src="dashboard/assets/chart.umd.js"></script>
<script src="dashboard/assets/dashboard.js"></script>
<script src="dashboard/assets/console.js"></script>
</body>
</html>
`;

export const DASHBOARD_CSS = `
:root {
  --bg: #0f1419; --panel: #171d24; --panel-2: #1e252e; --line: #2a333e; --text: #e6e9ee; --muted: #8b96a5;
  --ok: #3fb950; --warn: #d29922; --bad: #f85149; --accent: #58a6ff; --violet: #bc8cff;
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, Ubuntu, sans-serif; font-size: 14px;
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--text); }
[hidden] { display: none !important; }
code { background: var(--panel-2); padding: 1px 4px; border-radius: 4px; }
.top { display: flex; align-items: center; gap: 20px; padding: 10px 20px; border-bottom: 1px solid var(--line); background: var(--panel); position: sticky; top: 0; z-index: 2; }
.brand { font-weight: 700; font-size: 17px; white-space: nowrap; }
.logo { color: var(--accent); }
.meta { color: var(--muted); flex: 1; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.conn { display: flex; align-items: center; gap: 6px; color: var(--muted); white-space: nowrap; }
.dot { width: 10px; height: 10px; border-radius: 50%; background: var(--muted); display: inline-block; }
.dot.live { background: var(--ok); box-shadow: 0 0 6px var(--ok); }
.dot.connecting, .dot.reconnecting { background: var(--warn); }
.dot.error { background: var(--bad); }
button { background: var(--accent); color: #0b0f14; border: 0; border-radius: 6px; padding: 8px 14px; font-weight: 600; cursor: pointer; }
button.link { background: transparent; color: var(--muted); padding: 4px 6px; text-decoration: underline; font-weight: 400; }
main { padding: 16px 20px 28px; max-width: 1680px; margin: 0 auto; }
h1 { font-size: 20px; margin: 0 0 10px; }
h2 { font-size: 14px; margin: 0 0 10px; color: var(--text); font-weight: 600; }
.hint { color: var(--muted); font-weight: 400; font-size: 12px; margin-left: 6px; }
.section-title { margin: 18px 0 10px; }
.stats { display: grid; grid-template-columns: repeat(6, minmax(0, 1fr)); gap: 12px; margin-bottom: 14px; }
.stat { background: var(--panel); border: 1px solid var(--line); border-radius: 8px; padding: 10px 12px; min-width: 0; }
.stat .label { color: var(--muted); font-size: 12px; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.stat .value { font-size: 24px; font-weight: 700; font-variant-numeric: tabular-nums; margin-top: 2px; }
.stat .rate { color: var(--muted); font-size: 12px; font-variant-numeric: tabular-nums; }
.row { display: grid; grid-template-columns: minmax(0, 2fr) minmax(0, 1fr); gap: 14px; }
.panel { background: var(--panel); border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; min-width: 0; }
.chart-box { position: relative; height: 170px; }
.chart-box.tall { height: 250px; }
.chart-box.gauge { height: 120px; }
.instances { list-style: none; padding: 0; margin: 0 0 14px; max-height: 86px; overflow: auto; }
.instances li { display: flex; justify-content: space-between; gap: 8px; padding: 3px 0; border-bottom: 1px solid var(--line); color: var(--muted); font-size: 12px; }
.instances li.self { color: var(--text); }
.empty { color: var(--muted); background: var(--panel); border: 1px dashed var(--line); border-radius: 8px; padding: 18px; text-align: center; }
.empty code { color: var(--text); }
.side .empty { padding: 10px; font-size: 12px; }
.provider { background: var(--panel); border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; margin-bottom: 14px; }
.provider-head { display: flex; align-items: center; gap: 10px; margin-bottom: 10px; }
.provider-head .name { font-size: 16px; font-weight: 700; }
.badge { border-radius: 999px; padding: 2px 10px; font-size: 12px; font-weight: 600; text-transform: uppercase; letter-spacing: .03em; background: var(--panel-2); color: var(--muted); }
.badge.normal, .badge.active { background: rgba(63,185,80,.15); color: var(--ok); }
.badge.recover, .badge.cooling { background: rgba(210,153,34,.15); color: var(--warn); }
.badge.retreat, .badge.broken, .badge.invalid { background: rgba(248,81,73,.15); color: var(--bad); }
.badge.closed { background: rgba(63,185,80,.15); color: var(--ok); }
.badge.half_open { background: rgba(210,153,34,.15); color: var(--warn); }
.badge.open { background: rgba(248,81,73,.15); color: var(--bad); }
.badge.disabled, .badge.unknown { background: var(--panel-2); color: var(--muted); }
.provider-grid { display: grid; grid-template-columns: 230px 300px minmax(0, 1fr); gap: 16px; align-items: start; }
.gauge-wrap { text-align: center; }
.gauge-text { margin-top: -26px; font-size: 18px; font-weight: 700; font-variant-numeric: tabular-nums; }
.gauge-sub { color: var(--muted); font-size: 12px; margin-top: 4px; }
.retreat-line { color: var(--muted); font-size: 12px; margin-top: 6px; font-variant-numeric: tabular-nums; }
table { width: 100%; border-collapse: collapse; font-size: 12.5px; font-variant-numeric: tabular-nums; }
th { text-align: left; color: var(--muted); font-weight: 500; padding: 4px 6px; border-bottom: 1px solid var(--line); white-space: nowrap; }
td { padding: 5px 6px; border-bottom: 1px solid var(--line); white-space: nowrap; }
td.label-cell { max-width: 180px; overflow: hidden; text-overflow: ellipsis; }
.muted { color: var(--muted); }
.note { color: var(--muted); font-size: 12px; margin-top: 10px; }
.spend-grid { display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); gap: 14px; }
.spend-grid .table-box { max-height: 320px; overflow: auto; }
td.num, th.num { text-align: right; }
tr.total td { font-weight: 600; border-bottom: 0; }
.login { display: flex; justify-content: center; padding: 80px 20px; }
.login-card { background: var(--panel); border: 1px solid var(--line); border-radius: 10px; padding: 24px; width: 440px; }
.login-card p { color: var(--muted); line-height: 1.45; }
.login-card label { display: block; margin: 14px 0 6px; font-weight: 600; }
.login-card input { width: 100%; padding: 9px 10px; border-radius: 6px; border: 1px solid var(--line); background: var(--bg); color: var(--text); font-family: ui-monospace, monospace; margin-bottom: 12px; }
.error { color: var(--bad); min-height: 1em; }
@media (max-width: 1100px) {
  .stats { grid-template-columns: repeat(3, minmax(0, 1fr)); }
  .row, .spend-grid { grid-template-columns: 1fr; }
  .provider-grid { grid-template-columns: 1fr 1fr; }
  .provider-grid .keys { grid-column: 1 / -1; }
}
${CONSOLE_CSS}`;

// Plain ES5-style browser script (no template literals: this file is itself a template literal).
export const DASHBOARD_JS = String.raw`(function () {
  'use strict';
  var KEY_STORAGE = 'floodgate.adminKey';
  var HISTORY_POINTS = 300;
  var PRIORITIES = ['urgent', 'high', 'normal', 'low'];
  var PRIORITY_COLORS = ['#f85149', '#d29922', '#58a6ff', '#8b96a5'];
  var RETREAT_COLORS = { normal: '#3fb950', recover: '#d29922', retreat: '#f85149' };
  var state = {
    key: sessionStorage.getItem(KEY_STORAGE),
    controller: null,
    retryMs: 2000,
    reconnectTimer: null,
    providerIds: null,
    providerCharts: {},
    throughput: null,
    lastSampleT: null,
    spendTimer: null
  };
  var SPEND_REFRESH_MS = 30000;

  function $(id) { return document.getElementById(id); }
  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  function fmt(n) { return typeof n === 'number' ? n.toLocaleString('en-US') : '—'; }
  function fmtRate(n) { return (typeof n === 'number' ? (n >= 10 ? n.toFixed(0) : n.toFixed(2)) : '0') + '/s'; }
  function fmtDuration(s) {
    if (typeof s !== 'number') return '—';
    var d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    if (d > 0) return d + 'd ' + h + 'h';
    if (h > 0) return h + 'h ' + m + 'm';
    if (m > 0) return m + 'm ' + sec + 's';
    return sec + 's';
  }
  function timeLabel(iso) {
    var d = new Date(iso);
    return ('0' + d.getHours()).slice(-2) + ':' + ('0' + d.getMinutes()).slice(-2) + ':' + ('0' + d.getSeconds()).slice(-2);
  }

  if (window.Chart) {
    Chart.defaults.color = '#8b96a5';
    Chart.defaults.borderColor = '#2a333e';
    Chart.defaults.animation = false;
    Chart.defaults.font.family = 'system-ui, -apple-system, Segoe UI, Roboto, sans-serif';
  }

  // ---- connection state ------------------------------------------------------------------
  function setConn(kind, text) {
    $('conn-dot').className = 'dot ' + kind;
    $('conn-text').textContent = text || kind;
  }

  function showLogin(message) {
    stopStream();
    stopSpend();
    document.dispatchEvent(new CustomEvent('floodgate:logout'));
    $('app').hidden = true;
    $('forget-key').hidden = true;
    $('login').hidden = false;
    $('login-error').textContent = message || '';
    setConn('', 'not connected');
    $('login-key').focus();
  }

  function forgetKey(message) {
    state.key = null;
    sessionStorage.removeItem(KEY_STORAGE);
    showLogin(message);
  }

  $('login-form').addEventListener('submit', function (event) {
    event.preventDefault();
    var value = $('login-key').value.trim();
    if (!value) return;
    state.key = value;
    sessionStorage.setItem(KEY_STORAGE, value);
    $('login-key').value = '';
    start();
  });
  $('forget-key').addEventListener('click', function () { forgetKey(''); });

  function authHeaders(extra) {
    var headers = { authorization: 'Bearer ' + state.key };
    if (extra) for (var k in extra) headers[k] = extra[k];
    return headers;
  }

  function AuthError(message) { this.message = message; this.auth = true; }

  function checkAuth(res) {
    if (res.status === 401 || res.status === 403) {
      return res.json().catch(function () { return {}; }).then(function (body) {
        var msg = body && body.error && body.error.message ? body.error.message : 'HTTP ' + res.status;
        throw new AuthError(res.status === 401 ? 'That key was not accepted: ' + msg : 'That key may not read the status: ' + msg);
      });
    }
    return null;
  }

  function start() {
    $('login').hidden = true;
    $('app').hidden = false;
    $('forget-key').hidden = false;
    setConn('connecting', 'connecting…');
    fetch('api/admin/status?history_seconds=' + HISTORY_POINTS, { headers: authHeaders(), cache: 'no-store' })
      .then(function (res) {
        var auth = checkAuth(res);
        if (auth) return auth;
        if (!res.ok) throw new Error('status answered HTTP ' + res.status);
        return res.json();
      })
      .then(function (snapshot) {
        initThroughput(snapshot.history || []);
        render(snapshot);
        connectStream();
        startSpend();
        // The key was accepted: the console (console.js) reads GET /api/me and shows its tabs.
        document.dispatchEvent(new CustomEvent('floodgate:login'));
      })
      .catch(function (err) {
        if (err && err.auth) return forgetKey(err.message);
        setConn('error', 'cannot reach the gateway, retrying…');
        scheduleReconnect(start);
      });
  }

  function stopStream() {
    if (state.controller) state.controller.abort();
    state.controller = null;
    if (state.reconnectTimer) clearTimeout(state.reconnectTimer);
    state.reconnectTimer = null;
  }

  function scheduleReconnect(fn) {
    if (state.reconnectTimer) clearTimeout(state.reconnectTimer);
    state.reconnectTimer = setTimeout(function () { state.reconnectTimer = null; fn(); }, state.retryMs);
  }

  // Server-sent events over fetch(): EventSource cannot send an Authorization header.
  function connectStream() {
    stopStream();
    var controller = new AbortController();
    state.controller = controller;
    fetch('api/admin/status/stream', { headers: authHeaders({ accept: 'text/event-stream' }), cache: 'no-store', signal: controller.signal })
      .then(function (res) {
        var auth = checkAuth(res);
        if (auth) return auth;
        if (!res.ok || !res.body) throw new Error('stream answered HTTP ' + res.status);
        setConn('live', 'live');
        var reader = res.body.getReader();
        var decoder = new TextDecoder();
        var buffer = '';
        function pump() {
          return reader.read().then(function (chunk) {
            if (chunk.done) throw new Error('stream ended');
            buffer += decoder.decode(chunk.value, { stream: true }).replace(/\r\n?/g, '\n');
            var idx;
            while ((idx = buffer.indexOf('\n\n')) >= 0) {
              var frame = buffer.slice(0, idx);
              buffer = buffer.slice(idx + 2);
              onFrame(frame);
            }
            return pump();
          });
        }
        return pump();
      })
      .catch(function (err) {
        if (controller.signal.aborted) return;
        if (err && err.auth) return forgetKey(err.message);
        setConn('reconnecting', 'reconnecting…');
        scheduleReconnect(connectStream);
      });
  }

  function onFrame(frame) {
    var event = 'message';
    var data = [];
    var lines = frame.split('\n');
    for (var i = 0; i < lines.length; i++) {
      var line = lines[i];
      if (!line || line.charAt(0) === ':') continue;
      var colon = line.indexOf(':');
      var field = colon < 0 ? line : line.slice(0, colon);
      var value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
      if (field === 'event') event = value;
      else if (field === 'data') data.push(value);
      else if (field === 'retry' && /^\d+$/.test(value)) state.retryMs = parseInt(value, 10);
    }
    if (event === 'status' && data.length > 0) {
      var snapshot;
      try { snapshot = JSON.parse(data.join('\n')); } catch (e) { return; }
      if (snapshot.sample) pushSample(snapshot.sample);
      render(snapshot);
    } else if (event === 'shutdown') {
      setConn('reconnecting', 'instance stopping, reconnecting…');
    }
  }

  // ---- spend (its own fetch every 30 s: the server caches the rollup sums for 30 s) ---------
  function stopSpend() {
    if (state.spendTimer) clearInterval(state.spendTimer);
    state.spendTimer = null;
  }

  function startSpend() {
    stopSpend();
    loadSpend();
    state.spendTimer = setInterval(loadSpend, SPEND_REFRESH_MS);
  }

  function loadSpend() {
    fetch('api/admin/spend/summary', { headers: authHeaders(), cache: 'no-store' })
      .then(function (res) {
        if (res.status === 401 || res.status === 403) {
          throw new Error(res.status === 403 ? 'this key may not read spend (the spend resource)' : 'the key was not accepted');
        }
        if (!res.ok) throw new Error('the spend summary answered HTTP ' + res.status + '; retrying in 30 s');
        return res.json();
      })
      .then(renderSpend)
      .catch(function (err) {
        $('spend-hint').textContent = 'Could not read spend: ' + (err && err.message ? err.message : 'network error; retrying in 30 s');
      });
  }

  /** USD: cents from $1, 4 decimals from 1 cent, else micro-dollars (the exact amount on hover). */
  function fmtUsd(n) {
    if (typeof n !== 'number') return '—';
    if (n === 0) return '$0.00';
    var abs = Math.abs(n);
    var digits = abs >= 1 ? 2 : abs >= 0.01 ? 4 : 6;
    return '$' + n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
  }

  function spendTable(id, label, lines, total, name) {
    var box = el('div', 'table-box');
    var table = el('table');
    table.id = id;
    var head = el('tr');
    head.appendChild(el('th', null, label));
    ['requests today', 'cost today', 'requests this month', 'cost this month'].forEach(function (h) { head.appendChild(el('th', 'num', h)); });
    table.appendChild(head);
    function cells(tr, line) {
      tr.appendChild(el('td', 'num', fmt(line.today.requests)));
      var today = el('td', 'num', fmtUsd(line.today.cost_usd));
      today.dataset.role = 'cost-today';
      today.title = '$' + line.today.cost_usd;
      tr.appendChild(today);
      tr.appendChild(el('td', 'num', fmt(line.month.requests)));
      var month = el('td', 'num', fmtUsd(line.month.cost_usd));
      month.dataset.role = 'cost-month';
      month.title = '$' + line.month.cost_usd;
      tr.appendChild(month);
    }
    lines.forEach(function (line) {
      var n = name(line);
      var tr = el('tr');
      tr.dataset.name = n.text;
      tr.appendChild(el('td', 'label-cell' + (n.muted ? ' muted' : ''), n.text));
      cells(tr, line);
      table.appendChild(tr);
    });
    if (lines.length > 1) {
      var tr = el('tr', 'total');
      tr.appendChild(el('td', null, 'total'));
      cells(tr, total);
      table.appendChild(tr);
    }
    box.appendChild(table);
    return box;
  }

  function renderSpend(s) {
    $('spend-hint').textContent = 'UTC day and month (from ' + s.month_from.slice(0, 10) + '), from the spend rollups · as of ' + timeLabel(s.generated_at) + ' · refreshed every 30 s';
    var teams = $('spend-teams'), models = $('spend-models');
    teams.textContent = '';
    models.textContent = '';
    if (s.by_team.length === 0) {
      [teams, models].forEach(function (box) {
        var empty = el('div', 'empty');
        empty.dataset.role = 'spend-empty';
        empty.appendChild(document.createTextNode('No requests routed to a provider this month yet. Costs come from each provider\'s '));
        empty.appendChild(el('code', null, 'pricing'));
        empty.appendChild(document.createTextNode(' (or the built-in catalog).'));
        box.appendChild(empty);
      });
      return;
    }
    teams.appendChild(spendTable('spend-teams-table', 'team', s.by_team, s.total, function (t) {
      if (t.team_name) return { text: t.team_name };
      return t.team_id ? { text: 'deleted team ' + t.team_id.slice(0, 8), muted: true } : { text: 'no team', muted: true };
    }));
    models.appendChild(spendTable('spend-models-table', 'model', s.by_model, s.total, function (m) { return { text: m.model }; }));
  }

  // ---- throughput chart --------------------------------------------------------------------
  function initThroughput(history) {
    var canvas = $('throughput-chart');
    if (!state.throughput) {
      state.throughput = new Chart(canvas, {
        type: 'line',
        data: {
          labels: [],
          datasets: [
            { label: 'HTTP requests/s', data: [], borderColor: '#58a6ff', backgroundColor: 'rgba(88,166,255,.12)', fill: true, pointRadius: 0, borderWidth: 2, cubicInterpolationMode: 'monotone' },
            { label: 'relayed/s', data: [], borderColor: '#bc8cff', pointRadius: 0, borderWidth: 2, cubicInterpolationMode: 'monotone' },
            { label: 'upstream 429s/s', data: [], borderColor: '#f85149', pointRadius: 0, borderWidth: 2, cubicInterpolationMode: 'monotone' },
            { label: 'client 429s/s', data: [], borderColor: '#d29922', pointRadius: 0, borderWidth: 2, cubicInterpolationMode: 'monotone', borderDash: [5, 4] }
          ]
        },
        options: {
          responsive: true,
          maintainAspectRatio: false,
          interaction: { mode: 'index', intersect: false },
          scales: {
            x: { ticks: { maxTicksLimit: 8, maxRotation: 0 } },
            y: { beginAtZero: true, ticks: { precision: 0 } }
          },
          plugins: { legend: { position: 'bottom', labels: { boxWidth: 12 } } }
        }
      });
    }
    var chart = state.throughput;
    chart.data.labels.length = 0;
    chart.data.datasets.forEach(function (d) { d.data.length = 0; });
    state.lastSampleT = null;
    for (var i = 0; i < history.length; i++) pushSample(history[i], true);
    chart.update();
  }

  function pushSample(sample, noUpdate) {
    var chart = state.throughput;
    if (!chart || sample.t === state.lastSampleT) return;
    state.lastSampleT = sample.t;
    chart.data.labels.push(timeLabel(sample.t));
    chart.data.datasets[0].data.push(sample.http);
    chart.data.datasets[1].data.push(sample.relayed);
    chart.data.datasets[2].data.push(sample.upstream_429);
    chart.data.datasets[3].data.push(sample.rate_limited);
    while (chart.data.labels.length > HISTORY_POINTS) {
      chart.data.labels.shift();
      chart.data.datasets.forEach(function (d) { d.data.shift(); });
    }
    if (!noUpdate) chart.update('none');
  }

  // ---- rendering ---------------------------------------------------------------------------
  function render(s) {
    $('meta').textContent = s.mode + ' mode · v' + s.version + ' · up ' + fmtDuration(s.uptime_seconds) + ' · ' +
      s.instances.length + (s.instances.length === 1 ? ' instance' : ' instances') + ' · updated ' + timeLabel(s.generated_at);
    var r = s.requests, t = s.throughput;
    $('stat-http-total').textContent = fmt(r.http_total);
    $('rate-http').textContent = fmtRate(t.http_per_second) + ' (1 min avg)';
    $('stat-relayed-total').textContent = fmt(r.relayed_total);
    $('rate-relayed').textContent = fmtRate(t.relayed_per_second);
    $('stat-rate-limited').textContent = fmt(r.rate_limited_total);
    $('rate-limited').textContent = fmtRate(t.rate_limited_per_second);
    $('stat-upstream-429').textContent = fmt(r.upstream_429_total);
    $('rate-upstream-429').textContent = fmtRate(t.upstream_429_per_second);
    $('stat-queue-total').textContent = fmt(s.queue.total);
    $('stat-queue-split').textContent = PRIORITIES.map(function (p) { return p + ' ' + s.queue[p]; }).join(' · ');
    $('stat-errors').textContent = fmt(s.errors.http_5xx);
    $('stat-errors-split').textContent = 'upstream ' + s.errors.upstream_errors + ' · timeouts ' + s.errors.upstream_timeouts + ' · queue full ' + s.errors.queue_full_rejects;
    renderInstances(s.instances);
    renderAdjustments(s.adaptive.recent_adjustments);
    renderProviders(s.providers);
    renderBreakers(s.breakers);
    renderSources(s.sources, s.problems);
  }

  function renderInstances(instances) {
    var list = $('instances');
    list.textContent = '';
    if (instances.length === 0) { list.appendChild(el('li', null, 'no live instance rows (database unreachable?)')); return; }
    instances.forEach(function (i) {
      var li = el('li', i.self ? 'self' : null);
      li.appendChild(el('span', null, i.hostname + ' · pid ' + i.pid + (i.self ? ' (this one)' : '')));
      li.appendChild(el('span', null, 'v' + i.version));
      list.appendChild(li);
    });
  }

  function renderAdjustments(adjustments) {
    var box = $('adjustments');
    box.textContent = '';
    if (adjustments === null) {
      box.appendChild(el('div', 'empty', 'Not reported: adaptive concurrency is not installed on this gateway yet.'));
      return;
    }
    if (adjustments.length === 0) {
      box.appendChild(el('div', 'empty', 'No learned-limit adjustments yet.'));
      return;
    }
    var table = el('table');
    var head = el('tr');
    ['time', 'key', 'limit', 'reason', 'in-flight'].forEach(function (h) { head.appendChild(el('th', null, h)); });
    table.appendChild(head);
    adjustments.slice(0, 10).forEach(function (a) {
      var tr = el('tr');
      tr.appendChild(el('td', null, timeLabel(a.at)));
      tr.appendChild(el('td', 'label-cell', a.key_label || a.key_id.slice(0, 8)));
      tr.appendChild(el('td', null, a.old_limit + ' → ' + a.new_limit));
      tr.appendChild(el('td', null, a.reason));
      tr.appendChild(el('td', null, a.in_flight === null ? '—' : a.in_flight));
      table.appendChild(tr);
    });
    box.appendChild(table);
  }

  function renderBreakers(breakers) {
    var box = $('breakers');
    box.textContent = '';
    if (breakers === null || breakers === undefined) {
      box.appendChild(el('div', 'empty', 'Not reported: the breakers could not be read (see below).'));
      return;
    }
    if (breakers.length === 0) {
      var empty = el('div', 'empty');
      empty.appendChild(document.createTextNode('No route targets — define a route with '));
      empty.appendChild(el('code', null, 'POST /api/admin/routes'));
      box.appendChild(empty);
      return;
    }
    var table = el('table');
    table.id = 'breakers-table';
    var head = el('tr');
    ['route', 'provider', 'model', 'state', 'forced', 'failures in a row', 'window failures / requests', 'probe in'].forEach(function (h) { head.appendChild(el('th', null, h)); });
    table.appendChild(head);
    breakers.forEach(function (b) {
      var tr = el('tr');
      tr.dataset.route = b.route;
      tr.dataset.provider = b.provider;
      tr.dataset.model = b.model;
      tr.appendChild(el('td', 'label-cell', b.route));
      tr.appendChild(el('td', 'label-cell', b.provider));
      tr.appendChild(el('td', 'label-cell', b.model));
      var st = el('td');
      var badge = el('span', 'badge ' + b.state, b.state.replace('_', '-'));
      badge.dataset.role = 'breaker-state';
      st.appendChild(badge);
      tr.appendChild(st);
      var forced = el('td', b.forced === 'auto' ? 'muted' : null, b.forced === 'auto' ? 'auto' : 'forced ' + b.forced);
      forced.dataset.role = 'breaker-forced';
      tr.appendChild(forced);
      tr.appendChild(el('td', null, b.consecutive_failures));
      tr.appendChild(el('td', null, b.window_failures + ' / ' + b.window_requests));
      var probe = el('td', b.state === 'open' && b.open_until ? 'cooldown' : null, b.state === 'open' && b.open_until ? countdown(b.open_until) : '—');
      if (b.state === 'open' && b.open_until) probe.dataset.until = b.open_until;
      tr.appendChild(probe);
      table.appendChild(tr);
    });
    box.appendChild(table);
  }

  function renderSources(sources, problems) {
    var missing = [];
    var names = { live_key_counters: 'in-flight / RPM per key', token_bucket: 'token buckets', retreat: 'retreat state', adaptive_adjustments: 'adaptive adjustments', breakers: 'circuit breakers' };
    for (var k in names) if (sources[k] === 'not_wired') missing.push(names[k]);
    var text = missing.length ? 'Not reported by this gateway yet: ' + missing.join(', ') + ' (shown as —).' : '';
    if (problems && problems.length) text += (text ? ' ' : '') + 'Could not read: ' + problems.join('; ') + '.';
    $('sources-note').textContent = text;
  }

  function destroyProviderCharts() {
    for (var id in state.providerCharts) {
      state.providerCharts[id].gauge.destroy();
      state.providerCharts[id].queue.destroy();
    }
    state.providerCharts = {};
  }

  function renderProviders(providers) {
    var box = $('providers');
    var ids = providers.map(function (p) { return p.id; }).join(',');
    if (ids !== state.providerIds) {
      destroyProviderCharts();
      box.textContent = '';
      state.providerIds = ids;
      if (providers.length === 0) {
        var empty = el('div', 'empty');
        empty.id = 'providers-empty';
        empty.appendChild(document.createTextNode('No providers yet — add one with '));
        empty.appendChild(el('code', null, 'POST /api/admin/providers'));
        empty.appendChild(document.createTextNode(' (or PROVIDERS_FILE), then its upstream keys with '));
        empty.appendChild(el('code', null, 'POST /api/admin/providers/{id}/keys'));
        empty.appendChild(document.createTextNode('.'));
        box.appendChild(empty);
        return;
      }
      providers.forEach(function (p) { box.appendChild(buildProvider(p)); });
    }
    providers.forEach(updateProvider);
  }

  function buildProvider(p) {
    var card = el('article', 'provider');
    card.id = 'provider-' + p.id;
    var head = el('div', 'provider-head');
    head.appendChild(el('span', 'name', p.name));
    var retreat = el('span', 'badge unknown', 'retreat —');
    retreat.dataset.role = 'retreat';
    head.appendChild(retreat);
    var enabled = el('span', 'badge', '');
    enabled.dataset.role = 'enabled';
    head.appendChild(enabled);
    card.appendChild(head);

    var grid = el('div', 'provider-grid');
    var gaugeWrap = el('div', 'gauge-wrap');
    gaugeWrap.appendChild(el('h2', null, 'Token bucket'));
    var gaugeBox = el('div', 'chart-box gauge');
    var gaugeCanvas = el('canvas');
    gaugeBox.appendChild(gaugeCanvas);
    gaugeWrap.appendChild(gaugeBox);
    var gaugeText = el('div', 'gauge-text', '—');
    gaugeText.dataset.role = 'gauge-text';
    gaugeWrap.appendChild(gaugeText);
    var gaugeSub = el('div', 'gauge-sub', '');
    gaugeSub.dataset.role = 'gauge-sub';
    gaugeWrap.appendChild(gaugeSub);
    var retreatLine = el('div', 'retreat-line', '');
    retreatLine.dataset.role = 'retreat-line';
    gaugeWrap.appendChild(retreatLine);
    grid.appendChild(gaugeWrap);

    var queueWrap = el('div');
    queueWrap.appendChild(el('h2', null, 'Queue depth by priority'));
    var queueBox = el('div', 'chart-box');
    var queueCanvas = el('canvas');
    queueBox.appendChild(queueCanvas);
    queueWrap.appendChild(queueBox);
    grid.appendChild(queueWrap);

    var keysWrap = el('div', 'keys');
    keysWrap.appendChild(el('h2', null, 'Upstream keys'));
    var keysBox = el('div');
    keysBox.dataset.role = 'keys';
    keysWrap.appendChild(keysBox);
    grid.appendChild(keysWrap);
    card.appendChild(grid);

    var gauge = new Chart(gaugeCanvas, {
      type: 'doughnut',
      data: { labels: ['tokens', 'empty'], datasets: [{ data: [0, 1], backgroundColor: ['#3fb950', '#2a333e'], borderWidth: 0 }] },
      options: { responsive: true, maintainAspectRatio: false, rotation: -90, circumference: 180, cutout: '72%', plugins: { legend: { display: false }, tooltip: { enabled: false } } }
    });
    var queue = new Chart(queueCanvas, {
      type: 'bar',
      data: { labels: PRIORITIES, datasets: [{ label: 'waiting', data: [0, 0, 0, 0], backgroundColor: PRIORITY_COLORS }] },
      options: { responsive: true, maintainAspectRatio: false, scales: { y: { beginAtZero: true, suggestedMax: 4, ticks: { precision: 0 } } }, plugins: { legend: { display: false } } }
    });
    state.providerCharts[p.id] = { gauge: gauge, queue: queue };
    return card;
  }

  function role(card, name) { return card.querySelector('[data-role="' + name + '"]'); }

  function updateProvider(p) {
    var card = $('provider-' + p.id);
    var charts = state.providerCharts[p.id];
    if (!card || !charts) return;
    var enabled = role(card, 'enabled');
    enabled.textContent = p.enabled ? 'enabled' : 'disabled';
    enabled.className = 'badge ' + (p.enabled ? 'active' : 'disabled');

    var retreat = role(card, 'retreat');
    var color = '#3fb950';
    if (p.retreat) {
      retreat.textContent = p.retreat.state;
      retreat.className = 'badge ' + p.retreat.state;
      color = RETREAT_COLORS[p.retreat.state] || color;
      role(card, 'retreat-line').textContent = 'effective ' + fmt(p.retreat.effective_rpm === null ? null : Math.round(p.retreat.effective_rpm)) + ' / base ' + fmt(p.retreat.base_rpm === null ? null : Math.round(p.retreat.base_rpm)) +
        ' rpm · upstream 429 rate ' + (p.retreat.upstream_429_rate * 100).toFixed(1) + '%';
    } else {
      retreat.textContent = 'retreat: not reported';
      retreat.className = 'badge unknown';
      role(card, 'retreat-line').textContent = '';
    }
    var g = charts.gauge.data.datasets[0];
    if (p.token_bucket) {
      var tokens = Math.max(0, Math.min(p.token_bucket.tokens, p.token_bucket.capacity));
      g.data = [tokens, Math.max(0, p.token_bucket.capacity - tokens)];
      g.backgroundColor = [color, '#2a333e'];
      role(card, 'gauge-text').textContent = tokens.toFixed(1) + ' / ' + p.token_bucket.capacity;
      role(card, 'gauge-sub').textContent = 'tokens · refill ' + p.token_bucket.refill_per_second + '/s';
    } else {
      g.data = [0, 1];
      g.backgroundColor = ['#3fb950', '#2a333e'];
      role(card, 'gauge-text').textContent = '—';
      role(card, 'gauge-sub').textContent = 'not reported';
    }
    charts.gauge.update('none');
    charts.queue.data.datasets[0].data = PRIORITIES.map(function (name) { return p.queue[name]; });
    charts.queue.update('none');
    renderKeys(role(card, 'keys'), p);
  }

  function renderKeys(box, p) {
    box.textContent = '';
    if (p.keys.length === 0) {
      var empty = el('div', 'empty');
      empty.appendChild(document.createTextNode('No upstream keys — add one with '));
      empty.appendChild(el('code', null, 'POST /api/admin/providers/' + p.id + '/keys'));
      box.appendChild(empty);
      return;
    }
    var table = el('table');
    var head = el('tr');
    ['key', 'state', 'cooldown', 'limit', 'in-flight', 'RPM used'].forEach(function (h) { head.appendChild(el('th', null, h)); });
    table.appendChild(head);
    p.keys.forEach(function (k) {
      var tr = el('tr');
      tr.appendChild(el('td', 'label-cell', k.label));
      var st = el('td');
      st.appendChild(el('span', 'badge ' + k.state, k.state));
      tr.appendChild(st);
      var cd = el('td', 'cooldown', k.cooldown_until ? countdown(k.cooldown_until) : '—');
      if (k.cooldown_until) cd.dataset.until = k.cooldown_until;
      tr.appendChild(cd);
      tr.appendChild(el('td', null, (k.concurrency_limit === null ? '—' : k.concurrency_limit) + ' ' + (k.concurrency_mode === 'adaptive' ? '(learned)' : '(fixed)')));
      tr.appendChild(el('td', null, k.in_flight === null ? '—' : k.in_flight));
      tr.appendChild(el('td', null, (k.rpm_used === null ? '—' : k.rpm_used) + (k.max_rpm ? ' / ' + k.max_rpm : '')));
      table.appendChild(tr);
    });
    box.appendChild(table);
  }

  function countdown(iso) {
    var left = Math.ceil((new Date(iso).getTime() - Date.now()) / 1000);
    return left > 0 ? left + ' s' : 'ending';
  }

  // Cooldowns count down every second between events.
  setInterval(function () {
    var cells = document.querySelectorAll('td.cooldown[data-until]');
    for (var i = 0; i < cells.length; i++) cells[i].textContent = countdown(cells[i].dataset.until);
  }, 1000);

  if (!window.Chart) {
    document.body.textContent = 'The chart library did not load (dashboard/assets/chart.umd.js).';
    return;
  }
  if (state.key) start();
  else showLogin('');
})();
`;
