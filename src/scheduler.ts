// The switch scheduler: the one owner of every model's state. Models are awake together where
// their GPU shares fit (src/fit.ts). Requests take a lease on an awake model; a driver task (never
// a client's request, so no client can cancel it halfway) performs the bootstrap and starts the
// switches the policy decides: drain the victims, confirm them idle, put them to sleep, and only
// then wake the target. Switches on disjoint GPUs run at the same time; one GPU sees one switch
// at a time. Every state change happens in this file, through setState().
import { ApiError, modelNotReady } from './errors.js';
import type { ModelSpec } from './launch-script.js';
import { log } from './log.js';
import { GpuMemory } from './gpu-memory.js';
import { ModelProcess, describeExit, type ExitInfo } from './model-process.js';
import { ClientUnavailable, ModelServer, ServerAuthError } from './model-server.js';
import { releaseServer, resumeServer } from './server-sequences.js';
import { MovingEstimate } from './estimate.js';
import { decide, HOLDING, type Decision, type ModelView, type PolicySettings } from './policy.js';
import { overlaps } from './fit.js';

/**
 * stopped  no process (never started, or stopped to free the GPU without the memory saver)
 * starting process launched, waiting for it to become ready
 * awake    holds the GPU and serves requests
 * draining holds the GPU, admits nothing new, in-flight requests finishing
 * sleeping being released (or stopped)
 * asleep   process up, GPU memory released; only /get_model_info may be sent to it
 * waking   being resumed (and its weights reloaded)
 * failed   its process ended on its own or a start/wake failed; the next request restarts it
 */
export type ModelState =
  | 'stopped' | 'starting' | 'awake' | 'draining' | 'sleeping' | 'asleep' | 'waking' | 'failed';

export interface SchedulerOptions {
  readonly readyTimeoutMs: number;
  readonly switchTimeoutMs: number;
  /** `--min-active-secs` given explicitly: a fixed window after each wake; null: automatic
   * (src/policy.ts). */
  readonly minActiveMs: number | null;
  readonly logDir: string;
  /** Environment for launch scripts. */
  readonly env: NodeJS.ProcessEnv;
  /** Time between SIGTERM and SIGKILL when stopping a model's process group. */
  readonly stopGraceMs: number;
  /** Put the awake model to sleep after this long with nothing in flight or waiting. */
  readonly idleSleepMs: number | null;
  /** Start each model on its first request instead of at bootstrap. */
  readonly lazy: boolean;
  /** `--gpu-memory-budget`: the shares of the models awake on one GPU add up to at most this. */
  readonly gpuBudget: number;
  readonly observer?: SchedulerObserver;
}

/** What the scheduler reports as it works, for metrics and the dashboard's timeline. */
export interface SchedulerObserver {
  switched(e: { from: string | null; to: string; result: 'ok' | 'failed' | 'abandoned' | 'skipped'; ms: number }): void;
  phase(e: { model: string; phase: 'drain' | 'sleep' | 'wake' | 'start'; ok: boolean; ms: number }): void;
  /** Every start of a model's process, restarts included. */
  processStarted(model: string): void;
  /** Every change of a model's state. */
  stateChanged?(e: { model: string; from: ModelState; to: ModelState }): void;
}

const NO_OBSERVER: SchedulerObserver = { switched: () => {}, phase: () => {}, processStarted: () => {} };

export interface Lease {
  readonly server: ModelServer;
  /** How long the request waited for its model. */
  readonly waitedMs: number;
  /** Ends the request's claim on the model; call once the upstream side has really ended. */
  release(): void;
}

export interface ModelStatus {
  readonly id: string;
  readonly state: ModelState;
  readonly port: number;
  /** Physical ids of the GPUs it runs on, read from its script (README: where each model lives);
   * null when the script's text does not tell (shell expansion, GPU UUIDs). */
  readonly gpus: readonly number[] | null;
  /** Its `--mem-fraction-static` share of each of those GPUs; null: the whole GPU. */
  readonly gpu_share: number | null;
  /** Why the model last failed, while it is failed. */
  readonly last_error: string | null;
}

/** Everything the control API shows about a model. */
export interface ModelDetail extends ModelStatus {
  readonly pid: number | null;
  readonly script: string;
  readonly stdout_log: string;
  readonly stderr_log: string;
  /** Time awake so far, while awake or draining. */
  readonly awake_secs: number | null;
  readonly in_flight: number;
  readonly waiting: number;
  readonly oldest_wait_ms: number | null;
  readonly memory_saver: boolean;
  readonly cpu_backup: boolean;
  readonly failures: number;
}

/** One GPU as the metrics show it. */
export interface GpuStatus {
  readonly gpu: number;
  /** The shares of the models holding memory on it (a model without one counts 1). */
  readonly plannedShare: number;
  /** In use and its size, as nvidia-smi last showed them (null: it does not tell). */
  readonly usedMb: number | null;
  readonly totalMb: number | null;
}

/** Thrown to a waiter whose client went away: there is nobody to answer. */
export class ClientGone extends Error {
  constructor() {
    super('client disconnected while waiting');
    this.name = 'ClientGone';
  }
}

interface Waiter {
  readonly since: number;
  /** False for a preload: being woken for nobody's request does not earn an active window. */
  readonly counts: boolean;
  /** The queue it waits in (moves to the new slot when its model's script changes). */
  queue: Waiter[];
  admit(lease: Lease): void;
  fail(err: Error): void;
}

const READY_POLL_MS = 25;
/** Headroom over what a model took at its last wake before resuming it: the larger of these. */
const RESUME_MARGIN_MB = 64;
const RESUME_MARGIN = 0.05;
/** A measured share this far above the declared one is still the declared one (MiB rounding,
 * allocator slack). */
const SHARE_TOLERANCE = 0.01;
const MAX_BACKOFF_MS = 30_000;
/** Longer silences count as this long in a model's request-gap estimate (one lull must not
 * hide its traffic's rhythm for long). */
const GAP_CEILING_MS = 10_000;
/** Awake this long without a crash, a model is no longer in a crash loop. */
const STABLE_MS = 60_000;

/** A model that failed n times in a row waits before its next start: none after the first failure
 * (a crash is restarted by the next request), then 1 s, 2 s, 4 s … up to 30 s. */
export function backoffMs(failures: number): number {
  return failures < 2 ? 0 : Math.min(1000 * 2 ** (failures - 2), MAX_BACKOFF_MS);
}

/** The `Retry-After` of a 503 for a failed model: whole seconds until its next start may begin,
 * at least 1 (a crashed model is restarted by the next request; a router should not hammer it). */
export function retryAfterSecs(retryAt: number, now: number): number {
  return Math.max(1, Math.ceil((retryAt - now) / 1000));
}

/** The `Retry-After` of a 503 for a wait that timed out: the switch it waited for may be moments
 * from done, and the wait already took the whole switch timeout. */
export const WAIT_TIMEOUT_RETRY_AFTER_SECS = 1;

const delay = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
/** A catch handler giving `fallback` for any error but a refused key. */
const unlessAuth = <T>(fallback: T) => (err: unknown): T => {
  if (err instanceof ServerAuthError) throw err;
  return fallback;
};
const message = (err: unknown): string => (err instanceof Error ? err.message : String(err));

class Slot {
  state: ModelState = 'stopped';
  inflight = 0;
  /** Part of a switch under way (a victim, or the model being woken): its GPUs are locked. */
  busy = false;
  readonly waiters: Waiter[] = [];
  lastError: string | null = null;
  /** Consecutive failed starts, wakes or crashes; reset by a successful start or wake. */
  failures = 0;
  /** No new start before this time (crash-loop backoff). */
  retryAt = 0;
  /** When the model last became awake. */
  awakeSince = 0;
  /** When it woke, or its last request was admitted or ended (for idle sleep). */
  lastUsed = 0;
  /** A request (not a preload) was admitted since it woke: its active window protects someone. */
  servedSinceWake = false;
  /** GPU memory it took at its last wake on its GPUs, as nvidia-smi showed it (null: unknown). */
  memoryMb: number | null = null;
  /** The share of each GPU it was measured to take, where that is above its declared share
   * (null: none measured above): planned with from then on. */
  measuredShare: number | null = null;
  /** What putting it to sleep and waking it cost on this host, and its requests' rhythm (the
   * policy's inputs). */
  readonly sleepCost = new MovingEstimate();
  readonly wakeCost = new MovingEstimate();
  readonly gaps = new MovingEstimate(GAP_CEILING_MS);
  /** Settles once memoryMb is known for the last wake: measured after the wake without holding
   * the requests back, and awaited before anything relies on it (the next sleep's wait). */
  memoryMeasured: Promise<void> = Promise.resolve();
  modelPath: string | null;
  /** The settings in effect: the script's, corrected by the server's /server_info after a start
   * (a --config file can hold flags the script text does not show). */
  settings: { memorySaver: boolean; cpuBackup: boolean; dpSize: number };
  /** Checksum of its weights after its last cold start, to verify reloads (null: none). */
  checksum: string | null = null;
  /** The server refused sglangmux's key: not started again until its script changes. */
  configError: string | null = null;
  readonly server: ModelServer;
  readonly process: ModelProcess;

  constructor(readonly spec: ModelSpec, opts: SchedulerOptions, onExit: (slot: Slot, info: ExitInfo) => void) {
    this.modelPath = spec.modelPath;
    this.settings = { memorySaver: spec.memorySaver, cpuBackup: spec.cpuBackup, dpSize: spec.dpSize };
    this.server = new ModelServer(spec);
    this.process = new ModelProcess(spec, opts.logDir, opts.env, (info) => onExit(this, info));
  }

  get name(): string {
    return this.spec.name;
  }

  /** Physical GPUs it runs on (null: unknown, planned as every GPU). */
  get gpus(): readonly number[] | null {
    return this.spec.placement.gpus;
  }
}

/** What /health and the model list show of a model (the control API shows more). */
function statusOf(s: Slot): ModelStatus {
  return {
    id: s.name,
    state: s.state,
    port: s.spec.port,
    gpus: s.spec.placement.gpus,
    gpu_share: s.spec.placement.share,
    last_error: s.state === 'failed' ? s.lastError : null,
  };
}

export class Scheduler {
  private readonly slots = new Map<string, Slot>();
  /** Switches under way (each on GPUs no other one touches). */
  private jobs = 0;
  private driving = false;
  private closing = false;
  private readonly bootQueue: Slot[] = [];
  private started = 0;
  private bootFinished: (startedAny: boolean) => void = () => {};
  /** Wakes the driver when something it waits on may have changed (see until()). */
  private changed: (() => void)[] = [];
  /** Control operations (sleep, restart, retiring a reconfigured model), run by the driver in order. */
  private readonly ops: (() => Promise<void>)[] = [];
  /** The policy's last decision: what a waiter is waiting for. */
  private decision: Decision | null = null;
  /** Models removed or replaced by a reload whose processes are not stopped yet. */
  private readonly retiring = new Set<Slot>();
  private readonly observer: SchedulerObserver;
  private readonly gpu = new GpuMemory();
  /** When a model last released its GPU memory or lost its process: an nvidia-smi reading from
   * before then may still count that memory. */
  private gpuLetGoAt = 0;

  constructor(specs: readonly ModelSpec[], private readonly opts: SchedulerOptions) {
    const outer = opts.observer ?? NO_OBSERVER;
    this.observer = {
      switched: (e) => outer.switched(e),
      processStarted: (model) => outer.processStarted(model),
      stateChanged: (e) => outer.stateChanged?.(e),
      phase: (e) => {
        this.measured(e.model, e.phase, e.ok, e.ms);
        outer.phase(e);
      },
    };
    for (const spec of specs) this.slots.set(spec.name, this.newSlot(spec));
  }

  private newSlot(spec: ModelSpec): Slot {
    return new Slot(spec, this.opts, (slot, info) => this.processExited(slot, info));
  }

  has(model: string): boolean {
    return this.slots.has(model);
  }

  /** Starts every model one at a time in order; the last stays awake. Resolves false if none
   * started. With `lazy`, starts nothing: each model starts on its first request. */
  bootstrap(): Promise<boolean> {
    if (this.opts.lazy) {
      log.info('lazy start: each model starts on its first request');
      return Promise.resolve(true);
    }
    const done = new Promise<boolean>((resolve) => (this.bootFinished = resolve));
    this.bootQueue.push(...this.slots.values());
    this.kick();
    return done;
  }

  details(): ModelDetail[] {
    const now = Date.now();
    return [...this.slots.values()].map((s) => {
      const holding = s.state === 'awake' || s.state === 'draining';
      const oldest = s.waiters[0];
      return {
        ...statusOf(s),
        pid: s.process.pid,
        script: s.spec.script,
        stdout_log: s.process.stdoutLog,
        stderr_log: s.process.stderrLog,
        awake_secs: holding ? (now - s.awakeSince) / 1000 : null,
        in_flight: s.inflight,
        waiting: s.waiters.length,
        oldest_wait_ms: oldest ? now - oldest.since : null,
        memory_saver: s.settings.memorySaver,
        cpu_backup: s.settings.cpuBackup,
        failures: s.failures,
      };
    });
  }

  /** Every GPU a model is placed on or nvidia-smi shows, with what is planned and in use there. */
  gpuStatus(): GpuStatus[] {
    const planned = new Map<number, number>();
    for (const slot of this.slots.values()) {
      const share = HOLDING.has(slot.state) ? (this.plannedShare(slot) ?? 1) : 0;
      for (const g of slot.gpus ?? []) planned.set(g, (planned.get(g) ?? 0) + share);
    }
    const readings = this.gpu.perGpuNow();
    for (const r of readings) if (!planned.has(r.gpu)) planned.set(r.gpu, 0);
    return [...planned].sort(([a], [b]) => a - b).map(([gpu, plannedShare]) => {
      const r = readings.find((x) => x.gpu === gpu);
      return { gpu, plannedShare, usedMb: r?.usedMb ?? null, totalMb: r?.totalMb ?? null };
    });
  }

  /** Wakes `model` through the same queue and policy as a request. */
  async preload(model: string, signal: AbortSignal): Promise<void> {
    (await this.acquire(model, signal, false)).release();
  }

  /** Puts `model` to sleep if it is awake (draining it first); otherwise nothing. */
  sleep(model: string): Promise<void> {
    return this.operate(model, async (slot) => {
      if (slot.state === 'awake') await this.putToSleep([slot], null);
    });
  }

  /** Stops the model's process group (draining it first if awake) and starts it again awake,
   * with the models on its GPUs asleep (a start gets its GPUs to itself). */
  restart(model: string): Promise<void> {
    return this.operate(model, async (slot) => {
      if (slot.state === 'awake') {
        this.setState(slot, 'draining');
        await this.until(() => slot.inflight === 0);
      }
      await this.freeing(slot, 'was stopped', () => this.stopModel(slot, 'stopped'));
      slot.failures = 0;
      slot.retryAt = 0;
      await this.clearGpusOf(slot);
      if (!(await this.wake(slot))) throw modelNotReady(slot.lastError ?? `${model} did not restart`);
      this.admitWaiters(slot);
    });
  }

  /**
   * Applies a re-read configuration: removed models are stopped, changed ones stopped and
   * started again from their new script (their waiting requests carry over), added ones
   * started (in bootstrap order, or on first request with `lazy`). The rest keep serving.
   */
  reload(specs: readonly ModelSpec[]): { added: string[]; removed: string[]; changed: string[] } {
    const next = new Map(specs.map((spec) => [spec.name, spec]));
    const report = { added: [] as string[], removed: [] as string[], changed: [] as string[] };
    for (const old of [...this.slots.values()]) {
      const spec = next.get(old.name);
      if (spec && spec.digest === old.spec.digest) continue;
      const queued = this.bootQueue.indexOf(old);
      if (queued >= 0) this.bootQueue.splice(queued, 1);
      if (spec) {
        const fresh = this.newSlot(spec);
        for (const waiter of old.waiters.splice(0)) {
          waiter.queue = fresh.waiters; // carried over: nothing waits on a retired model
          fresh.waiters.push(waiter);
        }
        this.slots.set(spec.name, fresh);
        report.changed.push(old.name);
      } else {
        this.slots.delete(old.name);
        this.failWaiters(old, modelNotReady(`${old.name} was removed from the configuration`));
        report.removed.push(old.name);
      }
      this.retiring.add(old);
      this.ops.push(() => this.retire(old));
    }
    for (const spec of specs) {
      if (this.slots.has(spec.name)) continue;
      this.slots.set(spec.name, this.newSlot(spec));
      report.added.push(spec.name);
    }
    // Script order, as at bootstrap.
    const ordered = specs.map((spec) => this.slots.get(spec.name)!);
    this.slots.clear();
    for (const slot of ordered) this.slots.set(slot.name, slot);
    if (!this.opts.lazy) {
      const fresh = [...report.changed, ...report.added];
      this.bootQueue.push(...ordered.filter((slot) => fresh.includes(slot.name)));
    }
    this.kick();
    return report;
  }

  status(): { active_model: string | null; awake_models: string[]; models: ModelStatus[] } {
    const serving = [...this.slots.values()].filter((s) => s.state === 'awake' || s.state === 'draining');
    // With one model awake, the awake one (as always); with several, the one used last.
    const last = serving.reduce<Slot | null>((a, b) => (a === null || b.lastUsed > a.lastUsed ? b : a), null);
    return {
      active_model: last?.name ?? null,
      awake_models: serving.map((s) => s.name),
      models: [...this.slots.values()].map(statusOf),
    };
  }

  /**
   * Resolves once `model` is awake and this request is counted in flight on it. Counting happens
   * in the same tick as the check, so no switch can drain the model between them.
   */
  acquire(model: string, signal: AbortSignal, counts = true): Promise<Lease> {
    const slot = this.slots.get(model);
    if (!slot) return Promise.reject(new Error(`unknown model ${model}`));
    if (this.closing) return Promise.reject(modelNotReady('sglangmux is shutting down'));
    if (signal.aborted) return Promise.reject(new ClientGone());
    if (slot.configError !== null) return Promise.reject(modelNotReady(slot.configError));
    const since = Date.now();
    if (slot.state === 'failed' && since < slot.retryAt) {
      const secs = retryAfterSecs(slot.retryAt, since);
      return Promise.reject(modelNotReady(`${slot.lastError}; failed ${slot.failures} times in a row, next start in ${secs} s`, secs));
    }
    // The first request after a quiet spell measures the model's rhythm (see policy.graceMs):
    // the time since its last request ended (not since a wake: the bootstrap's is no gap).
    if (counts && slot.inflight === 0 && slot.waiters.length === 0 && slot.lastUsed > slot.awakeSince) slot.gaps.add(since - slot.lastUsed);
    if (slot.state === 'awake' && this.bootQueue.length === 0) {
      return Promise.resolve(this.lease(slot, since, counts));
    }
    return new Promise<Lease>((resolve, reject) => {
      const leave = (): void => {
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        const i = waiter.queue.indexOf(waiter);
        if (i >= 0) waiter.queue.splice(i, 1);
        this.notify(); // a switch for nobody must not go on (stale switch)
      };
      const waiter: Waiter = {
        since,
        counts,
        queue: slot.waiters,
        admit: (lease) => {
          leave();
          resolve(lease);
        },
        fail: (err) => {
          leave();
          reject(err);
        },
      };
      const onAbort = (): void => waiter.fail(new ClientGone());
      const timer = setTimeout(() => {
        const secs = Math.round(this.opts.switchTimeoutMs / 1000);
        waiter.fail(modelNotReady(`timed out after ${secs} s waiting for ${model} (${this.whyWaiting(slot)})`, WAIT_TIMEOUT_RETRY_AFTER_SECS));
      }, this.opts.switchTimeoutMs);
      signal.addEventListener('abort', onAbort, { once: true });
      slot.waiters.push(waiter);
      log.debug(`request for ${model} waits (${this.whyWaiting(slot)})`);
      this.kick();
    });
  }

  /** Stops taking requests and stops every model's process group. */
  async shutdown(): Promise<void> {
    this.closing = true;
    const err = modelNotReady('sglangmux is shutting down');
    const all = [...this.slots.values(), ...this.retiring];
    for (const slot of all) this.failWaiters(slot, err);
    await Promise.all(all.map((s) => s.process.stop(this.opts.stopGraceMs)));
    for (const slot of all) slot.server.close();
    await this.gpu.close();
  }

  /** Runs a control operation on the driver, after the operations queued before it. */
  private operate(model: string, op: (slot: Slot) => Promise<void>): Promise<void> {
    const slot = this.slots.get(model);
    if (!slot) return Promise.reject(new Error(`unknown model ${model}`));
    if (this.closing) return Promise.reject(modelNotReady('sglangmux is shutting down'));
    return new Promise<void>((resolve, reject) => {
      this.ops.push(() => op(slot).then(resolve, reject));
      this.kick();
    });
  }

  /** Stops a model that left the configuration (or was replaced), after its requests ended. */
  private async retire(slot: Slot): Promise<void> {
    if (slot.state === 'awake' || slot.state === 'draining') {
      this.setState(slot, 'draining');
      await this.until(() => slot.inflight === 0);
    }
    await this.stopModel(slot, 'stopped');
    slot.server.close();
    this.retiring.delete(slot);
    log.info(`model ${slot.name}: retired (${slot.spec.script})`);
  }

  private lease(slot: Slot, since: number, counts: boolean): Lease {
    slot.inflight++;
    slot.lastUsed = Date.now();
    if (counts) slot.servedSinceWake = true;
    let released = false;
    return {
      server: slot.server,
      waitedMs: Date.now() - since,
      release: () => {
        if (released) return;
        released = true;
        slot.inflight--;
        slot.lastUsed = Date.now();
        // With idle sleep the driver must run to arm its timer; otherwise only a waiting driver
        // cares (a drain), and starting a pass per request would be wasted work.
        if (slot.inflight === 0 && this.opts.idleSleepMs !== null) this.kick();
        else this.notify();
      },
    };
  }

  private setState(slot: Slot, state: ModelState): void {
    if (slot.state === state) return;
    log.debug(`model ${slot.name}: ${slot.state} -> ${state}`);
    this.observer.stateChanged?.({ model: slot.name, from: slot.state, to: state });
    if (state === 'asleep' || state === 'stopped' || state === 'failed') this.gpuLetGoAt = Date.now();
    slot.state = state;
  }

  private whyWaiting(slot: Slot): string {
    if (this.bootQueue.length > 0) return 'models are still being started';
    if (slot.state === 'starting' || slot.state === 'waking') return `${slot.name} is ${slot.state}`;
    const draining = [...this.slots.values()].find((s) => s !== slot && s.state === 'draining' && overlaps(s.gpus, slot.gpus));
    if (draining) return `${draining.name} is finishing ${draining.inflight} request(s)`;
    const why = this.decision?.waits.get(slot.name);
    if (why !== undefined) return why;
    if (slot.state === 'failed') return `${slot.name} is failed, to be started again`;
    return `${slot.name} is ${slot.state}`;
  }

  private admitWaiters(slot: Slot): void {
    // Admitted waiters are counted in flight before the next switch may begin.
    for (const waiter of [...slot.waiters]) waiter.admit(this.lease(slot, waiter.since, waiter.counts));
  }

  private failWaiters(slot: Slot, err: ApiError): void {
    for (const waiter of [...slot.waiters]) waiter.fail(err);
  }

  /** Resolves once `done()` holds, re-checked whenever notify() is called. */
  private async until(done: () => boolean): Promise<void> {
    while (!done()) await this.nextChange();
  }

  /** Resolves at the next notify(). */
  private nextChange(): Promise<void> {
    return new Promise<void>((resolve) => this.changed.push(resolve));
  }

  private notify(): void {
    const waiting = this.changed;
    this.changed = [];
    for (const resume of waiting) resume();
  }

  /** Starts the driver, or wakes it if it is waiting. */
  private kick(): void {
    if (this.driving) this.notify();
    if (this.driving || this.closing) return;
    this.driving = true;
    this.drive()
      .catch((err: unknown) => {
        log.error(`scheduler: unexpected error: ${err instanceof Error ? err.stack : String(err)}`);
        for (const slot of this.slots.values()) this.failWaiters(slot, modelNotReady(`internal error: ${message(err)}`));
      });
  }

  private async drive(): Promise<void> {
    // driving is cleared in the very tick the loop ends (not in a .finally() some microtasks
    // later): a kick in between, e.g. a second job ending in the same tick, must start it again.
    try {
      while (!this.closing) {
        if (this.ops.length > 0 || this.bootQueue.length > 0) {
          // Control operations and the bootstrap run alone: the switches under way end first.
          if (this.jobs > 0) {
            await this.nextChange();
            continue;
          }
          await this.runOpOrBootStep();
          continue;
        }
        for (const slot of this.slots.values()) if (slot.state === 'awake') this.admitWaiters(slot);
        // Decide first, then change state (lesson 6): while the decision is to wait, awake models
        // keep serving and admitting.
        const decision = decide({ now: Date.now(), models: [...this.slots.values()].map((s) => this.view(s)) }, this.policySettings());
        this.decision = decision;
        const { action } = decision;
        if (action.kind === 'switch') {
          this.startJob(action.from.map((name) => this.slots.get(name)!), this.slots.get(action.to)!, decision.reason);
          continue;
        }
        if (action.kind === 'sleep') {
          this.startJob([this.slots.get(action.model)!], null, decision.reason);
          continue;
        }
        if (decision.recheckAt === null) return; // a switch ending kicks the driver again
        // The one timer: a window, a grace, an idle sleep or a backoff ends even in a quiet period
        // (lesson 7); any event (an arrival, a request ending, a waiter leaving) decides sooner.
        const timer = setTimeout(() => this.notify(), Math.max(0, decision.recheckAt - Date.now()));
        timer.unref();
        await this.nextChange();
        clearTimeout(timer);
      }
    } finally {
      this.driving = false;
    }
  }

  private async runOpOrBootStep(): Promise<void> {
    const op = this.ops.shift();
    if (op) return op();
    const boot = this.bootQueue[0]!;
    await this.bootOne(boot);
    // By identity: a reload meanwhile may have removed it from the queue already.
    const i = this.bootQueue.indexOf(boot);
    if (i >= 0) this.bootQueue.splice(i, 1);
    if (this.bootQueue.length === 0) {
      log.info(`bootstrap done: ${this.started} of ${this.slots.size} models started; awake: ${this.status().awake_models.join(', ') || 'none'}`);
      this.bootFinished(this.started > 0);
    }
  }

  /** Carries out a switch (or, without a target, a sleep) in the background: the driver goes on
   * deciding for the other GPUs. Its models are busy (their GPUs locked) until it ends. */
  private startJob(victims: Slot[], target: Slot | null, why: string): void {
    const members = target ? [...victims, target] : victims;
    for (const slot of members) slot.busy = true;
    this.jobs++;
    const work = target ? this.switchTo(victims, target, why) : this.idleSleep(victims[0]!, why);
    work
      .catch((err: unknown) => {
        log.error(`scheduler: unexpected error: ${err instanceof Error ? err.stack : String(err)}`);
        for (const slot of members) this.failWaiters(slot, modelNotReady(`internal error: ${message(err)}`));
      })
      .finally(() => {
        for (const slot of members) slot.busy = false;
        this.jobs--;
        this.kick();
      });
  }

  private async idleSleep(slot: Slot, why: string): Promise<void> {
    log.info(`model ${slot.name}: ${why}, putting it to sleep`);
    await this.putToSleep([slot], null);
  }

  /** A slot as the policy sees it. */
  private view(slot: Slot): ModelView {
    return {
      name: slot.name,
      state: slot.state,
      inflight: slot.inflight,
      waiting: slot.waiters.length,
      oldestSince: slot.waiters[0]?.since ?? null,
      awakeSince: slot.awakeSince,
      lastUsed: slot.lastUsed,
      servedSinceWake: slot.servedSinceWake,
      retryAt: slot.retryAt,
      sleepMs: slot.sleepCost.value,
      wakeMs: slot.wakeCost.value,
      gapMs: slot.gaps.value,
      gpus: slot.gpus,
      share: this.plannedShare(slot),
      busy: slot.busy,
      coldStart: !(slot.state === 'asleep' && slot.process.running),
    };
  }

  /** The share a model is planned with: its declared one, or what it was measured to take where
   * that is more (null: the whole GPU). */
  private plannedShare(slot: Slot): number | null {
    const declared = slot.spec.placement.share;
    return declared === null ? null : Math.max(declared, slot.measuredShare ?? 0);
  }

  private policySettings(): PolicySettings {
    return {
      fixedWindowMs: this.opts.minActiveMs,
      maxWindowMs: this.opts.switchTimeoutMs / 2,
      idleSleepMs: this.opts.idleSleepMs,
      gpuBudget: this.opts.gpuBudget,
    };
  }

  /** Feeds a measured switch phase into the model's cost estimates (the bootstrap's sleeps
   * included). A cold start is not a wake's cost (process launch and weights from disk, often
   * ten times a resume or more) unless the model has no memory saver: then every wake is one. */
  private measured(model: string, phase: 'drain' | 'sleep' | 'wake' | 'start', ok: boolean, ms: number): void {
    const slot = this.slots.get(model);
    if (!slot || !ok) return;
    if (phase === 'sleep') slot.sleepCost.add(ms);
    else if (phase === 'wake' || (phase === 'start' && !slot.spec.memorySaver)) slot.wakeCost.add(ms);
  }

  /** Runs `letGo` (a release or a stop of `slot`), then waits until the GPU shows the memory the
   * model took at its wake given back: the driver may do so only after the release answered
   * (hazard 4). Only when it took some: a server that holds nothing would never show a drop. */
  private async freeing(slot: Slot, what: string, letGo: () => Promise<void>): Promise<void> {
    // A reading from while it was awake, not one from before its wake.
    const before = await this.gpu.used(slot.awakeSince, slot.gpus);
    await letGo();
    await slot.memoryMeasured;
    if (slot.memoryMb) await this.gpu.waitBelow(before, this.gpuLetGoAt, this.opts.switchTimeoutMs, `${slot.name} ${what}`, slot.gpus);
  }

  private async bootOne(slot: Slot): Promise<void> {
    await this.clearGpusOf(slot);
    if (await this.wake(slot)) {
      this.started++;
      this.admitWaiters(slot);
      await slot.memoryMeasured;
    }
  }

  /** Before a start: the awake models on its GPUs go to sleep (SGLang sizes a server's memory
   * from what is free when it starts). Used where nothing else switches on those GPUs: by the
   * bootstrap and control operations (which run alone) and inside a switch (whose GPUs are
   * locked); the models it puts to sleep count as part of that switch meanwhile. */
  private async clearGpusOf(slot: Slot): Promise<boolean> {
    const onItsGpus = [...this.slots.values()].filter((s) => s !== slot && s.state === 'awake' && overlaps(s.gpus, slot.gpus));
    if (onItsGpus.length === 0) return false;
    log.info(`model ${slot.name} starts with its GPUs to itself: putting ${onItsGpus.map((s) => s.name).join(', ')} to sleep`);
    const wereBusy = onItsGpus.map((s) => s.busy);
    for (const s of onItsGpus) s.busy = true;
    try {
      await this.putToSleep(onItsGpus, null);
    } finally {
      onItsGpus.forEach((s, i) => (s.busy = wereBusy[i]!));
    }
    return true;
  }

  private async switchTo(victims: readonly Slot[], target: Slot, why: string): Promise<void> {
    const from = victims.map((v) => v.name).join(', ') || null;
    const started = Date.now();
    const report = (result: 'ok' | 'failed' | 'abandoned' | 'skipped'): void =>
      this.observer.switched({ from, to: target.name, result, ms: Date.now() - started });
    if (from !== null) {
      const each = victims.map((v) => `${v.name} (${v.inflight} in flight, awake ${Date.now() - v.awakeSince} ms)`).join(', ');
      log.info(`switch ${from} -> ${target.name} (${why}): draining ${each}`);
      if (!(await this.putToSleep(victims, target))) return report('abandoned');
    } else {
      log.info(`switch to ${target.name} (${why})`);
    }
    // Requests that timed out or left during the drain must not cause a wake (stale switch).
    if (target.waiters.length === 0) {
      log.info(`switch to ${target.name} skipped: nobody waits for it any more`);
      return report('skipped');
    }
    // It crashed during the drain: its waiters wait for the backoff (the driver decides again).
    if (target.retryAt > Date.now()) {
      log.info(`switch to ${target.name} postponed: it failed ${target.failures} times in a row`);
      return report('skipped');
    }
    if (target.state === 'awake') return;
    if (await this.wake(target, from)) {
      this.admitWaiters(target);
      report('ok');
      // Its GPUs stay locked until nvidia-smi has shown what it took: a wake beside it meanwhile
      // would be counted as its own.
      await target.memoryMeasured;
    } else {
      report('failed');
    }
  }

  /**
   * Drains `victims` together, confirms them idle, then releases their memory (or stops them).
   * Returns false when the switch was abandoned because nobody waits for `target` any more.
   */
  private async putToSleep(victims: readonly Slot[], target: Slot | null): Promise<boolean> {
    for (const v of victims) this.setState(v, 'draining');
    const drainStarted = Date.now();
    const abandoned = (): boolean => target !== null && target.waiters.length === 0;
    await this.until(() => victims.every((v) => v.inflight === 0) || abandoned());
    if (target && abandoned()) {
      log.info(`switch ${victims.map((v) => v.name).join(', ')} -> ${target.name} abandoned: nobody waits for ${target.name} any more`);
      for (const v of victims) if (v.state === 'draining') this.setState(v, 'awake');
      return false;
    }
    for (const v of victims) this.observer.phase({ model: v.name, phase: 'drain', ok: true, ms: Date.now() - drainStarted });
    // One after the other: each waits for its own memory to show free, and on a shared GPU the
    // drop of one would pass for the other's (hazard 4).
    for (const v of victims) await this.release(v);
    return true;
  }

  /** Releases the memory of a drained model (or stops it), and waits for the GPU to show it. */
  private async release(from: Slot): Promise<void> {
    const started = Date.now();
    let released = false;
    await this.freeing(from, 'went to sleep', async () => {
      try {
        released = from.process.running && from.settings.memorySaver
          && (await releaseServer(from.server, from.name, from.settings.dpSize, this.opts.switchTimeoutMs, () => this.setState(from, 'sleeping')))
          && from.process.running;
      } catch (err) {
        if (!(err instanceof ServerAuthError)) throw err;
        this.configurationError(from, err);
      }
      if (released) {
        this.setState(from, 'asleep');
        log.info(`model ${from.name}: asleep (released in ${Date.now() - started} ms)`);
      } else {
        await this.stopModel(from, from.configError === null ? 'stopped' : 'failed');
        if (from.state === 'stopped') log.info(`model ${from.name}: stopped to free the GPU`);
      }
      // An activation that ended in a normal sleep (without the memory saver: a normal stop)
      // clears the crash-loop count.
      if (released || (!from.settings.memorySaver && from.state === 'stopped')) from.failures = 0;
    });
    this.observer.phase({ model: from.name, phase: 'sleep', ok: released || !from.settings.memorySaver, ms: Date.now() - started });
  }

  /** Wakes `slot`: resume if it sleeps with its process up, else start it. `madeRoom` names the
   * models put to sleep for it, for its log line. */
  private async wake(slot: Slot, madeRoom: string | null = null): Promise<boolean> {
    if (this.closing) return false;
    const started = Date.now();
    const room = madeRoom === null ? '' : `; ${madeRoom} slept to make room`;
    let phase: 'wake' | 'start' = slot.state === 'asleep' && slot.process.running ? 'wake' : 'start';
    if (phase === 'wake' && !(await this.roomToResume(slot))) {
      await this.stopModel(slot, 'stopped');
      phase = 'start';
    }
    let memoryBefore = await this.gpu.used(this.gpuLetGoAt, slot.gpus);
    try {
      if (phase === 'wake') {
        this.setState(slot, 'waking');
        // Without a CPU backup the released weights were discarded: reload them before use.
        const reloadFrom = slot.settings.cpuBackup ? null : (slot.modelPath ?? (await slot.server.modelPath()));
        if (!slot.settings.cpuBackup && !reloadFrom) throw new Error('cannot reload weights: model path unknown');
        const problem = await resumeServer(slot.server, {
          reloadFrom,
          checksum: slot.checksum,
          switchTimeoutMs: this.opts.switchTimeoutMs,
          reloadTimeoutMs: this.opts.readyTimeoutMs,
        });
        if (!slot.process.running) throw new Error(slot.lastError ?? 'process exited while waking');
        if (problem === null) {
          log.info(`model ${slot.name}: awake (resumed in ${Date.now() - started} ms${room})`);
        } else {
          // Its generation stays paused: it never answers with weights that cannot be trusted.
          log.error(`model ${slot.name}: ${problem}; stopping it and starting it cold instead`);
          await slot.process.stop(this.opts.stopGraceMs);
          phase = 'start';
        }
      }
      if (phase === 'start') {
        if (await this.clearGpusOf(slot)) memoryBefore = await this.gpu.used(this.gpuLetGoAt, slot.gpus);
        this.setState(slot, 'starting');
        slot.process.start();
        this.observer.processStarted(slot.name);
        await this.waitReady(slot);
        await this.learnSettings(slot);
        log.info(`model ${slot.name}: ready (started in ${Date.now() - started} ms${room})`);
      }
      slot.awakeSince = Date.now();
      slot.memoryMeasured = this.measureTaken(slot, memoryBefore, slot.awakeSince, phase);
      this.setState(slot, 'awake');
      slot.lastUsed = slot.awakeSince;
      slot.servedSinceWake = false;
      slot.lastError = null;
      this.observer.phase({ model: slot.name, phase, ok: true, ms: Date.now() - started });
      return true;
    } catch (err) {
      if (err instanceof ServerAuthError) this.configurationError(slot, err);
      this.observer.phase({ model: slot.name, phase, ok: false, ms: Date.now() - started });
      const reason = slot.state === 'failed' && slot.lastError ? slot.lastError : `${slot.name}: ${message(err)}`;
      log.error(`model ${slot.name}: failed to ${phase}: ${reason}`);
      // A crash was already counted, and its waiters answered, by processExited: requests that
      // came after it wait for a new start (the backoff let them in), not for this failure.
      const crashed = slot.state === 'failed';
      await this.stopModel(slot, 'failed');
      slot.lastError = reason;
      if (!crashed) {
        this.countFailure(slot);
        this.failWaiters(slot, this.failedNotReady(slot, reason));
      }
      return false;
    }
  }

  /** Hazards 5 and 8: a resume that does not fit hangs the server, and sleeping servers keep a
   * residue. Where nvidia-smi tells, free memory on each of its GPUs must cover what the model
   * took there at its last wake plus a margin; else the processes of sleeping servers on those
   * GPUs are stopped (freeing their residue), then the models awake there are put to sleep, until
   * it does. False when even that is not enough: the model is then started cold, which sizes its
   * KV cache from the memory free. */
  private async roomToResume(slot: Slot): Promise<boolean> {
    await slot.memoryMeasured;
    if (slot.memoryMb === null) return true;
    const perGpu = slot.memoryMb / (slot.gpus?.length ?? 1);
    const want = Math.round(perGpu + Math.max(RESUME_MARGIN_MB, perGpu * RESUME_MARGIN));
    const where = slot.gpus === null ? '' : ` on ${slot.gpus.length > 1 ? 'each of ' : ''}GPU ${slot.gpus.join(', ')}`;
    let free = await this.gpu.free(this.gpuLetGoAt, slot.gpus);
    const enough = (): boolean => free === null || free >= want;
    for (const other of this.slots.values()) {
      if (enough()) return true;
      if (other === slot || other.state !== 'asleep' || !other.process.running || !overlaps(other.gpus, slot.gpus)) continue;
      log.warn(`model ${slot.name}: ${free} MiB of GPU memory free, its resume needs ${want} MiB${where}; stopping sleeping ${other.name} to free its residue`);
      await this.stopModel(other, 'stopped');
      free = await this.gpu.free(this.gpuLetGoAt, slot.gpus);
    }
    if (!enough() && (await this.clearGpusOf(slot))) free = await this.gpu.free(this.gpuLetGoAt, slot.gpus);
    if (enough()) return true;
    log.warn(`model ${slot.name}: ${free} MiB of GPU memory free, its resume needs ${want} MiB${where} and would hang; starting it cold instead`);
    return false;
  }

  /** After a cold start: the settings in effect (trusted over the script text), the model path
   * a reload needs, and the weights' checksum to verify reloads against. */
  private async learnSettings(slot: Slot): Promise<void> {
    const inEffect = await slot.server.settings().catch(unlessAuth(null));
    if (inEffect !== null) {
      const was = slot.settings;
      slot.settings = {
        memorySaver: inEffect.memorySaver ?? was.memorySaver,
        cpuBackup: inEffect.cpuBackup ?? was.cpuBackup,
        dpSize: inEffect.dpSize ?? was.dpSize,
      };
      if (JSON.stringify(was) !== JSON.stringify(slot.settings)) {
        log.warn(`model ${slot.name}: the server runs with ${JSON.stringify(slot.settings)}, not ${JSON.stringify(was)} as its script reads (a --config file?); using the server's`);
      }
      slot.modelPath = inEffect.modelPath ?? slot.modelPath;
    }
    const reloads = slot.settings.memorySaver && !slot.settings.cpuBackup;
    if (!slot.modelPath && reloads) slot.modelPath = await slot.server.modelPath();
    slot.checksum = reloads ? await slot.server.weightsChecksum(this.opts.switchTimeoutMs).catch(unlessAuth(null)) : null;
  }

  /** A model server refused the key sglangmux sends: said once, shown in /health and in every
   * answer for the model, and the model is not started again until its script changes. */
  private configurationError(slot: Slot, err: ServerAuthError): void {
    if (slot.configError === null) log.error(`model ${slot.name}: ${err.message}`);
    slot.configError = err.message;
    slot.lastError = err.message;
    this.failWaiters(slot, modelNotReady(err.message));
  }

  /** Sets `slot.memoryMb` from the first nvidia-smi reading on its GPUs after its wake ended at
   * `woke`. After a resume (what the memory saver gives back: the part `--mem-fraction-static`
   * bounds, without the CUDA context a start also takes), compares it with the declared share:
   * a model that took more is said once and planned with what it took. */
  private async measureTaken(slot: Slot, before: number | null, woke: number, phase: 'wake' | 'start'): Promise<void> {
    slot.memoryMb = null;
    const after = before === null ? null : await this.gpu.used(woke, slot.gpus);
    if (slot.awakeSince !== woke) return; // woken again meanwhile: that wake measures
    slot.memoryMb = before !== null && after !== null ? Math.max(0, after - before) : null;
    const declared = slot.spec.placement.share;
    const gpus = slot.gpus;
    if (phase !== 'wake' || slot.memoryMb === null || declared === null || gpus === null) return;
    const total = await this.gpu.totalMb(gpus);
    if (total === null) return;
    const took = slot.memoryMb / gpus.length / total;
    if (took <= Math.max(declared, slot.measuredShare ?? 0) + SHARE_TOLERANCE) return;
    if (slot.measuredShare === null) {
      log.warn(`model ${slot.name}: took ${slot.memoryMb} MiB on GPU ${gpus.join(', ')} at its wake, a share of ${took.toFixed(3)} against --mem-fraction-static ${declared}; planning with ${took.toFixed(3)}`);
    }
    slot.measuredShare = took;
  }

  private async waitReady(slot: Slot): Promise<void> {
    const deadline = Date.now() + this.opts.readyTimeoutMs;
    for (;;) {
      // Every probe waits its interval, the first too: a process started this instant cannot
      // answer, and at the daemon's start that moment goes to its first clients instead of the
      // first probe's loading of got (~20 ms, src/model-server.ts).
      await delay(READY_POLL_MS);
      if (!slot.process.running) throw new Error(slot.lastError ?? 'process exited during start');
      try {
        if ((await slot.server.healthStatus()) === 200) return;
      } catch (err) {
        if (err instanceof ClientUnavailable) throw err;
        // not listening yet
      }
      if (Date.now() >= deadline) {
        throw new Error(`not ready after ${Math.round(this.opts.readyTimeoutMs / 1000)} s (see ${slot.process.stderrLog})`);
      }
    }
  }

  /** Stops the model's process group; a model that failed on its own stays failed. */
  private async stopModel(slot: Slot, state: 'stopped' | 'failed'): Promise<void> {
    if (slot.process.running) {
      this.setState(slot, 'sleeping');
      await slot.process.stop(this.opts.stopGraceMs);
    }
    if (slot.state !== 'failed') this.setState(slot, state);
  }

  private countFailure(slot: Slot): void {
    slot.failures++;
    const wait = backoffMs(slot.failures);
    slot.retryAt = Date.now() + wait;
    if (wait > 0) log.warn(`model ${slot.name}: failed ${slot.failures} times in a row; next start not before ${wait / 1000} s`);
  }

  /** The 503 for a model that just failed: it may be retried once its backoff has passed. */
  private failedNotReady(slot: Slot, reason: string): ApiError {
    return modelNotReady(reason, retryAfterSecs(slot.retryAt, Date.now()));
  }

  private processExited(slot: Slot, info: ExitInfo): void {
    if (info.requested) return; // stopped by us; the step that stopped it sets the state
    const reason = `${slot.name} ${describeExit(info)} (see ${slot.process.stderrLog})`;
    log.error(`model ${slot.name}: process ${describeExit(info)}; its stderr is in ${slot.process.stderrLog}`);
    slot.lastError = reason;
    // A crash after a long healthy run starts a new count; a crash soon after each start adds up.
    if ((slot.state === 'awake' || slot.state === 'draining') && Date.now() - slot.awakeSince >= STABLE_MS) {
      slot.failures = 0;
    }
    // Requests waiting for the start or wake that crashed get its error (the wake's own failure
    // handling counts on that); the others were sent nowhere and wait for a restart, within their
    // own switch timeout and after the crash-loop backoff. Requests in flight see the broken
    // connection.
    const theirWake = slot.state === 'starting' || slot.state === 'waking';
    this.setState(slot, 'failed');
    this.countFailure(slot);
    if (theirWake) this.failWaiters(slot, this.failedNotReady(slot, reason));
    else if (slot.waiters.length > 0) this.kick();
  }
}
