// Everything sglangmux uses of SGLang, in one table: the routes it calls (with the method and
// the body fields it sends), the fields it reads back, and the launch flags it reads from a
// script. The daemon calls servers only through these entries, and test/contract.test.ts checks
// each of them against SGLang's own source (a pinned release), so a rename upstream fails CI.

export interface SglangRoute {
  readonly method: 'GET' | 'POST';
  readonly path: string;
  /** Admin-level in SGLang: once `--admin-api-key` is set, only that key opens it. */
  readonly admin: boolean;
  /** The request dataclass (io_struct.py) and the fields sglangmux sends in its JSON body. */
  readonly body?: { readonly type: string; readonly fields: readonly string[] };
  /** Query parameters sglangmux adds. */
  readonly query?: readonly string[];
}

export const SGLANG_ROUTES = {
  /** Readiness while starting (runs a forward pass on new builds: never on a released server). */
  health: { method: 'GET', path: '/health', admin: false },
  /** Model path without touching the GPU; the old name logs a deprecation warning per call. */
  modelInfo: { method: 'GET', path: '/model_info', admin: false },
  modelInfoOld: { method: 'GET', path: '/get_model_info', admin: false },
  /** The settings in effect (a --config file can hold flags the script text does not show). */
  serverInfo: { method: 'GET', path: '/server_info', admin: false },
  serverInfoOld: { method: 'GET', path: '/get_server_info', admin: false },
  flushCache: { method: 'POST', path: '/flush_cache', admin: true, query: ['timeout'] },
  pause: { method: 'POST', path: '/pause_generation', admin: true, body: { type: 'PauseGenerationReqInput', fields: ['mode'] } },
  continue: { method: 'POST', path: '/continue_generation', admin: true, body: { type: 'ContinueGenerationReqInput', fields: [] } },
  release: { method: 'POST', path: '/release_memory_occupation', admin: true, body: { type: 'ReleaseMemoryOccupationReqInput', fields: [] } },
  resume: { method: 'POST', path: '/resume_memory_occupation', admin: true, body: { type: 'ResumeMemoryOccupationReqInput', fields: [] } },
  reload: { method: 'POST', path: '/update_weights_from_disk', admin: true, body: { type: 'UpdateWeightFromDiskReqInput', fields: ['model_path'] } },
  weightsChecker: { method: 'POST', path: '/weights_checker', admin: true, body: { type: 'CheckWeightsReqInput', fields: ['action'] } },
  /** Per-DP-rank load (2026-01+). */
  loads: { method: 'GET', path: '/v1/loads', admin: false, query: ['include'] },
} as const satisfies Record<string, SglangRoute>;

export type SglangRouteName = keyof typeof SGLANG_ROUTES;

/** The JSON body a route may be sent: only the fields listed in the table (none: no body). */
export type SglangBody<N extends SglangRouteName> = (typeof SGLANG_ROUTES)[N] extends { readonly body: { readonly fields: readonly (infer F extends string)[] } }
  ? { readonly [K in F]?: unknown }
  : never;

/** The query parameters a route may be sent. */
export type SglangQuery<N extends SglangRouteName> = (typeof SGLANG_ROUTES)[N] extends { readonly query: readonly (infer Q extends string)[] }
  ? { readonly [K in Q]?: string }
  : never;

/** Fields sglangmux reads from answers: where SGLang defines them, and under which names. */
export const SGLANG_ANSWER_FIELDS = {
  /** /model_info. */
  modelInfo: { type: 'ModelInfo', fields: ['model_path'] },
  /** Each entry of /v1/loads' `loads`. */
  load: { type: 'LoadSnapshot', fields: ['dp_rank', 'num_running_reqs', 'num_waiting_reqs'] },
  /** /server_info: the resolved server arguments. */
  serverInfo: { type: 'ServerArgs', fields: ['model_path', 'enable_memory_saver', 'enable_weights_cpu_backup', 'dp_size'] },
} as const;

/** Launch flags read from a script's text. Value flags take the next word (or `=value`). */
export const SGLANG_FLAGS = {
  modelPath: ['--model-path', '--model'],
  servedName: ['--served-model-name'],
  port: ['--port'],
  apiKey: ['--api-key'],
  adminApiKey: ['--admin-api-key'],
  memorySaver: ['--enable-memory-saver'],
  cpuBackup: ['--enable-weights-cpu-backup'],
  dpSize: ['--dp-size', '--data-parallel-size', '--dp'],
  tpSize: ['--tp-size', '--tensor-parallel-size', '--tp'],
  dpAttention: ['--enable-dp-attention'],
  baseGpuId: ['--base-gpu-id'],
  memFraction: ['--mem-fraction-static'],
  quantization: ['--quantization'],
  loadFormat: ['--load-format'],
} as const satisfies Record<string, readonly string[]>;

/** Spellings in SGLANG_FLAGS that SGLang does not define but accepts because argparse takes any
 * prefix that begins exactly one flag; the contract test checks each still does. */
export const SGLANG_FLAG_ABBREVIATIONS: ReadonlyMap<string, string> = new Map([
  ['--tp', '--tp-size'],
  ['--dp', '--dp-size'],
]);
