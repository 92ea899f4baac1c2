// Which requests are inside the "scheduler", token pacing, pause/continue, and the delay before
// the server notices a client that left (hazard 6). A request counts as running (blocking
// /flush_cache, crashing a release) from admission until it ends or is noticed gone.
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';

export type PauseMode = 'abort' | 'retract' | 'in_place';
export type FinishReason = 'length' | 'abort';

export class Job {
  readonly rid = randomBytes(16).toString('hex');
  /** Dropped by pause_generation(abort) or noticed disconnected: stops at the next token. */
  aborted = false;
  done = false;
  /** The data-parallel rank running it (the least busy, lowest first: SGLang's shortest_queue). */
  rank = 0;
  noticeTimer: NodeJS.Timeout | null = null;
  constructor(readonly n: number) {}
}

export class Scheduler {
  readonly running = new Set<Job>();
  paused: PauseMode | null = null;
  private waiters: Array<() => void> = [];

  constructor(
    /** --dp-size: ranks share the requests; /flush_cache sees rank 0's only (hazard 9). */
    readonly dpSize: number,
    private readonly tokenMs: number,
    private readonly abortNoticeMs: number,
    private readonly onNoticed: (job: Job) => void,
  ) {}

  /** Wakes every waiter so it re-checks pause/abort state. */
  notify(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }

  private changed(): Promise<void> {
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** Passes the tokenizer manager's pause gate: while paused, new requests wait here, outside
   * the scheduler (they do not count as running). False if the job was dropped meanwhile. */
  async admit(job: Job): Promise<boolean> {
    while (this.paused !== null && !job.aborted) await this.changed();
    if (job.aborted) {
      this.finish(job);
      return false;
    }
    let rank = 0;
    for (let r = 1; r < this.dpSize; r++) if (this.busyOn(r) < this.busyOn(rank)) rank = r;
    job.rank = rank;
    this.running.add(job);
    return true;
  }

  /** Requests running on one rank. */
  busyOn(rank: number): number {
    let n = 0;
    for (const job of this.running) if (job.rank === rank) n++;
    return n;
  }

  /** Waits up to maxMs for the pause gate to open. False on timeout. */
  async waitUnpaused(maxMs: number): Promise<boolean> {
    const deadline = Date.now() + maxMs;
    while (this.paused !== null) {
      const left = deadline - Date.now();
      if (left <= 0) return false;
      await Promise.race([this.changed(), sleep(left)]);
    }
    return true;
  }

  /** Decodes job.n tokens, one every tokenMs, calling emit(i) for token i (1-based). */
  async decode(job: Job, emit: (i: number) => Promise<void> | void): Promise<FinishReason> {
    try {
      for (let i = 1; i <= job.n; i++) {
        await sleep(this.tokenMs);
        // retract / in_place keep the request in the scheduler but stop decoding it.
        while (this.paused !== null && this.paused !== 'abort' && !job.aborted) await this.changed();
        if (job.aborted) return 'abort';
        await emit(i);
      }
      return 'length';
    } finally {
      this.finish(job);
    }
  }

  /** The client left. The server keeps the request until it notices, abortNoticeMs later. */
  clientGone(job: Job): void {
    if (job.done || job.noticeTimer !== null) return;
    job.noticeTimer = setTimeout(() => {
      job.noticeTimer = null;
      if (job.done) return;
      job.aborted = true;
      this.finish(job);
      this.notify();
      this.onNoticed(job);
    }, this.abortNoticeMs);
  }

  /** pause_generation(mode=abort): every running request ends now. */
  abortRunning(): void {
    for (const job of [...this.running]) {
      job.aborted = true;
      this.finish(job);
    }
    this.notify();
  }

  finish(job: Job): void {
    job.done = true;
    this.running.delete(job);
    if (job.noticeTimer !== null) clearTimeout(job.noticeTimer);
    job.noticeTimer = null;
  }
}
