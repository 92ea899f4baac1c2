// Helpers for tests that run the SGLang simulator: read its ledger, know the correct answers,
// build its environment. See docs/simulator.md.
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import type { LedgerEvent, LedgerEventKind } from '../../src/simulator/events.js';
import { readEvents } from '../../src/simulator/ledger.js';

export type { LedgerEvent, LedgerEventKind } from '../../src/simulator/events.js';
export { embeddingOf, expectedReply, isGarbage } from '../../src/simulator/reply.js';

const handedOut = new Set<number>();

/** A port nothing listens on now, never the same twice in this process: the kernel may give a
 * just-closed port out again, and two servers of one test must not be told the same port. */
export async function freePort(): Promise<number> {
  for (;;) {
    const srv = createServer();
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const { port } = srv.address() as { port: number };
    await new Promise((r) => srv.close(r));
    if (handedOut.has(port)) continue;
    handedOut.add(port);
    return port;
  }
}

/** Every event of a ledger file, in file order ([] if the file does not exist yet). */
export function readLedger(path: string): LedgerEvent[] {
  return readEvents(path);
}

/** The events of a ledger file, optionally only those of one kind. */
export function events(path: string, kind?: LedgerEventKind): LedgerEvent[] {
  const all = readLedger(path);
  return kind === undefined ? all : all.filter((e) => e.event === kind);
}

/** Hazard crashes (what a correct multiplexer never causes). Injected faults are not included. */
export function crashes(evs: readonly LedgerEvent[]): LedgerEvent[] {
  return evs.filter((e) => e.event === 'crash');
}

/** Highest GPU MB in use on one GPU at any moment, replaying alloc/free in time order (a free
 * with `at`, from SGLANG_SIM_FREE_LAG_MS, counts from then; an event without `gpu` is GPU 0). */
export function maxUsage(evs: readonly LedgerEvent[]): number {
  const steps: { t: number; i: number; mb: number; gpu: number }[] = [];
  evs.forEach((e, i) => {
    if (e.event === 'alloc') steps.push({ t: e.t, i, mb: e.mb ?? 0, gpu: e.gpu ?? 0 });
    if (e.event === 'free') steps.push({ t: e.at ?? e.t, i, mb: -(e.mb ?? 0), gpu: e.gpu ?? 0 });
  });
  steps.sort((a, b) => a.t - b.t || a.i - b.i);
  const used = new Map<number, number>();
  let max = 0;
  for (const s of steps) {
    const now = (used.get(s.gpu) ?? 0) + s.mb;
    used.set(s.gpu, now);
    max = Math.max(max, now);
  }
  return max;
}

/** Absolute directory to put on PYTHONPATH so `python3 -m sglang.launch_server` runs the simulator. */
export function simPythonPath(): string {
  return fileURLToPath(new URL('../../src/simulator/python', import.meta.url));
}

/** Absolute path of the bundled simulator (built by `npm run build`). */
export function simBundle(): string {
  return fileURLToPath(new URL('../../dist/sglang-sim.mjs', import.meta.url));
}

export interface SimOptions {
  ledger?: string;
  gpus?: number;
  gpuMb?: number;
  modelMb?: number;
  startupMs?: number;
  warmupMs?: number;
  releaseMs?: number;
  resumeMs?: number;
  reloadMs?: number;
  tokenMs?: number;
  abortNoticeMs?: number;
  keepAliveMs?: number;
  freeLagMs?: number;
  hangResume?: boolean;
  hangRelease?: boolean;
  failRelease?: boolean;
  residueMb?: number;
  cudaGraphMb?: number;
  noPause?: boolean;
  failReload?: boolean;
  corruptReload?: boolean;
  exitAtStart?: number;
  crashAfterTokens?: number;
}

const KNOB_NAMES: Record<keyof SimOptions, string> = {
  ledger: 'SGLANG_SIM_LEDGER',
  gpus: 'SGLANG_SIM_GPUS',
  gpuMb: 'SGLANG_SIM_GPU_MB',
  modelMb: 'SGLANG_SIM_MODEL_MB',
  startupMs: 'SGLANG_SIM_STARTUP_MS',
  warmupMs: 'SGLANG_SIM_WARMUP_MS',
  releaseMs: 'SGLANG_SIM_RELEASE_MS',
  resumeMs: 'SGLANG_SIM_RESUME_MS',
  reloadMs: 'SGLANG_SIM_RELOAD_MS',
  tokenMs: 'SGLANG_SIM_TOKEN_MS',
  abortNoticeMs: 'SGLANG_SIM_ABORT_NOTICE_MS',
  keepAliveMs: 'SGLANG_SIM_KEEPALIVE_MS',
  freeLagMs: 'SGLANG_SIM_FREE_LAG_MS',
  hangResume: 'SGLANG_SIM_HANG_RESUME',
  hangRelease: 'SGLANG_SIM_HANG_RELEASE',
  failRelease: 'SGLANG_SIM_FAIL_RELEASE',
  residueMb: 'SGLANG_SIM_RESIDUE_MB',
  cudaGraphMb: 'SGLANG_SIM_CUDA_GRAPH_MB',
  noPause: 'SGLANG_SIM_NO_PAUSE',
  failReload: 'SGLANG_SIM_FAIL_RELOAD',
  corruptReload: 'SGLANG_SIM_CORRUPT_RELOAD',
  exitAtStart: 'SGLANG_SIM_EXIT_AT_START',
  crashAfterTokens: 'SGLANG_SIM_CRASH_AFTER_TOKENS',
};

/** A full environment for spawning a simulator: `base` without any inherited SGLANG_SIM_*
 * variable, plus PYTHONPATH for the sglang stand-in, SGLANG_SIM_NODE (this very node) and the
 * knobs in `opts`. */
export function simEnv(opts: SimOptions = {}, base: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(base)) if (!k.startsWith('SGLANG_SIM_')) env[k] = v;
  env['PYTHONPATH'] = [simPythonPath(), base['PYTHONPATH']].filter((p) => p !== undefined && p !== '').join(':');
  env['SGLANG_SIM_NODE'] = process.execPath;
  for (const [key, value] of Object.entries(opts) as [keyof SimOptions, SimOptions[keyof SimOptions]][]) {
    if (value === undefined || value === false) continue;
    env[KNOB_NAMES[key]] = value === true ? '1' : String(value);
  }
  return env;
}
