// The control API: model details, wake, sleep and restart (checked through /health and the
// simulators' ledger), the SSE log tail (existing lines, a new line produced by a request,
// truncation, disconnect), and who may use it: loopback-only without an admin key, never on
// --host 0.0.0.0 without one, the admin key right, wrong or missing.
import assert from 'node:assert/strict';
import { appendFileSync, readFileSync, renameSync, truncateSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { describe, test } from 'node:test';
import { isLoopback } from '../src/auth.js';
import { Daemon, useDaemon } from './support/daemon.js';
import { crashes, expectedReply } from './support/sim.js';
import { SseStream } from './support/sse.js';

interface Detail {
  id: string;
  state: string;
  port: number;
  pid: number | null;
  last_error: string | null;
  gpus: number[];
  gpu_share: number | null;
  script: string;
  stdout_log: string;
  stderr_log: string;
  awake_secs: number | null;
  in_flight: number;
  waiting: number;
  oldest_wait_ms: number | null;
  memory_saver: boolean;
  cpu_backup: boolean;
  failures: number;
}

const DETAIL_KEYS = [
  'awake_secs', 'cpu_backup', 'failures', 'gpu_share', 'gpus', 'id', 'in_flight', 'last_error', 'memory_saver', 'oldest_wait_ms',
  'pid', 'port', 'script', 'state', 'stderr_log', 'stdout_log', 'waiting',
];

async function json<T>(res: Response, status = 200): Promise<T> {
  const text = await res.text();
  assert.equal(res.status, status, text);
  return JSON.parse(text) as T;
}

async function assertError(res: Response, status: number, code: string, message?: RegExp): Promise<void> {
  const body = await json<{ error: { message: string; type: string; param: unknown; code: unknown } }>(res, status);
  assert.deepEqual(Object.keys(body.error).sort(), ['code', 'message', 'param', 'type']);
  assert.equal(body.error.code, code);
  if (message) assert.match(body.error.message, message);
}

const control = (d: Daemon, path: string, init: RequestInit = {}): Promise<Response> =>
  fetch(`${d.url}/admin/models${path}`, init);
const act = (d: Daemon, id: string, action: string, headers: Record<string, string> = {}): Promise<Response> =>
  control(d, `/${id}/${action}`, { method: 'POST', headers });

/** An open SSE log stream: its data events as they come. */
const openLog = (d: Daemon, id: string, query: string): Promise<SseStream> =>
  SseStream.open(`${d.url}/admin/models/${id}/logs${query}`);

test('isLoopback: 127.0.0.0/8, ::1, mapped IPv4 and localhost; nothing else', () => {
  for (const a of ['127.0.0.1', '127.1.2.3', '::1', '[::1]', '::ffff:127.0.0.1', 'localhost', 'LOCALHOST', '0:0:0:0:0:0:0:1']) {
    assert.ok(isLoopback(a), a);
  }
  for (const a of ['0.0.0.0', '::', '10.0.0.1', '192.168.1.2', '::ffff:10.0.0.1', 'example.com', '128.0.0.1', '', undefined]) {
    assert.ok(!isLoopback(a), String(a));
  }
});

describe('control API on a loopback listener without an admin key', () => {
  let d: Daemon;
  useDaemon((started) => (d = started), { models: [{ name: 'a' }, { name: 'org/b' }], args: ['--min-active-secs', '0'] });

  test('GET /admin/models and /admin/models/{id}: state, port, GPUs, pid, errors, log paths, time awake', async () => {
    const { object, data } = await json<{ object: string; data: Detail[] }>(await control(d, ''));
    assert.equal(object, 'list');
    assert.deepEqual(data.map((m) => m.id), ['a', 'org/b']);
    for (const m of data) {
      assert.deepEqual(Object.keys(m).sort(), DETAIL_KEYS);
      const info = d.models.find((x) => x.name === m.id)!;
      assert.equal(m.port, info.port);
      assert.equal(m.script, info.script);
      assert.equal(typeof m.pid, 'number');
      assert.match(m.stdout_log, /\.stdout\.log$/);
      assert.match(m.stderr_log, /\.stderr\.log$/);
      assert.equal(m.memory_saver, true);
      assert.equal(m.last_error, null);
      assert.deepEqual([m.gpus, m.gpu_share], [[0], null]);
    }
    const b = await json<Detail>(await control(d, '/org/b'));
    assert.equal(b.state, 'awake');
    assert.equal(typeof b.awake_secs, 'number');
    const a = await json<Detail>(await control(d, '/a'));
    assert.equal(a.state, 'asleep');
    assert.equal(a.awake_secs, null);
    await assertError(await control(d, '/nope'), 404, 'model_not_found', /model not found: nope/);
  });

  test('wake, sleep, restart: each answers when done, and /health shows it', async () => {
    const woken = await json<Detail>(await act(d, 'a', 'wake'));
    assert.equal(woken.id, 'a');
    assert.equal(woken.state, 'awake');
    let h = await d.health();
    assert.equal(h.active_model, 'a');
    assert.equal(d.state(h, 'org/b'), 'asleep');

    const slept = await json<Detail>(await act(d, 'a', 'sleep'));
    assert.equal(slept.state, 'asleep');
    h = await d.health();
    assert.equal(h.active_model, null);
    assert.equal(d.state(h, 'a'), 'asleep');
    // Sleeping a model that is not awake changes nothing.
    assert.equal((await json<Detail>(await act(d, 'org/b', 'sleep'))).state, 'asleep');

    const before = (await json<Detail>(await control(d, '/org/b'))).pid;
    const starts = d.ledger().filter((e) => e.event === 'start' && e.model === 'org/b').length;
    const restarted = await json<Detail>(await act(d, 'org/b', 'restart'));
    assert.equal(restarted.state, 'awake');
    assert.notEqual(restarted.pid, before);
    assert.equal(d.ledger().filter((e) => e.event === 'start' && e.model === 'org/b').length, starts + 1);
    h = await d.health();
    assert.equal(h.active_model, 'org/b');
    // And it serves.
    const { status, body } = await d.chat('org/b', 3);
    assert.equal(status, 200);
    assert.equal(body.choices?.[0]?.message?.content, expectedReply('org/b', 3));
    assert.deepEqual(crashes(d.ledger()), []);
  });

  test('unknown actions and models', async () => {
    await assertError(await act(d, 'a', 'explode'), 404, 'not_found', /no route for POST \/admin\/models\/a\/explode/);
    await assertError(await act(d, 'nope', 'wake'), 404, 'model_not_found');
    await assertError(await control(d, '/org/b/logs?stream=both'), 400, 'invalid_request', /stream/);
    await assertError(await control(d, '/org/b/logs?tail=-1'), 400, 'invalid_request', /tail/);
  });

  test('log stream: the last N lines, then a line a request produces, survives truncation, stops on disconnect', async () => {
    const { stdout_log: path } = await json<Detail>(await control(d, '/org/b'));
    const existing = readFileSync(path, 'utf8').split('\n').filter((l) => l !== '');
    assert.ok(existing.length > 3);
    const stream = await openLog(d, 'org/b', '?stream=stdout&tail=3');
    // The existing last lines come first, exactly.
    await stream.waitFor(/./);
    assert.deepEqual(stream.events.slice(0, 3), existing.slice(-3));

    // A request: the simulator logs it (uvicorn access line), and the line arrives.
    const n = stream.events.length;
    assert.equal((await d.chat('org/b', 2)).status, 200);
    await stream.waitFor(/"POST \/v1\/chat\/completions HTTP\/1\.1" 200/, n);

    // Truncated (like copytruncate rotation): new lines are still delivered.
    truncateSync(path, 0);
    const m = stream.events.length;
    assert.equal((await d.post('/v1/completions', { model: 'org/b', prompt: 'x', max_tokens: 1 })).status, 200);
    await stream.waitFor(/"POST \/v1\/completions HTTP\/1\.1" 200/, m);

    const closed = d.waitLog(/log stream of org\/b closed/);
    stream.close();
    await closed;
  });

  test('the stderr log by default; tail=0 sends only new lines; a rotated file is followed', async () => {
    const { stderr_log: path } = await json<Detail>(await control(d, '/a'));
    appendFileSync(path, 'an old line\n');
    const stream = await openLog(d, 'a', '?tail=0');
    appendFileSync(path, 'a new line\n');
    await stream.waitFor(/^a new line$/);
    // Rotation: the file is renamed away and a new one takes its path.
    renameSync(path, `${path}.1`);
    writeFileSync(path, 'first line of the new file\n');
    await stream.waitFor(/^first line of the new file$/);
    assert.deepEqual(stream.events, ['a new line', 'first line of the new file']);
    const closed = d.waitLog(/log stream of a closed/);
    stream.close();
    await closed;
  });
});

describe('control API on --host 0.0.0.0', () => {
  test('without an admin key: 403 saying to set --admin-api-key, inference still works', async () => {
    const d = await Daemon.start({ models: [{ name: 'm' }], args: ['--host', '0.0.0.0'] });
    try {
      for (const res of [await control(d, ''), await act(d, 'm', 'wake'), await control(d, '/m/logs'), await fetch(`${d.url}/metrics`)]) {
        await assertError(res, 403, 'forbidden', /--admin-api-key/);
      }
      const { status, body } = await d.chat('m', 2);
      assert.equal(status, 200);
      assert.equal(body.choices?.[0]?.message?.content, expectedReply('m', 2));
      assert.equal((await d.health()).status, 'ok');
    } finally {
      await d.stop();
      d.cleanup();
    }
  });

  test('with an admin key: right -> 200, wrong or missing -> 401', async () => {
    const key = 'sk-ctl-5c2e8a0f4d';
    const d = await Daemon.start({ models: [{ name: 'm' }], args: ['--host', '0.0.0.0'], env: { SGLANGMUX_ADMIN_API_KEY: key } });
    try {
      for (const headers of [{}, { authorization: 'Bearer sk-wrong' }] as Record<string, string>[]) {
        await assertError(await control(d, '', { headers }), 401, 'invalid_api_key');
        await assertError(await act(d, 'm', 'sleep', headers), 401, 'invalid_api_key');
      }
      assert.equal(d.state(await d.health(), 'm'), 'awake'); // the refused sleep did nothing
      const list = await json<{ data: Detail[] }>(await control(d, '', { headers: { authorization: `Bearer ${key}` } }));
      assert.equal(list.data[0]?.id, 'm');
      assert.equal((await json<Detail>(await act(d, 'm', 'sleep', { authorization: `Bearer ${key}` }))).state, 'asleep');
      assert.equal(d.state(await d.health(), 'm'), 'asleep');
      assert.ok(!d.output.includes(key));
    } finally {
      await d.stop();
      d.cleanup();
    }
  });
});

/** A raw HTTP request, so that Host, Origin and Sec-Fetch-Site can be what a browser would send. */
function rawRequest(d: Daemon, method: string, path: string, headers: Record<string, string>): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${d.url}${path}`, { method, headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('control API without an admin key: only the loopback host itself, not a web page of another site', () => {
  let d: Daemon;
  useDaemon((started) => (d = started), { models: [{ name: 'm' }] });

  test('a request from another site (Origin, Sec-Fetch-Site) or through a rebound host name gets 403 and changes nothing', async () => {
    const port = new URL(d.url).port;
    const refused: Record<string, string>[] = [
      { origin: 'http://evil.example' },
      { origin: `http://evil.example:${port}` },
      { 'sec-fetch-site': 'cross-site' },
      { 'sec-fetch-site': 'same-site' },
      { host: `rebound.example:${port}` },
    ];
    for (const headers of refused) {
      const res = await rawRequest(d, 'POST', '/admin/models/m/sleep', headers);
      assert.equal(res.status, 403, JSON.stringify(headers));
      assert.match(res.body, /another site/, JSON.stringify(headers));
      assert.equal((await rawRequest(d, 'GET', '/admin/models', headers)).status, 403, JSON.stringify(headers));
    }
    assert.equal(d.state(await d.health(), 'm'), 'awake'); // none of the refused sleeps happened
  });

  test('curl-style requests and the dashboard (same origin) are let through', async () => {
    const allowed: Record<string, string>[] = [
      {},
      { 'sec-fetch-site': 'same-origin', origin: d.url },
      { 'sec-fetch-site': 'none' },
      { host: `localhost:${new URL(d.url).port}` },
    ];
    for (const headers of allowed) {
      assert.equal((await rawRequest(d, 'GET', '/admin/models', headers)).status, 200, JSON.stringify(headers));
    }
  });
});
