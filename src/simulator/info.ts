// Routes that describe the server or probe it: /health*, model info, /v1/models, /flush_cache.
import { setTimeout as sleep } from 'node:timers/promises';
import type { Sim } from './context.js';
import { sendEmpty, sendJson, sendText, type Call } from './http.js';
import { crash } from './lifecycle.js';
import { Job } from './scheduler.js';

/** New builds give up on a health generation after 20 s and answer 503. */
const HEALTH_TIMEOUT_MS = 20_000;

const FLUSH_TEXT =
  'Cache flushed.\nPlease check backend logs for more details. (When there are running or waiting requests, the operation will not be performed.)\n';

/** /health and /health_generate: 503 until warm, then a real 1-token forward pass — which on a
 * released server reads freed memory (hazard 2). Skipped (200 at once) while requests run. */
export async function health(sim: Sim, call: Call): Promise<void> {
  if (sim.phase !== 'ready') return sendEmpty(call.res, 503);
  // A stuck scheduler or a paused tokenizer manager: the health generation times out.
  if (sim.wedged) {
    await sleep(HEALTH_TIMEOUT_MS);
    return sendEmpty(call.res, 503);
  }
  if (!(await sim.scheduler.waitUnpaused(HEALTH_TIMEOUT_MS))) return sendEmpty(call.res, 503);
  if (sim.memory.gpuReleased) {
    crash(sim.ledger, 'forward_while_released', 'health_generate', 'RuntimeError: CUDA error: an illegal memory access was encountered');
  }
  if (sim.scheduler.running.size > 0) return sendEmpty(call.res, 200);
  const job = new Job(1);
  if (await sim.scheduler.admit(job)) await sim.scheduler.decode(job, () => undefined);
  sendEmpty(call.res, 200);
}

/** /get_model_info, /model_info: tokenizer-side, never touches the GPU, safe while released. */
export function modelInfo(sim: Sim, call: Call): void {
  const m = sim.args.modelPath;
  sendJson(call.res, 200, {
    model_path: m,
    tokenizer_path: m,
    is_generation: true,
    preferred_sampling_params: null,
    weight_version: 'default',
  });
}

export function models(sim: Sim, call: Call): void {
  const n = sim.args.servedName;
  sendJson(call.res, 200, {
    object: 'list',
    data: [{ id: n, object: 'model', created: sim.created, owned_by: 'sglang', root: n, parent: null, max_model_len: 4096 }],
  });
}

/** 400 while anything runs (disconnected-but-unnoticed requests included), else 200. */
export function flushCache(sim: Sim, call: Call): void {
  if (sim.wedged) return; // the scheduler is stuck: never answers
  sendText(call.res, sim.scheduler.running.size > 0 ? 400 : 200, FLUSH_TEXT);
}
