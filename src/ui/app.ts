// The dashboard's script (runs in the browser; bundled for it by scripts/build.mjs). It reads the
// control API: the model list every second, the event feed (/admin/events) and one model's log
// as server-sent events. Streams are read with fetch(), not EventSource, so the admin key
// travels in the Authorization header, never in a URL. The key is kept in sessionStorage only.
import type { FeedEvent } from '../event-feed.js';
import type { ModelDetail, ModelState } from '../scheduler.js';

const KEY_STORE = 'sglangmux-admin-key';
const POLL_MS = 1000;
const RETRY_MS = 2000;
const LOG_TAIL = 200;
const LOG_KEEP = 1000;
const EVENTS_SHOWN = 100;

/** In the legend's order; their colours are in app.css (`.st-<state>`). */
const STATES: readonly ModelState[] = ['awake', 'draining', 'sleeping', 'asleep', 'waking', 'starting', 'stopped', 'failed'];

const $ = <T extends HTMLElement>(id: string): T => {
  const el = document.getElementById(id);
  if (!el) throw new Error(`#${id} missing from the page`);
  return el as T;
};

function el<K extends keyof HTMLElementTagNameMap>(tag: K, text = '', cls = ''): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  node.textContent = text;
  if (cls) node.className = cls;
  return node;
}

function svg<K extends keyof SVGElementTagNameMap>(tag: K, attrs: Record<string, string | number>, title = ''): SVGElementTagNameMap[K] {
  const node = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (title) node.appendChild(svg('title', {})).textContent = title;
  return node;
}

function duration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const s = Math.round(ms / 1000);
  return s < 3600 ? `${Math.floor(s / 60)} min ${s % 60} s` : `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

/** Its GPUs and the share of each it takes, e.g. `0, 1 · 40%`, or `0 · whole`; `unknown` when its
 * script does not tell. */
function placement(m: ModelDetail): string {
  if (m.gpus === null) return 'unknown';
  const share = m.gpu_share === null ? 'whole' : `${Math.round(m.gpu_share * 1000) / 10}%`;
  return `${m.gpus.join(', ')} · ${share}`;
}

const clock = (t: number): string => new Date(t).toLocaleTimeString([], { hour12: false });

/** A model id in a URL path: its `/` kept (the control API takes the rest of the path). */
const idPath = (id: string): string => id.split('/').map(encodeURIComponent).join('/');

// ---- the control API, with the admin key ----

class NeedsKey extends Error {}

/** The answer to a call of the control API; a 401 asks for the key (and throws NeedsKey). */
async function api(path: string, init: RequestInit = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  const key = sessionStorage.getItem(KEY_STORE);
  if (key !== null) headers.set('authorization', `Bearer ${key}`);
  const res = await fetch(path, { ...init, headers, cache: 'no-store' });
  if (res.status === 401) {
    askForKey(key === null ? 'This sglangmux needs its admin API key.' : 'That key was refused; enter the admin API key.');
    throw new NeedsKey();
  }
  return res;
}

/** The message of an OpenAI-shaped error answer. */
async function errorOf(res: Response): Promise<string> {
  const text = await res.text();
  try {
    const body = JSON.parse(text) as { error?: { message?: string } };
    if (body.error?.message) return body.error.message;
  } catch {
    // not JSON: the text as it is
  }
  return `${res.status} ${text}`.trim();
}

/**
 * Follows a server-sent event stream until `signal` aborts: `onOpen` when connected (the stream
 * starts over, history included), `onData` with each event's data. Reconnects after a break;
 * stops when the key is needed.
 */
async function follow(path: string, signal: AbortSignal, onOpen: () => void, onData: (data: string) => void, onState: (up: boolean) => void): Promise<void> {
  while (!signal.aborted) {
    try {
      const res = await api(path, { signal, headers: { accept: 'text/event-stream' } });
      if (!res.ok || !res.body) throw new Error(await errorOf(res));
      onOpen();
      onState(true);
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = '';
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        buffer += value;
        let cut: number;
        while ((cut = buffer.indexOf('\n\n')) >= 0) {
          const lines = buffer.slice(0, cut).split('\n');
          buffer = buffer.slice(cut + 2);
          const data = lines.filter((l) => l.startsWith('data:')).map((l) => l.slice(l.startsWith('data: ') ? 6 : 5));
          if (data.length > 0) onData(data.join('\n'));
        }
      }
    } catch (err) {
      if (err instanceof NeedsKey || signal.aborted) return;
      showProblem(err instanceof Error ? err.message : String(err));
    }
    onState(false);
    await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
  }
}

// ---- the admin key ----

function askForKey(why: string): void {
  sessionStorage.removeItem(KEY_STORE);
  stopAll();
  $('key-why').textContent = why;
  $('key-form').hidden = false;
  $('forget-key').hidden = true;
  $('feed-status').textContent = 'waiting for the admin API key';
  $<HTMLInputElement>('key-input').focus();
}

function showProblem(text: string | null): void {
  const p = $('problem');
  p.hidden = text === null;
  p.textContent = text ?? '';
}

// ---- models ----

interface Column {
  readonly head: string;
  readonly value: (m: ModelDetail) => string;
  readonly cls?: string;
}

const COLUMNS: readonly Column[] = [
  { head: 'State', value: (m) => m.state },
  { head: 'GPUs', value: (m) => placement(m) },
  { head: 'In flight', value: (m) => String(m.in_flight), cls: 'num' },
  { head: 'Queued', value: (m) => String(m.waiting), cls: 'num' },
  { head: 'Oldest wait', value: (m) => (m.oldest_wait_ms === null ? '–' : duration(m.oldest_wait_ms)), cls: 'num' },
  { head: 'Awake for', value: (m) => (m.awake_secs === null ? '–' : duration(m.awake_secs * 1000)), cls: 'num' },
  { head: 'Last error', value: (m) => m.last_error ?? '', cls: 'error' },
];

const ACTIONS = [
  { action: 'wake', label: 'Wake', doing: 'waking', enabled: (m: ModelDetail) => m.state !== 'awake' },
  { action: 'sleep', label: 'Sleep', doing: 'putting to sleep', enabled: (m: ModelDetail) => m.state === 'awake' },
  { action: 'restart', label: 'Restart', doing: 'restarting', enabled: () => true },
] as const;

interface Row {
  readonly tr: HTMLTableRowElement;
  readonly cells: HTMLTableCellElement[];
  readonly buttons: HTMLButtonElement[];
}

const rows = new Map<string, Row>();
let models: ModelDetail[] = [];
/** Models with a control action under way (their buttons stay disabled until it answers). */
const busy = new Set<string>();

function drawHead(): void {
  const tr = document.querySelector('#models thead tr')!;
  for (const head of ['Model', ...COLUMNS.map((c) => c.head), 'Actions']) {
    const th = el('th', head);
    th.scope = 'col';
    tr.appendChild(th);
  }
}

function newRow(m: ModelDetail): Row {
  const tr = el('tr');
  tr.dataset.model = m.id;
  const name = el('th', m.id);
  name.scope = 'row';
  tr.appendChild(name);
  const cells = COLUMNS.map((c) => tr.appendChild(el('td', '', c.cls)));
  const actions = tr.appendChild(el('td', '', 'actions'));
  const buttons = ACTIONS.map((a) => {
    const b = actions.appendChild(el('button', a.label));
    b.type = 'button';
    b.dataset.action = a.action;
    b.setAttribute('aria-label', `${a.label} ${m.id}`);
    b.addEventListener('click', () => void act(m.id, a));
    return b;
  });
  const logs = actions.appendChild(el('button', 'Log'));
  logs.type = 'button';
  logs.setAttribute('aria-label', `Show the log of ${m.id}`);
  logs.addEventListener('click', () => showLog(m.id));
  return { tr, cells, buttons };
}

function drawModels(): void {
  const body = document.querySelector('#models tbody')!;
  const seen = new Set<string>();
  for (const m of models) {
    seen.add(m.id);
    let row = rows.get(m.id);
    if (!row) {
      row = newRow(m);
      rows.set(m.id, row);
    }
    body.appendChild(row.tr); // in the daemon's order
    COLUMNS.forEach((c, i) => (row.cells[i]!.textContent = c.value(m)));
    row.cells[0]!.className = `state st-${m.state}`;
    ACTIONS.forEach((a, i) => (row.buttons[i]!.disabled = busy.has(m.id) || !a.enabled(m)));
  }
  for (const [id, row] of rows) {
    if (seen.has(id)) continue;
    row.tr.remove();
    rows.delete(id);
  }
  syncLogChoices();
}

async function act(id: string, a: (typeof ACTIONS)[number]): Promise<void> {
  const status = $('action-status');
  const started = performance.now();
  busy.add(id);
  drawModels();
  status.textContent = `${id}: ${a.doing}…`;
  try {
    const res = await api(`/admin/models/${idPath(id)}/${a.action}`, { method: 'POST' });
    const took = duration(performance.now() - started);
    if (res.ok) {
      const detail = (await res.json()) as ModelDetail;
      status.textContent = `${id}: ${a.label.toLowerCase()} done in ${took}; now ${detail.state}`;
    } else {
      status.textContent = `${id}: ${a.label.toLowerCase()} failed after ${took}: ${await errorOf(res)}`;
    }
  } catch (err) {
    if (!(err instanceof NeedsKey)) status.textContent = `${id}: ${a.label.toLowerCase()} failed: ${String(err)}`;
  } finally {
    busy.delete(id);
    await refreshModels();
  }
}

let pollTimer: number | undefined;

async function refreshModels(): Promise<void> {
  try {
    const res = await api('/admin/models');
    if (!res.ok) return showProblem(await errorOf(res));
    models = ((await res.json()) as { data: ModelDetail[] }).data;
    showProblem(null);
    drawModels();
  } catch (err) {
    if (!(err instanceof NeedsKey)) showProblem(`cannot reach sglangmux: ${String(err)}`);
  }
}

/** Refreshes the model list every second, until the key is needed. */
function poll(): void {
  clearTimeout(pollTimer);
  pollTimer = window.setTimeout(() => {
    void refreshModels().then(() => {
      if ($('key-form').hidden) poll();
    });
  }, POLL_MS);
}

// ---- the event feed: timeline and recent events ----

let feed: FeedEvent[] = [];
let drawQueued = false;

let refreshing = false;
let refreshAgain = false;

/** Refreshes the model list now rather than at the next poll (a model changed state), one
 * refresh at a time however many changes come. */
function refreshSoon(): void {
  if (refreshing) {
    refreshAgain = true;
    return;
  }
  refreshing = true;
  void refreshModels().finally(() => {
    refreshing = false;
    if (!refreshAgain) return;
    refreshAgain = false;
    refreshSoon();
  });
}

/** What the page keeps of the feed: the longest window, and no more than this many events. */
const FEED_KEEP_MS = 3600_000;
const FEED_KEEP = 10_000;

function onFeedEvent(data: string): void {
  const event = JSON.parse(data) as FeedEvent;
  feed.push(event);
  if (event.kind === 'state') refreshSoon();
  if (drawQueued) return;
  drawQueued = true;
  requestAnimationFrame(() => {
    drawQueued = false;
    // Dropping old events loses nothing drawn: a model's state before its first kept change is
    // that change's `from`.
    const cutoff = Date.now() - FEED_KEEP_MS;
    if ((feed[0]?.t ?? cutoff) < cutoff) feed = feed.filter((e) => e.t >= cutoff);
    if (feed.length > FEED_KEEP) feed = feed.slice(-FEED_KEEP);
    drawTimeline();
    drawEvents();
  });
}

type StateEvent = Extract<FeedEvent, { kind: 'state' }>;

/** The spans of each state of `model` from `from` to `now`, from its state events; before the
 * first one it was in that event's `from` state, without any in its current state. When the
 * feed goes back to the daemon's first event, nothing is drawn before that. */
function stateSpans(model: ModelDetail, from: number, now: number): { state: ModelState; start: number; end: number }[] {
  const changes = feed.filter((e): e is StateEvent => e.kind === 'state' && e.model === model.id);
  const spans: { state: ModelState; start: number; end: number }[] = [];
  let state: ModelState = changes[0]?.from ?? model.state;
  let start = feed[0]?.seq === 1 ? Math.max(from, feed[0].t) : from;
  for (const c of changes) {
    if (c.t > start) spans.push({ state, start, end: c.t });
    state = c.to;
    start = Math.max(c.t, from);
  }
  spans.push({ state, start, end: now });
  return spans.filter((s) => s.end > from);
}

const LANE = 44;
const GUTTER = 200;
/** A longer model name is shown by its end (its start is often the organisation). */
const NAME_CHARS = 23;
const AXIS = 22;
const SWITCH_LANE = 18;

function drawTimeline(): void {
  const box = $('timeline');
  const width = Math.max(box.clientWidth, 600);
  const windowMs = Number($<HTMLSelectElement>('window').value) * 1000;
  const now = Date.now();
  const from = now - windowMs;
  const plot = width - GUTTER - 8;
  const x = (t: number): number => GUTTER + Math.max(0, ((t - from) / windowMs) * plot);
  const height = AXIS + SWITCH_LANE + models.length * LANE;
  const root = svg('svg', { width, height, viewBox: `0 0 ${width} ${height}`, role: 'img' });

  // Time axis: a tick every step, labelled with the clock.
  const step = windowMs <= 60_000 ? 10_000 : windowMs <= 300_000 ? 60_000 : windowMs <= 900_000 ? 120_000 : 600_000;
  for (let t = Math.ceil(from / step) * step; t <= now; t += step) {
    root.appendChild(svg('line', { x1: x(t), x2: x(t), y1: AXIS - 4, y2: height, class: 'tick' }));
    root.appendChild(svg('text', { x: x(t), y: AXIS - 8, 'text-anchor': 'middle', class: 'axis' })).textContent = clock(t);
  }

  // Switches: one bar each, from the decision to the end, above the lanes.
  root.appendChild(svg('text', { x: 4, y: AXIS + 13, class: 'lane-name' })).textContent = 'switches';
  let switches = 0;
  for (const e of feed) {
    if (e.kind !== 'switch' || e.t < from) continue;
    switches++;
    const text = `${clock(e.t - e.ms)} switch ${e.from ?? '(none)'} → ${e.to}: ${e.result}, ${duration(e.ms)}`;
    root.appendChild(svg('rect', {
      x: x(e.t - e.ms), y: AXIS + 3, width: Math.max(2, x(e.t) - x(e.t - e.ms)), height: SWITCH_LANE - 6,
      class: `switch switch-${e.result}`,
    }, text));
  }

  const summary: string[] = [`${switches} switches`];
  models.forEach((m, i) => {
    const top = AXIS + SWITCH_LANE + i * LANE;
    const requests = feed.filter((e) => e.kind === 'request' && e.model === m.id && e.t >= from);
    const failed = requests.filter((e) => e.kind === 'request' && e.status >= 400).length;
    summary.push(`${m.id}: ${m.state}, ${requests.length} requests, ${failed} failed`);
    const name = root.appendChild(svg('text', { x: 4, y: top + 17, class: 'lane-name' }));
    name.textContent = m.id.length > NAME_CHARS ? `…${m.id.slice(1 - NAME_CHARS)}` : m.id;
    name.appendChild(svg('title', {})).textContent = m.id;
    root.appendChild(svg('text', { x: 4, y: top + 33, class: 'lane-note' })).textContent =
      `${requests.length} requests${failed ? `, ${failed} failed` : ''}`;
    for (const s of stateSpans(m, from, now)) {
      root.appendChild(svg('rect', {
        x: x(s.start), y: top + 4, width: Math.max(1, x(s.end) - x(s.start)), height: 20,
        class: `span st-${s.state}`,
      }, `${m.id}: ${s.state} ${clock(s.start)}–${clock(s.end)} (${duration(s.end - s.start)})`));
    }
    // Requests below the states: each from its arrival to its end, coloured by outcome.
    for (const e of requests) {
      if (e.kind !== 'request') continue;
      const outcome = e.status >= 500 ? 'error' : e.status === 499 ? 'left' : e.status >= 400 ? 'refused' : 'ok';
      root.appendChild(svg('rect', {
        x: x(e.t - e.ms), y: top + 28, width: Math.max(1.5, x(e.t) - x(e.t - e.ms)), height: 10,
        class: `request request-${outcome}`,
      }, `${clock(e.t)} ${e.route} ${e.status} in ${duration(e.ms)}`));
    }
  });
  root.setAttribute('aria-label', `Timeline of the last ${duration(windowMs)}: ${summary.join('; ')}`);
  box.replaceChildren(root);
}

function describe(e: FeedEvent): string | null {
  switch (e.kind) {
    case 'switch':
      return `switch ${e.from ?? '(none)'} → ${e.to}: ${e.result} in ${duration(e.ms)}`;
    case 'phase':
      return `${e.model}: ${e.phase} ${e.ok ? 'done' : 'FAILED'} in ${duration(e.ms)}`;
    case 'request':
      // Only the requests that did not succeed: the timeline shows them all.
      return e.status >= 400 ? `${e.model}: ${e.route} answered ${e.status} after ${duration(e.ms)}` : null;
    case 'state':
      return e.to === 'failed' ? `${e.model}: failed (was ${e.from})` : null;
  }
}

function drawEvents(): void {
  const items: HTMLLIElement[] = [];
  for (let i = feed.length - 1; i >= 0 && items.length < EVENTS_SHOWN; i--) {
    const e = feed[i]!;
    const text = describe(e);
    if (text === null) continue;
    const li = el('li', '', `event-${e.kind}`);
    li.appendChild(el('time', clock(e.t))).dateTime = new Date(e.t).toISOString();
    li.append(` ${text}`);
    items.push(li);
  }
  $('events').replaceChildren(...items);
}

// ---- the log tail ----

let logAbort: AbortController | null = null;

function syncLogChoices(): void {
  const select = $<HTMLSelectElement>('log-model');
  const ids = models.map((m) => m.id);
  const have = [...select.options].map((o) => o.value);
  if (ids.join('\n') === have.join('\n')) return;
  const chosen = select.value;
  select.replaceChildren(...ids.map((id) => new Option(id, id)));
  const awake = models.find((m) => m.state === 'awake')?.id;
  select.value = ids.includes(chosen) ? chosen : (awake ?? ids[0] ?? '');
  if (select.value !== chosen) followLog();
}

function showLog(id: string): void {
  $<HTMLSelectElement>('log-model').value = id;
  followLog();
  $('log').scrollIntoView({ block: 'nearest' });
}

function followLog(): void {
  logAbort?.abort();
  const id = $<HTMLSelectElement>('log-model').value;
  const pre = $('log');
  pre.replaceChildren();
  if (!id) return;
  const abort = (logAbort = new AbortController());
  const stream = $<HTMLSelectElement>('log-stream').value;
  const path = `/admin/models/${idPath(id)}/logs?stream=${stream}&tail=${LOG_TAIL}`;
  void follow(path, abort.signal, () => pre.replaceChildren(), (line) => {
    const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    pre.append(`${line}\n`);
    while (pre.childNodes.length > LOG_KEEP) pre.firstChild!.remove();
    if (atEnd) pre.scrollTop = pre.scrollHeight;
  }, () => {});
}

// ---- start and stop ----

let feedAbort: AbortController | null = null;

function stopAll(): void {
  clearTimeout(pollTimer);
  feedAbort?.abort();
  logAbort?.abort();
}

/** Loads everything afresh (at first, and with a new key). */
async function start(): Promise<void> {
  stopAll();
  $('forget-key').hidden = sessionStorage.getItem(KEY_STORE) === null;
  $('log-model').replaceChildren(); // the first model list chooses a log and follows it
  await refreshModels();
  if (!$('key-form').hidden) return;
  poll();
  const abort = (feedAbort = new AbortController());
  const status = $('feed-status');
  void follow('/admin/events', abort.signal, () => (feed = []), onFeedEvent, (up) => {
    status.textContent = up ? `live: ${location.host}` : 'connection lost; reconnecting…';
  });
}

function init(): void {
  drawHead();
  $('key-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const input = $<HTMLInputElement>('key-input');
    sessionStorage.setItem(KEY_STORE, input.value.trim());
    input.value = '';
    $('key-form').hidden = true;
    void start();
  });
  $('forget-key').addEventListener('click', () => askForKey('Key forgotten; enter the admin API key to go on.'));
  $('window').addEventListener('change', drawTimeline);
  $('log-model').addEventListener('change', followLog);
  $('log-stream').addEventListener('change', followLog);
  setInterval(drawTimeline, POLL_MS);
  window.addEventListener('resize', drawTimeline);
  drawLegend();
  void start();
}

function drawLegend(): void {
  const entries = [
    ...STATES.map((state) => [`st-${state}`, state]),
    ['switch-ok', 'switch'], ['request-ok', 'request'], ['request-refused', 'request 4xx'],
    ['request-error', 'request 5xx'], ['request-left', 'client left'],
  ];
  $('legend').replaceChildren(...entries.map(([cls, text]) => {
    const li = el('li', text);
    li.prepend(el('span', '', `swatch ${cls}`));
    return li;
  }));
}

init();
