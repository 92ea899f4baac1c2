// The route table: SGLang's paths and the methods FastAPI accepts on each.
import type { Sim } from './context.js';
import { continueGeneration, pauseGeneration, release, resume, updateWeightsFromDisk, weightsChecker } from './control.js';
import type { Call, Route } from './http.js';
import { flushCache, health, loads, modelInfo, models, serverInfo } from './info.js';
import { chatCompletions, completions, embeddings, nativeGenerate } from './openai.js';

export function routes(sim: Sim): Route[] {
  const r = (path: string, methods: string[], fn: (sim: Sim, call: Call) => Promise<void> | void, admin = false): Route => ({
    path,
    methods,
    admin,
    handler: (call) => fn(sim, call),
  });
  // Builds before 2025-07 have no pause/continue (SGLANG_SIM_NO_PAUSE): they answer 404.
  const pause = sim.knobs.noPause ? [] : [
    r('/pause_generation', ['POST'], pauseGeneration, true),
    r('/continue_generation', ['POST'], continueGeneration, true),
  ];
  return [
    r('/health', ['GET'], health),
    r('/health_generate', ['GET'], health),
    r('/get_model_info', ['GET'], modelInfo),
    r('/model_info', ['GET'], modelInfo),
    r('/v1/models', ['GET'], models),
    r('/get_server_info', ['GET'], serverInfo),
    r('/server_info', ['GET'], serverInfo),
    r('/v1/loads', ['GET'], loads),
    r('/flush_cache', ['GET', 'POST'], flushCache, true),
    r('/release_memory_occupation', ['GET', 'POST'], release, true),
    r('/resume_memory_occupation', ['GET', 'POST'], resume, true),
    r('/update_weights_from_disk', ['POST'], updateWeightsFromDisk, true),
    r('/weights_checker', ['GET', 'POST'], weightsChecker, true),
    ...pause,
    r('/v1/chat/completions', ['POST'], chatCompletions),
    r('/v1/completions', ['POST'], completions),
    r('/v1/embeddings', ['POST'], embeddings),
    r('/generate', ['POST'], nativeGenerate),
  ];
}
