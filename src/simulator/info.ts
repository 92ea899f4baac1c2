// Routes that describe the server or probe it: /health*, model info, /v1/models, /flush_cache.
import { setTimeout as sleep } from 'node:timers/promises';
import type { Sim } from './context.js';
import { sendEmpty, sendJson, sendText, type Call } from './http.js';
import { crash } from './lifecycle.js';
import { Job } from './scheduler.js';

/** New builds give up on a health generation after 20 s and answer 503. */
const HEALTH_TIMEOUT_MS = 20_000;
const FLUSH_POLL_MS = 10;

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

/** 400 while anything runs on rank 0 (disconnected-but-unnoticed requests included), else 200:
 * with --dp-size > 1 the other ranks are not asked (hazard 9). `?timeout=S` (2026-03+) waits up
 * to S seconds inside the server for rank 0 to become idle. */
export async function flushCache(sim: Sim, call: Call): Promise<void> {
  if (sim.wedged) return; // the scheduler is stuck: never answers
  const deadline = Date.now() + Number(call.query.get('timeout') ?? '0') * 1000;
  while (sim.scheduler.busyOn(0) > 0 && Date.now() < deadline) await sleep(FLUSH_POLL_MS);
  sendText(call.res, sim.scheduler.busyOn(0) > 0 ? 400 : 200, FLUSH_TEXT);
}

/** /server_info, /get_server_info: the settings in effect (a --config file's included). */
export function serverInfo(sim: Sim, call: Call): void {
  const a = sim.args;
  sendJson(call.res, 200, {
    model_path: a.modelPath,
    served_model_name: a.servedName,
    port: a.port,
    enable_memory_saver: a.memorySaver,
    enable_weights_cpu_backup: a.cpuBackup,
    dp_size: a.dpSize,
    tp_size: a.tpSize,
    enable_dp_attention: a.dpAttention,
    base_gpu_id: a.baseGpuId,
    load_format: a.loadFormat,
    version: '0.5.23-sim',
  });
}

/** /v1/loads: per-rank load, as LoadSnapshot's core fields. */
export function loads(sim: Sim, call: Call): void {
  const ranks = Array.from({ length: sim.args.dpSize }, (_, rank) => ({
    dp_rank: rank,
    num_running_reqs: sim.scheduler.busyOn(rank),
    num_waiting_reqs: 0,
  }));
  sendJson(call.res, 200, { timestamp: new Date().toISOString(), version: '0.5.23-sim', loads: ranks });
}
