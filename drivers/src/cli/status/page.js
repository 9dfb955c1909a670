// openflume serve's status page: /status.json every two seconds, the hub (/ws) for the last
// items, live. Item text goes in with textContent only: event payloads come from outside.
'use strict';
(() => {
  /** Items replayed from the log when the page opens. */
  const BACKLOG = 100;
  /** Items kept in memory, and rows shown at most. */
  const KEEP = 500;
  const ROWS = 200;
  const POLL_MS = 2000;
  const RECONNECT_MS = 2000;
  const SUMMARY_CHARS = 200;

  // A token in the fragment (/#token=…) never leaves the browser with the page's URL.
  const token = new URLSearchParams(location.hash.slice(1)).get('token');
  const authorization = token ? { Authorization: 'Bearer ' + token } : {};
  const $ = (id) => document.getElementById(id);

  /** Items from the hub, oldest first. */
  const items = [];
  const sourcesSeen = new Set();
  /** The last item id the hub sent: a reconnect resumes after it. */
  let lastId = null;
  let renderPending = false;

  function row(cells) {
    const tr = document.createElement('tr');
    for (const [text, className, status] of cells) {
      const td = document.createElement('td');
      td.textContent = text;
      if (className) td.className = className;
      if (status) td.dataset.status = status;
      tr.append(td);
    }
    return tr;
  }

  function placeholder(tbody, columns, text) {
    const td = document.createElement('td');
    td.colSpan = columns;
    td.className = 'muted';
    td.textContent = text;
    const tr = document.createElement('tr');
    tr.append(td);
    tbody.replaceChildren(tr);
  }

  const number = (value) => (value === null || value === undefined ? '–' : String(value));
  const seconds = (s) => (s < 120 ? s + ' s' : s < 7200 ? Math.round(s / 60) + ' min' : Math.round(s / 3600) + ' h');

  function showError(text) {
    const footer = $('error');
    footer.hidden = !text;
    footer.textContent = text || '';
  }

  // A sharded source's parts, each with its status: " · 0/2 connected, 1/2 reconnecting".
  function shards(parts) {
    if (!parts || parts.length === 0) return '';
    return ' · ' + parts.map((p) => `${p.part} ${p.status}`).join(', ');
  }

  function renderStatus(status) {
    $('instance').textContent = `${status.instance_id} · v${status.version} · up ${seconds(status.uptime_seconds)} · last event id ${status.log.last_event_id}`;
    const sources = $('sources').tBodies[0];
    sources.replaceChildren(...status.sources.map((s) => {
      const tr = row([
        [s.source],
        [s.status === null ? 'via webhooks' : s.status + (s.reason ? ` (${s.reason})` : '') + shards(s.parts), null, s.status || undefined],
        [number(s.events_total), 'number'],
        [s.events_per_second === null ? '–' : s.events_per_second.toFixed(2), 'number'],
        [number(s.reconnects_total), 'number'],
        [number(s.drops_total), 'number'],
        [number(s.rate_limit_waits_total), 'number'],
        [s.heartbeat_rtt_seconds === null ? '–' : Math.round(s.heartbeat_rtt_seconds * 1000) + ' ms', 'number'],
      ]);
      tr.dataset.source = s.source;
      return tr;
    }));
    const subscribers = $('subscribers').tBodies[0];
    if (status.subscribers.length === 0) {
      placeholder(subscribers, 6, 'none connected');
    } else {
      subscribers.replaceChildren(...status.subscribers.map((s) => {
        const tr = row([
          [String(s.connection), 'number'],
          [s.consumer || '–'],
          [s.peer || '–'],
          [number(s.position), 'number'],
          [number(s.lag_events), 'number'],
          [seconds(s.connected_seconds)],
        ]);
        tr.dataset.connection = String(s.connection);
        return tr;
      }));
    }
    const forward = $('forward').tBodies[0];
    if (status.forward_targets.length === 0) {
      placeholder(forward, 2, 'none configured');
    } else {
      forward.replaceChildren(...status.forward_targets.map((t) => row([[t.target], [number(t.queue_depth), 'number']])));
    }
  }

  async function poll() {
    try {
      const response = await fetch('/status.json', { cache: 'no-store', headers: authorization });
      if (!response.ok) throw new Error(`/status.json answered HTTP ${response.status}`);
      const status = await response.json();
      renderStatus(status);
      showError(null);
      return status;
    } catch (error) {
      showError(String(error && error.message ? error.message : error));
      return null;
    }
  }

  /** The hub's item frame, as a row's fields. */
  function entry(id, item) {
    const body = (item && item[item.kind]) || {};
    const event = item.kind === 'event';
    let summary = event ? JSON.stringify(body.data) : String(body.message || '');
    if (summary && summary.length > SUMMARY_CHARS) summary = summary.slice(0, SUMMARY_CHARS) + '…';
    return {
      id,
      kind: item.kind,
      source: String(body.source || ''),
      type: String((event ? body.type : body.action) || ''),
      time: event ? body.receivedAt : body.timestamp,
      summary: summary || '',
    };
  }

  function add(id, item) {
    lastId = id;
    const e = entry(id, item);
    items.push(e);
    if (items.length > KEEP) items.shift();
    if (e.source && !sourcesSeen.has(e.source)) {
      sourcesSeen.add(e.source);
      const option = document.createElement('option');
      option.value = e.source;
      option.textContent = e.source;
      $('filter-source').append(option);
    }
    scheduleRender();
  }

  function scheduleRender() {
    if (renderPending) return;
    renderPending = true;
    setTimeout(renderEvents, 50);
  }

  function renderEvents() {
    renderPending = false;
    const source = $('filter-source').value;
    const type = $('filter-type').value.trim().toLowerCase();
    const logs = $('filter-logs').checked;
    const shown = [];
    for (let i = items.length - 1; i >= 0 && shown.length < ROWS; i--) {
      const e = items[i];
      if (e.kind !== 'event' && !logs) continue;
      if (source && e.source !== source) continue;
      if (type && !e.type.toLowerCase().includes(type)) continue;
      shown.push(e);
    }
    $('events').tBodies[0].replaceChildren(...shown.map((e) => {
      const tr = row([
        [String(e.id), 'number'],
        [typeof e.time === 'number' ? new Date(e.time).toLocaleTimeString([], { hour12: false }) : '–'],
        [e.source],
        [e.type],
        [e.summary, 'summary'],
      ]);
      tr.dataset.eventId = String(e.id);
      tr.dataset.kind = e.kind;
      tr.dataset.source = e.source;
      tr.dataset.type = e.type;
      return tr;
    }));
    $('events-shown').textContent = `${shown.length} shown of ${items.length} kept`;
  }

  function setHub(state, text) {
    document.body.dataset.hub = state;
    $('hub-state').textContent = 'hub: ' + text;
  }

  /** Hex of the token's UTF-8 bytes: a WebSocket subprotocol allows only token characters. */
  const hex = (text) => Array.from(new TextEncoder().encode(text), (b) => b.toString(16).padStart(2, '0')).join('');

  function connect(after) {
    const protocols = ['openflume.v1'];
    if (token) protocols.push('openflume.token.' + hex(token));
    const scheme = location.protocol === 'https:' ? 'wss://' : 'ws://';
    const socket = new WebSocket(scheme + location.host + '/ws', protocols);
    socket.onopen = () => {
      const hello = { type: 'hello' };
      if (after !== null) hello.after_event_id = after;
      socket.send(JSON.stringify(hello));
    };
    socket.onmessage = (message) => {
      let frame;
      try {
        frame = JSON.parse(message.data);
      } catch {
        return;
      }
      if (frame.type === 'hello_ok') setHub('live', 'live');
      else if (frame.type === 'item') add(frame.event_id, frame.item);
    };
    socket.onclose = (close) => {
      setHub('closed', `closed (${close.code}${close.reason ? ': ' + close.reason : ''}), reconnecting`);
      setTimeout(() => connect(lastId !== null ? lastId : after), RECONNECT_MS);
    };
  }

  for (const id of ['filter-source', 'filter-type', 'filter-logs']) {
    $(id).addEventListener('input', scheduleRender);
    $(id).addEventListener('change', scheduleRender);
  }
  renderEvents();
  poll().then((status) => {
    const last = status ? status.log.last_event_id : null;
    connect(last === null ? null : Math.max(0, last - BACKLOG));
    setInterval(poll, POLL_MS);
  });
})();
