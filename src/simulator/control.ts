// Memory and scheduling control: release/resume (the sleep/wake the multiplexer drives),
// update_weights_from_disk, pause/continue. Each hazard from SGLANG-FACTS.md is enforced here.
import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Sim } from './context.js';
import { jsonBody, sendError, sendJson, type Call } from './http.js';
import { crash } from './lifecycle.js';
import * as log from './log.js';
import { parseTags, type Tag } from './memory.js';
import type { PauseMode } from './scheduler.js';

function tagsOf(call: Call): Tag[] | null {
  const body = jsonBody(call, true);
  if (body === null) return null;
  const tags = parseTags(body.value);
  if (typeof tags === 'string') {
    sendError(call.res, 400, tags);
    return null;
  }
  return tags;
}

/** A call stuck in the scheduler: no answer, ever; everything needing the scheduler hangs too. */
function hang(sim: Sim, call: Call, reason: string, extra: { mb?: number; used?: number; tags?: Tag[] }): void {
  sim.ledger.record('hang', { route: call.path, reason, ...extra });
  log.warn(`${call.path} is stuck (${reason}); it will never answer`);
  sim.wedged = true;
}

export async function release(sim: Sim, call: Call): Promise<void> {
  const tags = tagsOf(call);
  if (tags === null || sim.wedged) return;
  if (sim.scheduler.running.size > 0) {
    // Hazard 1, disconnected-but-unnoticed requests included (hazard 6).
    crash(sim.ledger, 'release_while_running', 'release_memory_occupation', 'AssertionError: release_memory_occupation with running requests');
  }
  if (sim.knobs.hangRelease) return hang(sim, call, 'injected', { tags });
  if (sim.knobs.failRelease) {
    sim.ledger.record('fault', { fault: 'fail_release' });
    return sendError(call.res, 500, 'Failed to release memory occupation (SGLANG_SIM_FAIL_RELEASE)', 'InternalServerError');
  }
  // Already-released tags are left alone. Marked at once: a forward pass arriving during the
  // release already finds the memory going away.
  const fresh = tags.filter((t) => !sim.memory.released.has(t));
  for (const t of fresh) sim.memory.released.add(t);
  await sleep(sim.knobs.releaseMs);
  if (sim.memory.saver) {
    sim.ledger.free(sim.memory.mbOf(fresh), { tags: fresh, reason: 'release' }, sim.knobs.freeLagMs);
    if (fresh.includes('weights') && !sim.args.cpuBackup) sim.memory.weightsDiscarded = true;
  }
  // Without --enable-memory-saver nothing is freed (SGLang #4336); the tags are still recorded
  // as released, because SGLang's resume needs the state its release stashed.
  sim.ledger.record('release', { tags: fresh });
  log.info(`release_memory_occupation done: tags=${JSON.stringify(fresh)}`);
  sendJson(call.res, 200, null);
}

export async function resume(sim: Sim, call: Call): Promise<void> {
  const tags = tagsOf(call);
  if (tags === null || sim.wedged) return;
  const notReleased = tags.find((t) => !sim.memory.released.has(t));
  if (notReleased !== undefined) {
    crash(sim.ledger, 'resume_not_released', 'resume_memory_occupation', `KeyError: '${notReleased}'`);
  }
  if (sim.knobs.hangResume) return hang(sim, call, 'injected', { tags });
  if (sim.memory.saver) {
    const mb = sim.memory.mbOf(tags);
    const got = sim.ledger.allocate(mb, { tags, reason: 'resume' });
    // Hazard 5 (SGLang #14092): a resume that cannot get its memory hangs instead of failing.
    if (!got.ok) return hang(sim, call, 'no_memory', { mb, used: got.used, tags });
  }
  await sleep(sim.knobs.resumeMs);
  for (const t of tags) sim.memory.released.delete(t);
  sim.ledger.record('resume', { tags });
  log.info(`resume_memory_occupation done: tags=${JSON.stringify(tags)}`);
  sendJson(call.res, 200, null);
}

export async function updateWeightsFromDisk(sim: Sim, call: Call): Promise<void> {
  const body = jsonBody(call);
  if (body === null) return;
  const modelPath = (body.value as { model_path?: unknown } | null)?.model_path;
  if (typeof modelPath !== 'string' || modelPath === '') {
    return sendError(call.res, 400, "[{'type': 'missing', 'loc': ('body', 'model_path'), 'msg': 'Field required'}]");
  }
  if (sim.wedged) return;
  if (sim.memory.gpuReleased) {
    crash(sim.ledger, 'reload_while_released', 'update_weights_from_disk', 'RuntimeError: CUDA error: an illegal memory access was encountered');
  }
  await sleep(sim.knobs.reloadMs);
  // Only the default loader can reload (others: "Failed to get model loader").
  if (sim.knobs.failReload || sim.args.loadFormat !== 'auto') {
    sim.ledger.record('fault', { fault: 'fail_reload' });
    return sendJson(call.res, 400, { success: false, message: `Failed to get model loader: load_format=${sim.args.loadFormat} is not supported for update_weights_from_disk`, num_paused_requests: 0 });
  }
  // Some FP8 formats reload "successfully" into corrupt weights (SGLANG_SIM_CORRUPT_RELOAD).
  if (!sim.knobs.corruptReload) sim.memory.weightsDiscarded = false;
  sim.ledger.record('reload', { model_path: modelPath });
  log.info(`Update weights end. model_path=${modelPath}`);
  sendJson(call.res, 200, { success: true, message: 'Succeeded to update model weights.', num_paused_requests: 0 });
}

const PAUSE_MODES: readonly PauseMode[] = ['abort', 'retract', 'in_place'];

/** abort (default, and old builds' only behaviour) ends running requests; retract/in_place keep
 * them in the scheduler, stalled — still running for hazard 1. New requests wait either way. */
export function pauseGeneration(sim: Sim, call: Call): void {
  const body = jsonBody(call, true);
  if (body === null) return;
  const mode = (body.value as { mode?: unknown } | null)?.mode ?? 'abort';
  if (typeof mode !== 'string' || !PAUSE_MODES.includes(mode as PauseMode)) {
    return sendError(call.res, 400, `mode must be one of ${PAUSE_MODES.join(', ')}`);
  }
  sim.scheduler.paused = mode as PauseMode;
  if (mode === 'abort') sim.scheduler.abortRunning();
  sim.ledger.record('pause', { reason: mode });
  sendJson(call.res, 200, { message: 'Generation paused successfully.', status: 'ok' });
}

export function continueGeneration(sim: Sim, call: Call): void {
  sim.scheduler.paused = null;
  sim.scheduler.notify();
  sim.ledger.record('continue');
  sendJson(call.res, 200, { message: 'Generation continued successfully.', status: 'ok' });
}

/** /weights_checker (2025-11+), action "checksum": a digest of the weights as they are now, so a
 * reload can be compared with the weights loaded at start. */
export function weightsChecker(sim: Sim, call: Call): void {
  const body = jsonBody(call, true);
  if (body === null) return;
  const action = (body.value as { action?: unknown } | null)?.action ?? 'checksum';
  if (action !== 'checksum') return sendJson(call.res, 400, { success: false, message: `unsupported action ${String(action)}` });
  const weights = sim.memory.weightsDiscarded ? 'garbage' : sim.args.modelPath;
  const digest = createHash('sha256').update(weights).digest('hex');
  sendJson(call.res, 200, { success: true, message: 'ok', per_engine_checksum: digest });
}
