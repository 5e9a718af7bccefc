// The pushpull console page. Plain DOM code, no framework and nothing
// loaded from elsewhere; every value from the server goes into the page as
// text (textContent), never as markup.
'use strict';

const API = 'api/';
const state = { readOnly: true, loggedIn: false, csrf: '' };
const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

function showError(msg) {
  const p = $('error');
  p.textContent = msg || '';
  p.hidden = !msg;
}

async function api(path, opts) {
  const o = Object.assign({ headers: {} }, opts || {});
  if (o.body !== undefined && typeof o.body !== 'string') {
    o.body = JSON.stringify(o.body);
    o.headers['Content-Type'] = 'application/json';
  }
  if (o.method && o.method !== 'GET' && state.csrf) o.headers['X-Console-CSRF'] = state.csrf;
  o.credentials = 'same-origin';
  const resp = await fetch(API + path, o);
  let data = null;
  try { data = await resp.json(); } catch (e) { /* not JSON */ }
  if (!resp.ok) {
    const err = new Error((data && data.error_description) || resp.statusText);
    err.code = data && data.error;
    err.status = resp.status;
    throw err;
  }
  return data;
}

// --- session ---

async function loadSession() {
  const s = await api('session');
  state.readOnly = s.readOnly;
  state.loggedIn = s.loggedIn;
  state.csrf = s.csrf || '';
  renderSession();
}

function renderSession() {
  const label = $('session-state');
  $('login').hidden = state.readOnly || state.loggedIn;
  $('logout').hidden = !state.loggedIn;
  if (state.readOnly) label.textContent = 'Read-only: pushpull runs without --console-token';
  else if (state.loggedIn) label.textContent = 'Operator';
  else label.textContent = 'Read-only until you log in';
  const canAct = !state.readOnly && state.loggedIn;
  const locked = $('send-locked');
  locked.hidden = canAct;
  locked.textContent = state.readOnly
    ? 'Sending needs the operator credential: start pushpull with --console-token.'
    : 'Log in with the console token to send.';
  $('send-submit').disabled = !canAct;
  document.querySelectorAll('button.revoke, button.remove-tenant').forEach((b) => { b.disabled = !canAct || b.dataset.done === '1'; });
}

$('login').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  try {
    const s = await api('login', { method: 'POST', body: { token: $('login-token').value } });
    $('login-token').value = '';
    state.loggedIn = true;
    state.csrf = s.csrf;
    showError('');
    renderSession();
  } catch (e) {
    showError('Log in: ' + e.message);
  }
});

$('logout').addEventListener('click', async () => {
  try { await api('logout', { method: 'POST', body: {} }); } catch (e) { /* the cookie is gone either way */ }
  state.loggedIn = false;
  state.csrf = '';
  renderSession();
});

// --- navigation ---

const views = ['overview', 'channels', 'tail', 'send', 'registry'];

function route() {
  let name = location.hash.replace('#', '');
  if (!views.includes(name)) name = 'overview';
  for (const v of views) $('view-' + v).hidden = v !== name;
  document.querySelectorAll('nav a').forEach((a) => {
    if (a.dataset.view === name) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  });
  document.title = 'pushpull console: ' + $('h-' + name).textContent;
  if (name === 'registry') loadRegistry();
  if (name === 'overview') loadOverview();
}
window.addEventListener('hashchange', () => { route(); $('main').focus(); });

// --- overview ---

function fmtNum(n) { return typeof n === 'number' ? n.toLocaleString('en') : '–'; }
function fmtDuration(s) {
  const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
  return (d ? d + 'd ' : '') + (h ? h + 'h ' : '') + m + 'm ' + (s % 60) + 's';
}
function setFigure(id, v) {
  const dd = $(id);
  const none = v === null || v === undefined;
  dd.classList.toggle('slot', none);
  dd.textContent = none ? '–' : v;
}

// drawChart draws lines of values (oldest first) in svg at its own pixel
// size, so that its text is not stretched; data-max is the largest value.
function drawChart(svg, lines, emptyText) {
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  // A screen reader hears the figures the drawing shows.
  svg.dataset.label = svg.dataset.label || svg.getAttribute('aria-label');
  const last = lines.map((l) => (l.values && l.values.length ? Math.round(l.values[l.values.length - 1] * 10) / 10 : null));
  svg.setAttribute('aria-label', svg.dataset.label + (last.some((v) => v !== null) ? ': now ' + last.join(' and ') : ': no data'));
  const W = Math.max(svg.clientWidth, 100), H = Math.max(svg.clientHeight, 60), pad = 16;
  svg.setAttribute('viewBox', '0 0 ' + W + ' ' + H);
  const ns = 'http://www.w3.org/2000/svg';
  const mk = (tag, attrs) => {
    const e = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    return e;
  };
  svg.append(mk('line', { x1: 0, y1: H - pad, x2: W, y2: H - pad, class: 'axis' }));
  const data = lines.filter((l) => l.values && l.values.length > 1);
  if (!data.length) {
    const t = mk('text', { x: 8, y: H / 2 });
    t.textContent = emptyText || 'collecting…';
    svg.append(t);
    svg.dataset.max = '';
    return;
  }
  const n = Math.max(...data.map((l) => l.values.length));
  let max = 0;
  for (const l of data) for (const v of l.values) max = Math.max(max, v);
  svg.dataset.max = String(max);
  svg.setAttribute('aria-label', svg.getAttribute('aria-label') + ', highest ' + Math.round(max * 10) / 10 + ' in the last ' + n + ' s');
  const top = max > 0 ? max * 1.15 : 1;
  const step = W / Math.max(n - 1, 1);
  for (const l of data) {
    const off = n - l.values.length;
    const pts = l.values.map((v, i) => ((off + i) * step).toFixed(1) + ',' + (H - pad - (v / top) * (H - 2 * pad)).toFixed(1));
    svg.append(mk('polyline', { points: pts.join(' '), class: l.cls }));
  }
  const label = mk('text', { x: 4, y: 12 });
  label.textContent = 'max ' + (Math.round(max * 10) / 10).toLocaleString('en');
  svg.append(label);
  const span = mk('text', { x: 4, y: H - 3 });
  span.textContent = n >= 120 ? Math.round(n / 60) + ' min' : n + ' s';
  svg.append(span);
}

async function loadOverview() {
  if ($('view-overview').hidden) return;
  let o;
  try { o = await api('overview'); } catch (e) { showError('Overview: ' + e.message); return; }
  const x = o.extra || {};
  setFigure('m-websocket', fmtNum(o.connections.websocket));
  setFigure('m-longpolling', fmtNum(o.connections.longPolling));
  setFigure('m-channels', fmtNum(o.channels));
  setFigure('m-messages', fmtNum(o.messages));
  const lastRate = (rs) => (rs && rs.length ? fmtNum(Math.round(rs[rs.length - 1] * 10) / 10) : null);
  setFigure('m-rate', lastRate(o.series.messages));
  setFigure('m-delivery-rate', lastRate(o.series.deliveries));
  setFigure('m-publishes', fmtNum(o.today.publishes));
  setFigure('m-clientpublishes', fmtNum(o.today.clientPublishes));
  setFigure('m-deliveries', x.deliveries == null ? null : fmtNum(x.deliveries));
  setFigure('m-slow', x.slowConsumersCut == null ? null : fmtNum(x.slowConsumersCut));
  setFigure('m-recoveries', x.recoveries == null ? null : fmtNum(x.recoveries));
  setFigure('m-rest', x.restCalls == null ? null : fmtNum(x.restCalls) + ' / ' + fmtNum(x.restErrors));
  setFigure('m-push', x.pushQueueError ? 'unreadable: ' + x.pushQueueError : (x.pushQueue == null ? null : fmtNum(x.pushQueue)));
  $('m-push').classList.toggle('bad', !!x.pushQueueError);
  setFigure('m-protocols', x.connectionsByProtocol == null ? null
    : Object.entries(x.connectionsByProtocol).sort().map(([k, v]) => k + ' ' + fmtNum(v)).join(', ') || 'none');
  setFigure('m-mode', o.cluster.mode);
  setFigure('m-redis', o.cluster.mode === 'cluster' ? o.cluster.redis : 'not used');
  setFigure('m-nodes', o.cluster.mode !== 'cluster' ? '1 (embedded)' : (o.cluster.nodes ? fmtNum(o.cluster.nodes) : 'unknown'));
  $('m-redis').classList.toggle('bad', o.cluster.mode === 'cluster' && o.cluster.redis !== 'ok');
  setFigure('m-uptime', fmtDuration(o.uptime));
  setFigure('m-goroutines', fmtNum(o.goroutines));
  $('ov-updated').textContent = 'Updated ' + new Date(o.now).toLocaleTimeString();
  drawChart($('chart-messages'), [{ values: o.series.messages, cls: 'l1' }]);
  drawChart($('chart-deliveries'), [{ values: o.series.deliveries, cls: 'l1' }]);
  drawChart($('chart-connections'), [
    { values: o.series.websockets, cls: 'l1' }, { values: o.series.longPolling, cls: 'l2' }]);
}

// --- messages as the console shows them ---

function messageItem(m) {
  const head = el('div', { class: 'head' },
    el('span', {}, 'mid ', el('strong', { class: 'mono' }, m.mid)),
    el('span', {}, new Date(m.created).toLocaleString()),
    m.moduleId !== undefined ? el('span', {}, 'module ', el('strong', {}, m.moduleId)) : null,
    m.command !== undefined ? el('span', {}, 'command ', el('strong', {}, m.command)) : null,
    el('span', {}, 'expiry ' + m.expiry + ' s'),
    el('span', {}, m.sender));
  const body = m.body !== undefined ? JSON.stringify(m.body, null, 2) : m.text;
  const li = el('li', {}, head, el('pre', { class: 'mono' }, body));
  if (m.userParams) li.append(el('pre', { class: 'mono' }, 'user params: ' + JSON.stringify(m.userParams, null, 2)));
  return li;
}

function targetQuery(kind, id) {
  return kind + '=' + encodeURIComponent(id.trim());
}

// --- channels ---

$('lookup').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const out = $('lookup-result');
  out.textContent = 'Looking up…';
  try {
    const c = await api('channel?' + targetQuery($('lookup-kind').value, $('lookup-id').value));
    showError('');
    out.textContent = '';
    const dl = el('dl', { class: 'cards' },
      el('div', {}, el('dt', {}, 'Channel'), el('dd', { class: 'mono small' }, c.channel)),
      c.public ? el('div', {}, el('dt', {}, 'Public id asked'), el('dd', { class: 'mono small' }, c.public)) : null,
      el('div', {}, el('dt', {}, 'Subscribers on this node (tails too)'), el('dd', { id: 'lookup-subscribers' }, c.subscribers)),
      el('div', {}, el('dt', {}, 'Online (all nodes)'), el('dd', {}, c.online)),
      c.user ? el('div', {}, el('dt', {}, 'User WebSockets'), el('dd', {}, c.userOnline == null ? '–' : c.userOnline)) : null,
      c.user ? el('div', {}, el('dt', {}, 'Last seen'), el('dd', { class: 'small' },
        c.lastSeen == null ? 'never recorded' : (c.lastSeen === 0 ? 'online now' : c.lastSeen + ' s ago'))) : null,
      el('div', {}, el('dt', {}, 'Stored messages shown'), el('dd', {}, c.history.length + (c.historyCut ? ' (newest)' : ''))));
    out.append(dl, el('h3', {}, 'History, newest first'));
    if (!c.history.length) out.append(el('p', { class: 'muted' }, 'No stored message.'));
    else {
      const ol = el('ol', { class: 'messages', id: 'lookup-history' });
      c.history.forEach((m) => ol.append(messageItem(m)));
      out.append(ol);
    }
  } catch (e) {
    out.textContent = '';
    showError('Look up: ' + e.message);
  }
});

// --- live tail ---

const tail = { es: null, paused: false, all: [], pending: [] };
const tailMax = 500;

function tailMatches(m) {
  const mod = $('tail-module').value.trim(), cmd = $('tail-command').value.trim();
  return (!mod || m.moduleId === mod) && (!cmd || m.command === cmd);
}

function renderTail() {
  const ol = $('tail-list');
  ol.textContent = '';
  for (let i = tail.all.length - 1; i >= 0; i--) if (tailMatches(tail.all[i])) ol.append(messageItem(tail.all[i]));
}

function tailAdd(m) {
  tail.all.push(m);
  if (tail.all.length > tailMax) tail.all.shift();
  if (tailMatches(m)) {
    const ol = $('tail-list');
    ol.insertBefore(messageItem(m), ol.firstChild);
    while (ol.children.length > tailMax) ol.removeChild(ol.lastChild);
  }
}

function stopTail(text) {
  if (tail.es) tail.es.close();
  tail.es = null;
  $('tail-start').disabled = false;
  $('tail-stop').disabled = true;
  $('tail-pause').disabled = true;
  $('tail-status').textContent = text || 'Not watching.';
}

$('tail-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  stopTail();
  const what = $('tail-kind').value === 'user' ? 'user ' + $('tail-id').value.trim() : 'channel ' + $('tail-id').value.trim();
  const es = new EventSource(API + 'tail?' + targetQuery($('tail-kind').value, $('tail-id').value));
  tail.es = es;
  $('tail-start').disabled = true;
  $('tail-stop').disabled = false;
  $('tail-pause').disabled = false;
  $('tail-status').textContent = 'Connecting…';
  es.addEventListener('ready', () => {
    $('tail-status').textContent = 'Watching ' + what + (tail.paused ? ' (paused)' : '') + '.';
    $('tail-status').dataset.ready = '1';
  });
  es.addEventListener('message', (e) => {
    const m = JSON.parse(e.data);
    if (tail.paused) tail.pending.push(m); else tailAdd(m);
  });
  es.addEventListener('dropped', (e) => {
    const n = JSON.parse(e.data).count;
    $('tail-status').textContent = 'Watching ' + what + ': ' + n + ' messages dropped, this page fell behind.';
  });
  es.onerror = () => {
    if (es.readyState === EventSource.CLOSED) stopTail('The stream ended: check the id and start again.');
    else $('tail-status').textContent = 'Reconnecting… (messages sent meanwhile are not shown)';
  };
});
$('tail-stop').addEventListener('click', () => stopTail());
$('tail-pause').addEventListener('click', () => {
  tail.paused = !tail.paused;
  $('tail-pause').setAttribute('aria-pressed', String(tail.paused));
  $('tail-pause').textContent = tail.paused ? 'Resume' : 'Pause';
  if (!tail.paused) { tail.pending.forEach(tailAdd); tail.pending = []; }
});
$('tail-module').addEventListener('input', renderTail);
$('tail-command').addEventListener('input', renderTail);
$('tail-clear').addEventListener('click', () => { tail.all = []; tail.pending = []; renderTail(); });
$('tail-copy').addEventListener('click', async () => {
  const text = JSON.stringify(tail.all.filter(tailMatches), null, 2);
  try {
    await navigator.clipboard.writeText(text);
    $('tail-status').textContent = 'Copied ' + tail.all.filter(tailMatches).length + ' messages as JSON.';
  } catch (e) {
    // No clipboard permission (plain http on another host): show the text
    // selected so that the operator can copy it.
    const ta = el('textarea', { rows: 8, 'aria-label': 'Messages as JSON', id: 'tail-json' });
    ta.value = text;
    const old = $('tail-json');
    if (old) old.remove();
    $('tail-list').before(ta);
    ta.focus();
    ta.select();
  }
});

// --- send ---

$('send-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const result = $('send-result');
  let params;
  try { params = JSON.parse($('send-params').value || '{}'); } catch (e) {
    result.textContent = 'Params are not JSON: ' + e.message;
    return;
  }
  const users = $('send-users').value.split(/[\s,]+/).filter(Boolean).map(Number);
  const body = {
    channels: $('send-channels').value.split(/\s+/).filter(Boolean),
    users: users,
    moduleId: $('send-module').value.trim(),
    command: $('send-command').value.trim(),
    params: params,
    expiry: Number($('send-expiry').value),
  };
  try {
    const r = await api('send', { method: 'POST', body });
    result.textContent = 'Sent: mid ' + r.mid + ' to ' + r.receivers + (r.receivers === 1 ? ' receiver.' : ' receivers.');
    result.className = 'ok';
  } catch (e) {
    result.textContent = 'Not sent: ' + e.message;
    result.className = 'bad';
  }
});

// --- registry ---

function fmtTime(ms) { return ms ? new Date(ms).toLocaleString() : '–'; }

function table(caption, head, rows) {
  const t = el('table', {}, el('caption', {}, caption));
  t.append(el('thead', {}, el('tr', {}, ...head.map((h) => el('th', { scope: 'col' }, h)))));
  const tb = el('tbody');
  if (!rows.length) tb.append(el('tr', {}, el('td', { colspan: head.length, class: 'muted' }, 'None.')));
  rows.forEach((r) => tb.append(el('tr', {}, ...r.map((c) => (c instanceof Node && c.tagName === 'TD') ? c : el('td', {}, c)))));
  t.append(tb);
  return el('div', { class: 'table-wrap' }, t);
}

async function loadRegistry() {
  const out = $('registry');
  let r;
  try { r = await api('registry'); } catch (e) { showError('Registry: ' + e.message); return; }
  out.textContent = '';
  const canAct = !state.readOnly && state.loggedIn;
  out.append(table('Applications (' + r.apps.length + ')', ['Id', 'client_id', 'Name', 'Scopes', 'Created'],
    r.apps.map((a) => [a.id, el('td', { class: 'mono' }, a.clientId), a.name, (a.scopes || []).join(', '), fmtTime(a.created)])));
  if (!r.listed) {
    out.append(el('p', { class: 'notice' }, 'This registry engine does not list users, tokens and webhooks; the operator commands (pushpull user, token, webhook) do.'));
    return;
  }
  out.append(table('Users (' + r.users.length + ')', ['Id', 'Active', 'Admin', 'Created'],
    r.users.map((u) => [u.id, u.active ? 'yes' : 'no', u.admin ? 'yes' : 'no', fmtTime(u.created)])));
  const live = r.tokens.filter((t) => !t.revoked).length;
  out.append(table('Tokens (' + r.tokensTotal + ' in all, ' + live + ' of those listed not revoked)',
    ['Id (hash)', 'App', 'User', 'Created', 'Access expires', 'Last use', 'State', ''],
    r.tokens.map((t) => {
      const b = el('button', { type: 'button', class: 'revoke danger', 'data-token': t.id,
        'aria-label': 'Revoke token ' + t.id.slice(0, 12) });
      b.textContent = 'Revoke';
      b.disabled = !canAct || t.revoked;
      if (t.revoked) b.dataset.done = '1';
      b.addEventListener('click', () => revoke(b, t.id));
      return [el('td', { class: 'mono', title: t.id }, t.id.slice(0, 12) + '…'), t.appId, t.userId, fmtTime(t.created),
        fmtTime(t.accessExpires), t.lastUsed ? fmtTime(t.lastUsed) : 'not since start',
        el('td', { class: t.revoked ? 'bad' : 'ok', 'data-token-state': t.id }, t.revoked ? 'revoked' : 'active'), el('td', {}, b)];
    })));
  out.append(table('Webhooks (' + r.webhooks.length + ')', ['Id', 'User', 'App', 'Scopes', 'Created', 'State'],
    r.webhooks.map((w) => [w.id, w.userId, w.appId || '–', (w.scopes || []).join(', '), fmtTime(w.created), w.revoked ? 'revoked' : 'active'])));
  renderTenants(out, r, canAct);
}

function renderTenants(out, r, canAct) {
  if (r.mode !== 'shared') {
    out.append(el('h3', {}, 'Tenants'));
    out.append(el('p', { class: 'muted', id: 'tenants-mode' },
      'This server is in personal mode: it serves one portal, its own, and has no tenants (pushpull serve --mode shared serves many).'));
    return;
  }
  const caption = 'Tenants (' + r.tenantsTotal + (r.tenantsTotal > r.tenants.length ? ', the first ' + r.tenants.length + ' shown' : '') + ')';
  out.append(table(caption, ['Client id', 'Host', 'Came by', 'Created', ''],
    r.tenants.map((t) => {
      const b = el('button', { type: 'button', class: 'remove-tenant danger', 'data-tenant': t.clientId + ' ' + t.host,
        'aria-label': 'Remove tenant ' + t.clientId.slice(0, 12) + ' on ' + t.host });
      b.textContent = 'Remove';
      b.disabled = !canAct;
      b.addEventListener('click', () => removeTenant(b, t.clientId, t.host));
      return [el('td', { class: 'mono' }, t.clientId), el('td', { class: 'mono' }, t.host),
        t.origin === 'operator' ? 'pushpull tenant add' : 'registration', fmtTime(t.created), el('td', {}, b)];
    })));
  out.append(el('p', { class: 'muted small' },
    'Removing a tenant cuts its connections on this node at once and on the others within --tenant-reload; its portal must register again to be served. Keys are never shown.'));
}

// confirmFirst turns a button's first press into "Confirm …" (no native
// dialog, so the keyboard flow stays in the page); it returns true on the
// second press. Leaving the button cancels.
function confirmFirst(btn, label) {
  if (btn.dataset.confirm === '1') return true;
  btn.dataset.confirm = '1';
  btn.textContent = 'Confirm ' + label.toLowerCase();
  btn.addEventListener('blur', () => {
    btn.dataset.confirm = '';
    btn.textContent = label;
  }, { once: true });
  return false;
}

async function removeTenant(btn, clientId, host) {
  if (!confirmFirst(btn, 'Remove')) return;
  btn.disabled = true;
  try {
    await api('tenants/remove', { method: 'POST', body: { clientId, host } });
    showError('');
  } catch (e) {
    showError('Remove tenant: ' + e.message);
  }
  loadRegistry();
}

// revoke asks first (confirmFirst).
async function revoke(btn, id) {
  if (!confirmFirst(btn, 'Revoke')) return;
  btn.disabled = true;
  try {
    await api('tokens/revoke', { method: 'POST', body: { id } });
    showError('');
  } catch (e) {
    showError('Revoke: ' + e.message);
  }
  loadRegistry();
}

// --- start ---

route();
loadSession().catch((e) => showError('Session: ' + e.message));
setInterval(loadOverview, 1000);
