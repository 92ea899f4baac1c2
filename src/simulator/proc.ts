// Whether a process still exists. A zombie (dead, not yet waited for by its parent) counts as
// dead: the GPU driver has already taken its memory back.
import { readFileSync } from 'node:fs';

let procfs: boolean | null = null;

export function isAlive(pid: number): boolean {
  if (procfs === null) {
    try {
      readFileSync('/proc/self/stat');
      procfs = true;
    } catch {
      procfs = false;
    }
  }
  if (procfs) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
      return state !== 'Z' && state !== 'X';
    } catch {
      return false;
    }
  }
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
