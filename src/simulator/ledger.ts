// The shared JSONL ledger: every simulator of a test appends what happens to it, and GPU memory
// is accounted there so that several simulators see one GPU. Usage is always derivable from the
// file alone: sum of alloc.mb minus sum of free.mb (a free with `at` counts from that time on).
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
  mb: number;
  port: number;
  model: string;
}

export class Ledger {
  /** MB this process holds according to the ledger. */
  private held = 0;
  private warned = false;

  constructor(
    private readonly path: string | null,
    private readonly id: Identity,
    readonly capacityMb: number,
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

  /** MB in use on the GPU now. */
  usedMb(): number {
    return this.locked(() => this.usage());
  }

  /** Takes `mb` if it fits the GPU; otherwise takes nothing. Returns the usage seen. */
  allocate(mb: number, fields: EventFields = {}): { ok: boolean; used: number } {
    return this.locked(() => {
      const used = this.usage();
      if (used + mb > this.capacityMb) return { ok: false, used };
      this.held += mb;
      this.record('alloc', { mb, used: used + mb, ...fields });
      return { ok: true, used: used + mb };
    });
  }

  /** Gives back `mb`. With lagMs > 0 the memory stays counted that much longer (hazard 4). */
  free(mb: number, fields: EventFields = {}, lagMs = 0): void {
    if (mb <= 0) return;
    this.locked(() => {
      const used = this.usage() - (lagMs > 0 ? 0 : mb);
      this.held -= mb;
      this.record('free', { mb, used, ...(lagMs > 0 ? { at: Date.now() + lagMs } : {}), ...fields });
    });
  }

  /** Gives back everything this process holds (on exit of any catchable kind). */
  freeAll(reason: string): void {
    this.free(this.held, { reason });
  }

  private locked<T>(fn: () => T): T {
    if (this.path === null) return fn();
    return withLock(`${this.path}.lock`, fn);
  }

  /** MB in use on the GPU now. Call with the lock held. Memory of simulators that died without
   * writing their free (SIGKILL) is given back here, as the GPU driver would, by appending the
   * missing free on their behalf. */
  private usage(): number {
    if (this.path === null) return this.held;
    const { used, holders } = tally(readEvents(this.path), Date.now());
    let total = used;
    for (const [pid, h] of holders) {
      if (pid === this.id.pid || h.mb <= 0 || isAlive(pid)) continue;
      total -= h.mb;
      this.record('free', { pid, port: h.port, model: h.model, mb: h.mb, used: total, reason: 'process_gone', by: this.id.pid });
    }
    return total;
  }
}

/** MB in use at `now` by the ledger's events, and what each simulator still holds. */
function tally(events: readonly LedgerEvent[], now: number): { used: number; holders: Map<number, Holder> } {
  let used = 0;
  const holders = new Map<number, Holder>();
  for (const e of events) {
    if (e.event !== 'alloc' && e.event !== 'free') continue;
    const mb = e.mb ?? 0;
    const h = holders.get(e.pid) ?? { mb: 0, port: e.port, model: e.model };
    if (e.event === 'alloc') {
      used += mb;
      h.mb += mb;
    } else {
      if ((e.at ?? e.t) <= now) used -= mb;
      h.mb -= mb;
    }
    holders.set(e.pid, h);
  }
  return { used, holders };
}

/** MB in use on the simulated GPU now, as nvidia-smi would show it: memory of a simulator that
 * died without writing its free counts as given back. Read-only. */
export function usedNow(path: string): number {
  return usedBy(readEvents(path), Date.now());
}

/** usedNow over events already read (a reader that follows the file keeps them). */
export function usedBy(events: readonly LedgerEvent[], now: number): number {
  const { used, holders } = tally(events, now);
  let total = used;
  for (const [pid, h] of holders) if (h.mb > 0 && !isAlive(pid)) total -= h.mb;
  return total;
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
