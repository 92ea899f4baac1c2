// A discrete-event simulation of the switch scheduler: the real policy (src/policy.ts) driven
// by a hand-stepped clock over simulated model servers, so an hour of traffic replays in
// seconds. It mirrors the daemon's driver (src/scheduler.ts): arrivals for the awake model are
// admitted at once, others queue; a switch drains the old model (it admits nothing new), puts it
// to sleep, wakes the target and admits all its waiters; the driver decides again after every
// event and at the decision's recheck time. Generations run batched (each takes its own time,
// whatever else runs), as in the SGLang simulator.
import { MovingEstimate } from '../../src/estimate.js';
import { decide, type ModelView, type PolicySettings } from '../../src/policy.js';
import type { ModelState } from '../../src/scheduler.js';

/** One request of a client: wait `thinkMs` after the previous answer (or the client's start), then send. */
export interface Step {
  readonly model: string;
  readonly serviceMs: number;
  readonly thinkMs: number;
}

/** A closed-loop client: its steps one after another. An open-loop trace is one client per request. */
export interface Client {
  readonly startAt: number;
  readonly steps: readonly Step[];
}

export interface SimModel {
  readonly name: string;
  readonly sleepMs: number;
  readonly wakeMs: number;
}

export interface RequestRecord {
  readonly model: string;
  readonly client: number;
  readonly step: number;
  readonly sentAt: number;
  readonly admittedAt: number;
  readonly doneAt: number;
}

export interface SimResult {
  readonly requests: RequestRecord[];
  /** Wakes after the start (the boot's last model starts awake). */
  readonly switches: number;
  /** Time during which at least one request was being generated. */
  readonly servingMs: number;
  /** From the first request sent to the last answered. */
  readonly spanMs: number;
}

interface Slot {
  readonly spec: SimModel;
  state: ModelState;
  inflight: number;
  readonly waiters: { since: number; admit: () => void }[];
  awakeSince: number;
  lastUsed: number;
  servedSinceWake: boolean;
  readonly sleepCost: MovingEstimate;
  readonly wakeCost: MovingEstimate;
  readonly gaps: MovingEstimate;
}

/** A binary heap of timed events; ties run in insertion order. */
class Agenda {
  private readonly heap: { at: number; seq: number; run: () => void }[] = [];
  private seq = 0;

  push(at: number, run: () => void): void {
    const h = this.heap;
    h.push({ at, seq: this.seq++, run });
    for (let i = h.length - 1; i > 0;) {
      const p = (i - 1) >> 1;
      if (this.less(p, i)) break;
      [h[p], h[i]] = [h[i]!, h[p]!];
      i = p;
    }
  }

  pop(): { at: number; run: () => void } | undefined {
    const h = this.heap;
    const top = h[0];
    const last = h.pop();
    if (h.length > 0 && last) {
      h[0] = last;
      for (let i = 0; ;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && this.less(l, m)) m = l;
        if (r < h.length && this.less(r, m)) m = r;
        if (m === i) break;
        [h[m], h[i]] = [h[i]!, h[m]!];
        i = m;
      }
    }
    return top;
  }

  private less(a: number, b: number): boolean {
    const x = this.heap[a]!;
    const y = this.heap[b]!;
    return x.at < y.at || (x.at === y.at && x.seq < y.seq);
  }
}

const GAP_CEILING_MS = 10_000; // as in the scheduler

/** Replays `clients` against `models` (the last one awake at the start, as after a bootstrap). */
export function simulate(models: readonly SimModel[], clients: readonly Client[], settings: PolicySettings): SimResult {
  const agenda = new Agenda();
  let now = 0;
  const slots = new Map<string, Slot>(models.map((spec) => [spec.name, {
    spec, state: 'asleep', inflight: 0, waiters: [], awakeSince: 0, lastUsed: 0, servedSinceWake: false,
    sleepCost: new MovingEstimate(), wakeCost: new MovingEstimate(), gaps: new MovingEstimate(GAP_CEILING_MS),
  } satisfies Slot]));
  const ordered = [...slots.values()];
  // Bootstrap: each model started and put to sleep (its sleep measured), the last stays awake.
  for (const slot of ordered.slice(0, -1)) slot.sleepCost.add(slot.spec.sleepMs);
  let active: Slot | null = ordered.at(-1)!;
  active.state = 'awake';

  const requests: RequestRecord[] = [];
  let switches = 0;
  let serving = 0;
  let servingSince = 0;
  let running = 0;
  let first = Infinity;
  let last = 0;
  let busy = false; // the driver is in the middle of a switch
  let timerToken = 0;

  const startServing = (slot: Slot, sentAt: number, client: number, step: number): void => {
    slot.inflight++;
    slot.lastUsed = now;
    slot.servedSinceWake = true;
    if (running++ === 0) servingSince = now;
    const admittedAt = now;
    const { serviceMs } = clients[client]!.steps[step]!;
    agenda.push(now + serviceMs, () => {
      slot.inflight--;
      slot.lastUsed = now;
      if (--running === 0) serving += now - servingSince;
      requests.push({ model: slot.spec.name, client, step, sentAt, admittedAt, doneAt: now });
      last = Math.max(last, now);
      send(client, step + 1);
      drive();
    });
  };

  const arrive = (client: number, step: number): void => {
    const { model } = clients[client]!.steps[step]!;
    const slot = slots.get(model)!;
    first = Math.min(first, now);
    if (slot.inflight === 0 && slot.waiters.length === 0 && slot.lastUsed > slot.awakeSince) slot.gaps.add(now - slot.lastUsed);
    if (slot === active && slot.state === 'awake') startServing(slot, now, client, step);
    else {
      const sentAt = now;
      slot.waiters.push({ since: now, admit: () => startServing(slot, sentAt, client, step) });
    }
    drive();
  };

  function send(client: number, step: number): void {
    const c = clients[client]!;
    const s = c.steps[step];
    if (!s) return;
    agenda.push(now + s.thinkMs, () => arrive(client, step));
  }

  const admitAll = (slot: Slot): void => {
    for (const w of slot.waiters.splice(0)) w.admit();
  };

  const view = (s: Slot): ModelView => ({
    name: s.spec.name, state: s.state, inflight: s.inflight, waiting: s.waiters.length,
    oldestSince: s.waiters[0]?.since ?? null, awakeSince: s.awakeSince, lastUsed: s.lastUsed,
    servedSinceWake: s.servedSinceWake, retryAt: 0,
    sleepMs: s.sleepCost.value, wakeMs: s.wakeCost.value, gapMs: s.gaps.value,
  });

  const wake = (target: Slot): void => {
    active = target;
    target.state = 'waking';
    agenda.push(now + target.spec.wakeMs, () => {
      target.wakeCost.add(target.spec.wakeMs);
      target.state = 'awake';
      target.awakeSince = now;
      target.lastUsed = now;
      target.servedSinceWake = false;
      switches++;
      admitAll(target);
      busy = false;
      drive();
    });
  };

  const sleepThenWake = (from: Slot, target: Slot): void => {
    from.state = 'sleeping';
    agenda.push(now + from.spec.sleepMs, () => {
      from.sleepCost.add(from.spec.sleepMs);
      from.state = 'asleep';
      active = null;
      wake(target);
    });
  };

  let draining: { from: Slot; target: Slot } | null = null;

  function drive(): void {
    if (draining && draining.from.inflight === 0) {
      const { from, target } = draining;
      draining = null;
      sleepThenWake(from, target);
      return;
    }
    if (busy) return;
    if (active?.state === 'awake') admitAll(active);
    const d = decide({ now, models: ordered.map(view) }, settings);
    if (d.action.kind === 'switch') {
      const target = slots.get(d.action.to)!;
      busy = true;
      if (!active) return wake(target);
      active.state = 'draining';
      draining = { from: active, target };
      drive();
      return;
    }
    if (d.recheckAt !== null) {
      const token = ++timerToken;
      agenda.push(d.recheckAt, () => {
        if (token === timerToken) drive();
      });
    }
  }

  clients.forEach((c, i) => agenda.push(c.startAt + (c.steps[0]?.thinkMs ?? 0), () => arrive(i, 0)));
  for (let e = agenda.pop(); e; e = agenda.pop()) {
    now = e.at;
    e.run();
  }
  return { requests, switches, servingMs: serving, spanMs: Math.max(0, last - first) };
}
