// GPU memory as nvidia-smi reports it. SGLang answers a release before the driver has really
// given the memory back (SGLANG-FACTS hazard 4); waking the next model then would start it short
// of memory or hang its resume. So after a sleep, sglangmux waits until the GPU shows memory
// freed. Without nvidia-smi (no NVIDIA GPU, or not on PATH) there is nothing to check.
//
// Starting nvidia-smi takes 50-100 ms on a GPU host, and a switch needs several readings, so one
// nvidia-smi runs in a loop (`-lms`) from the first reading on, for the daemon's life; readings
// are its latest lines.
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { log } from './log.js';

const SAMPLE_MS = 50;
/** How long a reading may wait for nvidia-smi's first line after it was started. */
const FIRST_READING_TIMEOUT_MS = 10_000;

/** Memory in use over all GPUs, and when the oldest of the per-GPU values in it arrived. */
interface Reading {
  readonly mb: number;
  readonly at: number;
}

/** idle: not running (not needed yet, or exited after giving readings: started again when
 * needed); unavailable: not installed, or it never gave a reading. */
type SamplerState = 'idle' | 'running' | 'unavailable';

export class GpuMemory {
  private state: SamplerState = 'idle';
  private child: ChildProcess | null = null;
  private readonly perGpu = new Map<string, Reading>();
  /** Called on every new line and when the sampler stops; each returns true when done. */
  private readonly watchers = new Set<() => boolean>();

  constructor(private readonly command = 'nvidia-smi') {}

  /** MiB in use over all GPUs, from a line that arrived at or after `since` (epoch ms; 0: the
   * latest), or null when nvidia-smi cannot tell. */
  async used(since = 0): Promise<number | null> {
    const reading = await this.waitFor((r) => r.at >= since, FIRST_READING_TIMEOUT_MS);
    return reading?.mb ?? null;
  }

  /** Waits until less memory is in use than `before` (measured before the sleep), up to
   * `timeoutMs`; then goes on with a warning. */
  async waitBelow(before: number | null, timeoutMs: number, what: string): Promise<void> {
    if (before === null) return;
    const freed = await this.waitFor((r) => r.mb < before, timeoutMs);
    if (freed === null && this.state === 'running') {
      log.warn(`GPU memory still ${this.latest()?.mb} MiB ${timeoutMs} ms after ${what} (was ${before} MiB); going on`);
    }
  }

  /** Stops nvidia-smi; resolves once it has exited. */
  async close(): Promise<void> {
    const child = this.child;
    this.state = 'unavailable';
    this.stopped();
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill();
    await exited;
  }

  private latest(): Reading | null {
    if (this.perGpu.size === 0) return null;
    let mb = 0;
    let at = Infinity;
    for (const r of this.perGpu.values()) {
      mb += r.mb;
      at = Math.min(at, r.at);
    }
    return { mb, at };
  }

  /** The first reading (the latest, or one still to come) that satisfies `ok`; null on timeout
   * or when nvidia-smi cannot tell. */
  private waitFor(ok: (r: Reading) => boolean, timeoutMs: number): Promise<Reading | null> {
    this.ensureRunning();
    return new Promise((resolve) => {
      const check = (): boolean => {
        const r = this.latest();
        if (r !== null && ok(r)) return finish(r);
        if (this.state !== 'running') return finish(null);
        return false;
      };
      const finish = (r: Reading | null): true => {
        clearTimeout(timer);
        this.watchers.delete(check);
        resolve(r);
        return true;
      };
      const timer = setTimeout(() => finish(null), timeoutMs);
      if (!check()) this.watchers.add(check);
    });
  }

  private ensureRunning(): void {
    if (this.state !== 'idle') return;
    this.state = 'running';
    const child = spawn(this.command, ['--query-gpu=index,memory.used', '--format=csv,noheader,nounits', '-lms', String(SAMPLE_MS)], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    const killOnExit = (): void => {
      child.kill();
    };
    process.once('exit', killOnExit);
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => {
      stderr = (stderr + chunk.toString('utf8')).slice(-500);
    });
    createInterface({ input: child.stdout }).on('line', (line) => {
      const [index, value] = line.split(',').map((s) => s.trim());
      const mb = Number(value);
      if (index === undefined || !Number.isFinite(mb)) return;
      this.perGpu.set(index, { mb, at: Date.now() });
      this.notify();
    });
    child.once('error', (err: NodeJS.ErrnoException) => {
      process.removeListener('exit', killOnExit);
      if (err.code === 'ENOENT') {
        log.info(`${this.command} not found: not checking that released GPU memory is free before a wake`);
      } else {
        log.warn(`${this.command} failed: ${err.message}`);
      }
      this.state = 'unavailable';
      this.stopped();
    });
    child.once('exit', (code, signal) => {
      process.removeListener('exit', killOnExit);
      if (this.child !== child || this.state !== 'running') return;
      const why = `${signal ?? `exit code ${code}`}${stderr.trim() ? `: ${stderr.trim().split('\n').pop()}` : ''}`;
      if (this.perGpu.size === 0) {
        log.warn(`${this.command} ended without a reading (${why}): not checking that released GPU memory is free before a wake`);
        this.state = 'unavailable';
      } else {
        log.warn(`${this.command} ended (${why}); starting it again when next needed`);
        this.state = 'idle';
      }
      this.stopped();
    });
  }

  /** The sampler is gone: its readings are no longer current. */
  private stopped(): void {
    this.child = null;
    this.perGpu.clear();
    this.notify();
  }

  private notify(): void {
    for (const check of [...this.watchers]) check();
  }
}
