// What the switch scheduler does next, as a pure function of the models' states, queues,
// placements, measured costs and the clock (docs/scheduling.md, "When to switch" and "Several
// models awake"). No timers, no logging, no clock reads: the driver in scheduler.ts passes `now`,
// carries the action out (several switches on disjoint GPUs may run at once) and arms one timer
// for `recheckAt`; tests and the benchmark's discrete-event simulation step `now` by hand.
import type { ModelState } from './scheduler.js';
import { makeRoom, overlaps } from './fit.js';

/** One model as the policy sees it. */
export interface ModelView {
  readonly name: string;
  readonly state: ModelState;
  readonly inflight: number;
  readonly waiting: number;
  /** Arrival time of its oldest waiter (null: nobody waits). */
  readonly oldestSince: number | null;
  /** When it last became awake. */
  readonly awakeSince: number;
  /** When its last request was admitted or ended, or it woke: with nothing in flight, idle since. */
  readonly lastUsed: number;
  /** A request (not a preload) was admitted since it woke: its window protects someone. */
  readonly servedSinceWake: boolean;
  /** No start before this time (crash-loop backoff). */
  readonly retryAt: number;
  /** Moving estimate of putting it to sleep (release or stop), ms; null until measured. */
  readonly sleepMs: number | null;
  /** Moving estimate of waking it (resume, or start without the memory saver), ms; null until measured. */
  readonly wakeMs: number | null;
  /** Moving estimate of the gap between its requests (idle to the next arrival), ms; null until seen. */
  readonly gapMs: number | null;
  /** Physical GPUs it runs on; null: unknown (planned as if it took every GPU). */
  readonly gpus: readonly number[] | null;
  /** The share of each of its GPUs it is planned with (the larger of its `--mem-fraction-static`
   * and what it was measured to take); null: the whole GPU. */
  readonly share: number | null;
  /** Part of a switch under way (a victim, or the model being woken): its GPUs are locked. */
  readonly busy: boolean;
  /** Waking it is a cold start (no process to resume). SGLang sizes its memory from what is
   * free at start, so a start gets its GPUs to itself. */
  readonly coldStart: boolean;
}

export interface PolicySettings {
  /** `--min-active-secs` given explicitly: the fixed window of earlier versions (0: plain
   * first-come-first-served). null: automatic, from the measured switch cost. */
  readonly fixedWindowMs: number | null;
  /** Ceiling on any window, so a waiter's bound stays below its switch timeout. */
  readonly maxWindowMs: number;
  /** `--idle-sleep-secs` in ms (null: never). */
  readonly idleSleepMs: number | null;
  /** `--gpu-memory-budget`: the sum of the shares of the models awake on one GPU stays within it. */
  readonly gpuBudget: number;
}

export interface PolicyInput {
  readonly now: number;
  /** Every configured model, in configuration order. */
  readonly models: readonly ModelView[];
}

export type Action =
  /** Put `from` to sleep (none: `to` fits beside the models awake), then wake `to`. */
  | { readonly kind: 'switch'; readonly from: readonly string[]; readonly to: string }
  | { readonly kind: 'sleep'; readonly model: string }
  | { readonly kind: 'wait' };

export interface Decision {
  readonly action: Action;
  /** One readable clause, for the log and for a waiter's 503. */
  readonly reason: string;
  /** Decide again at this time if nothing else happens first (null: only on an event). */
  readonly recheckAt: number | null;
  /** Why each model with waiters that is not being woken still waits (for its waiters' 503). */
  readonly waits: ReadonlyMap<string, string>;
}

/** The automatic window is this many times the measured cost of the switch it delays. */
export const WINDOW_PER_COST = 1;
/** An idle model is held this many of its typical request gaps... */
export const GRACE_PER_GAP = 3;
/** ...counting a gap as at least this long (a client's turnaround on one host: a closed-loop
 * client's next request arrives a few ms after its answer, never at once)... */
export const MIN_GAP_MS = 5;
/** ...but only if that hold is below this share of the switch cost; otherwise it yields at once. */
export const GRACE_MAX_COST_SHARE = 0.5;


/** States in which a model may hold GPU memory. */
export const HOLDING: ReadonlySet<ModelState> = new Set(['starting', 'awake', 'draining', 'sleeping', 'waking']);

/** The measured cost, ms, of putting `from` to sleep and waking `to`. A part not measured yet
 * for its model is taken from the other model (both run on this host), else counts 0. */
export function switchCostMs(from: ModelView | null, to: ModelView): number {
  return (from?.sleepMs ?? to.sleepMs ?? 0) + (to.wakeMs ?? from?.wakeMs ?? 0);
}

/** How long the idle awake model is held for its next request before it yields: a few of its
 * own request gaps (a closed-loop client's next request is not the end of its traffic), and
 * only when that costs well under the switch it may save. */
export function graceMs(model: ModelView, costMs: number): number {
  if (model.gapMs === null) return 0;
  const grace = GRACE_PER_GAP * Math.max(model.gapMs, MIN_GAP_MS);
  return grace <= GRACE_MAX_COST_SHARE * costMs ? grace : 0;
}

/** The automatic protected window after a wake: proportional to what the next switch costs. */
export function windowMs(costMs: number, settings: PolicySettings): number {
  return Math.min(settings.fixedWindowMs ?? WINDOW_PER_COST * costMs, settings.maxWindowMs);
}

const secs = (ms: number): string => `${Math.round(ms)} ms`;

/** Whether an awake model may be put to sleep now for `target` (rules 4-6), else when it may. */
type Yield = { readonly now: true; readonly reason: string } | { readonly now: false; readonly reason: string; readonly at: number };

function mayYield(victim: ModelView, target: ModelView, now: number, settings: PolicySettings): Yield {
  if (!victim.servedSinceWake) return { now: true, reason: `${victim.name} has served nothing since its wake` };
  const cost = switchCostMs(victim, target);
  const window = windowMs(cost, settings);
  const windowEnds = victim.awakeSince + window;
  const why = settings.fixedWindowMs === null ? `its window of ${secs(window)} (switch cost ${secs(cost)})` : `its fixed window of ${secs(window)}`;
  if (now >= windowEnds) return { now: true, reason: `${victim.name} has used ${why}` };
  if (settings.fixedWindowMs === null && victim.inflight === 0 && victim.waiting === 0) {
    // Work-conserving: an idle model yields after its grace, inside its window too.
    const grace = graceMs(victim, cost);
    const graceEnds = victim.lastUsed + grace;
    if (now >= graceEnds) return { now: true, reason: `${victim.name} is idle (grace ${secs(grace)})` };
    return { now: false, reason: `${victim.name} is idle, held ${secs(grace)} for its next request`, at: Math.min(graceEnds, windowEnds) };
  }
  return { now: false, reason: `${victim.name} is serving ${victim.inflight} request(s) within ${why}`, at: windowEnds };
}

/** What waking `target` needs now: victims to put to sleep first (none: it fits), or a reason
 * to wait with the time to look again (null: on an event). */
type Plan = { readonly go: true; readonly victims: readonly ModelView[]; readonly reason: string } | { readonly go: false; readonly reason: string; readonly at: number | null };

function plan(target: ModelView, models: readonly ModelView[], now: number, settings: PolicySettings): Plan {
  const room = makeRoom(target, models, settings.gpuBudget);
  if (!room.ok) return { go: false, reason: room.blocked, at: null };
  if (room.victims.length === 0) {
    const beside = models.filter((m) => m !== target && m.state === 'awake');
    const where = beside.length === 0 ? 'its GPUs are free' : `it fits beside ${beside.map((m) => m.name).join(', ')}`;
    return { go: true, victims: [], reason: `${where} and ${target.name} has ${target.waiting} waiting` };
  }
  const verdicts = room.victims.map((v) => mayYield(v, target, now, settings));
  const pending = verdicts.filter((v): v is Extract<Yield, { now: false }> => !v.now);
  if (pending.length === 0) return { go: true, victims: room.victims, reason: verdicts.map((v) => v.reason).join('; ') };
  // Every victim must be free to go: look again when the last of them is.
  return { go: false, reason: pending.map((v) => v.reason).join('; '), at: Math.max(...pending.map((v) => v.at)) };
}

export function decide(input: PolicyInput, settings: PolicySettings): Decision {
  const { now, models } = input;
  const waits = new Map<string, string>();
  let recheckAt: number | null = null;
  const later = (at: number | null): void => {
    if (at !== null) recheckAt = recheckAt === null ? at : Math.min(recheckAt, at);
  };
  // Longest waiter first. A waiter that cannot be served yet keeps its GPUs from younger ones
  // (no starvation by a model that fits more easily); models on other GPUs go on.
  const targets = models
    .filter((m) => m.oldestSince !== null && !HOLDING.has(m.state) && !m.busy)
    .sort((a, b) => a.oldestSince! - b.oldestSince!);
  const held: ModelView[] = [];
  for (const target of targets) {
    if (target.retryAt > now) {
      waits.set(target.name, `${target.name} is backed off after failures`);
      later(target.retryAt);
      continue;
    }
    const ahead = held.find((m) => overlaps(m.gpus, target.gpus));
    if (ahead) {
      waits.set(target.name, `${ahead.name} waits longer for the same GPUs (${waits.get(ahead.name)})`);
      continue;
    }
    const p = plan(target, models, now, settings);
    if (p.go) {
      return { action: { kind: 'switch', from: p.victims.map((v) => v.name), to: target.name }, reason: p.reason, recheckAt: null, waits };
    }
    waits.set(target.name, p.reason);
    later(p.at);
    held.push(target);
  }
  const idle = idleSleep(models, now, settings);
  if (idle.due) return { action: { kind: 'sleep', model: idle.due }, reason: `idle for ${secs(settings.idleSleepMs ?? 0)}`, recheckAt: null, waits };
  later(idle.at);
  const first = waits.values().next();
  return { action: { kind: 'wait' }, reason: first.done ? 'nobody waits' : first.value, recheckAt, waits };
}

/** With `--idle-sleep-secs`: an awake model with nothing in flight or queued that long sleeps. */
function idleSleep(models: readonly ModelView[], now: number, settings: PolicySettings): { due: string | null; at: number | null } {
  const idleMs = settings.idleSleepMs;
  let at: number | null = null;
  if (idleMs === null) return { due: null, at };
  for (const m of models) {
    if (m.state !== 'awake' || m.busy || m.inflight > 0 || m.waiting > 0) continue;
    // One switch at a time per GPU: a job's end kicks the driver.
    if (models.some((o) => o !== m && o.busy && overlaps(o.gpus, m.gpus))) continue;
    const due = m.lastUsed + idleMs;
    if (now >= due) return { due: m.name, at: null };
    at = at === null ? due : Math.min(at, due);
  }
  return { due: null, at };
}
