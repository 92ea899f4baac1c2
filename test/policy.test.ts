// The switch policy as a pure function (src/policy.ts): one table row per rule, then a
// discrete-event simulation of it (bench/lib/sched-sim.ts) replaying long traffic in seconds
// to check its bounds on switching and waiting (docs/scheduling.md).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { fitProblems } from '../src/fit.js';
import { decide, type Decision, type ModelView, type PolicySettings } from '../src/policy.js';
import { simulate, type Client, type SimModel, type Step } from '../bench/lib/sched-sim.js';

const NOW = 100_000;
const AUTO: PolicySettings = { fixedWindowMs: null, maxWindowMs: 30_000, idleSleepMs: null, gpuBudget: 0.9 };

function model(name: string, over: Partial<ModelView> = {}): ModelView {
  return {
    name, state: 'asleep', inflight: 0, waiting: 0, oldestSince: null, awakeSince: 0, lastUsed: 0,
    servedSinceWake: false, retryAt: 0, sleepMs: 400, wakeMs: 600, gapMs: null,
    gpus: [0], share: null, busy: false, coldStart: false, ...over,
  };
}
/** The awake model `a`, woken 500 ms ago, serving. */
const awake = (over: Partial<ModelView> = {}): ModelView =>
  model('a', { state: 'awake', awakeSince: NOW - 500, lastUsed: NOW - 10, servedSinceWake: true, inflight: 2, ...over });
const waiting = (name: string, since: number, over: Partial<ModelView> = {}): ModelView =>
  model(name, { waiting: 1, oldestSince: since, ...over });

interface Row {
  readonly rule: string;
  readonly models: ModelView[];
  readonly settings?: Partial<PolicySettings>;
  readonly expect: Decision['action'];
  readonly recheckAt?: number | null;
}

const rows: Row[] = [
  { rule: 'nobody waits: nothing to do, no timer', models: [awake(), model('b')], expect: { kind: 'wait' }, recheckAt: null },
  { rule: 'the GPU is free: wake the waiting model at once', models: [model('a'), waiting('b', NOW - 1)], expect: { kind: 'switch', from: [], to: 'b' } },
  { rule: 'longest waiter first', models: [model('a'), waiting('b', NOW - 100), waiting('c', NOW - 300)], expect: { kind: 'switch', from: [], to: 'c' } },
  { rule: 'a model in crash-loop backoff is not woken before its time', models: [model('a'), waiting('b', NOW - 300, { state: 'failed', retryAt: NOW + 700 })], expect: { kind: 'wait' }, recheckAt: NOW + 700 },
  { rule: 'backoff does not hold up another waiting model', models: [model('a'), waiting('b', NOW - 300, { state: 'failed', retryAt: NOW + 700 }), waiting('c', NOW - 5)], expect: { kind: 'switch', from: [], to: 'c' } },
  { rule: 'a switch in progress is not interrupted', models: [awake({ state: 'draining' }), waiting('b', NOW - 1)], expect: { kind: 'wait' }, recheckAt: null },
  { rule: 'an awake model that served nothing since its wake yields at once', models: [awake({ servedSinceWake: false }), waiting('b', NOW - 1)], expect: { kind: 'switch', from: ['a'], to: 'b' } },
  { rule: 'a busy model keeps its window of one switch cost (sleep a 400 + wake b 600)', models: [awake(), waiting('b', NOW - 1)], expect: { kind: 'wait' }, recheckAt: NOW + 500 },
  { rule: 'the window uses the measured costs of the two models involved', models: [awake({ sleepMs: 2000 }), waiting('b', NOW - 1, { wakeMs: 3000 })], expect: { kind: 'wait' }, recheckAt: NOW - 500 + 5000 },
  { rule: 'a busy model past its window yields (it drains)', models: [awake({ awakeSince: NOW - 1000 }), waiting('b', NOW - 1)], expect: { kind: 'switch', from: ['a'], to: 'b' } },
  { rule: 'a cost not measured yet for one model is taken from the other', models: [awake({ wakeMs: 600 }), waiting('b', NOW - 1, { wakeMs: null })], expect: { kind: 'wait' }, recheckAt: NOW + 500 },
  { rule: 'costs measured for neither model count 0: no window', models: [awake({ sleepMs: null, wakeMs: null }), waiting('b', NOW - 1, { sleepMs: null, wakeMs: null })], expect: { kind: 'switch', from: ['a'], to: 'b' } },
  { rule: 'the window is capped (the starvation bound stays below the switch timeout)', models: [awake({ sleepMs: 40_000 }), waiting('b', NOW - 1)], expect: { kind: 'wait' }, recheckAt: NOW - 500 + 30_000 },
  { rule: 'an idle model with no known rhythm yields at once, inside its window', models: [awake({ inflight: 0 }), waiting('b', NOW - 1)], expect: { kind: 'switch', from: ['a'], to: 'b' } },
  { rule: 'an idle model with a fast rhythm is held a few gaps for its next request', models: [awake({ inflight: 0, gapMs: 20, lastUsed: NOW - 10 }), waiting('b', NOW - 1)], expect: { kind: 'wait' }, recheckAt: NOW + 50 },
  { rule: 'past that grace it yields', models: [awake({ inflight: 0, gapMs: 20, lastUsed: NOW - 60 }), waiting('b', NOW - 1)], expect: { kind: 'switch', from: ['a'], to: 'b' } },
  { rule: 'a grace costing more than half a switch is not worth holding: yield at once', models: [awake({ inflight: 0, gapMs: 200 }), waiting('b', NOW - 1)], expect: { kind: 'switch', from: ['a'], to: 'b' } },
  { rule: 'the grace never outlasts the window', models: [awake({ inflight: 0, gapMs: 150, lastUsed: NOW - 10, awakeSince: NOW - 900 }), waiting('b', NOW - 1)], expect: { kind: 'wait' }, recheckAt: NOW + 100 },
  { rule: 'fixed window (--min-active-secs): an idle model is held to the end of it', settings: { fixedWindowMs: 2000 }, models: [awake({ inflight: 0 }), waiting('b', NOW - 1)], expect: { kind: 'wait' }, recheckAt: NOW + 1500 },
  { rule: 'fixed window 0: first come, first served (drain at once)', settings: { fixedWindowMs: 0 }, models: [awake(), waiting('b', NOW - 1)], expect: { kind: 'switch', from: ['a'], to: 'b' } },
  { rule: 'idle sleep: due after --idle-sleep-secs with nothing in flight', settings: { idleSleepMs: 5000 }, models: [awake({ inflight: 0, lastUsed: NOW - 5000 }), model('b')], expect: { kind: 'sleep', model: 'a' } },
  { rule: 'idle sleep: not yet, recheck when due', settings: { idleSleepMs: 5000 }, models: [awake({ inflight: 0, lastUsed: NOW - 1000 }), model('b')], expect: { kind: 'wait' }, recheckAt: NOW + 4000 },
  { rule: 'idle sleep: never while a request is in flight', settings: { idleSleepMs: 5000 }, models: [awake({ lastUsed: NOW - 9000 }), model('b')], expect: { kind: 'wait' }, recheckAt: null },
  // Several models awake where they fit (docs/scheduling.md, "Several models awake").
  { rule: 'a model that fits beside the awake one wakes without a victim', models: [awake({ share: 0.4 }), waiting('b', NOW - 1, { share: 0.4 })], expect: { kind: 'switch', from: [], to: 'b' } },
  { rule: 'shares over the budget: the awake model on its GPU must make room (within the same window rules)', models: [awake({ share: 0.5 }), waiting('b', NOW - 1, { share: 0.5 })], expect: { kind: 'wait' }, recheckAt: NOW + 500 },
  { rule: 'a model on another GPU wakes at once, whatever the awake one does', models: [awake(), waiting('b', NOW - 1, { gpus: [1] })], expect: { kind: 'switch', from: [], to: 'b' } },
  { rule: 'victims: idle before busy', models: [awake({ share: 0.45 }), awake({ name: 'c', share: 0.45, inflight: 0, lastUsed: NOW - 5 }), waiting('b', NOW - 1, { share: 0.45 })], expect: { kind: 'switch', from: ['c'], to: 'b' } },
  { rule: 'victims: least recently used first among idle ones', models: [awake({ share: 0.45, inflight: 0, lastUsed: NOW - 50 }), awake({ name: 'c', share: 0.45, inflight: 0, lastUsed: NOW - 5 }), waiting('b', NOW - 1, { share: 0.45 })], expect: { kind: 'switch', from: ['a'], to: 'b' } },
  { rule: 'victims: no more than needed (one larger victim instead of two small ones)', models: [awake({ name: 's', share: 0.2, inflight: 0, lastUsed: NOW - 90 }), awake({ name: 'l', share: 0.6, inflight: 0, lastUsed: NOW - 50 }), waiting('b', NOW - 1, { share: 0.6 })], expect: { kind: 'switch', from: ['l'], to: 'b' } },
  { rule: 'a switch under way on a GPU holds every other switch on that GPU', models: [awake({ share: 0.4, state: 'draining', busy: true }), waiting('c', NOW - 5, { share: 0.4, busy: true }), waiting('b', NOW - 1, { share: 0.4 })], expect: { kind: 'wait' }, recheckAt: null },
  { rule: 'a switch under way on another GPU does not', models: [awake({ state: 'draining', busy: true }), waiting('c', NOW - 5, { busy: true }), waiting('b', NOW - 1, { gpus: [1] })], expect: { kind: 'switch', from: [], to: 'b' } },
  { rule: 'a victim over two GPUs waits while the other one switches', models: [awake({ gpus: [0, 1], share: null, inflight: 0 }), awake({ name: 'x', gpus: [2], state: 'waking', busy: true }), waiting('b', NOW - 1, { gpus: [1] }), model('y', { gpus: [0, 2], busy: true })], expect: { kind: 'wait' }, recheckAt: null },
  { rule: 'a TP=2 model and a model on one of its GPUs share it where their shares fit', models: [awake({ gpus: [0, 1], share: 0.4, inflight: 0 }), waiting('b', NOW - 1, { gpus: [1], share: 0.4 })], expect: { kind: 'switch', from: [], to: 'b' } },
  { rule: 'a whole-GPU TP=2 model and a model on one of its GPUs are never awake together', models: [awake({ gpus: [0, 1], inflight: 0 }), waiting('b', NOW - 1, { gpus: [1] })], expect: { kind: 'switch', from: ['a'], to: 'b' } },
  { rule: 'a cold start gets its GPUs to itself, even where shares would fit', models: [awake({ share: 0.4, inflight: 0 }), waiting('b', NOW - 1, { share: 0.4, coldStart: true })], expect: { kind: 'switch', from: ['a'], to: 'b' } },
  { rule: 'an unknown placement runs alone', models: [awake({ share: 0.4, inflight: 0 }), waiting('b', NOW - 1, { share: 0.4, gpus: null })], expect: { kind: 'switch', from: ['a'], to: 'b' } },
  { rule: 'an older waiter keeps its GPU from a younger one that would fit more easily', models: [awake({ share: 0.5 }), waiting('c', NOW - 9, { share: 0.5 }), waiting('b', NOW - 1, { share: 0.3 })], expect: { kind: 'wait' }, recheckAt: NOW + 500 },
  { rule: 'idle sleep waits while another model of its GPU switches (the job\'s end decides again)', settings: { idleSleepMs: 5000 }, models: [awake({ share: 0.4, state: 'waking', busy: true }), awake({ name: 'b', share: 0.4, inflight: 0, lastUsed: NOW - 6000 })], expect: { kind: 'wait' }, recheckAt: null },
  { rule: 'idle sleep does not wait for a switch on another GPU', settings: { idleSleepMs: 5000 }, models: [awake({ share: 0.4, state: 'waking', busy: true, gpus: [1] }), awake({ name: 'b', share: 0.4, inflight: 0, lastUsed: NOW - 6000 })], expect: { kind: 'sleep', model: 'b' } },
  { rule: 'idle sleep applies to each awake model on its own', settings: { idleSleepMs: 5000 }, models: [awake({ share: 0.4 }), awake({ name: 'b', share: 0.4, inflight: 0, lastUsed: NOW - 6000 })], expect: { kind: 'sleep', model: 'b' } },
];

describe('policy rules (pure function)', () => {
  for (const row of rows) {
    test(row.rule, () => {
      const d = decide({ now: NOW, models: row.models }, { ...AUTO, ...row.settings });
      assert.deepEqual(d.action, row.expect, d.reason);
      if (row.recheckAt !== undefined) assert.equal(d.recheckAt, row.recheckAt, d.reason);
      assert.ok(d.reason.length > 0);
    });
  }
});

describe('fit check (pure function, with its reasons)', () => {
  const on = (name: string, gpus: number[] | null, share: number | null): ModelView => model(name, { gpus, share });
  const cases: [string, ModelView[], string[]][] = [
    ['one model always fits, even over the budget', [on('a', [0], 0.95)], []],
    ['shares that add up to the budget fit', [on('a', [0], 0.45), on('b', [0], 0.45)], []],
    ['over the budget: the GPU and the sum are named', [on('a', [0], 0.45), on('b', [0], 0.45), on('c', [0], 0.45)], ['GPU 0: a 0.45 + b 0.45 + c 0.45 = 1.35 > budget 0.9']],
    ['a model without a share takes its GPU whole', [on('a', [0], null), on('b', [0], 0.1)], ['GPU 0: a takes the whole GPU']],
    ['models on different GPUs never conflict', [on('a', [0], null), on('b', [1], null)], []],
    ['each GPU of a TP=2 model is checked', [on('a', [0, 1], 0.6), on('b', [1], 0.6), on('c', [0], 0.3)], ['GPU 1: a 0.6 + b 0.6 = 1.2 > budget 0.9']],
    ['an unknown placement runs alone', [on('a', null, 0.1), on('b', [3], 0.1)], ["a's GPUs are unknown: it runs alone"]],
  ];
  for (const [name, models, problems] of cases) test(name, () => assert.deepEqual(fitProblems(models, 0.9), problems));
});

// Discrete-event simulation: the clock is stepped by hand, an hour replays in well under a second.
const twoModels = (costMs: number): SimModel[] => ['a', 'b'].map((name) => ({ name, sleepMs: 0.4 * costMs, wakeMs: 0.6 * costMs }));
const loop = (model: string, n: number, serviceMs: number, thinkMs = 0): Step[] => Array.from({ length: n }, () => ({ model, serviceMs, thinkMs }));

describe('policy simulated (discrete events)', () => {
  test('ping-pong for an hour: at most one switch per window plus its switch, far fewer than first come first served', () => {
    const cost = 2500;
    // Two closed-loop clients, each on its own model, 50 ms requests, 2 ms between them.
    const clients: Client[] = ['a', 'b'].map((m) => ({ startAt: 0, steps: loop(m, 20_000, 50, 2) }));
    const auto = simulate(twoModels(cost), clients, AUTO);
    const fifo = simulate(twoModels(cost), clients, { ...AUTO, fixedWindowMs: 0 });
    assert.ok(auto.spanMs >= 3_600_000 / 4, 'long traffic replayed');
    // Each activation lasts at least its window (one switch cost) and a switch costs one more.
    const bound = Math.floor(auto.spanMs / (2 * cost)) + 1;
    assert.ok(auto.switches <= bound, `${auto.switches} switches > ${bound}`);
    assert.ok(auto.spanMs < fifo.spanMs / 2, `auto ${auto.spanMs} ms vs fifo ${fifo.spanMs} ms for the same requests`);
  });

  test('16 closed-loop clients over 3 models: nobody waits longer than the bound', () => {
    const cost = 2500;
    const models: SimModel[] = ['a', 'b', 'c'].map((name) => ({ name, sleepMs: 0.4 * cost, wakeMs: 0.6 * cost }));
    const clients: Client[] = Array.from({ length: 16 }, (_, i) => ({ startAt: 0, steps: loop(['a', 'b', 'c'][i % 3]!, 200, 300) }));
    const r = simulate(models, clients, AUTO);
    assert.equal(r.requests.length, 16 * 200);
    // A switch already under way when the request arrives (a drain, a sleep, a wake), then for
    // each other model ahead of it: its window, a drain, its sleep and the next wake.
    const switchMs = 300 + cost;
    const bound = switchMs + 2 * (cost + switchMs);
    const worst = Math.max(...r.requests.map((q) => q.admittedAt - q.sentAt));
    assert.ok(worst <= bound, `worst wait ${worst} ms > bound ${bound} ms`);
  });

  test('one user alternating models with think time: a switching request costs the switch, not a window', () => {
    const cost = 2500;
    const steps: Step[] = Array.from({ length: 200 }, (_, i) => ({ model: i % 2 ? 'a' : 'b', serviceMs: 100, thinkMs: 300 }));
    const r = simulate(twoModels(cost), [{ startAt: 0, steps }], AUTO);
    const worst = Math.max(...r.requests.map((q) => q.doneAt - q.sentAt));
    assert.ok(worst <= cost + 100 + 1, `worst latency ${worst} ms`);
  });
});

describe('co-residency simulated (discrete events)', () => {
  const cost = 2500;
  const placed = (name: string, gpus: number[], share: number | null): SimModel => ({ name, sleepMs: 0.4 * cost, wakeMs: 0.6 * cost, gpus, share });

  test('two models that fit one GPU: an hour of ping-pong makes no switch after both woke', () => {
    const clients: Client[] = ['a', 'b'].map((m) => ({ startAt: 0, steps: loop(m, 30_000, 100, 20) }));
    const r = simulate([placed('a', [0], 0.4), placed('b', [0], 0.4)], clients, AUTO);
    assert.ok(r.spanMs >= 3_600_000, 'an hour replayed');
    assert.equal(r.switches, 1, 'one wake: a joins b');
    assert.equal(r.sleeps, 0);
  });

  test('a model alone on its GPU never waits while the models of other GPUs switch', () => {
    const models = [placed('tp2', [0, 1], null), placed('g1', [1], 0.4), placed('s1', [2], 0.45), placed('s2', [2], 0.45), placed('s3', [2], 0.45), placed('g3', [3], null)];
    const clients: Client[] = models.flatMap((m) => [0, 1].map(() => ({ startAt: 0, steps: loop(m.name, 30, 300, 200) })));
    const r = simulate(models, clients, AUTO);
    assert.equal(r.requests.length, 12 * 30);
    assert.ok(r.sleeps > 10, `the others switch (${r.sleeps} sleeps)`);
    const g3 = r.requests.filter((q) => q.model === 'g3');
    assert.deepEqual(g3.filter((q) => q.admittedAt > q.sentAt), [], 'g3 never waited');
  });
});
