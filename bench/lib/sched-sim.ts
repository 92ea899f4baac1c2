// A discrete-event simulation of the switch scheduler: the real policy (src/policy.ts) driven
// by a hand-stepped clock over simulated model servers, so an hour of traffic replays in
// seconds. It mirrors the daemon's driver (src/scheduler.ts): arrivals for an awake model are
// admitted at once, others queue; a switch drains its victims (they admit nothing new), puts
// them to sleep, wakes the target and admits all its waiters, while switches on other GPUs run
// at the same time; the driver decides again after every event and at the decision's recheck
// time. Generations run batched (each takes its own time,
// whatever else runs), as in the SGLang simulator.
import { MovingEstimate } from '../../src/estimate.js';
import { overlaps } from '../../src/fit.js';
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
  /** Its GPUs (default [0]) and share of each (default: the whole GPU), as in src/placement.ts. */
  readonly gpus?: readonly number[];
  readonly share?: number | null;
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
  /** Models put to sleep after the start. */
  readonly sleeps: number;
  /** Time during which at least one request was being generated. */
  readonly servingMs: number;
  /** From the first request sent to the last answered. */
  readonly spanMs: number;
}

interface Slot {
  readonly spec: SimModel;
  state: ModelState;
  /** Part of a switch under way. */
  busy: boolean;
  inflight: number;
  readonly waiters: { since: number; admit: () => void }[];
  awakeSince: number;
  lastUsed: number;
  servedSinceWake: boolean;
  readonly sleepCost: MovingEstimate;
  readonly wakeCost: MovingEstimate;
  readonly gaps: MovingEstimate;
}

/** A switch under way: its victims drain, then sleep one by one, then the target wakes. */
interface Job {
  readonly victims: readonly Slot[];
  readonly target: Slot | null;
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

/** Replays `clients` against `models`, started as the daemon's bootstrap leaves them: each
 * started in order with the models on its GPUs asleep, so the last one and any on other GPUs
 * stay awake. */
export function simulate(models: readonly SimModel[], clients: readonly Client[], settings: PolicySettings): SimResult {
  const agenda = new Agenda();
  let now = 0;
  const slots = new Map<string, Slot>(models.map((spec) => [spec.name, {
    spec, state: 'asleep', busy: false, inflight: 0, waiters: [], awakeSince: 0, lastUsed: 0, servedSinceWake: false,
    sleepCost: new MovingEstimate(), wakeCost: new MovingEstimate(), gaps: new MovingEstimate(GAP_CEILING_MS),
  } satisfies Slot]));
  const ordered = [...slots.values()];
  const gpusOf = (s: Slot): readonly number[] => s.spec.gpus ?? [0];
  for (const slot of ordered) {
    for (const other of ordered) {
      if (other.state !== 'awake' || !overlaps(gpusOf(other), gpusOf(slot))) continue;
      other.state = 'asleep';
      other.sleepCost.add(other.spec.sleepMs);
    }
    slot.state = 'awake';
  }

  const requests: RequestRecord[] = [];
  let switches = 0;
  let sleeps = 0;
  let serving = 0;
  let servingSince = 0;
  let running = 0;
  let first = Infinity;
  let last = 0;
  const draining = new Set<Job>();
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
    if (slot.state === 'awake') startServing(slot, now, client, step);
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
    gpus: gpusOf(s), share: s.spec.share ?? null, busy: s.busy, coldStart: false,
  });

  const wake = (target: Slot): void => {
    target.state = 'waking';
    agenda.push(now + target.spec.wakeMs, () => {
      target.wakeCost.add(target.spec.wakeMs);
      target.state = 'awake';
      target.busy = false;
      target.awakeSince = now;
      target.lastUsed = now;
      target.servedSinceWake = false;
      switches++;
      admitAll(target);
      drive();
    });
  };

  /** Victims that have drained sleep one after the other, as the daemon releases them (each
   * waits for its own memory to show free), then the target wakes. */
  const sleepThenWake = (job: Job): void => {
    for (const v of job.victims) v.state = 'sleeping';
    agenda.push(now + job.victims.reduce((sum, v) => sum + v.spec.sleepMs, 0), () => {
      for (const v of job.victims) {
        v.sleepCost.add(v.spec.sleepMs);
        v.state = 'asleep';
        v.busy = false;
        sleeps++;
      }
      if (job.target) wake(job.target);
      else drive();
    });
  };

  const start = (job: Job): void => {
    for (const s of [...job.victims, ...(job.target ? [job.target] : [])]) s.busy = true;
    if (job.victims.length === 0) return wake(job.target!);
    for (const v of job.victims) v.state = 'draining';
    draining.add(job);
    drained();
  };

  /** Jobs whose victims have nothing in flight go on to sleep them. */
  const drained = (): void => {
    for (const job of [...draining]) {
      if (job.victims.some((v) => v.inflight > 0)) continue;
      draining.delete(job);
      sleepThenWake(job);
    }
  };

  function drive(): void {
    drained();
    for (const s of ordered) if (s.state === 'awake') admitAll(s);
    for (;;) {
      const d = decide({ now, models: ordered.map(view) }, settings);
      const { action } = d;
      if (action.kind === 'switch') {
        start({ victims: action.from.map((n) => slots.get(n)!), target: slots.get(action.to)! });
        continue;
      }
      if (action.kind === 'sleep') {
        start({ victims: [slots.get(action.model)!], target: null });
        continue;
      }
      if (d.recheckAt !== null) {
        const token = ++timerToken;
        agenda.push(d.recheckAt, () => {
          if (token === timerToken) drive();
        });
      }
      return;
    }
  }

  clients.forEach((c, i) => agenda.push(c.startAt + (c.steps[0]?.thinkMs ?? 0), () => arrive(i, 0)));
  for (let e = agenda.pop(); e; e = agenda.pop()) {
    now = e.at;
    e.run();
  }
  return { requests, switches, sleeps, servingMs: serving, spanMs: Math.max(0, last - first) };
}
