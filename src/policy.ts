// What the switch scheduler does next, as a pure function of the models' states, queues,
// measured costs and the clock (docs/scheduling.md, "When to switch"). No timers, no logging,
// no clock reads: the driver in scheduler.ts passes `now`, carries out the action and arms one
// timer for `recheckAt`; tests and the benchmark's discrete-event simulation step `now` by hand.
import type { ModelState } from './scheduler.js';

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
}

export interface PolicySettings {
  /** `--min-active-secs` given explicitly: the fixed window of earlier versions (0: plain
   * first-come-first-served). null: automatic, from the measured switch cost. */
  readonly fixedWindowMs: number | null;
  /** Ceiling on any window, so a waiter's bound stays below its switch timeout. */
  readonly maxWindowMs: number;
  /** `--idle-sleep-secs` in ms (null: never). */
  readonly idleSleepMs: number | null;
}

export interface PolicyInput {
  readonly now: number;
  /** Every configured model, in configuration order. */
  readonly models: readonly ModelView[];
}

export type Action =
  | { readonly kind: 'switch'; readonly from: string | null; readonly to: string }
  | { readonly kind: 'sleep'; readonly model: string }
  | { readonly kind: 'wait' };

export interface Decision {
  readonly action: Action;
  /** One readable clause, for the log and for a waiter's 503. */
  readonly reason: string;
  /** Decide again at this time if nothing else happens first (null: only on an event). */
  readonly recheckAt: number | null;
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

/** States in which a model may hold GPU memory (one GPU: at most one model is in them). */
const HOLDING: ReadonlySet<ModelState> = new Set(['starting', 'awake', 'draining', 'sleeping', 'waking']);

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

export function decide(input: PolicyInput, settings: PolicySettings): Decision {
  const { now } = input;
  const holder = input.models.find((m) => HOLDING.has(m.state)) ?? null;
  // Longest waiter first, among models that may be woken now (not in backoff).
  let target: ModelView | null = null;
  let backoffEnds: number | null = null;
  for (const m of input.models) {
    if (m.oldestSince === null || m === holder) continue;
    if (m.retryAt > now) {
      backoffEnds = Math.min(backoffEnds ?? m.retryAt, m.retryAt);
      continue;
    }
    if (!target || m.oldestSince < target.oldestSince!) target = m;
  }
  if (!target) return nothingToWake(holder, now, settings, backoffEnds);
  if (!holder) return switchTo(null, target, `the GPU is free and ${target.name} has ${target.waiting} waiting`);
  if (holder.state !== 'awake') {
    return { action: { kind: 'wait' }, reason: `${holder.name} is ${holder.state}`, recheckAt: null };
  }
  if (!holder.servedSinceWake) return switchTo(holder, target, `${holder.name} has served nothing since its wake`);

  const cost = switchCostMs(holder, target);
  const window = windowMs(cost, settings);
  const windowEnds = holder.awakeSince + window;
  const why = settings.fixedWindowMs === null ? `its window of ${secs(window)} (switch cost ${secs(cost)})` : `its fixed window of ${secs(window)}`;
  if (now >= windowEnds) return switchTo(holder, target, `${holder.name} has used ${why}`);
  if (settings.fixedWindowMs === null && holder.inflight === 0 && holder.waiting === 0) {
    // Work-conserving: an idle model yields after its grace, inside its window too.
    const grace = graceMs(holder, cost);
    const graceEnds = holder.lastUsed + grace;
    if (now >= graceEnds) return switchTo(holder, target, `${holder.name} is idle (grace ${secs(grace)})`);
    return { action: { kind: 'wait' }, reason: `${holder.name} is idle, held ${secs(grace)} for its next request`, recheckAt: Math.min(graceEnds, windowEnds) };
  }
  return { action: { kind: 'wait' }, reason: `${holder.name} is serving ${holder.inflight} request(s) within ${why}`, recheckAt: windowEnds };
}

function switchTo(from: ModelView | null, to: ModelView, reason: string): Decision {
  return { action: { kind: 'switch', from: from?.name ?? null, to: to.name }, reason, recheckAt: null };
}

/** Nobody can be woken now: idle sleep of the awake model, or wait for a backoff to end. */
function nothingToWake(holder: ModelView | null, now: number, settings: PolicySettings, backoffEnds: number | null): Decision {
  const idleMs = settings.idleSleepMs;
  const waitFor = backoffEnds === null ? 'nobody waits' : 'a waiting model is backed off after failures';
  if (holder?.state !== 'awake' || idleMs === null || holder.inflight > 0) {
    return { action: { kind: 'wait' }, reason: waitFor, recheckAt: backoffEnds };
  }
  const due = holder.lastUsed + idleMs;
  if (now >= due) return { action: { kind: 'sleep', model: holder.name }, reason: `idle for ${secs(idleMs)}`, recheckAt: null };
  return { action: { kind: 'wait' }, reason: waitFor, recheckAt: Math.min(due, backoffEnds ?? due) };
}
