// Soak: three simulated models, 32 concurrent clients, 2,000 requests (streaming and not),
// random client aborts and one forced crash. Bounded in count and time. Every request must end
// in a correct answer or a clear error; nothing hangs, no hazard, the GPU never oversubscribed,
// and the switch count and the worst wait stay within the bounds the policy implies.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Daemon, sseData, useDaemon } from './support/daemon.js';
import { crashes, expectedReply, maxUsage } from './support/sim.js';

const MODELS = ['a', 'b', 'c'];
const CLIENTS = 32;
const TOTAL = 2000;
const WINDOW_SECS = 0.25; // --min-active-secs
const SWITCH_TIMEOUT_SECS = 30;
const REQUEST_DEADLINE_MS = 60_000; // a request still open after this counts as hung
const SEED = Number(process.env.SOAK_SEED ?? 20261127);

/** mulberry32: a small seeded PRNG, so a failing run can be replayed with SOAK_SEED. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Outcome = 'ok' | 'aborted' | 'error' | 'error-event' | 'corrupt' | 'hung' | 'closed' | 'unexpected';

let d: Daemon;
useDaemon((started) => (d = started), {
  models: MODELS.map((name) => ({ name })),
  env: {
    SGLANGMUX_LOG: 'info',
    SGLANG_SIM_TOKEN_MS: '1',
    SGLANG_SIM_RELEASE_MS: '10',
    SGLANG_SIM_RESUME_MS: '10',
    SGLANG_SIM_ABORT_NOTICE_MS: '30',
  },
  args: [
    '--min-active-secs', String(WINDOW_SECS),
    '--model-switch-timeout-secs', String(SWITCH_TIMEOUT_SECS),
    '--upstream-timeout-secs', '30',
  ],
});

async function one(random: () => number): Promise<Outcome> {
  const model = MODELS[Math.floor(random() * MODELS.length)]!;
  const stream = random() < 0.5;
  const tokens = 1 + Math.floor(random() * 8);
  const abortAfter = random() < 0.05 ? Math.floor(random() * 20) : null;
  const client = new AbortController();
  const deadline = setTimeout(() => client.abort(new Error('deadline')), REQUEST_DEADLINE_MS);
  let aborted = false;
  const abortTimer = abortAfter === null ? null : setTimeout(() => {
    aborted = true;
    client.abort();
  }, abortAfter);
  try {
    const res = await d.post('/v1/chat/completions', {
      model, stream, max_tokens: tokens, messages: [{ role: 'user', content: 'soak' }],
    }, { signal: client.signal });
    const text = await res.text();
    if (res.status !== 200) {
      const body = JSON.parse(text) as { error?: { message?: string } };
      return [502, 503, 504].includes(res.status) && typeof body.error?.message === 'string' ? 'error' : 'unexpected';
    }
    let content: string;
    if (stream) {
      const events = sseData(text);
      if (events.at(-1) !== '[DONE]') {
        const last = JSON.parse(events.at(-1) ?? '{}') as { error?: unknown };
        return last.error ? 'error-event' : 'corrupt';
      }
      content = events.slice(0, -1)
        .map((e) => (JSON.parse(e) as { choices: { delta?: { content?: string } }[] }).choices[0]?.delta?.content ?? '')
        .join('');
    } else {
      content = (JSON.parse(text) as { choices: { message: { content: string } }[] }).choices[0]!.message.content;
    }
    return content === expectedReply(model, tokens) ? 'ok' : 'corrupt';
  } catch {
    if (aborted) return 'aborted';
    return client.signal.aborted ? 'hung' : 'closed';
  } finally {
    clearTimeout(deadline);
    if (abortTimer) clearTimeout(abortTimer);
  }
}

test(`soak: ${CLIENTS} clients, ${TOTAL} requests over ${MODELS.length} models, aborts and a crash`, { timeout: 170_000 }, async () => {
  const random = prng(SEED);
  const outcomes = new Map<Outcome, number>();
  const mark = d.ledger().length;
  const started = Date.now();
  let issued = 0;
  let crashed = '';
  const crashAt = Math.floor(TOTAL / 2);

  const crashAwakeModel = async (): Promise<void> => {
    const h = await d.health();
    const victim = h.active_model ?? MODELS[0]!;
    const pid = d.ledger().filter((e) => e.event === 'listening' && e.model === victim).at(-1)!.pid;
    process.kill(pid, 'SIGKILL');
    crashed = victim;
  };

  await Promise.all(Array.from({ length: CLIENTS }, async () => {
    while (issued < TOTAL) {
      issued++;
      if (issued === crashAt) await crashAwakeModel();
      const outcome = await one(random);
      outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
    }
  }));

  const elapsedSecs = (Date.now() - started) / 1000;
  const ev = d.ledger().slice(mark);
  const switches = ev.filter((e) => e.event === 'resume').length + ev.filter((e) => e.event === 'start').length;
  const waits = [...d.output.matchAll(/\(waited (\d+) ms/g)].map((m) => Number(m[1]));
  const worstWaitMs = Math.max(...waits);
  // Policy bounds: each activation lasts at least the window, so switches <= elapsed / window
  // (+1 first, +1 restart after the crash); a waiter waits at most one window plus a drain and a
  // switch per other model ahead of it, plus its own wake (2 s allowance each on this machine).
  const switchBound = Math.floor(elapsedSecs / WINDOW_SECS) + 2;
  const waitBoundMs = MODELS.length * (WINDOW_SECS + 2) * 1000;
  const all = Object.fromEntries(outcomes);
  console.log(`soak: seed ${SEED}, ${TOTAL} requests in ${elapsedSecs.toFixed(1)} s, outcomes ${JSON.stringify(all)}, crashed ${crashed}`);
  console.log(`soak: ${switches} switches (bound ${switchBound}), worst wait ${worstWaitMs} ms (bound ${waitBoundMs} ms), peak GPU ${maxUsage(d.ledger())} MB of 1000`);

  const total = [...outcomes.values()].reduce((x, y) => x + y, 0);
  assert.equal(total, TOTAL, 'every request accounted for');
  assert.equal(outcomes.get('hung') ?? 0, 0, 'no request hung');
  assert.equal(outcomes.get('corrupt') ?? 0, 0, 'no garbage or truncated answer');
  assert.equal(outcomes.get('unexpected') ?? 0, 0, 'errors are 502/503/504 in the OpenAI shape');
  assert.equal(outcomes.get('closed') ?? 0, 0, 'no connection closed without an answer');
  // Only the crash may cause errors: requests in flight on the crashed model or waiting for it.
  const errors = (outcomes.get('error') ?? 0) + (outcomes.get('error-event') ?? 0);
  assert.ok(errors <= CLIENTS, `${errors} errors, more than the crash explains`);
  assert.ok((outcomes.get('ok') ?? 0) >= TOTAL * 0.9);
  assert.deepEqual(crashes(d.ledger()), [], 'no simulator hazard');
  assert.deepEqual(d.ledger().filter((e) => e.event === 'oom' || e.event === 'hang'), []);
  assert.ok(maxUsage(d.ledger()) <= 1000, 'GPU never oversubscribed');
  assert.ok(switches <= switchBound, `${switches} switches > ${switchBound}`);
  assert.ok(worstWaitMs <= waitBoundMs, `worst wait ${worstWaitMs} ms > ${waitBoundMs} ms`);
  // And the daemon still serves every model afterwards.
  for (const m of MODELS) assert.equal((await d.chat(m, 2)).body.choices?.[0]?.message?.content, expectedReply(m, 2));
});
