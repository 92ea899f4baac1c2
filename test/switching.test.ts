// Bootstrap and switching against the simulator: sequential start, one model awake, the right
// sleep/wake calls in the right order, correct answers (never garbage), drains that wait for
// in-flight work, and never a simulator crash or an oversubscribed GPU.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Daemon, sseData, useDaemon } from './support/daemon.js';
import { crashes, expectedReply, isGarbage, maxUsage, type LedgerEvent } from './support/sim.js';

const CAPACITY = 1000; // the simulator's default GPU, each model's share 600

function assertSafe(events: LedgerEvent[]): void {
  assert.deepEqual(crashes(events), [], 'no simulator hazard crash');
  assert.ok(maxUsage(events) <= CAPACITY, `GPU never oversubscribed (max ${maxUsage(events)} MB)`);
  // The simulator refuses what would not fit (oom at start, a hanging resume): none may be tried.
  assert.deepEqual(events.filter((e) => e.event === 'oom' || e.event === 'hang'), []);
}

/** Control calls (release/resume) recorded in the ledger after index `from`. */
function controls(events: LedgerEvent[], from = 0): string[] {
  return events.slice(from)
    .filter((e) => e.event === 'release' || e.event === 'resume' || e.event === 'reload' || e.event === 'start')
    .map((e) => `${e.event} ${e.model}`);
}

async function streamText(res: Response): Promise<{ content: string; events: string[] }> {
  const events = sseData(await res.text());
  let content = '';
  for (const data of events) {
    if (data === '[DONE]') continue;
    const chunk = JSON.parse(data) as { choices: { delta?: { content?: string } }[] };
    content += chunk.choices[0]?.delta?.content ?? '';
  }
  return { content, events };
}

describe('bootstrap', () => {
  let d: Daemon;
  useDaemon((started) => (d = started), { models: [{ name: 'a' }, { name: 'b', cpuBackup: false }, { name: 'c' }] });

  test('starts models one at a time in script order; the last stays awake', async () => {
    const h = await d.health();
    assert.equal(h.status, 'ok');
    assert.equal(h.active_model, 'c');
    assert.deepEqual(h.models.map((m) => [m.id, m.state]), [['a', 'asleep'], ['b', 'asleep'], ['c', 'awake']]);
    const ev = d.ledger();
    assert.deepEqual(controls(ev), ['start a', 'release a', 'start b', 'release b', 'start c']);
    // Each start came after the previous model had become ready and was released.
    const order = ev.filter((e) => e.event === 'ready' || e.event === 'start').map((e) => `${e.event} ${e.model}`);
    assert.deepEqual(order, ['start a', 'ready a', 'start b', 'ready b', 'start c', 'ready c']);
    assertSafe(ev);
  });

  test('A -> B -> A -> B, streaming and not: correct answers, one sleep and one wake per switch', async () => {
    const plan: [string, boolean][] = [['a', false], ['b', true], ['a', true], ['b', false], ['c', false]];
    let previous = 'c';
    for (const [model, stream] of plan) {
      const mark = d.ledger().length;
      const res = await d.post('/v1/chat/completions', {
        model, stream, max_tokens: 5, messages: [{ role: 'user', content: 'hi' }],
      });
      assert.equal(res.status, 200);
      const content = stream
        ? (await streamText(res)).content
        : ((await res.json()) as { choices: { message: { content: string } }[] }).choices[0]!.message.content;
      assert.equal(content, expectedReply(model, 5), `answer of ${model}`);
      assert.ok(!isGarbage(content));
      const expected = [`release ${previous}`, `resume ${model}`];
      if (model === 'b') expected.push('reload b'); // b has no CPU backup: weights reloaded after resume
      assert.deepEqual(controls(d.ledger(), mark), expected, `switch ${previous} -> ${model}`);
      previous = model;
      const h = await d.health();
      assert.equal(h.active_model, model);
      assert.equal(h.models.filter((m) => m.state === 'awake').length, 1);
    }
    assertSafe(d.ledger());
  });

  test('requests for the awake model go straight through, with no control call', async () => {
    const mark = d.ledger().length;
    const answers = await Promise.all([1, 2, 3].map(() => d.chat('c', 3)));
    for (const a of answers) assert.equal(a.body.choices?.[0]?.message?.content, expectedReply('c', 3));
    assert.deepEqual(controls(d.ledger(), mark), []);
  });

  test('requests for the model being woken join the switch', async () => {
    const mark = d.ledger().length;
    const answers = await Promise.all([1, 2, 3, 4].map(() => d.chat('a', 2)));
    for (const a of answers) assert.equal(a.body.choices?.[0]?.message?.content, expectedReply('a', 2));
    assert.deepEqual(controls(d.ledger(), mark), ['release c', 'resume a']);
    assertSafe(d.ledger());
  });
});

describe('draining', () => {
  let d: Daemon;
  useDaemon((started) => (d = started), {
    models: [{ name: 'a', env: { SGLANG_SIM_TOKEN_MS: '40', SGLANG_SIM_ABORT_NOTICE_MS: '1500' } }, { name: 'b' }],
  });

  test('the first event reaches the client before the upstream has finished', async () => {
    const res = await d.post('/v1/chat/completions', {
      model: 'a', stream: true, max_tokens: 40, messages: [{ role: 'user', content: 'hi' }],
    });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/);
    const reader = res.body!.getReader();
    const first = new TextDecoder().decode((await reader.read()).value);
    assert.match(first, /^data: /);
    assert.doesNotMatch(first, /\[DONE\]/);
    // The simulator still has the generation running: the daemon did not wait for the end.
    const a = d.models.find((m) => m.name === 'a')!;
    const flush = await fetch(`http://127.0.0.1:${a.port}/flush_cache`, { method: 'POST' });
    assert.equal(flush.status, 400);
    let rest = '';
    for (let r = await reader.read(); !r.done; r = await reader.read()) rest += new TextDecoder().decode(r.value);
    assert.match(rest, /data: \[DONE\]/);
  });

  test('a switch waits for in-flight requests, including one whose client left', async () => {
    const mark = d.ledger().length;
    // A long generation on a; its client leaves after the first event.
    const leaver = new AbortController();
    const long = await d.post('/v1/chat/completions', {
      model: 'a', stream: true, max_tokens: 200, messages: [{ role: 'user', content: 'long' }],
    }, { signal: leaver.signal });
    const reader = long.body!.getReader();
    await reader.read();
    // A non-streaming request on a that is still running when b is asked for.
    const inflight = d.chat('a', 10);
    await d.waitLedger((e) => e.event === 'request' && e.model === 'a' && e['stream'] === false, 'a running the request');
    leaver.abort();
    const other = await d.chat('b', 3);
    assert.equal(other.status, 200);
    assert.equal(other.body.choices?.[0]?.message?.content, expectedReply('b', 3));
    const done = await inflight;
    assert.equal(done.body.choices?.[0]?.message?.content, expectedReply('a', 10));
    assert.deepEqual(controls(d.ledger(), mark), ['release a', 'resume b']);
    assertSafe(d.ledger());
  });
});
