// A cross-process exclusive lock made of a directory (mkdir is atomic), so simulators sharing a
// ledger read-check-append GPU usage one at a time. Synchronous on purpose: it is also taken in
// the process 'exit' handler, where nothing asynchronous runs.
import { mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { isAlive } from './proc.js';

const STALE_MS = 3000; // no holder keeps it more than a few ms
const GIVE_UP_MS = 10_000;
const sleeper = new Int32Array(new SharedArrayBuffer(4));

function pause(ms: number): void {
  Atomics.wait(sleeper, 0, 0, ms);
}

function isStale(dir: string): boolean {
  try {
    const owner = Number(readFileSync(`${dir}/owner`, 'utf8'));
    if (Number.isInteger(owner) && owner > 0 && !isAlive(owner)) return true; // holder died
  } catch {
    // owner file not written yet, or lock just vanished: fall back to age
  }
  try {
    return Date.now() - statSync(dir).mtimeMs > STALE_MS;
  } catch {
    return false;
  }
}

/** Runs fn while holding the lock `dir`. If the lock cannot be had in 10 s, runs fn anyway:
 * a stuck lock must not wedge every simulator of a test. */
export function withLock<T>(dir: string, fn: () => T): T {
  const deadline = Date.now() + GIVE_UP_MS;
  let held = false;
  while (!held) {
    try {
      mkdirSync(dir);
      held = true;
      try {
        writeFileSync(`${dir}/owner`, String(process.pid));
      } catch {
        // owner is only a hint for stale detection
      }
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      if (isStale(dir)) {
        // Rename first (atomic) so two waiters never both delete a lock someone re-took.
        const grave = `${dir}.stale.${process.pid}.${Date.now()}`;
        try {
          renameSync(dir, grave);
          rmSync(grave, { recursive: true, force: true });
        } catch {
          // another waiter cleaned it up
        }
        continue;
      }
      if (Date.now() > deadline) break;
      pause(1 + Math.floor(Math.random() * 3));
    }
  }
  try {
    return fn();
  } finally {
    if (held) rmSync(dir, { recursive: true, force: true });
  }
}
