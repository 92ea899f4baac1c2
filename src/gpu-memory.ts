// GPU memory as nvidia-smi reports it. SGLang answers a release before the driver has really
// given the memory back (SGLANG-FACTS hazard 4); waking the next model then would start it short
// of memory or hang its resume. So after a sleep, sglangmux waits until the GPU shows memory
// freed. Without nvidia-smi (no NVIDIA GPU, or not on PATH) there is nothing to check.
import { execFile } from 'node:child_process';
import { log } from './log.js';

const QUERY = ['--query-gpu=memory.used', '--format=csv,noheader,nounits'];
const CALL_TIMEOUT_MS = 10_000;
const POLL_MS = 50;

export class GpuMemory {
  private available = true;

  constructor(private readonly command = 'nvidia-smi') {}

  /** MiB in use over all GPUs, or null when nvidia-smi cannot tell. */
  used(): Promise<number | null> {
    if (!this.available) return Promise.resolve(null);
    return new Promise((resolve) => {
      execFile(this.command, QUERY, { timeout: CALL_TIMEOUT_MS }, (err, stdout) => {
        if (err) {
          if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
            this.available = false;
            log.info(`${this.command} not found: not checking that released GPU memory is free before a wake`);
          } else {
            log.warn(`${this.command} failed: ${err.message}`);
          }
          resolve(null);
          return;
        }
        const values = stdout.split('\n').filter((l) => l.trim() !== '').map(Number).filter(Number.isFinite);
        resolve(values.length ? values.reduce((a, b) => a + b, 0) : null);
      });
    });
  }

  /** Waits until less memory is in use than `before` (measured before the sleep), up to
   * `timeoutMs`; then goes on with a warning. */
  async waitBelow(before: number | null, timeoutMs: number, what: string): Promise<void> {
    if (before === null) return;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const now = await this.used();
      if (now === null || now < before) return;
      if (Date.now() >= deadline) {
        log.warn(`GPU memory still ${now} MiB ${timeoutMs} ms after ${what} (was ${before} MiB); going on`);
        return;
      }
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
  }
}
