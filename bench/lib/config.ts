// Sizes of a benchmark run: the full run (the numbers) and the smoke run (tiny counts,
// for CI, so the harness cannot rot).

export interface BenchConfig {
  readonly mode: 'full' | 'smoke';
  readonly nonStream: {
    readonly reps: number;
    readonly concurrency: readonly [number, number];
    readonly maxTokens: number;
    readonly tokenMs: number;
    readonly warmupMs: number;
    readonly durationMs: number;
    /** Unmeasured load through every path before the first repetition (JIT warm-up). */
    readonly jitWarmupMs: number;
  };
  readonly stream: {
    readonly reps: number;
    readonly users: number;
    readonly tokens: number;
    readonly tokenMs: number;
  };
  readonly switching: {
    readonly reps: number;
    readonly switches: number;
    readonly releaseMs: number;
    readonly resumeMs: number;
    readonly tokenMs: number;
  };
  readonly startup: {
    readonly starts: number;
    readonly idleWaitMs: number;
  };
  /** Pause between two measured runs, so sockets and timers of one do not spill into the next. */
  readonly settleMs: number;
  /** Before each measured run, wait up to this long for the machine to be quiet (other
   * processes below 20 % of a core); 0: do not wait. */
  readonly quietWaitMs: number;
  /** The whole run is stopped (exit 1) if it takes longer than this. */
  readonly deadlineMs: number;
}

export const FULL: BenchConfig = {
  mode: 'full',
  nonStream: { reps: 5, concurrency: [1, 64], maxTokens: 4, tokenMs: 0, warmupMs: 300, durationMs: 2500, jitWarmupMs: 1500 },
  stream: { reps: 3, users: 256, tokens: 200, tokenMs: 20 },
  switching: { reps: 3, switches: 50, releaseMs: 50, resumeMs: 50, tokenMs: 1 },
  startup: { starts: 10, idleWaitMs: 1000 },
  settleMs: 500,
  quietWaitMs: 30_000,
  deadlineMs: 30 * 60_000,
};

export const SMOKE: BenchConfig = {
  mode: 'smoke',
  nonStream: { reps: 2, concurrency: [1, 8], maxTokens: 4, tokenMs: 0, warmupMs: 50, durationMs: 250, jitWarmupMs: 200 },
  stream: { reps: 2, users: 8, tokens: 10, tokenMs: 20 },
  switching: { reps: 1, switches: 4, releaseMs: 20, resumeMs: 20, tokenMs: 1 },
  startup: { starts: 2, idleWaitMs: 200 },
  settleMs: 100,
  quietWaitMs: 0,
  deadlineMs: 3 * 60_000,
};
