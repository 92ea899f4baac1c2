// Running one generation: pause gate, the hazard-2 check, token pacing, disconnect handling,
// the injected mid-stream crash. Output formats live in openai.ts / native.ts.
import type { Sim } from './context.js';
import type { Call } from './http.js';
import { crash, faultExit } from './lifecycle.js';
import { GARBAGE_TOKEN, replyToken } from './reply.js';
import { Job, type FinishReason } from './scheduler.js';

export const MAX_TOKENS_CAP = 4096;

export interface Outcome {
  rid: string;
  tokens: string[];
  finish: FinishReason;
}

/** Runs an n-token generation for `call`: onAdmitted(rid) once it enters the scheduler, then
 * onToken(token, i) per token as it is produced. Resolves null if the request was dropped
 * before admission (client gone while generation was paused); never resolves while wedged. */
export async function generate(
  sim: Sim,
  call: Call,
  n: number,
  onToken: (token: string, i: number) => void,
  onAdmitted: (rid: string) => void = () => undefined,
): Promise<Outcome | null> {
  const job = new Job(n);
  let answered = false;
  // The client may leave at any time; the server only notices abortNoticeMs later (hazard 6).
  call.res.on('close', () => {
    if (!answered) sim.scheduler.clientGone(job);
  });
  if (sim.wedged) return new Promise<null>(() => undefined); // stuck scheduler: never answers
  if (!(await sim.scheduler.admit(job))) return null;
  if (sim.memory.gpuReleased) {
    crash(sim.ledger, 'forward_while_released', 'forward_batch', 'RuntimeError: CUDA error: an illegal memory access was encountered');
  }
  onAdmitted(job.rid);
  const tokens: string[] = [];
  const limit = sim.knobs.crashAfterTokens;
  const finish = await sim.scheduler.decode(job, async (i) => {
    const token = sim.memory.weightsDiscarded ? GARBAGE_TOKEN : replyToken(sim.args.servedName, i);
    tokens.push(token);
    onToken(token, i);
    if (limit !== null && i >= limit) {
      await new Promise((resolve) => setImmediate(resolve)); // let the token reach the socket
      faultExit(sim.ledger, 'crash_after_tokens', 1, `Scheduler died after ${i} tokens (SGLANG_SIM_CRASH_AFTER_TOKENS=${limit})`);
    }
  });
  answered = true;
  return { rid: job.rid, tokens, finish };
}

/** Reads max_tokens-style fields: the first present one wins; absent → fallback. */
export function tokenBudget(body: Record<string, unknown>, fields: readonly string[], fallback: number): number | string {
  for (const f of fields) {
    const v = body[f];
    if (v === undefined || v === null) continue;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) return `${f} must be a non-negative integer`;
    return Math.min(v, MAX_TOKENS_CAP);
  }
  return fallback;
}

/** Prompt length in "tokens": whitespace-separated words of text, or the length of id lists. */
export function promptTokens(value: unknown): number {
  if (typeof value === 'string') return value.split(/\s+/).filter((w) => w !== '').length;
  if (typeof value === 'number') return 1;
  if (Array.isArray(value)) return value.reduce((sum: number, v: unknown) => sum + promptTokens(v), 0);
  if (value !== null && typeof value === 'object') {
    const o = value as { content?: unknown; text?: unknown };
    return promptTokens(o.content ?? o.text ?? '');
  }
  return 0;
}
