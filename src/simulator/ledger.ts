// The shared JSONL ledger: every simulator of a test appends what happens to it, and GPU memory
// is accounted there so that several simulators see the same GPUs. Usage of each GPU is always
// derivable from the file alone: sum of its alloc.mb minus sum of its free.mb (a free with `at`
// counts from that time on; an event without `gpu` is about GPU 0). A server over several GPUs
// (tensor or data parallel ranks) writes one event per GPU, each rank taking the same.
import { appendFileSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { LedgerEvent, LedgerEventKind } from './events.js';
import { withLock } from './lock.js';
import * as log from './log.js';
import { isAlive } from './proc.js';

export interface Identity {
  pid: number;
  port: number;
  model: string;
}

export type EventFields = Omit<Partial<LedgerEvent>, 'event' | 't'>;

interface Holder {
  pid: number;
  gpu: number;
  mb: number;
  port: number;
  model: string;
}

/** MB in use on each GPU (a GPU absent: nothing). */
export type UsageByGpu = Map<number, number>;

export class Ledger {
  /** MB this process holds on each of its GPUs according to the ledger. */
  private held = 0;
  private warned = false;

  constructor(
    private readonly path: string | null,
    private readonly id: Identity,
    /** The size of each GPU. */
    readonly capacityMb: number,
    /** The physical GPUs this server's ranks run on. */
    readonly gpus: readonly number[] = [0],
  ) {
    if (path !== null) mkdirSync(dirname(path), { recursive: true });
  }

  get heldMb(): number {
    return this.held;
  }

  /** Appends one event. A single O_APPEND write, so lines of concurrent writers never interleave. */
  record(event: LedgerEventKind, fields: EventFields = {}): void {
    if (this.path === null) return;
    const line: LedgerEvent = { t: Date.now(), ...this.id, event, ...fields };
    try {
      appendFileSync(this.path, `${JSON.stringify(line)}\n`);
    } catch (e) {
      // Never let bookkeeping stop a crash or an exit (e.g. a test already removed its temp dir).
      if (!this.warned) log.warn(`cannot write ledger ${this.path}: ${(e as Error).message}`);
      this.warned = true;
    }
  }

  /** MB in use now on the most used of this server's GPUs. */
  usedMb(): number {
    return this.locked(() => this.mostUsed(this.usage()));
  }

  /** Takes `mb` on each of its GPUs if it fits all of them; otherwise takes nothing. Returns the
   * usage seen on the most used one. */
  allocate(mb: number, fields: EventFields = {}): { ok: boolean; used: number } {
    return this.locked(() => {
      const usage = this.usage();
      const used = this.mostUsed(usage);
      if (used + mb > this.capacityMb) return { ok: false, used };
      this.held += mb;
      for (const gpu of this.gpus) this.record('alloc', { mb, used: (usage.get(gpu) ?? 0) + mb, gpu, ...fields });
      return { ok: true, used: used + mb };
    });
  }

  /** Gives back `mb` on each of its GPUs. With lagMs > 0 the memory stays counted that much
   * longer (hazard 4). */
  free(mb: number, fields: EventFields = {}, lagMs = 0): void {
    if (mb <= 0) return;
    this.locked(() => {
      const usage = this.usage();
      this.held -= mb;
      for (const gpu of this.gpus) {
        const used = (usage.get(gpu) ?? 0) - (lagMs > 0 ? 0 : mb);
        this.record('free', { mb, used, gpu, ...(lagMs > 0 ? { at: Date.now() + lagMs } : {}), ...fields });
      }
    });
  }

  private mostUsed(usage: UsageByGpu): number {
    return Math.max(...this.gpus.map((g) => usage.get(g) ?? 0));
  }

  /** Gives back everything this process holds (on exit of any catchable kind). */
  freeAll(reason: string): void {
    this.free(this.held, { reason });
  }

  private locked<T>(fn: () => T): T {
    if (this.path === null) return fn();
    return withLock(`${this.path}.lock`, fn);
  }

  /** MB in use on each GPU now. Call with the lock held. Memory of simulators that died without
   * writing their free (SIGKILL) is given back here, as the GPU driver would, by appending the
   * missing free on their behalf. */
  private usage(): UsageByGpu {
    if (this.path === null) return new Map(this.gpus.map((g) => [g, this.held]));
    const { used, holders } = tally(readEvents(this.path), Date.now());
    for (const h of holders) {
      if (h.pid === this.id.pid || h.mb <= 0 || isAlive(h.pid)) continue;
      const left = (used.get(h.gpu) ?? 0) - h.mb;
      used.set(h.gpu, left);
      this.record('free', { pid: h.pid, port: h.port, model: h.model, mb: h.mb, used: left, gpu: h.gpu, reason: 'process_gone', by: this.id.pid });
    }
    return used;
  }
}

/** MB in use on each GPU at `now` by the ledger's events, and what each simulator still holds
 * on each GPU. */
function tally(events: readonly LedgerEvent[], now: number): { used: UsageByGpu; holders: Holder[] } {
  const used: UsageByGpu = new Map();
  const holders = new Map<string, Holder>();
  for (const e of events) {
    if (e.event !== 'alloc' && e.event !== 'free') continue;
    const mb = e.mb ?? 0;
    const gpu = e.gpu ?? 0;
    const key = `${e.pid}/${gpu}`;
    const h = holders.get(key) ?? { pid: e.pid, gpu, mb: 0, port: e.port, model: e.model };
    if (e.event === 'alloc') {
      used.set(gpu, (used.get(gpu) ?? 0) + mb);
      h.mb += mb;
    } else {
      if ((e.at ?? e.t) <= now) used.set(gpu, (used.get(gpu) ?? 0) - mb);
      h.mb -= mb;
    }
    holders.set(key, h);
  }
  return { used, holders: [...holders.values()] };
}

/** MB in use on each simulated GPU now, as nvidia-smi would show it: memory of a simulator that
 * died without writing its free counts as given back. Read-only. */
export function usedNow(path: string): UsageByGpu {
  return usedBy(readEvents(path), Date.now());
}

/** usedNow over events already read (a reader that follows the file keeps them). */
export function usedBy(events: readonly LedgerEvent[], now: number): UsageByGpu {
  const { used, holders } = tally(events, now);
  for (const h of holders) if (h.mb > 0 && !isAlive(h.pid)) used.set(h.gpu, (used.get(h.gpu) ?? 0) - h.mb);
  return used;
}

/** Parses a ledger file; a missing file is empty and a torn last line is skipped. */
export function readEvents(path: string): LedgerEvent[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  const out: LedgerEvent[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    try {
      out.push(JSON.parse(line) as LedgerEvent);
    } catch {
      // a line being written right now
    }
  }
  return out;
}
