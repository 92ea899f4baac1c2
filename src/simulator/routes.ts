// The route table: SGLang's paths and the methods FastAPI accepts on each.
import type { Sim } from './context.js';
import { continueGeneration, pauseGeneration, release, resume, updateWeightsFromDisk } from './control.js';
import type { Call, Route } from './http.js';
import { flushCache, health, modelInfo, models } from './info.js';
import { chatCompletions, completions, embeddings, nativeGenerate } from './openai.js';

export function routes(sim: Sim): Route[] {
  const r = (path: string, methods: string[], fn: (sim: Sim, call: Call) => Promise<void> | void): Route => ({
    path,
    methods,
    handler: (call) => fn(sim, call),
  });
  return [
    r('/health', ['GET'], health),
    r('/health_generate', ['GET'], health),
    r('/get_model_info', ['GET'], modelInfo),
    r('/model_info', ['GET'], modelInfo),
    r('/v1/models', ['GET'], models),
    r('/flush_cache', ['GET', 'POST'], flushCache),
    r('/release_memory_occupation', ['POST'], release),
    r('/resume_memory_occupation', ['POST'], resume),
    r('/update_weights_from_disk', ['POST'], updateWeightsFromDisk),
    r('/pause_generation', ['POST'], pauseGeneration),
    r('/continue_generation', ['POST'], continueGeneration),
    r('/v1/chat/completions', ['POST'], chatCompletions),
    r('/v1/completions', ['POST'], completions),
    r('/v1/embeddings', ['POST'], embeddings),
    r('/generate', ['POST'], nativeGenerate),
  ];
}
