// The call sequences that put a model server to sleep and wake it without crashing it
// (SGLANG-FACTS hazards 1, 2, 6, 9): the scheduler decides when, these carry it out.
//
// Sleep: pause generation in abort mode (it ends stragglers /flush_cache cannot see, and makes
// every later generation, /health's included, wait inside the server instead of running on
// freed memory), confirm the server idle on every data-parallel rank, then release.
// Wake: resume, reload the weights when they were discarded (and verify them where the build
// can checksum them), then continue generation.
import { log } from './log.js';
import { ServerAuthError, type ModelServer } from './model-server.js';

const IDLE_POLL_MS = 50;
/** How long one /flush_cache?timeout= may wait inside the server before we ask again. */
const FLUSH_WAIT_MS = 5000;

const delay = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const message = (err: unknown): string => (err instanceof Error ? err.message : String(err));

/**
 * Pauses `server` and waits until it is idle on every rank. True when it may be released; false
 * when it stayed busy past `timeoutMs` or could not be checked (the caller stops it instead).
 * A refused key (ServerAuthError) is thrown: that is a configuration error, not a busy server.
 */
async function quiesce(server: ModelServer, name: string, dpSize: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  try {
    const paused = await server.pause(timeoutMs);
    for (;;) {
      const left = deadline - Date.now();
      if ((await server.isIdle(Math.min(FLUSH_WAIT_MS, Math.max(0, left)), Math.max(left, 1) + FLUSH_WAIT_MS))
        && (await otherRanksIdle(server, dpSize, paused, left))) return true;
      if (Date.now() >= deadline) {
        log.warn(`model ${name}: still busy after ${timeoutMs} ms; stopping it instead of releasing`);
        return false;
      }
      await delay(IDLE_POLL_MS);
    }
  } catch (err) {
    if (err instanceof ServerAuthError) throw err;
    log.warn(`model ${name}: idle check failed (${message(err)})`);
    return false;
  }
}

/**
 * Quiesces `server`, then releases its GPU memory (`releasing` is told just before). True once
 * released; false when it must be stopped instead (busy past the timeout, or the release
 * failed). A refused key is thrown.
 */
export async function releaseServer(server: ModelServer, name: string, dpSize: number, timeoutMs: number, releasing: () => void): Promise<boolean> {
  if (!(await quiesce(server, name, dpSize, timeoutMs))) return false;
  releasing();
  try {
    await server.release(timeoutMs);
    return true;
  } catch (err) {
    if (err instanceof ServerAuthError) throw err;
    log.warn(`model ${name}: release failed (${message(err)}); stopping its process instead`);
    return false;
  }
}

/** /flush_cache answers for rank 0 only: with --dp-size > 1 the others are asked through
 * /v1/loads. A build without it is trusted only when paused in abort mode (every rank's
 * requests were ended, and new ones wait). */
async function otherRanksIdle(server: ModelServer, dpSize: number, paused: boolean, timeoutMs: number): Promise<boolean> {
  if (dpSize <= 1) return true;
  const loads = await server.loads(Math.max(timeoutMs, 1));
  if (loads !== null) return loads.every((l) => l.busy === 0);
  if (paused) return true;
  throw new Error(`--dp-size ${dpSize}, but this build has neither /v1/loads nor /pause_generation to confirm ranks other than 0 idle`);
}

export interface WakeSteps {
  /** Weights were discarded at release: reload them from this path. */
  readonly reloadFrom: string | null;
  /** The checksum taken after the model's cold start, to verify a reload against. */
  readonly checksum: string | null;
  readonly switchTimeoutMs: number;
  readonly reloadTimeoutMs: number;
}

/** Why a reload cannot be trusted, or null when the model may serve. */
export type ReloadProblem = string | null;

/**
 * Resumes `server`, reloads and verifies its weights if needed, and continues generation. A
 * failed or unverifiable reload is returned (the caller must not let the model serve: its
 * generation stays paused); a failed resume throws.
 */
export async function resumeServer(server: ModelServer, steps: WakeSteps): Promise<ReloadProblem> {
  await server.resume(steps.switchTimeoutMs);
  if (steps.reloadFrom !== null) {
    try {
      await server.reloadWeights(steps.reloadFrom, steps.reloadTimeoutMs);
    } catch (err) {
      if (err instanceof ServerAuthError) throw err;
      return `reloading its weights failed (${message(err)})`;
    }
    if (steps.checksum !== null) {
      const now = await server.weightsChecksum(steps.switchTimeoutMs).catch(() => null);
      if (now !== steps.checksum) {
        return `its reloaded weights do not match the checksum taken at its cold start (${now ?? 'no checksum'} != ${steps.checksum}); if this happens on every wake, add --enable-weights-cpu-backup to its script`;
      }
    }
  }
  await server.continueGeneration(steps.switchTimeoutMs);
  return null;
}
