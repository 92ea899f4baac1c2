// The ledger's line format. Shared by the simulator (writer) and test/support/sim.ts (reader),
// so the two can never disagree about field names.

export type LedgerEventKind =
  | 'start' // process began loading the model
  | 'listening' // HTTP socket bound
  | 'ready' // warmup over, /health answers 200
  | 'alloc' // GPU memory taken (startup, resume)
  | 'free' // GPU memory given back (release, exit, reaped dead process)
  | 'release' // release_memory_occupation completed
  | 'resume' // resume_memory_occupation completed
  | 'reload' // update_weights_from_disk completed
  | 'pause' // pause_generation
  | 'continue' // continue_generation
  | 'request' // any routed HTTP request reached a handler
  | 'abort' // the server noticed a disconnected client (hazard 6 window over)
  | 'oom' // startup refused: not enough GPU memory
  | 'hang' // a call that will never answer (hazard 5 or injected)
  | 'crash' // a hazard killed the server: what tests assert never happens
  | 'fault' // an injected fault fired (SGLANG_SIM_* knobs), not a hazard
  | 'exit'; // process exit (any kind except SIGKILL)

export type HazardReason =
  | 'release_while_running' // hazard 1
  | 'forward_while_released' // hazard 2
  | 'resume_not_released' // hazard 3
  | 'reload_while_released'; // weights reload over freed memory (hazard 2 family)

export interface LedgerEvent {
  /** epoch milliseconds */
  t: number;
  /** pid of the simulator the event is about */
  pid: number;
  port: number;
  /** served model name */
  model: string;
  event: LedgerEventKind;
  /** alloc/free/oom/hang: megabytes concerned */
  mb?: number;
  /** alloc/free/oom: MB in use on the event's GPU across all simulators after (or, for oom,
   * before) this event; for oom, on the most used of the server's GPUs */
  used?: number;
  /** alloc/free: the physical GPU (as nvidia-smi numbers it); absent: GPU 0 */
  gpu?: number;
  /** start: the physical GPUs the server's ranks run on */
  gpus?: number[];
  /** free with SGLANG_SIM_FREE_LAG_MS: epoch ms at which the memory really becomes free */
  at?: number;
  /** release/resume/alloc/free: memory tags concerned */
  tags?: string[];
  /** request: URL path, method, and whether a stream was asked for */
  route?: string;
  method?: string;
  stream?: boolean;
  /** crash: the hazard; hang/free/fault/exit: why */
  reason?: string;
  /** crash: hazard number from SGLANG-FACTS.md */
  hazard?: number;
  /** exit: process exit code */
  code?: number;
  /** fault: which injected fault */
  fault?: string;
  /** abort/request: request id */
  rid?: string;
  /** start: model path; free (reaped): pid that wrote it */
  model_path?: string;
  by?: number;
}
