// The switch scheduler: the one owner of every model's state. At most one model holds GPU memory
// at a time. Requests take a lease on an awake model; a single driver task (never a client's
// request, so no client can cancel it halfway) performs bootstrap and switches one step at a time:
// drain the active model, confirm it idle, put it to sleep, and only then wake the next one.
// Every state change happens in this file, through setState().
import { ApiError, modelNotReady } from './errors.js';
import type { ModelSpec } from './launch-script.js';
import { log } from './log.js';
import { GpuMemory } from './gpu-memory.js';
import { ModelProcess, describeExit, type ExitInfo } from './model-process.js';
import { ModelServer, ServerAuthError } from './model-server.js';
import { releaseServer, resumeServer } from './server-sequences.js';
import { MovingEstimate } from './estimate.js';
import { decide, type Decision, type ModelView, type PolicySettings } from './policy.js';

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
  /** GPU memory it took at its last wake, as nvidia-smi showed it (null: unknown). */
  memoryMb: number | null = null;
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
  /** The model that may hold GPU memory (starting, awake, draining, sleeping or waking), if any. */
  private active: Slot | null = null;
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

  /** Wakes `model` through the same queue and policy as a request. */
  async preload(model: string, signal: AbortSignal): Promise<void> {
    (await this.acquire(model, signal, false)).release();
  }

  /** Puts `model` to sleep if it is the awake one (draining it first); otherwise nothing. */
  sleep(model: string): Promise<void> {
    return this.operate(model, async (slot) => {
      if (slot === this.active && slot.state === 'awake') await this.putToSleep(slot, null);
    });
  }

  /** Stops the model's process group (draining it first if awake) and starts it again as the
   * awake model. */
  restart(model: string): Promise<void> {
    return this.operate(model, async (slot) => {
      if (slot === this.active) {
        this.setState(slot, 'draining');
        await this.until(() => slot.inflight === 0);
      }
      await this.freeing(slot, 'was stopped', () => this.stopModel(slot, 'stopped'));
      if (this.active === slot) this.active = null;
      slot.failures = 0;
      slot.retryAt = 0;
      if (this.active) await this.putToSleep(this.active, null);
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

  status(): { active_model: string | null; models: ModelStatus[] } {
    const active = this.active;
    const holding = active && (active.state === 'awake' || active.state === 'draining');
    return {
      active_model: holding ? active.name : null,
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
    if (slot === this.active && slot.state === 'awake' && this.bootQueue.length === 0) {
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
    if (slot === this.active) {
      this.setState(slot, 'draining');
      await this.until(() => slot.inflight === 0);
      this.active = null;
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
    const active = this.active;
    if (this.bootQueue.length > 0) return 'models are still being started';
    if (slot.state === 'starting' || slot.state === 'waking') return `${slot.name} is ${slot.state}`;
    if (active && active !== slot && active.state === 'draining') {
      return `${active.name} is finishing ${active.inflight} request(s)`;
    }
    if (active && active !== slot && active.state === 'awake' && this.decision) return this.decision.reason;
    if (active && active !== slot) return `${active.name} is ${active.state}`;
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
    while (!done()) await new Promise<void>((resolve) => this.changed.push(resolve));
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
      })
      .finally(() => {
        this.driving = false;
      });
  }

  private async drive(): Promise<void> {
    while (!this.closing) {
      const op = this.ops.shift();
      if (op) {
        await op();
        continue;
      }
      const boot = this.bootQueue[0];
      if (boot) {
        await this.bootOne(boot);
        // By identity: a reload meanwhile may have removed it from the queue already.
        const i = this.bootQueue.indexOf(boot);
        if (i >= 0) this.bootQueue.splice(i, 1);
        if (this.bootQueue.length === 0) {
          log.info(`bootstrap done: ${this.started} of ${this.slots.size} models started; awake: ${this.active?.name ?? 'none'}`);
          this.bootFinished(this.started > 0);
        }
        continue;
      }
      const active = this.active;
      if (active?.state === 'awake') this.admitWaiters(active);
      // Decide first, then change state (lesson 6): while the decision is to wait, the awake
      // model keeps serving and admitting.
      const decision = decide({ now: Date.now(), models: [...this.slots.values()].map(view) }, this.policySettings());
      this.decision = decision;
      const { action } = decision;
      if (action.kind === 'switch') {
        await this.switchTo(this.slots.get(action.to)!, decision.reason);
        continue;
      }
      if (action.kind === 'sleep' && active) {
        log.info(`model ${active.name}: ${decision.reason}, putting it to sleep`);
        await this.putToSleep(active, null);
        continue;
      }
      if (decision.recheckAt === null) return;
      // The one timer: a window, a grace, an idle sleep or a backoff ends even in a quiet period
      // (lesson 7); any event (an arrival, a request ending, a waiter leaving) decides sooner.
      const timer = setTimeout(() => this.notify(), Math.max(0, decision.recheckAt - Date.now()));
      timer.unref();
      await new Promise<void>((resolve) => this.changed.push(resolve));
      clearTimeout(timer);
    }
  }

  private policySettings(): PolicySettings {
    return { fixedWindowMs: this.opts.minActiveMs, maxWindowMs: this.opts.switchTimeoutMs / 2, idleSleepMs: this.opts.idleSleepMs };
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
    const before = await this.gpu.used(slot.awakeSince);
    await letGo();
    await slot.memoryMeasured;
    if (slot.memoryMb) await this.gpu.waitBelow(before, this.gpuLetGoAt, this.opts.switchTimeoutMs, `${slot.name} ${what}`);
  }

  private async bootOne(slot: Slot): Promise<void> {
    if (this.active) await this.putToSleep(this.active, null);
    if (await this.wake(slot)) {
      this.started++;
      this.admitWaiters(slot);
    }
  }

  private async switchTo(target: Slot, why: string): Promise<void> {
    const from = this.active;
    const started = Date.now();
    const report = (result: 'ok' | 'failed' | 'abandoned' | 'skipped'): void =>
      this.observer.switched({ from: from?.name ?? null, to: target.name, result, ms: Date.now() - started });
    if (from && from !== target) {
      log.info(`switch ${from.name} -> ${target.name} (${why}): draining ${from.name} (${from.inflight} in flight, awake ${Date.now() - from.awakeSince} ms)`);
      if (!(await this.putToSleep(from, target))) return report('abandoned');
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
    if (target === this.active) return;
    if (await this.wake(target)) {
      this.admitWaiters(target);
      report('ok');
    } else {
      report('failed');
    }
  }

  /**
   * Drains `from`, confirms it idle, then releases its memory (or stops it). Returns false when
   * the switch was abandoned because nobody waits for `target` any more.
   */
  private async putToSleep(from: Slot, target: Slot | null): Promise<boolean> {
    this.setState(from, 'draining');
    const drainStarted = Date.now();
    const abandoned = (): boolean => target !== null && target.waiters.length === 0;
    await this.until(() => from.inflight === 0 || abandoned());
    if (target && abandoned() && from.state === 'draining') {
      log.info(`switch ${from.name} -> ${target.name} abandoned: nobody waits for ${target.name} any more`);
      this.setState(from, 'awake');
      return false;
    }
    this.observer.phase({ model: from.name, phase: 'drain', ok: true, ms: Date.now() - drainStarted });
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
    this.active = null;
    return true;
  }

  /** Makes `slot` the awake model: resume if it sleeps with its process up, else start it. */
  private async wake(slot: Slot): Promise<boolean> {
    if (this.closing) return false;
    this.active = slot;
    const started = Date.now();
    let phase: 'wake' | 'start' = slot.state === 'asleep' && slot.process.running ? 'wake' : 'start';
    if (phase === 'wake' && !(await this.roomToResume(slot))) {
      await this.stopModel(slot, 'stopped');
      phase = 'start';
    }
    const memoryBefore = await this.gpu.used(this.gpuLetGoAt);
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
          log.info(`model ${slot.name}: awake (resumed in ${Date.now() - started} ms)`);
        } else {
          // Its generation stays paused: it never answers with weights that cannot be trusted.
          log.error(`model ${slot.name}: ${problem}; stopping it and starting it cold instead`);
          await slot.process.stop(this.opts.stopGraceMs);
          phase = 'start';
        }
      }
      if (phase === 'start') {
        this.setState(slot, 'starting');
        slot.process.start();
        this.observer.processStarted(slot.name);
        await this.waitReady(slot);
        await this.learnSettings(slot);
        log.info(`model ${slot.name}: ready (started in ${Date.now() - started} ms)`);
      }
      slot.awakeSince = Date.now();
      slot.memoryMeasured = this.measureTaken(slot, memoryBefore, slot.awakeSince);
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
      if (this.active === slot) this.active = null;
      return false;
    }
  }

  /** Hazards 5 and 8: a resume that does not fit hangs the server, and sleeping servers keep a
   * residue. Where nvidia-smi tells, free memory must cover what the model took at its last wake
   * plus a margin; else sleeping servers' processes are stopped (freeing their residue) until it
   * does. False when even that is not enough: the model is then started cold, which sizes its KV
   * cache from the memory free. */
  private async roomToResume(slot: Slot): Promise<boolean> {
    await slot.memoryMeasured;
    if (slot.memoryMb === null) return true;
    const want = slot.memoryMb + Math.max(RESUME_MARGIN_MB, Math.round(slot.memoryMb * RESUME_MARGIN));
    let free = await this.gpu.free(this.gpuLetGoAt);
    for (const other of this.slots.values()) {
      if (free === null || free >= want) return true;
      if (other === slot || other.state !== 'asleep' || !other.process.running) continue;
      log.warn(`model ${slot.name}: ${free} MiB of GPU memory free, its resume needs ${want} MiB; stopping sleeping ${other.name} to free its residue`);
      await this.stopModel(other, 'stopped');
      free = await this.gpu.free(this.gpuLetGoAt);
    }
    if (free === null || free >= want) return true;
    log.warn(`model ${slot.name}: ${free} MiB of GPU memory free, its resume needs ${want} MiB and would hang; starting it cold instead`);
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

  /** Sets `slot.memoryMb` from the first nvidia-smi reading after its wake ended at `woke`. */
  private async measureTaken(slot: Slot, before: number | null, woke: number): Promise<void> {
    slot.memoryMb = null;
    const after = before === null ? null : await this.gpu.used(woke);
    if (slot.awakeSince !== woke) return; // woken again meanwhile: that wake measures
    slot.memoryMb = before !== null && after !== null ? Math.max(0, after - before) : null;
  }

  private async waitReady(slot: Slot): Promise<void> {
    const deadline = Date.now() + this.opts.readyTimeoutMs;
    for (;;) {
      if (!slot.process.running) throw new Error(slot.lastError ?? 'process exited during start');
      try {
        if ((await slot.server.healthStatus()) === 200) return;
      } catch {
        // not listening yet
      }
      if (Date.now() >= deadline) {
        throw new Error(`not ready after ${Math.round(this.opts.readyTimeoutMs / 1000)} s (see ${slot.process.stderrLog})`);
      }
      await delay(READY_POLL_MS);
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
    if (this.active === slot) this.active = null;
    if (theirWake) this.failWaiters(slot, this.failedNotReady(slot, reason));
    else if (slot.waiters.length > 0) this.kick();
  }
}

/** A slot as the policy sees it. */
function view(slot: Slot): ModelView {
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
  };
}
