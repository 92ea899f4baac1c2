// The switching policy under concurrent traffic (docs/scheduling.md), one test per rule:
// waiters served in one activation, no stale switch, bounded admission window while others
// wait, no starvation, aborted waiters, and a request racing the start of a switch.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Daemon, useDaemon } from './support/daemon.js';
import { crashes, expectedReply, type LedgerEvent } from './support/sim.js';

const count = (events: LedgerEvent[], kind: string, model: string): number =>
  events.filter((e) => e.event === kind && e.model === model).length;

function assertNoHazard(d: Daemon): void {
  const ev = d.ledger();
  assert.deepEqual(crashes(ev), []);
  assert.deepEqual(ev.filter((e) => e.event === 'oom' || e.event === 'hang'), []);
}

/** A long streaming generation on `model`, running until `stop()` or its end. */
async function longStream(d: Daemon, model: string, tokens: number): Promise<{ done: Promise<string> }> {
  const res = await d.post('/v1/chat/completions', {
    model, stream: true, max_tokens: tokens, messages: [{ role: 'user', content: 'long' }],
  });
  assert.equal(res.status, 200);
  const reader = res.body!.getReader();
  await reader.read(); // it is running upstream now
  const done = (async () => {
    let text = '';
    for (let r = await reader.read(); !r.done; r = await reader.read()) text += new TextDecoder().decode(r.value);
    return text;
  })();
  return { done };
}

describe('policy with --min-active-secs 0', () => {
  let d: Daemon;
  useDaemon((started) => (d = started), {
    models: [{ name: 'a', env: { SGLANG_SIM_TOKEN_MS: '20' } }, { name: 'b' }],
    args: ['--min-active-secs', '0', '--model-switch-timeout-secs', '20'],
  });

  test('every request waiting for a model is served in one activation', async () => {
    await d.chat('a', 1);
    const mark = d.ledger().length;
    const busy = await longStream(d, 'a', 30);
    const waiting = Array.from({ length: 10 }, () => d.chat('b', 2));
    const answers = await Promise.all(waiting);
    for (const a of answers) assert.equal(a.body.choices?.[0]?.message?.content, expectedReply('b', 2));
    await busy.done;
    const ev = d.ledger().slice(mark);
    assert.equal(count(ev, 'resume', 'b'), 1, 'one wake of b for all ten');
    assert.equal(count(ev, 'release', 'a'), 1);
    assertNoHazard(d);
  });

  test('a request for the draining model waits for the switch back instead of entering', async () => {
    await d.chat('a', 1);
    const mark = d.ledger().length;
    const busy = await longStream(d, 'a', 30);
    const forB = d.chat('b', 2);
    await d.waitHealth((h) => d.state(h, 'a') === 'draining', 'a draining');
    const lateA = d.chat('a', 2);
    await d.waitLedger((e) => e.event === 'resume' && e.model === 'b', 'b resumed', 30_000, mark);
    assert.equal((await forB).status, 200);
    assert.equal((await lateA).body.choices?.[0]?.message?.content, expectedReply('a', 2));
    await busy.done;
    const ev = d.ledger().slice(mark);
    const aRequests = ev.map((e, i) => ({ e, i })).filter(({ e }) => e.event === 'request' && e.model === 'a' && e['route'] === '/v1/chat/completions');
    const resumeB = ev.findIndex((e) => e.event === 'resume' && e.model === 'b');
    // Only the long stream reached a before the switch; the late request reached it after b.
    assert.equal(aRequests.filter(({ i }) => i < resumeB).length, 1);
    assert.equal(aRequests.filter(({ i }) => i > resumeB).length, 1);
    assertNoHazard(d);
  });

  test('a waiter whose client leaves stops waiting at once and causes no switch', async () => {
    await d.chat('a', 1);
    const mark = d.ledger().length;
    const busy = await longStream(d, 'a', 30);
    const leaver = new AbortController();
    const gone = d.post('/v1/chat/completions', { model: 'b', max_tokens: 2, messages: [] }, { signal: leaver.signal });
    await d.waitHealth((h) => d.state(h, 'a') === 'draining', 'a draining for b');
    leaver.abort();
    await assert.rejects(gone);
    await d.waitLog(/client left after waiting/);
    // The drain is abandoned: a serves again without having been put to sleep.
    await d.waitHealth((h) => d.state(h, 'a') === 'awake', 'a awake again');
    // At once: the long generation on a is still running, the drain did not wait for it.
    const a = d.models.find((m) => m.name === 'a')!;
    assert.equal((await fetch(`http://127.0.0.1:${a.port}/flush_cache`, { method: 'POST' })).status, 400);
    assert.equal((await d.chat('a', 2)).status, 200);
    await busy.done;
    const ev = d.ledger().slice(mark);
    assert.equal(count(ev, 'release', 'a'), 0);
    assert.equal(count(ev, 'resume', 'b'), 0);
    assertNoHazard(d);
  });

  test('requests racing the start of a switch are neither lost nor sent to a sleeping server', async () => {
    for (let round = 0; round < 5; round++) {
      await d.chat('a', 1);
      // A burst for a, with a request for b in the middle: some a requests arrive before the
      // switch begins (admitted), some right after (they wait for the switch back).
      const burst = [
        ...Array.from({ length: 8 }, () => d.chat('a', 2)),
        d.chat('b', 2),
        ...Array.from({ length: 8 }, () => d.chat('a', 2)),
      ];
      const answers = await Promise.all(burst);
      answers.forEach((ans, i) => {
        assert.equal(ans.status, 200, JSON.stringify(ans.body));
        assert.equal(ans.body.choices?.[0]?.message?.content, expectedReply(i === 8 ? 'b' : 'a', 2));
      });
    }
    assertNoHazard(d);
  });
});

describe('policy with a minimum active window', () => {
  let d: Daemon;
  useDaemon((started) => (d = started), {
    models: [{ name: 'a', env: { SGLANG_SIM_TOKEN_MS: '10' } }, { name: 'b' }],
    args: ['--min-active-secs', '2', '--model-switch-timeout-secs', '30'],
  });

  test('a model under constant load yields to a waiter after its window: no starvation', async () => {
    await d.chat('a', 1);
    let stop = false;
    let served = 0;
    // Four clients keep a busy without pause: it is never idle.
    const load = Array.from({ length: 4 }, async () => {
      while (!stop) {
        const r = await d.chat('a', 5);
        assert.equal(r.status, 200);
        served++;
      }
    });
    await d.waitLedger((e) => e.event === 'request' && e.model === 'a', 'load running');
    const mark = d.ledger().length;
    const forB = await d.chat('b', 2);
    stop = true;
    await Promise.all(load);
    assert.equal(forB.status, 200, JSON.stringify(forB.body));
    assert.equal(forB.body.choices?.[0]?.message?.content, expectedReply('b', 2));
    assert.ok(served > 0);
    const ev = d.ledger().slice(mark);
    assert.equal(count(ev, 'resume', 'b'), 1);
    assertNoHazard(d);
  });

  test('within its window the awake model keeps admitting while another model waits', async () => {
    // a just woken: a request for a sent while b waits is admitted within the window.
    await d.chat('b', 1);
    await d.chat('a', 1);
    const m2 = d.ledger().length;
    const busy = await longStream(d, 'a', 20);
    const forB = d.chat('b', 1);
    await d.waitLog(/request for b waits/);
    const inWindow = await d.chat('a', 1);
    assert.equal(inWindow.status, 200);
    const ev = d.ledger().slice(m2);
    assert.equal(count(ev, 'resume', 'b'), 0, 'b still waits while a is in its window');
    assert.equal((await forB).status, 200);
    await busy.done;
    assertNoHazard(d);
  });
});

describe('ping-pong traffic', () => {
  let d: Daemon;
  const windowSecs = 0.5;
  useDaemon((started) => (d = started), {
    models: [{ name: 'a' }, { name: 'b' }],
    env: { SGLANG_SIM_TOKEN_MS: '10' },
    args: ['--min-active-secs', String(windowSecs), '--model-switch-timeout-secs', '30'],
  });

  test('two clients hammering two models cost at most one switch per active window', async () => {
    const mark = d.ledger().length;
    const started = Date.now();
    const perClient = 40;
    const client = async (model: string): Promise<void> => {
      for (let i = 0; i < perClient; i++) {
        const r = await d.chat(model, 5);
        assert.equal(r.body.choices?.[0]?.message?.content, expectedReply(model, 5));
      }
    };
    await Promise.all([client('a'), client('b')]);
    const elapsedSecs = (Date.now() - started) / 1000;
    const switches = d.ledger().slice(mark).filter((e) => e.event === 'resume').length;
    // Each activation lasts at least the window, so switches <= elapsed / window (+1 for the first).
    const bound = Math.floor(elapsedSecs / windowSecs) + 1;
    console.log(`ping-pong: ${2 * perClient} requests, ${switches} switches in ${elapsedSecs.toFixed(1)} s (bound ${bound}; first-come-first-served would make ~${2 * perClient - 1})`);
    assert.ok(switches <= bound, `${switches} switches > bound ${bound}`);
    assert.ok(switches < perClient, 'far fewer switches than requests');
    assertNoHazard(d);
  });
});

describe('stale switch', () => {
  let d: Daemon;
  useDaemon((started) => (d = started), {
    models: [{ name: 'b' }, { name: 'a', env: { SGLANG_SIM_RELEASE_MS: '1500' } }],
    args: ['--min-active-secs', '0'],
  });

  test('a switch whose waiters all left while the old model was being released wakes nothing', async () => {
    const mark = d.ledger().length;
    const leaver = new AbortController();
    const gone = d.post('/v1/chat/completions', { model: 'b', max_tokens: 1, messages: [] }, { signal: leaver.signal });
    await d.waitHealth((h) => d.state(h, 'a') === 'sleeping', 'a being released');
    leaver.abort();
    await assert.rejects(gone);
    await d.waitLog(/switch to b skipped: nobody waits for it any more/);
    assert.equal(count(d.ledger().slice(mark), 'resume', 'b'), 0);
    assert.equal((await d.chat('a', 1)).status, 200);
    assertNoHazard(d);
  });
});
