// GPU memory as nvidia-smi reports it. SGLang answers a release before the driver has really
// given the memory back (SGLANG-FACTS hazard 4); waking the next model then would start it short
// of memory or hang its resume. So after a sleep, sglangmux waits until the GPU shows memory
// freed. Without nvidia-smi (no NVIDIA GPU, or not on PATH) there is nothing to check.
//
// Starting nvidia-smi takes 50-100 ms on a GPU host, and a switch needs several readings, so one
// nvidia-smi runs in a loop (`-lms`) from the first reading on, for the daemon's life; readings
// are its latest lines. Each line carries nvidia-smi's own timestamp, so a reading is known to
// be from after an event even if its output reached us late.
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { log } from './log.js';

const QUERY = ['--query-gpu=timestamp,index,memory.used,memory.total', '--format=csv,noheader,nounits'];
/** Often enough that the wait after a release adds ~10 ms on average to a switch. */
const SAMPLE_MS = 20;
/** How long a reading may wait for nvidia-smi's lines before the check is given up. */
const READING_TIMEOUT_MS = 10_000;
/** After nvidia-smi ended without a reading (not for a missing binary), no new try before this. */
const RETRY_MS = 30_000;
/** Running but silent this long (it prints every SAMPLE_MS): hung, e.g. inside a wedged driver. */
const STALL_MS = 5000;
const NOT_CHECKING = 'not checking that released GPU memory is free before a wake';
const STOP_GRACE_MS = 2000;

/** Memory in use on some GPUs, and when the oldest of the per-GPU values in it was sampled. */
interface Reading {
  readonly mb: number;
  readonly at: number;
  /** Memory of the GPU(s), when nvidia-smi tells. */
  readonly totalMb: number | null;
  /** The least free memory of one of the GPUs, when nvidia-smi tells. */
  readonly minFreeMb: number | null;
}

/** One GPU's latest line. */
interface Sample {
  readonly mb: number;
  readonly at: number;
  readonly totalMb: number | null;
}

/** Which GPUs a question is about: physical indices as nvidia-smi numbers them; null: all. */
export type Gpus = readonly number[] | null;

/** idle: not running (not needed yet, or ended: started again when needed); unavailable: not
 * installed, reports no memory figure, or the daemon is stopping. */
type SamplerState = 'idle' | 'running' | 'unavailable';

/** `2026/11/27 10:20:01.123` (nvidia-smi's timestamp, run with TZ=UTC) in epoch ms, or null. */
export function parseSmiTimestamp(s: string): number | null {
  const m = /^(\d{4})\/(\d{2})\/(\d{2}) (\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,3}))?$/.exec(s);
  if (!m) return null;
  const [y, mo, d, h, mi, sec] = m.slice(1, 7).map(Number) as [number, number, number, number, number, number];
  return Date.UTC(y, mo - 1, d, h, mi, sec, Number((m[7] ?? '0').padEnd(3, '0')));
}

/** When a line was sampled: its own timestamp, unless that is missing or disagrees with our
 * clock by more than a second (then when it arrived). */
function sampledAt(stamp: string, arrived: number): number {
  const at = parseSmiTimestamp(stamp);
  return at !== null && Math.abs(arrived - at) < 1000 ? at : arrived;
}

export class GpuMemory {
  private state: SamplerState = 'idle';
  private child: ChildProcess | null = null;
  /** Every nvidia-smi started and not yet ended (one, or a given-up one still exiting). */
  private readonly alive = new Set<ChildProcess>();
  /** The current sampler has printed every GPU once: only then is a sum a whole reading. */
  private complete = false;
  private retryAt = 0;
  /** When the current sampler started, and when it last printed a line (0: not yet). */
  private startedAt = 0;
  private lastLineAt = 0;
  /** When a sampler that had given readings last ended. */
  private lastEndAt = 0;
  private readonly perGpu = new Map<string, Sample>();
  /** Called on every new line and when the sampler stops; each returns true when done. */
  private readonly watchers = new Set<() => boolean>();

  constructor(private readonly command = 'nvidia-smi') {}

  /** MiB in use on `gpus` together, sampled at or after `since` (epoch ms; 0: the latest), or
   * null when nvidia-smi cannot tell. */
  async used(since = 0, gpus: Gpus = null): Promise<number | null> {
    const reading = await this.waitFor(gpus, (r) => r.at >= since, READING_TIMEOUT_MS);
    return reading?.mb ?? null;
  }

  /** MiB free, sampled at or after `since`: over all GPUs (`gpus` null), else the least free on
   * one of `gpus` (a model's ranks each need their part on their own GPU). Null when nvidia-smi
   * cannot tell. */
  async free(since = 0, gpus: Gpus = null): Promise<number | null> {
    const reading = await this.waitFor(gpus, (r) => r.at >= since, READING_TIMEOUT_MS);
    if (reading === null || reading.totalMb === null) return null;
    return gpus === null ? reading.totalMb - reading.mb : reading.minFreeMb;
  }

  /** The memory of one of `gpus` (the smallest), or null when nvidia-smi cannot tell. */
  async totalMb(gpus: readonly number[]): Promise<number | null> {
    const reading = await this.waitFor(gpus, () => true, READING_TIMEOUT_MS);
    if (reading === null || reading.totalMb === null) return null;
    return Math.min(...gpus.map((g) => this.perGpu.get(String(g))?.totalMb ?? Infinity));
  }

  /** The latest reading of each GPU, for metrics (empty while nvidia-smi is not running). */
  perGpuNow(): { gpu: number; usedMb: number; totalMb: number | null }[] {
    if (!this.complete) return [];
    return [...this.perGpu].map(([index, r]) => ({ gpu: Number(index), usedMb: r.mb, totalMb: r.totalMb }));
  }

  /** Waits until a reading of `gpus` sampled after `since` (when the memory was let go) shows
   * less in use than `before`, up to `timeoutMs`; then goes on with a warning. */
  async waitBelow(before: number | null, since: number, timeoutMs: number, what: string, gpus: Gpus = null): Promise<void> {
    if (before === null) return;
    const freed = await this.waitFor(gpus, (r) => r.at >= since && r.mb < before, timeoutMs);
    if (freed !== null || this.state !== 'running') return; // not running: said when given up
    const now = this.latest(gpus);
    log.warn(now === null
      ? `cannot tell whether the GPU memory of ${what} is free (nvidia-smi gave no reading); going on`
      : `GPU memory still ${now.mb} MiB ${timeoutMs} ms after ${what} (was ${before} MiB); going on`);
  }

  /** Stops nvidia-smi; resolves once it has exited (or after a grace period and a SIGKILL). */
  async close(): Promise<void> {
    this.stopped('unavailable');
    await Promise.all([...this.alive].map(async (child) => {
      const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
      child.kill();
      const grace = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
      await Promise.race([exited, new Promise((r) => setTimeout(r, 2 * STOP_GRACE_MS).unref())]);
      clearTimeout(grace);
    }));
  }

  /** The latest reading of `gpus` together; null before every GPU was printed once, or when one
   * of `gpus` is not among them (then nvidia-smi cannot tell about it). */
  private latest(gpus: Gpus): Reading | null {
    if (!this.complete) return null;
    let mb = 0;
    let at = Infinity;
    let totalMb: number | null = 0;
    let minFreeMb: number | null = Infinity;
    const readings = gpus === null ? [...this.perGpu.values()] : gpus.map((g) => this.perGpu.get(String(g)));
    for (const r of readings) {
      if (r === undefined) return null;
      mb += r.mb;
      at = Math.min(at, r.at);
      totalMb = totalMb === null || r.totalMb === null ? null : totalMb + r.totalMb;
      minFreeMb = minFreeMb === null || r.totalMb === null ? null : Math.min(minFreeMb, r.totalMb - r.mb);
    }
    return { mb, at, totalMb, minFreeMb };
  }

  /** The first reading of `gpus` (the latest, or one still to come) that satisfies `ok`; null on
   * timeout or when nvidia-smi cannot tell. */
  private waitFor(gpus: Gpus, ok: (r: Reading) => boolean, timeoutMs: number): Promise<Reading | null> {
    this.ensureRunning();
    return new Promise((resolve) => {
      const check = (): boolean => {
        const r = this.latest(gpus);
        if (r === null && this.complete) return finish(null); // a GPU nvidia-smi does not show
        if (r !== null && ok(r)) return finish(r);
        if (this.state !== 'running') return finish(null);
        return false;
      };
      const finish = (r: Reading | null): true => {
        clearTimeout(timer);
        clearInterval(watchdog);
        this.watchers.delete(check);
        resolve(r);
        return true;
      };
      const timer = setTimeout(() => finish(null), timeoutMs);
      const watchdog = setInterval(() => this.giveUpIfStalled(), STALL_MS / 5);
      if (!check()) this.watchers.add(check);
    });
  }

  private ensureRunning(): void {
    if (this.state !== 'idle' || Date.now() < this.retryAt) return;
    this.state = 'running';
    // In UTC, so that its timestamps mean one moment even in the hour a clock goes back.
    const child = spawn(this.command, [...QUERY, '-lms', String(SAMPLE_MS)], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, TZ: 'UTC' },
    });
    this.child = child;
    this.alive.add(child);
    this.startedAt = Date.now();
    this.lastLineAt = 0;
    const killOnExit = (): void => {
      child.kill();
    };
    process.once('exit', killOnExit);
    let said = '';
    const remember = (text: string): void => {
      said = (said + text).slice(-500);
    };
    child.stderr.on('data', (chunk: Buffer) => remember(chunk.toString('utf8')));
    createInterface({ input: child.stdout }).on('line', (line) => {
      if (this.child !== child) return; // late output of a sampler already given up
      this.lastLineAt = Date.now();
      const [stamp, index, value, total] = line.split(',').map((s) => s.trim());
      if (index === undefined || value === undefined) {
        remember(`${line}\n`); // e.g. "No devices were found" is said on stdout
        return;
      }
      const mb = Number(value);
      if (value === '' || !Number.isFinite(mb)) {
        // [N/A] / [Not Supported]: this GPU never tells; anything else may pass.
        this.giveUp(`shows no memory figure for GPU ${index} (${value})`, !/^\[(N\/A|Not Supported)\]$/.test(value));
        return;
      }
      // The first index seen again means every GPU has been printed once.
      if (this.perGpu.has(index)) this.complete = true;
      const totalMb = Number(total);
      this.perGpu.set(index, { mb, at: sampledAt(stamp ?? '', this.lastLineAt), totalMb: total !== undefined && total !== '' && Number.isFinite(totalMb) ? totalMb : null });
      if (this.complete) this.notify();
    });
    child.on('error', (err: NodeJS.ErrnoException) => {
      if (child.pid === undefined) this.alive.delete(child); // never started: no 'close' to wait for
      if (this.child !== child) return;
      process.removeListener('exit', killOnExit);
      if (err.code === 'ENOENT') {
        log.info(`${this.command} not found: ${NOT_CHECKING}`);
        this.stopped('unavailable');
      } else {
        this.giveUp(`failed (${err.message})`, true);
      }
    });
    // 'close', not 'exit': every line it wrote has been read by then.
    child.once('close', (code, signal) => {
      process.removeListener('exit', killOnExit);
      this.alive.delete(child);
      if (this.child !== child) return;
      const last = said.trim().split('\n').pop() ?? '';
      const why = `${signal ?? `exit code ${code}`}${last ? `: ${last}` : ''}`;
      if (!this.complete) return this.giveUp(`ended without a memory reading (${why})`, true);
      // Started again at once, but not in a loop: a second end within RETRY_MS is a give-up.
      if (Date.now() - this.lastEndAt < RETRY_MS) return this.giveUp(`ended again (${why})`, true);
      this.lastEndAt = Date.now();
      log.warn(`${this.command} ended (${why}); starting it again`);
      this.stopped('idle');
    });
  }

  /** A sampler silent for STALL_MS (READING_TIMEOUT_MS for its first line: a first start on a
   * host without persistence mode can take seconds) is hung: each switch would stall on it. */
  private giveUpIfStalled(): void {
    if (this.state !== 'running') return;
    const silentFor = Date.now() - (this.lastLineAt || this.startedAt);
    if (silentFor >= (this.lastLineAt ? STALL_MS : READING_TIMEOUT_MS)) {
      this.giveUp(`printed nothing for ${Math.round(silentFor / 1000)} s`, true);
    }
  }

  /** Stops relying on nvidia-smi: for the daemon's life, or (`retry`) for RETRY_MS. */
  private giveUp(why: string, retry: boolean): void {
    log.warn(`${this.command} ${why}: ${NOT_CHECKING}${retry ? `; trying again in ${RETRY_MS / 1000} s` : ''}`);
    const child = this.child;
    if (retry) this.retryAt = Date.now() + RETRY_MS;
    this.stopped(retry ? 'idle' : 'unavailable');
    child?.kill('SIGKILL');
  }

  /** The sampler is gone: its readings are no longer current. A switch waiting for a reading
   * goes on with a new sampler at once (unless nvidia-smi is given up on for now). */
  private stopped(next: 'idle' | 'unavailable'): void {
    this.child = null;
    this.perGpu.clear();
    this.complete = false;
    this.state = next;
    if (this.watchers.size > 0) this.ensureRunning();
    this.notify();
  }

  private notify(): void {
    for (const check of [...this.watchers]) check();
  }
}
