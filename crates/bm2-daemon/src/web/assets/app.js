// bm2 dashboard: live process table, metrics, chart, details and logs over the daemon's
// WebSocket (/ws); the detail panel is fetched from /api/processes/{id}. No dependencies.
// Everything shown is built with textContent, never HTML, so log lines and names are inert.
'use strict';

(() => {
  const CHART_POINTS = 60;
  const MAX_LOG_LINES = 1000;
  const LOG_BACKLOG = 200;
  const RECONNECT_MS = 1000;
  const CONNECT_TIMEOUT_MS = 5000;
  const ACTION_TIMEOUT_MS = 60000;
  const THEME_KEY = 'bm2-dashboard-theme';

  const state = {
    procs: new Map(), // id -> process row (as /api/processes)
    metrics: null, // last metrics snapshot
    clockOffset: 0, // browser clock minus daemon clock, ms
    chart: [], // {t, cpu, mem}, oldest first
    selected: null, // id of the selected instance
    logs: { id: null, ready: false, out: [], err: [] },
    tab: 'out',
    follow: true,
    ws: null,
    connected: false,
    pending: new Map(), // correlation id -> {action, label, timer, rowId}
    seq: 0,
    detailSeq: 0,
    detailShown: null, // id whose details are on screen
    detailTimer: null,
    reconnectTimer: null,
  };

  const $ = (id) => document.getElementById(id);

  // ---------- small helpers ----------

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    if (props) {
      for (const [k, v] of Object.entries(props)) {
        if (v === undefined || v === null) continue;
        if (k === 'class') node.className = v;
        else if (k === 'text') node.textContent = v;
        else if (k === 'dataset') Object.assign(node.dataset, v);
        else node.setAttribute(k, v);
      }
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      node.append(c instanceof Node ? c : String(c));
    }
    return node;
  }

  function setText(node, text) {
    const s = String(text);
    if (node.textContent !== s) node.textContent = s;
  }

  function fmtBytes(bytes) {
    if (typeof bytes !== 'number' || !isFinite(bytes)) return '–';
    const units = ['B', 'KB', 'MB', 'GB', 'TB'];
    let v = bytes;
    let u = 0;
    while (v >= 1024 && u < units.length - 1) {
      v /= 1024;
      u += 1;
    }
    return u === 0 ? `${bytes} B` : `${v.toFixed(1)} ${units[u]}`;
  }

  function fmtPct(p) {
    return typeof p === 'number' && isFinite(p) ? `${p.toFixed(1)}%` : '–';
  }

  function fmtDuration(ms) {
    if (typeof ms !== 'number' || !isFinite(ms) || ms < 0) return '–';
    const s = Math.floor(ms / 1000);
    if (s < 60) return `${s}s`;
    const m = Math.floor(s / 60);
    if (m < 60) return `${m}m ${s % 60}s`;
    const h = Math.floor(m / 60);
    if (h < 24) return `${h}h ${m % 60}m`;
    const d = Math.floor(h / 24);
    return `${d}d ${h % 24}h`;
  }

  // A chart span, rounded to 5 s: `2m`, `1m 30s`, `45s`.
  function fmtSpan(ms) {
    const s = Math.max(5, Math.round(ms / 5000) * 5);
    const m = Math.floor(s / 60);
    if (!m) return `${s}s`;
    return s % 60 ? `${m}m ${s % 60}s` : `${m}m`;
  }

  function serverNow() {
    return Date.now() - state.clockOffset;
  }

  function fmtTime(ms) {
    if (typeof ms !== 'number' || !isFinite(ms) || ms <= 0) return '–';
    const ago = serverNow() - ms;
    const when = new Date(ms).toLocaleString();
    if (ago >= 0) return `${when} (${fmtDuration(ago)} ago)`;
    return `${when} (in ${fmtDuration(-ago)})`;
  }

  // A moment shown with its distance from now, kept current by tickUptimes().
  function timeNode(ms) {
    if (typeof ms !== 'number' || !isFinite(ms) || ms <= 0) return '–';
    return el('span', { class: 'reltime', 'data-ms': String(ms) }, fmtTime(ms));
  }

  function statusClass(status) {
    return `st-${String(status || 'unknown').replace(/[^a-z0-9]+/gi, '-').toLowerCase()}`;
  }

  function humanKey(key) {
    const s = key.replace(/_ms$/, '').replace(/[_-]+/g, ' ').replace(/([a-z])([A-Z])/g, '$1 $2');
    return s.charAt(0).toUpperCase() + s.slice(1);
  }

  function toast(message, kind = 'ok') {
    const box = $('toasts');
    const t = el('div', { class: `toast ${kind}`, role: kind === 'error' ? 'alert' : 'status', 'data-testid': 'toast' }, message);
    box.append(t);
    while (box.children.length > 5) box.firstChild.remove();
    setTimeout(() => t.remove(), kind === 'error' ? 9000 : 4000);
  }

  // ---------- theme ----------

  function effectiveTheme() {
    const forced = document.documentElement.dataset.theme;
    if (forced === 'light' || forced === 'dark') return forced;
    return window.matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light';
  }

  function updateThemeButton() {
    const next = effectiveTheme() === 'dark' ? 'Light' : 'Dark';
    setText($('theme-toggle'), next);
    $('theme-toggle').setAttribute('aria-label', `Switch to the ${next.toLowerCase()} theme`);
  }

  function initTheme() {
    let saved = null;
    try {
      saved = window.localStorage.getItem(THEME_KEY);
    } catch (_) {
      saved = null;
    }
    if (saved === 'light' || saved === 'dark') document.documentElement.dataset.theme = saved;
    updateThemeButton();
    $('theme-toggle').addEventListener('click', () => {
      const next = effectiveTheme() === 'dark' ? 'light' : 'dark';
      document.documentElement.dataset.theme = next;
      try {
        window.localStorage.setItem(THEME_KEY, next);
      } catch (_) {
        // Private mode: the choice lasts for this page only.
      }
      updateThemeButton();
      drawChart();
    });
    window.matchMedia('(prefers-color-scheme: dark)').addEventListener('change', () => {
      updateThemeButton();
      drawChart();
    });
  }

  // ---------- connection ----------

  function setLive(mode) {
    const live = $('live');
    if (live.dataset.state !== mode) {
      const now = Date.now();
      live.dataset.since = String(now);
      live.title = `${mode === 'connected' ? 'Connected' : 'Not connected'} since ${new Date(now).toLocaleTimeString()}`;
    }
    live.dataset.state = mode;
    const text = {
      connected: 'Live',
      connecting: 'Connecting…',
      disconnected: 'Disconnected · reconnecting',
      unauthorized: 'Not signed in',
    }[mode];
    setText($('live-text'), text);
    $('main').classList.toggle('stale', mode !== 'connected');
  }

  function connect() {
    clearTimeout(state.reconnectTimer);
    setLive(state.connected ? 'connected' : 'connecting');
    const proto = window.location.protocol === 'https:' ? 'wss:' : 'ws:';
    let ws;
    try {
      ws = new WebSocket(`${proto}//${window.location.host}/ws`);
    } catch (_) {
      scheduleReconnect();
      return;
    }
    state.ws = ws;
    const openTimer = setTimeout(() => {
      if (ws.readyState === WebSocket.CONNECTING) ws.close();
    }, CONNECT_TIMEOUT_MS);
    ws.addEventListener('open', () => {
      clearTimeout(openTimer);
      state.connected = true;
      setLive('connected');
      $('auth-banner').hidden = true;
      if (state.selected !== null) {
        requestLogs();
        scheduleDetail(0);
      }
    });
    ws.addEventListener('message', (ev) => {
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch (_) {
        return;
      }
      if (msg && typeof msg.type === 'string') handleMessage(msg);
    });
    ws.addEventListener('close', () => {
      clearTimeout(openTimer);
      if (state.ws !== ws) return;
      state.ws = null;
      state.connected = false;
      failPending('the connection to the daemon was lost');
      setLive('disconnected');
      checkAuth();
      scheduleReconnect();
    });
  }

  function scheduleReconnect() {
    clearTimeout(state.reconnectTimer);
    state.reconnectTimer = setTimeout(connect, RECONNECT_MS);
  }

  // A closed WebSocket says nothing about why; the REST API does.
  async function checkAuth() {
    try {
      const res = await fetch('/api/processes', { cache: 'no-store', credentials: 'same-origin' });
      if (res.status === 401) showUnauthorized();
    } catch (_) {
      // The daemon is down: keep reconnecting.
    }
  }

  function showUnauthorized() {
    $('auth-banner').hidden = false;
    if (!state.connected) setLive('unauthorized');
  }

  function send(msg) {
    if (!state.ws || state.ws.readyState !== WebSocket.OPEN) return false;
    state.ws.send(JSON.stringify(msg));
    return true;
  }

  function handleMessage(msg) {
    switch (msg.type) {
      case 'state':
        applyState(msg.data || {});
        break;
      case 'process':
        if (msg.data && typeof msg.data.id === 'number') upsertProcess(msg.data);
        break;
      case 'removed':
        if (msg.data) removeProcess(msg.data.id);
        break;
      case 'metrics':
        if (msg.data) applyMetrics(msg.data);
        break;
      case 'logs':
        applyLogs(msg.data);
        break;
      case 'log':
        if (msg.data) appendLog(msg.data);
        break;
      case 'result':
        settle(msg.id, msg.data || {}, null);
        break;
      case 'error':
        settle(msg.id, null, msg.data || {});
        break;
      default:
        break;
    }
  }

  // ---------- data ----------

  function applyState(data) {
    state.procs = new Map();
    for (const p of data.processes || []) state.procs.set(p.id, p);
    // The chart takes one point per metrics message; a state (sent on every connection) only
    // starts it.
    if (data.metrics) applyMetrics(data.metrics, false, state.chart.length === 0);
    if (state.selected !== null && !state.procs.has(state.selected)) clearSelection();
    renderAll();
  }

  function upsertProcess(p) {
    const old = state.procs.get(p.id);
    state.procs.set(p.id, old ? Object.assign(old, p) : p);
    renderTable();
    renderCards();
    if (p.id === state.selected) {
      scheduleDetail();
      setText($('logs-name'), p.instance_name || p.name);
    }
  }

  function removeProcess(id) {
    state.procs.delete(id);
    if (id === state.selected) clearSelection();
    renderTable();
    renderCards();
  }

  function applyMetrics(m, render = true, chartPoint = true) {
    state.metrics = m;
    if (typeof m.timestamp === 'number') state.clockOffset = Date.now() - m.timestamp;
    let cpu = 0;
    let mem = 0;
    for (const pm of m.processes || []) {
      cpu += Number(pm.cpu) || 0;
      mem += Number(pm.memory) || 0;
      const row = state.procs.get(pm.id);
      if (row) {
        row.cpu = pm.cpu;
        row.memory = pm.memory;
      }
    }
    if (chartPoint) {
      state.chart.push({ t: m.timestamp, cpu, mem });
      if (state.chart.length > CHART_POINTS) state.chart.splice(0, state.chart.length - CHART_POINTS);
      $('chart').dataset.points = String(state.chart.length);
    }
    setText($('legend-cpu'), fmtPct(cpu));
    setText($('legend-mem'), fmtBytes(mem));
    if (render) {
      renderCards();
      renderSystem();
      renderTable();
      drawChart();
    }
  }

  function renderAll() {
    renderCards();
    renderSystem();
    renderTable();
    drawChart();
  }

  // ---------- summary cards ----------

  function renderCards() {
    let online = 0;
    let errored = 0;
    let stopped = 0;
    let cpu = 0;
    let mem = 0;
    for (const p of state.procs.values()) {
      if (p.status === 'online') online += 1;
      else if (p.status === 'errored') errored += 1;
      else if (p.status === 'stopped') stopped += 1;
      cpu += Number(p.cpu) || 0;
      mem += Number(p.memory) || 0;
    }
    const total = state.procs.size;
    setText($('card-online'), online);
    setText($('card-online-sub'), `of ${total} process${total === 1 ? '' : 'es'}`);
    setText($('card-errored'), errored);
    $('card-errored').classList.toggle('bad', errored > 0);
    setText($('card-errored-sub'), `stopped: ${stopped}`);
    setText($('card-cpu'), fmtPct(cpu));
    setText($('card-memory'), fmtBytes(mem));
    setText($('procs-count'), `${online} online · ${total} total`);
    document.title = `bm2 · ${online}/${total} online`;
  }

  // ---------- system ----------

  function setBar(bar, ratio) {
    const r = Math.max(0, Math.min(1, Number(ratio) || 0));
    bar.style.width = `${(r * 100).toFixed(1)}%`;
    bar.classList.toggle('warn', r >= 0.75 && r < 0.9);
    bar.classList.toggle('bad', r >= 0.9);
  }

  function renderSystem() {
    const s = state.metrics && state.metrics.system;
    if (!s) return;
    setText($('sys-platform'), s.platform || '–');
    setText($('sys-cpus'), s.cpuCount ?? '–');
    const load = Array.isArray(s.loadAvg) ? s.loadAvg.map((v) => Number(v).toFixed(2)).join(' · ') : '–';
    setText($('sys-load'), load);
    setBar($('sys-cpu-bar'), (Number(s.cpuUsage) || 0) / 100);
    setText($('sys-cpu'), fmtPct(Number(s.cpuUsage)));
    const total = Number(s.totalMemory) || 0;
    const used = Math.max(0, total - (Number(s.freeMemory) || 0));
    setBar($('sys-mem-bar'), total ? used / total : 0);
    setText($('sys-mem'), total ? `${fmtBytes(used)} / ${fmtBytes(total)} (${((used / total) * 100).toFixed(0)}%)` : '–');
    const disk = s.disk;
    const hasDisk = !!(disk && disk.totalBytes);
    $('sys-disk-label').hidden = !hasDisk;
    $('sys-disk-row').hidden = !hasDisk;
    if (hasDisk) {
      const dUsed = Math.max(0, disk.totalBytes - disk.freeBytes);
      setBar($('sys-disk-bar'), dUsed / disk.totalBytes);
      setText($('sys-disk'), `${fmtBytes(dUsed)} / ${fmtBytes(disk.totalBytes)}`);
      $('sys-disk-row').title = disk.path || '';
    }
    const net = s.network;
    setText($('sys-net'), net ? `↓ ${fmtBytes(net.rxBytes)} · ↑ ${fmtBytes(net.txBytes)} since boot` : '–');
  }

  // ---------- chart ----------

  function niceCeil(v) {
    if (!(v > 0)) return 1;
    const exp = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) {
      if (m * exp >= v) return m * exp;
    }
    return 10 * exp;
  }

  function niceBytesCeil(v) {
    const mb = 1024 * 1024;
    if (v <= mb) return mb;
    const units = [1024, mb, mb * 1024, mb * mb];
    let unit = units[0];
    for (const u of units) if (v >= u) unit = u;
    return niceCeil(v / unit) * unit;
  }

  // The usual spacing of the points (the median), for the time axis.
  function sampleInterval(pts) {
    const gaps = [];
    for (let i = 1; i < pts.length; i += 1) gaps.push(pts[i].t - pts[i - 1].t);
    if (!gaps.length) return 2000;
    gaps.sort((a, b) => a - b);
    return gaps[Math.floor(gaps.length / 2)] || 2000;
  }

  function drawChart() {
    const canvas = $('chart');
    const w = canvas.clientWidth;
    const h = canvas.clientHeight;
    if (!w || !h) return;
    const dpr = window.devicePixelRatio || 1;
    const pw = Math.round(w * dpr);
    const ph = Math.round(h * dpr);
    if (canvas.width !== pw || canvas.height !== ph) {
      canvas.width = pw;
      canvas.height = ph;
    }
    const ctx = canvas.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);

    const css = getComputedStyle(document.documentElement);
    const color = (name) => css.getPropertyValue(name).trim();
    const grid = color('--grid');
    const text = color('--chart-text');
    const cpuColor = color('--chart-cpu');
    const memColor = color('--chart-mem');

    const pad = { l: 48, r: 70, t: 8, b: 22 };
    const cw = Math.max(10, w - pad.l - pad.r);
    const ch = Math.max(10, h - pad.t - pad.b);
    const pts = state.chart;
    const cpuMax = niceCeil(Math.max(5, ...pts.map((p) => p.cpu)) * 1.1);
    const memMax = niceBytesCeil(Math.max(1, ...pts.map((p) => p.mem)) * 1.1);

    ctx.font = '11px system-ui, sans-serif';
    ctx.lineWidth = 1;
    const rows = 4;
    for (let i = 0; i <= rows; i += 1) {
      const y = Math.round(pad.t + (ch * i) / rows) + 0.5;
      ctx.strokeStyle = grid;
      ctx.beginPath();
      ctx.moveTo(pad.l, y);
      ctx.lineTo(pad.l + cw, y);
      ctx.stroke();
      const frac = 1 - i / rows;
      ctx.fillStyle = cpuColor;
      ctx.textAlign = 'right';
      ctx.textBaseline = 'middle';
      ctx.fillText(`${+(cpuMax * frac).toFixed(1)}%`, pad.l - 6, y);
      ctx.fillStyle = memColor;
      ctx.textAlign = 'left';
      ctx.fillText(fmtBytes(Math.round(memMax * frac)).replace('.0 ', ' '), pad.l + cw + 6, y);
    }
    const interval = sampleInterval(pts);
    ctx.fillStyle = text;
    ctx.textBaseline = 'alphabetic';
    ctx.textAlign = 'left';
    ctx.fillText(`-${fmtSpan(interval * (CHART_POINTS - 1))}`, pad.l, h - 6);
    ctx.textAlign = 'right';
    ctx.fillText('now', pad.l + cw, h - 6);

    if (pts.length < 2) {
      ctx.textAlign = 'center';
      ctx.fillText('Waiting for samples…', pad.l + cw / 2, pad.t + ch / 2);
      return;
    }
    const x = (i) => pad.l + (cw * (CHART_POINTS - pts.length + i)) / (CHART_POINTS - 1);
    const yCpu = (v) => pad.t + ch - (ch * Math.min(v, cpuMax)) / cpuMax;
    const yMem = (v) => pad.t + ch - (ch * Math.min(v, memMax)) / memMax;

    // Memory: filled area under the line.
    ctx.beginPath();
    pts.forEach((p, i) => (i ? ctx.lineTo(x(i), yMem(p.mem)) : ctx.moveTo(x(i), yMem(p.mem))));
    ctx.strokeStyle = memColor;
    ctx.lineWidth = 2;
    ctx.lineJoin = 'round';
    ctx.stroke();
    ctx.lineTo(x(pts.length - 1), pad.t + ch);
    ctx.lineTo(x(0), pad.t + ch);
    ctx.closePath();
    ctx.globalAlpha = 0.12;
    ctx.fillStyle = memColor;
    ctx.fill();
    ctx.globalAlpha = 1;

    // CPU: line.
    ctx.beginPath();
    pts.forEach((p, i) => (i ? ctx.lineTo(x(i), yCpu(p.cpu)) : ctx.moveTo(x(i), yCpu(p.cpu))));
    ctx.strokeStyle = cpuColor;
    ctx.lineWidth = 2;
    ctx.stroke();
  }

  function watchChartSize() {
    if (typeof ResizeObserver === 'function') {
      new ResizeObserver(() => drawChart()).observe($('chart'));
    } else {
      window.addEventListener('resize', drawChart);
    }
    // A moved window can change devicePixelRatio without a resize.
    const watchDpr = () => {
      const mq = window.matchMedia(`(resolution: ${window.devicePixelRatio || 1}dppx)`);
      mq.addEventListener('change', () => {
        drawChart();
        watchDpr();
      }, { once: true });
    };
    watchDpr();
  }

  // ---------- process table ----------

  const ACTIONS = [
    ['restart', 'Restart', 'Restart this instance'],
    ['reload', 'Reload', 'Graceful reload (zero downtime in cluster mode)'],
    ['stop', 'Stop', 'Stop this instance'],
    ['delete', 'Delete', 'Stop and remove this instance'],
    ['scale', 'Scale', 'Change the number of instances of the app'],
    ['flush', 'Flush', 'Empty the log files'],
    ['logs', 'Logs', 'Show details and follow the logs'],
  ];
  const rowEls = new Map(); // id -> {tr, cells}

  function createRow(id) {
    const cells = {
      id: el('td', { class: 'num' }),
      name: el('td', { class: 'name-cell', 'data-testid': 'name' }),
      status: el('span', { class: 'badge', 'data-testid': 'status' }),
      pid: el('td', { class: 'num', 'data-testid': 'pid' }),
      cpu: el('td', { class: 'num', 'data-testid': 'cpu' }),
      memory: el('td', { class: 'num', 'data-testid': 'memory' }),
      restarts: el('td', { class: 'num', 'data-testid': 'restarts' }),
      uptime: el('td', { class: 'num', 'data-testid': 'uptime' }),
    };
    const actions = el('div', { class: 'actions' });
    for (const [action, label, title] of ACTIONS) {
      actions.append(el('button', { type: 'button', 'data-action': action, 'data-testid': `action-${action}`, title }, label));
    }
    const tr = el(
      'tr',
      { 'data-testid': 'process-row', tabindex: '0' },
      cells.id,
      cells.name,
      el('td', null, cells.status),
      cells.pid,
      cells.cpu,
      cells.memory,
      cells.restarts,
      cells.uptime,
      el('td', null, actions),
    );
    tr.dataset.id = String(id);
    return { tr, cells };
  }

  function uptimeOf(p) {
    if (p.status !== 'online' || typeof p.started_at_ms !== 'number') return '–';
    return fmtDuration(Math.max(0, serverNow() - p.started_at_ms));
  }

  function updateRow(r, p) {
    const { tr, cells } = r;
    tr.dataset.name = p.name;
    tr.dataset.instance = p.instance_name || p.name;
    tr.dataset.status = p.status;
    tr.classList.toggle('selected', p.id === state.selected);
    setText(cells.id, p.id);
    const label = p.instance_name || p.name;
    const ns = p.namespace && p.namespace !== 'default' ? p.namespace : '';
    const nameKey = `${label}\u0000${ns}`;
    if (cells.name.dataset.key !== nameKey) {
      cells.name.dataset.key = nameKey;
      cells.name.replaceChildren(label, ns ? el('span', { class: 'ns' }, ns) : '');
    }
    const cls = `badge ${statusClass(p.status)}`;
    if (cells.status.className !== cls) cells.status.className = cls;
    setText(cells.status, p.status);
    setText(cells.pid, p.pid ?? '–');
    const running = p.pid !== null && p.pid !== undefined;
    setText(cells.cpu, running ? fmtPct(Number(p.cpu)) : '–');
    setText(cells.memory, running ? fmtBytes(Number(p.memory)) : '–');
    setText(cells.restarts, p.restarts ?? 0);
    cells.restarts.title = `unstable restarts: ${p.unstable_restarts ?? 0}`;
    setText(cells.uptime, uptimeOf(p));
  }

  function renderTable() {
    const tbody = $('proc-body');
    for (const [id, r] of rowEls) {
      if (!state.procs.has(id)) {
        r.tr.remove();
        rowEls.delete(id);
      }
    }
    const ids = [...state.procs.keys()].sort((a, b) => a - b);
    let prev = null;
    for (const id of ids) {
      let r = rowEls.get(id);
      if (!r) {
        r = createRow(id);
        rowEls.set(id, r);
      }
      updateRow(r, state.procs.get(id));
      const want = prev ? prev.nextSibling : tbody.firstChild;
      if (want !== r.tr) tbody.insertBefore(r.tr, want);
      prev = r.tr;
    }
    $('procs-empty').hidden = ids.length > 0 || !state.connected;
  }

  function tickUptimes() {
    for (const [id, r] of rowEls) {
      const p = state.procs.get(id);
      if (p) setText(r.cells.uptime, uptimeOf(p));
    }
    for (const t of $('detail').querySelectorAll('.reltime')) setText(t, fmtTime(Number(t.dataset.ms)));
  }

  function onTableClick(ev) {
    const tr = ev.target.closest('tr[data-testid="process-row"]');
    if (!tr) return;
    const id = Number(tr.dataset.id);
    const btn = ev.target.closest('button[data-action]');
    if (btn) runAction(btn.dataset.action, id);
    else select(id);
  }

  // ---------- actions ----------

  function appInstances(name) {
    let n = 0;
    for (const p of state.procs.values()) if (p.name === name) n += 1;
    return n;
  }

  function runAction(action, id) {
    const p = state.procs.get(id);
    if (!p) return;
    const label = p.instance_name || p.name;
    switch (action) {
      case 'logs':
        select(id);
        $('logs-panel').scrollIntoView({ behavior: 'smooth', block: 'nearest' });
        return;
      case 'delete':
        if (!window.confirm(`Delete ${label} (id ${id})? It is stopped and removed from bm2.`)) return;
        request('delete', { target: id }, label, id);
        return;
      case 'scale': {
        const answer = window.prompt(
          `Scale ${p.name}: number of instances (N, +N or -N)`,
          String(appInstances(p.name)),
        );
        if (answer === null) return;
        const v = answer.trim();
        if (!/^[+-]?\d+$/.test(v)) {
          toast(`Scale ${p.name}: "${v}" is not a number, +N or -N`, 'error');
          return;
        }
        const count = /^\d+$/.test(v) ? Number(v) : v;
        request('scale', { target: p.name, count }, `${p.name} to ${v}`, id);
        return;
      }
      default:
        request(action, { target: id }, label, id);
    }
  }

  const DONE = { restart: 'Restarted', reload: 'Reloaded', stop: 'Stopped', delete: 'Deleted', flush: 'Flushed logs of', scale: 'Scaled' };

  function request(action, data, label, rowId) {
    const id = `${action}-${Date.now().toString(36)}-${(state.seq += 1)}`;
    if (!send({ type: action, id, data })) {
      toast(`Not connected to the daemon: ${action} ${label} was not sent`, 'error');
      return;
    }
    const timer = setTimeout(() => {
      state.pending.delete(id);
      markBusy(rowId, false);
      toast(`${action} ${label}: no answer from the daemon`, 'error');
    }, ACTION_TIMEOUT_MS);
    state.pending.set(id, { action, label, timer, rowId });
    markBusy(rowId, true);
  }

  function markBusy(rowId, busy) {
    const r = rowEls.get(rowId);
    if (r) r.tr.classList.toggle('busy', busy);
  }

  function settle(id, data, err) {
    const p = id !== undefined && id !== null ? state.pending.get(id) : undefined;
    if (!p) {
      if (err) toast(err.message || 'error', 'error');
      return;
    }
    clearTimeout(p.timer);
    state.pending.delete(id);
    markBusy(p.rowId, false);
    if (err) {
      toast(`${p.action} ${p.label} failed: ${err.message || err.code}${err.hint ? ` (${err.hint})` : ''}`, 'error');
      return;
    }
    const errors = Array.isArray(data.errors) ? data.errors : [];
    for (const e of errors) toast(`${p.action} ${p.label}: ${e.message || e.code}`, 'error');
    const done = Array.isArray(data.processes) ? data.processes.length : 0;
    if (!errors.length || done) toast(`${DONE[p.action] || p.action} ${p.label}`);
    if (p.action !== 'delete' && p.rowId === state.selected) scheduleDetail();
  }

  function failPending(reason) {
    for (const [id, p] of state.pending) {
      clearTimeout(p.timer);
      markBusy(p.rowId, false);
      toast(`${p.action} ${p.label}: ${reason}; check the result once reconnected`, 'error');
      state.pending.delete(id);
    }
  }

  // ---------- selection, details ----------

  function select(id) {
    if (!state.procs.has(id)) return;
    if (state.selected === id) {
      scheduleDetail(0);
      return;
    }
    state.selected = id;
    const p = state.procs.get(id);
    setText($('logs-name'), p.instance_name || p.name);
    setText($('detail-name'), p.instance_name || p.name);
    for (const [rid, r] of rowEls) r.tr.classList.toggle('selected', rid === id);
    state.logs = { id, ready: false, out: [], err: [] };
    state.follow = true;
    renderLogView('Loading…');
    requestLogs();
    state.detailShown = null;
    $('detail').replaceChildren(el('p', { class: 'empty' }, 'Loading…'));
    scheduleDetail(0);
  }

  function clearSelection() {
    state.selected = null;
    state.logs = { id: null, ready: false, out: [], err: [] };
    state.detailSeq += 1;
    state.detailShown = null;
    setText($('logs-name'), '');
    setText($('detail-name'), '');
    renderLogView('The selected process was removed.');
    $('detail').replaceChildren(el('p', { class: 'empty' }, 'Select a process to see its details.'));
  }

  function scheduleDetail(delay = 400) {
    if (state.selected === null) return;
    if (state.detailTimer !== null && delay > 0) return;
    clearTimeout(state.detailTimer);
    state.detailTimer = setTimeout(() => {
      state.detailTimer = null;
      loadDetail();
    }, delay);
  }

  async function loadDetail() {
    const id = state.selected;
    if (id === null) return;
    const seq = (state.detailSeq += 1);
    let res;
    let body;
    try {
      res = await fetch(`/api/processes/${encodeURIComponent(id)}`, {
        cache: 'no-store',
        credentials: 'same-origin',
        headers: { Accept: 'application/json' },
      });
      body = await res.json().catch(() => null);
    } catch (e) {
      // Details already shown stay; they are fetched again once reconnected.
      if (seq === state.detailSeq && state.detailShown !== id) {
        showDetailError(`Could not reach the daemon: ${e.message}`);
      }
      return;
    }
    if (seq !== state.detailSeq || id !== state.selected) return;
    if (res.status === 401) {
      showUnauthorized();
      showDetailError('Not signed in: open the URL printed by bm2 dashboard.');
      return;
    }
    if (!res.ok) {
      showDetailError((body && body.message) || `HTTP ${res.status}`);
      return;
    }
    const list = Array.isArray(body) ? body : [body];
    const d = list.find((x) => x && x.id === id) || list[0];
    if (!d) {
      showDetailError('No such process.');
      return;
    }
    renderDetail(d);
  }

  function showDetailError(message) {
    state.detailShown = null;
    $('detail').replaceChildren(el('p', { class: 'error-text', 'data-testid': 'detail-error' }, message));
  }

  // Fields rendered on purpose; anything else present in the JSON is shown generically.
  const KNOWN = new Set([
    'id', 'name', 'instance_name', 'instance', 'namespace', 'exec_mode', 'status', 'pid', 'cpu', 'memory',
    'restarts', 'unstable_restarts', 'started_at_ms', 'spec', 'instances', 'interpreter', 'env', 'pending_env',
    'created_at_ms', 'last_exit', 'status_reason', 'file_handles', 'out_log', 'err_log', 'log_file',
    'log_dropped_bytes', 'pid_file', 'cluster', 'health', 'next_cron', 'cron_next', 'restart_reasons',
  ]);

  function kvList(rows, testid) {
    const dl = el('dl', { class: 'kv detail-kv', 'data-testid': testid });
    for (const [k, v, key] of rows) {
      if (v === undefined) continue;
      dl.append(el('dt', null, k), el('dd', key ? { 'data-field': key } : null, v === null || v === '' ? '–' : v));
    }
    return dl;
  }

  function section(title, testid, ...content) {
    return el('div', { class: 'detail-section', 'data-testid': testid }, el('h3', null, title), ...content);
  }

  function genericValue(key, v) {
    if (v === null || v === undefined) return '–';
    if (typeof v === 'number' && /(_at_ms|_ms_at|_time_ms|^next_)/.test(key) && v > 1e11) return timeNode(v);
    if (typeof v === 'number' && /_ms$/.test(key)) return fmtDuration(v);
    if (typeof v === 'number' && /bytes$/.test(key)) return fmtBytes(v);
    if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') return String(v);
    if (Array.isArray(v)) return v.length ? v.map((x) => (typeof x === 'object' ? JSON.stringify(x) : String(x))).join(', ') : '–';
    const entries = Object.entries(v);
    if (!entries.length) return '–';
    const box = el('span');
    for (const [k, x] of entries) box.append(el('span', { class: 'pill' }, `${k}: ${typeof x === 'object' && x !== null ? JSON.stringify(x) : x}`));
    return box;
  }

  function describeExit(e) {
    if (!e) return null;
    let how = 'exited';
    if (e.signal) how = `killed by ${e.signal}`;
    else if (e.code !== null && e.code !== undefined) how = `exited with code ${e.code}`;
    return el('span', null, `${how} at `, timeNode(e.at_ms), ` after ${fmtDuration(e.uptime_ms)}`);
  }

  function renderHealth(h) {
    if (h === null || h === undefined) return null;
    if (typeof h !== 'object') return section('Health', 'detail-health', kvList([['State', String(h), 'health']]));
    const st = String(h.state ?? h.status ?? 'unknown');
    const cls = /^(ok|healthy|up|passing)$/i.test(st) ? 'health-ok' : /^(unknown|pending|starting)$/i.test(st) ? 'health-unknown' : 'health-bad';
    const rows = [['State', el('span', { class: cls }, st), 'health.state']];
    const lastError = h.last_error ?? h.lastError ?? h.error;
    if (lastError !== undefined) rows.push(['Last error', genericValue('last_error', lastError), 'health.last_error']);
    for (const [k, v] of Object.entries(h)) {
      if (['state', 'status', 'last_error', 'lastError', 'error'].includes(k)) continue;
      rows.push([humanKey(k), genericValue(k, v), `health.${k}`]);
    }
    return section('Health', 'detail-health', kvList(rows));
  }

  function renderRestartReasons(r) {
    if (!r || typeof r !== 'object') return null;
    const entries = Object.entries(r).filter(([, n]) => Number(n) > 0);
    const box = el('div', { 'data-testid': 'restart-reasons' });
    if (!entries.length) box.append(el('span', { class: 'muted' }, 'none yet'));
    entries.sort((a, b) => b[1] - a[1]);
    for (const [reason, n] of entries) box.append(el('span', { class: 'pill' }, `${reason}: ${n}`));
    return section('Restart reasons', 'detail-restart-reasons', box);
  }

  function renderDetail(d) {
    const spec = d.spec || {};
    const env = d.env && typeof d.env === 'object' ? Object.keys(d.env).length : null;
    const pendingEnv = Array.isArray(d.pending_env) ? d.pending_env.length : 0;
    const running = d.pid !== null && d.pid !== undefined;
    const nextCron = d.next_cron ?? d.cron_next;
    const main = [
      ['Name', d.instance_name || d.name, 'name'],
      ['ID', String(d.id), 'id'],
      ['Status', el('span', { class: `badge ${statusClass(d.status)}` }, d.status), 'status'],
      ['Status reason', d.status_reason ?? null, 'status_reason'],
      ['PID', running ? String(d.pid) : null, 'pid'],
      ['Script path', spec.script ?? null, 'script'],
      ['Arguments', Array.isArray(spec.args) && spec.args.length ? spec.args.join(' ') : null, 'args'],
      ['Interpreter', d.interpreter || 'none (runs the script itself)', 'interpreter'],
      ['CWD', spec.cwd ?? null, 'cwd'],
      ['Exec mode', d.exec_mode ?? spec.exec_mode ?? null, 'exec_mode'],
      ['Instances', d.instances !== undefined ? String(d.instances) : null, 'instances'],
      ['Namespace', d.namespace ?? null, 'namespace'],
      ['Created', timeNode(d.created_at_ms), 'created'],
      ['Started', running ? timeNode(d.started_at_ms) : null, 'started'],
      ['Restarts', `${d.restarts ?? 0} (unstable ${d.unstable_restarts ?? 0})`, 'restarts'],
      ['Last exit', describeExit(d.last_exit), 'last_exit'],
      ['CPU', running ? fmtPct(Number(d.cpu)) : null, 'cpu'],
      ['Memory', running ? fmtBytes(Number(d.memory)) : null, 'memory'],
      ['File handles', d.file_handles ?? null, 'file_handles'],
      ['Environment', env === null ? null : `${env} variable${env === 1 ? '' : 's'}${pendingEnv ? ` (${pendingEnv} pending restart)` : ''}`, 'env'],
    ];
    if (nextCron !== undefined) {
      let when = nextCron;
      if (typeof nextCron === 'number') when = timeNode(nextCron);
      else if (typeof nextCron === 'string' && !Number.isNaN(Date.parse(nextCron))) when = timeNode(Date.parse(nextCron));
      main.push(['Next cron restart', when, 'next_cron']);
    }
    const logs = [
      ['Out log', d.out_log ?? null, 'out_log'],
      ['Err log', d.err_log ?? null, 'err_log'],
    ];
    if (d.log_file) logs.push(['Combined log', d.log_file, 'log_file']);
    if (d.log_dropped_bytes) logs.push(['Dropped', fmtBytes(d.log_dropped_bytes), 'log_dropped_bytes']);
    if (d.pid_file) logs.push(['PID file', d.pid_file, 'pid_file']);

    const parts = [kvList(main, 'detail-main'), section('Log files', 'detail-logs', kvList(logs))];
    if (d.cluster) {
      const c = d.cluster;
      parts.push(section('Cluster', 'detail-cluster', kvList([
        ['Balancer', c.listen ?? null, 'cluster.listen'],
        ['Private port', c.private_port ?? null, 'cluster.private_port'],
        ['Ready', c.ready === undefined ? null : String(c.ready), 'cluster.ready'],
        ['Connections', `${c.connections ?? 0} open · ${c.total_connections ?? 0} total`, 'cluster.connections'],
      ])));
    }
    const health = renderHealth(d.health);
    if (health) parts.push(health);
    const reasons = renderRestartReasons(d.restart_reasons);
    if (reasons) parts.push(reasons);

    const extra = Object.keys(d).filter((k) => !KNOWN.has(k)).sort();
    if (extra.length) {
      parts.push(section('More', 'detail-extra', kvList(extra.map((k) => [humanKey(k), genericValue(k, d[k]), k]))));
    }

    const opts = Object.entries(spec)
      .filter(([k, v]) => k !== 'env' && v !== null && v !== '' && !(Array.isArray(v) && !v.length) && !(typeof v === 'object' && !Array.isArray(v) && !Object.keys(v).length))
      .sort(([a], [b]) => a.localeCompare(b));
    if (opts.length) {
      parts.push(el('details', { class: 'options' }, el('summary', null, `App options (${opts.length})`), kvList(opts.map(([k, v]) => [k, genericValue(k, v), `spec.${k}`]), 'detail-spec')));
    }
    const box = $('detail');
    const openOptions = box.querySelector('details.options');
    const wasOpen = !!(openOptions && openOptions.open);
    box.replaceChildren(...parts);
    state.detailShown = d.id;
    if (wasOpen) box.querySelector('details.options').open = true;
  }

  // ---------- logs ----------

  function requestLogs() {
    if (state.selected === null) return;
    state.logs = { id: state.selected, ready: false, out: [], err: [] };
    send({ type: 'getLogs', data: { target: state.selected, lines: LOG_BACKLOG } });
  }

  function toLines(v) {
    if (Array.isArray(v)) return v.map((x) => (typeof x === 'string' ? x : (x && x.line) ?? JSON.stringify(x)));
    if (typeof v === 'string') return v.split('\n').filter((line, i, all) => line !== '' || i < all.length - 1);
    return [];
  }

  function applyLogs(data) {
    if (state.selected === null) return;
    const list = Array.isArray(data) ? data : data ? [data] : [];
    const entry = list.find((e) => e && e.id === state.selected);
    if (!entry && list.length) return; // an answer for an earlier selection
    state.logs = {
      id: state.selected,
      ready: true,
      out: toLines(entry && entry.out).slice(-MAX_LOG_LINES),
      err: toLines(entry && entry.err).slice(-MAX_LOG_LINES),
    };
    state.follow = true;
    $('unread-out').hidden = true;
    $('unread-err').hidden = true;
    renderLogView();
  }

  function appendLog(d) {
    const logs = state.logs;
    if (!logs.ready) return;
    if (typeof d.skipped === 'number') {
      // The browser fell behind the daemon's log feed: say so where lines are missing.
      const note = `… ${d.skipped} line${d.skipped === 1 ? '' : 's'} skipped (too fast to show) …`;
      for (const stream of ['out', 'err']) logs[stream].push({ note });
      showLine({ note }, state.tab);
      return;
    }
    if (d.id !== logs.id || (d.stream !== 'out' && d.stream !== 'err')) return;
    const buf = logs[d.stream];
    buf.push(String(d.line));
    if (buf.length > MAX_LOG_LINES) buf.splice(0, buf.length - MAX_LOG_LINES);
    if (d.stream !== state.tab) {
      $(`unread-${d.stream}`).hidden = false;
      return;
    }
    showLine(d.line, d.stream);
  }

  function showLine(line, stream) {
    const box = $('log');
    const empty = box.querySelector('.log-empty');
    if (empty) empty.remove();
    box.append(logLine(line, stream));
    while (box.childElementCount > MAX_LOG_LINES) {
      const first = box.firstElementChild;
      const h = state.follow ? 0 : first.offsetHeight;
      first.remove();
      if (h) box.scrollTop -= h;
    }
    if (state.follow) box.scrollTop = box.scrollHeight;
  }

  const TS = /^(\[?\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?\]?:?)(\s*)/;

  function logLine(text, stream) {
    if (text && typeof text === 'object' && text.note) {
      return el('div', { class: 'log-line note', 'data-testid': 'log-note' }, text.note);
    }
    const line = String(text);
    let cls = 'log-line';
    if (stream === 'err') cls += ' err';
    else if (/\b(error|fatal|panic|exception)\b/i.test(line)) cls += ' level-error';
    else if (/\bwarn(ing)?\b/i.test(line)) cls += ' level-warn';
    const node = el('div', { class: cls, 'data-testid': 'log-line', 'data-stream': stream });
    const m = TS.exec(line);
    if (m) node.append(el('span', { class: 'ts' }, m[1]), m[2], line.slice(m[0].length));
    else node.textContent = line;
    return node;
  }

  function renderLogView(placeholder) {
    const box = $('log');
    const lines = state.logs.ready ? state.logs[state.tab] : [];
    if (!lines.length) {
      const text = placeholder || (state.selected === null
        ? 'Select a process (Logs) to follow its output.'
        : state.logs.ready ? `No ${state.tab === 'out' ? 'stdout' : 'stderr'} output yet.` : 'Loading…');
      box.replaceChildren(el('p', { class: 'empty log-empty' }, text));
    } else {
      const frag = document.createDocumentFragment();
      for (const l of lines.slice(-MAX_LOG_LINES)) frag.append(logLine(l, state.tab));
      box.replaceChildren(frag);
    }
    state.follow = true;
    $('log-jump').hidden = true;
    box.scrollTop = box.scrollHeight;
  }

  function switchTab(stream) {
    if (stream !== 'out' && stream !== 'err') return;
    state.tab = stream;
    for (const s of ['out', 'err']) $(`tab-${s}`).setAttribute('aria-selected', String(s === stream));
    $(`unread-${stream}`).hidden = true;
    renderLogView();
  }

  function onLogScroll() {
    const box = $('log');
    state.follow = box.scrollHeight - box.scrollTop - box.clientHeight < 24;
    $('log-jump').hidden = state.follow;
  }

  // ---------- start ----------

  function init() {
    setText($('host'), window.location.host);
    initTheme();
    $('proc-body').addEventListener('click', onTableClick);
    $('proc-body').addEventListener('keydown', (ev) => {
      if (ev.key !== 'Enter' || ev.target.tagName !== 'TR') return;
      select(Number(ev.target.dataset.id));
    });
    $('tab-out').addEventListener('click', () => switchTab('out'));
    $('tab-err').addEventListener('click', () => switchTab('err'));
    $('log').addEventListener('scroll', onLogScroll, { passive: true });
    $('log-jump').addEventListener('click', () => {
      const box = $('log');
      box.scrollTop = box.scrollHeight;
      onLogScroll();
    });
    watchChartSize();
    setInterval(tickUptimes, 1000);
    renderAll();
    connect();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
})();
