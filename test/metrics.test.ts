// GET /metrics: the Prometheus text is parsed into samples (not grepped) and each family is
// checked to move with the traffic that should move it: requests, durations, time to first
// byte, a switch with its from/to, drain/sleep/wake phases, queue and in-flight gauges during a
// wait, the state gauge, an upstream error and a process restart.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Daemon, sseData, useDaemon } from './support/daemon.js';
import { crashes, expectedReply } from './support/sim.js';

interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

/** Parses the Prometheus text exposition format (0.0.4) into samples; comments are skipped. */
export function parsePrometheus(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)(\s+\d+)?$/.exec(line);
    assert.ok(m, `not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    if (m[2]) {
      const body = m[2].slice(1, -1);
      const re = /\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(,|$)/gy;
      let pos = 0;
      while (pos < body.length) {
        re.lastIndex = pos;
        const l = re.exec(body);
        assert.ok(l, `bad labels at ${pos} in: ${line}`);
        labels[l[1]!] = l[2]!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
        pos = re.lastIndex;
      }
    }
    // Values as Go's ParseFloat reads them (Prometheus does): Inf and NaN in any case.
    const raw = m[3]!.toLowerCase();
    const value = /^[+]?inf$/.test(raw) ? Infinity : raw === '-inf' ? -Infinity : raw === 'nan' ? NaN : Number(raw);
    assert.ok(!Number.isNaN(value) || raw === 'nan', `bad value in: ${line}`);
    samples.push({ name: m[1]!, labels, value });
  }
  return samples;
}

class Scrape {
  constructor(readonly samples: readonly Sample[]) {}

  /** Samples of `name` whose labels include `labels`. */
  find(name: string, labels: Record<string, string> = {}): Sample[] {
    return this.samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  }

  /** The one sample of `name` with exactly these labels (0 if absent, as a counter not yet seen). */
  value(name: string, labels: Record<string, string> = {}): number {
    const hits = this.samples.filter((s) => s.name === name &&
      Object.keys(s.labels).length === Object.keys(labels).length &&
      Object.entries(labels).every(([k, v]) => s.labels[k] === v));
    assert.ok(hits.length <= 1, `several samples of ${name} ${JSON.stringify(labels)}`);
    return hits[0]?.value ?? 0;
  }

  has(name: string, labels: Record<string, string> = {}): boolean {
    return this.find(name, labels).length > 0;
  }
}

async function scrape(d: Daemon): Promise<Scrape> {
  const res = await fetch(`${d.url}/metrics`);
  const text = await res.text();
  assert.equal(res.status, 200, text);
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  return new Scrape(parsePrometheus(text));
}

/** Scrapes until `pred` holds (the gauges are read live); fails after the deadline. */
async function scrapeUntil(d: Daemon, pred: (s: Scrape) => boolean, what: string, timeoutMs = 15_000): Promise<Scrape> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const s = await scrape(d);
    if (pred(s)) return s;
    if (Date.now() > deadline) throw new Error(`metrics never showed ${what}`);
  }
}

const CHAT = '/v1/chat/completions';
const P = 'sglangmux_';
const STATES = ['stopped', 'starting', 'awake', 'draining', 'sleeping', 'asleep', 'waking', 'failed'];
const messages = [{ role: 'user', content: 'hi' }];

test('the parser reads labels with escapes, +Inf, NaN (as prom-client writes it) and plain samples', () => {
  const s = parsePrometheus('# HELP x y\n# TYPE x counter\nx{a="1",b="q\\"u\\\\o"} 2\nx_bucket{le="+Inf"} 3\ny 4.5\nz Nan\n');
  assert.deepEqual(s, [
    { name: 'x', labels: { a: '1', b: 'q"u\\o' }, value: 2 },
    { name: 'x_bucket', labels: { le: '+Inf' }, value: 3 },
    { name: 'y', labels: {}, value: 4.5 },
    { name: 'z', labels: {}, value: NaN },
  ]);
});

describe('/metrics', () => {
  let d: Daemon;
  useDaemon((started) => (d = started), {
    models: [{ name: 'crashy', env: { SGLANG_SIM_CRASH_AFTER_TOKENS: '4' } }, { name: 'org/a' }, { name: 'b' }],
    args: ['--min-active-secs', '0'],
  });

  test('after bootstrap: one state per model at 1, queues empty, starts timed, process metrics', async () => {
    const s = await scrape(d);
    for (const model of ['crashy', 'org/a', 'b']) {
      const states = s.find(`${P}model_state`, { model });
      assert.deepEqual(states.map((x) => x.labels.state).sort(), [...STATES].sort());
      assert.equal(states.filter((x) => x.value === 1).length, 1, `${model}: ${JSON.stringify(states)}`);
      assert.equal(s.value(`${P}queue_depth`, { model }), 0);
      assert.equal(s.value(`${P}queue_oldest_wait_seconds`, { model }), 0);
      assert.equal(s.value(`${P}in_flight_requests`, { model }), 0);
      assert.equal(s.value(`${P}phase_duration_seconds_count`, { model, phase: 'start', result: 'ok' }), 1);
      assert.ok(s.has(`${P}model_restarts_total`, { model }), `restart counter of ${model}`);
      assert.equal(s.value(`${P}model_restarts_total`, { model }), 0);
    }
    assert.equal(s.value(`${P}model_state`, { model: 'b', state: 'awake' }), 1);
    assert.equal(s.value(`${P}model_state`, { model: 'org/a', state: 'asleep' }), 1);
    assert.ok(s.has(`${P}process_cpu_user_seconds_total`), 'default process metrics');
  });

  test('requests, durations and time to first byte move by the traffic sent', async () => {
    const before = await scrape(d);
    for (let i = 0; i < 3; i++) assert.equal((await d.chat('b', 2)).status, 200);
    const stream = await d.post(CHAT, { model: 'b', stream: true, max_tokens: 2, messages });
    assert.equal(stream.status, 200);
    await stream.text();
    assert.equal((await d.post(CHAT, { model: 'nope', messages })).status, 404);
    const after = await scrape(d);

    const labels = { model: 'b', route: CHAT, status: '200' };
    assert.equal(after.value(`${P}requests_total`, labels) - before.value(`${P}requests_total`, labels), 4);
    for (const h of ['request_duration_seconds', 'time_to_first_byte_seconds']) {
      const count = (s: Scrape): number => s.value(`${P}${h}_count`, { model: 'b', route: CHAT });
      assert.equal(count(after) - count(before), 4, h);
      assert.ok(after.value(`${P}${h}_sum`, { model: 'b', route: CHAT }) > 0, `${h} sum`);
      const inf = after.value(`${P}${h}_bucket`, { model: 'b', route: CHAT, le: '+Inf' });
      assert.equal(inf, count(after), `${h}: the +Inf bucket counts every request`);
    }
    // Unknown models are not counted: no label set of unbounded names.
    assert.equal(after.find(`${P}requests_total`, { model: 'nope' }).length, 0);
  });

  test('a switch: counted with from/to and result, with its drain, sleep and wake phases and the new state', async () => {
    const before = await scrape(d);
    const { status, body } = await d.chat('org/a', 3);
    assert.equal(status, 200);
    assert.equal(body.choices?.[0]?.message?.content, expectedReply('org/a', 3));
    const after = await scrape(d);
    const delta = (name: string, labels: Record<string, string>): number => after.value(name, labels) - before.value(name, labels);
    assert.equal(delta(`${P}switches_total`, { from: 'b', to: 'org/a', result: 'ok' }), 1);
    assert.equal(delta(`${P}switch_duration_seconds_count`, { to: 'org/a', result: 'ok' }), 1);
    assert.equal(delta(`${P}phase_duration_seconds_count`, { model: 'b', phase: 'drain', result: 'ok' }), 1);
    assert.equal(delta(`${P}phase_duration_seconds_count`, { model: 'b', phase: 'sleep', result: 'ok' }), 1);
    assert.equal(delta(`${P}phase_duration_seconds_count`, { model: 'org/a', phase: 'wake', result: 'ok' }), 1);
    assert.equal(after.value(`${P}model_state`, { model: 'org/a', state: 'awake' }), 1);
    assert.equal(after.value(`${P}model_state`, { model: 'b', state: 'asleep' }), 1);
    assert.equal(after.value(`${P}model_state`, { model: 'b', state: 'awake' }), 0);
  });

  test('queue depth, oldest wait and in-flight gauges while a request waits behind a long generation', async () => {
    // org/a is awake; a long generation keeps it busy while a request for b waits.
    const long = d.chat('org/a', 600); // ~1.2 s at 2 ms a token
    await scrapeUntil(d, (s) => s.value(`${P}in_flight_requests`, { model: 'org/a' }) === 1, 'the long generation in flight');
    const waiting = d.chat('b', 2);
    const s = await scrapeUntil(d, (x) => x.value(`${P}queue_depth`, { model: 'b' }) === 1 &&
      x.value(`${P}queue_oldest_wait_seconds`, { model: 'b' }) > 0, 'a request waiting for b');
    assert.equal(s.value(`${P}queue_depth`, { model: 'org/a' }), 0);
    assert.equal(s.value(`${P}model_state`, { model: 'org/a', state: 'draining' }), 1);
    assert.equal((await long).status, 200);
    assert.equal((await waiting).status, 200);
    const after = await scrape(d);
    assert.equal(after.value(`${P}queue_depth`, { model: 'b' }), 0);
    assert.equal(after.value(`${P}queue_oldest_wait_seconds`, { model: 'b' }), 0);
    assert.equal(after.value(`${P}in_flight_requests`, { model: 'org/a' }), 0);
  });

  test('a stream broken by a crash: an upstream error, its status, then a process restart', async () => {
    const before = await scrape(d);
    const res = await d.post(CHAT, { model: 'crashy', stream: true, max_tokens: 20, messages });
    assert.equal(res.status, 200);
    const events = sseData(await res.text());
    assert.match(events.at(-1) ?? '', /"error"/);
    // The crash is noticed; the next request starts it again (3 tokens: below its crash point).
    await d.waitHealth((h) => d.state(h, 'crashy') === 'failed', 'crashy failed');
    const { status, body } = await d.chat('crashy', 3);
    assert.equal(status, 200, JSON.stringify(body));
    const after = await scrape(d);
    assert.equal(after.value(`${P}upstream_errors_total`, { model: 'crashy', kind: 'stream_broken' }) -
      before.value(`${P}upstream_errors_total`, { model: 'crashy', kind: 'stream_broken' }), 1);
    assert.equal(after.value(`${P}requests_total`, { model: 'crashy', route: CHAT, status: '502' }), 1);
    assert.equal(after.value(`${P}model_restarts_total`, { model: 'crashy' }), 1);
    assert.equal(after.value(`${P}model_state`, { model: 'crashy', state: 'awake' }), 1);
    // Only the injected fault: no hazard crash.
    assert.deepEqual(crashes(d.ledger()), []);
  });
});
