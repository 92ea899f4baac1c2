// Everything a request handler may read or change about this simulated server.
import type { SimArgs } from './args.js';
import type { Knobs } from './knobs.js';
import type { Ledger } from './ledger.js';
import type { MemoryState } from './memory.js';
import type { Scheduler } from './scheduler.js';

export interface Sim {
  readonly args: SimArgs;
  readonly knobs: Knobs;
  readonly ledger: Ledger;
  readonly memory: MemoryState;
  readonly scheduler: Scheduler;
  /** starting: loading, no HTTP; warming: HTTP up, /health 503; ready: /health 200. */
  phase: 'starting' | 'warming' | 'ready';
  /** A release/resume hung inside the scheduler: nothing that needs the scheduler answers again. */
  wedged: boolean;
  /** Epoch seconds the server started, for /v1/models. */
  readonly created: number;
}
