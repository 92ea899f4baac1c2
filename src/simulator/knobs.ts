// Environment knobs. Read from the environment (not flags) so a real launch script runs
// unchanged, and a script can `export` them to make one model differ from another.

export interface Knobs {
  startupMs: number;
  warmupMs: number;
  releaseMs: number;
  resumeMs: number;
  reloadMs: number;
  tokenMs: number;
  abortNoticeMs: number;
  keepAliveMs: number;
  freeLagMs: number;
  ledger: string | null;
  /** GPUs of the simulated host, numbered from 0. */
  gpus: number;
  /** The size of each of them. */
  gpuMb: number;
  modelMb: number;
  hangResume: boolean;
  hangRelease: boolean;
  failRelease: boolean;
  noPause: boolean;
  failReload: boolean;
  corruptReload: boolean;
  residueMb: number;
  /** With --mem-fraction-static: CUDA graph memory taken outside the fraction (0: inside it). */
  cudaGraphMb: number;
  exitAtStart: number | null;
  crashAfterTokens: number | null;
}

type Env = Readonly<Record<string, string | undefined>>;

function num(env: Env, name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < 0) throw new Error(`${name} must be a non-negative number, got '${raw}'`);
  return value;
}

function optionalInt(env: Env, name: string): number | null {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return null;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 0) throw new Error(`${name} must be a non-negative integer, got '${raw}'`);
  return value;
}

function positiveInt(env: Env, name: string, fallback: number): number {
  const value = optionalInt(env, name) ?? fallback;
  if (value < 1) throw new Error(`${name} must be a positive integer, got '${env[name] ?? ''}'`);
  return value;
}

function flag(env: Env, name: string): boolean {
  const raw = (env[name] ?? '').trim().toLowerCase();
  return raw !== '' && raw !== '0' && raw !== 'false' && raw !== 'no';
}

export function readKnobs(env: Env): Knobs {
  const ledger = env['SGLANG_SIM_LEDGER'];
  return {
    startupMs: num(env, 'SGLANG_SIM_STARTUP_MS', 300),
    warmupMs: num(env, 'SGLANG_SIM_WARMUP_MS', 100),
    releaseMs: num(env, 'SGLANG_SIM_RELEASE_MS', 50),
    resumeMs: num(env, 'SGLANG_SIM_RESUME_MS', 50),
    reloadMs: num(env, 'SGLANG_SIM_RELOAD_MS', 50),
    tokenMs: num(env, 'SGLANG_SIM_TOKEN_MS', 5),
    abortNoticeMs: num(env, 'SGLANG_SIM_ABORT_NOTICE_MS', 200),
    keepAliveMs: num(env, 'SGLANG_SIM_KEEPALIVE_MS', 5000),
    freeLagMs: num(env, 'SGLANG_SIM_FREE_LAG_MS', 0),
    ledger: ledger === undefined || ledger === '' ? null : ledger,
    gpus: positiveInt(env, 'SGLANG_SIM_GPUS', 1),
    gpuMb: num(env, 'SGLANG_SIM_GPU_MB', 1000),
    modelMb: num(env, 'SGLANG_SIM_MODEL_MB', 600),
    hangResume: flag(env, 'SGLANG_SIM_HANG_RESUME'),
    hangRelease: flag(env, 'SGLANG_SIM_HANG_RELEASE'),
    failRelease: flag(env, 'SGLANG_SIM_FAIL_RELEASE'),
    noPause: flag(env, 'SGLANG_SIM_NO_PAUSE'),
    failReload: flag(env, 'SGLANG_SIM_FAIL_RELOAD'),
    corruptReload: flag(env, 'SGLANG_SIM_CORRUPT_RELOAD'),
    residueMb: num(env, 'SGLANG_SIM_RESIDUE_MB', 0),
    cudaGraphMb: num(env, 'SGLANG_SIM_CUDA_GRAPH_MB', 0),
    exitAtStart: optionalInt(env, 'SGLANG_SIM_EXIT_AT_START'),
    crashAfterTokens: optionalInt(env, 'SGLANG_SIM_CRASH_AFTER_TOKENS'),
  };
}
