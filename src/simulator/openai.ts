// OpenAI-compatible /v1/chat/completions, /v1/completions and /v1/embeddings, plus native
// /generate, in SGLang's response shapes (non-stream JSON and SSE streams).
import { randomBytes } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import type { Sim } from './context.js';
import { generate, promptTokens, tokenBudget } from './generation.js';
import { embeddingOf } from './reply.js';
import { jsonBody, sendError, sendEvent, sendJson, startStream, type Call } from './http.js';

type Body = Record<string, unknown>;

function objectBody(call: Call): Body | null {
  const parsed = jsonBody(call);
  if (parsed === null) return null;
  if (parsed.value === null || typeof parsed.value !== 'object' || Array.isArray(parsed.value)) {
    sendError(call.res, 400, 'Input should be a valid dictionary');
    return null;
  }
  return parsed.value as Body;
}

function missing(field: string): string {
  return `[{'type': 'missing', 'loc': ('body', '${field}'), 'msg': 'Field required'}]`;
}

function done(res: ServerResponse): void {
  sendEvent(res, '[DONE]');
  if (!res.destroyed) res.end();
}

interface Shape {
  object: string;
  chunkObject: string;
  /** choice of a non-stream answer */
  choice: (text: string, finish: string) => Record<string, unknown>;
  /** choice of a stream chunk carrying one token (or, with finish set, the finish chunk) */
  chunkChoice: (piece: string | null, finish: string | null) => Record<string, unknown>;
  /** first chunk, before any token (chat only) */
  roleChoice: Record<string, unknown> | null;
}

const CHAT: Shape = {
  object: 'chat.completion',
  chunkObject: 'chat.completion.chunk',
  choice: (text, finish) => ({
    index: 0,
    message: { role: 'assistant', content: text, reasoning_content: null, tool_calls: null },
    logprobs: null,
    finish_reason: finish,
    matched_stop: null,
  }),
  chunkChoice: (piece, finish) => ({
    index: 0,
    delta: piece === null ? {} : { content: piece },
    logprobs: null,
    finish_reason: finish,
    matched_stop: null,
  }),
  roleChoice: { index: 0, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null, matched_stop: null },
};

const COMPLETION: Shape = {
  object: 'text_completion',
  chunkObject: 'text_completion',
  choice: (text, finish) => ({ index: 0, text, logprobs: null, finish_reason: finish, matched_stop: null }),
  chunkChoice: (piece, finish) => ({ index: 0, text: piece ?? '', logprobs: null, finish_reason: finish, matched_stop: null }),
  roleChoice: null,
};

async function openaiGenerate(sim: Sim, call: Call, shape: Shape, body: Body, prompt: number): Promise<void> {
  const n = tokenBudget(body, ['max_tokens', 'max_completion_tokens'], 16);
  if (typeof n === 'string') return sendError(call.res, 400, n);
  const model = typeof body['model'] === 'string' ? body['model'] : sim.args.servedName;
  const id = randomBytes(16).toString('hex');
  const created = Math.floor(Date.now() / 1000);
  const head = { id, object: shape.chunkObject, created, model };
  const usage = (completion: number): Record<string, unknown> => ({
    prompt_tokens: prompt,
    total_tokens: prompt + completion,
    completion_tokens: completion,
    prompt_tokens_details: null,
  });
  const res = call.res;

  if (body['stream'] === true) {
    const options = body['stream_options'] as { include_usage?: unknown } | null | undefined;
    const includeUsage = options?.include_usage === true;
    startStream(res);
    const outcome = await generate(
      sim,
      call,
      n,
      (token, i) => sendEvent(res, { ...head, choices: [shape.chunkChoice(i < n ? `${token} ` : token, null)] }),
      () => {
        if (shape.roleChoice !== null) sendEvent(res, { ...head, choices: [shape.roleChoice] });
      },
    );
    if (outcome === null) return done(res);
    sendEvent(res, { ...head, choices: [shape.chunkChoice(null, outcome.finish)] });
    if (includeUsage) sendEvent(res, { ...head, choices: [], usage: usage(outcome.tokens.length) });
    return done(res);
  }

  const outcome = await generate(sim, call, n, () => undefined);
  if (outcome === null) return;
  sendJson(res, 200, {
    id,
    object: shape.object,
    created,
    model,
    choices: [shape.choice(outcome.tokens.join(' '), outcome.finish)],
    usage: usage(outcome.tokens.length),
  });
}

export async function chatCompletions(sim: Sim, call: Call): Promise<void> {
  const body = objectBody(call);
  if (body === null) return;
  const messages = body['messages'];
  if (!Array.isArray(messages) || messages.length === 0) return sendError(call.res, 400, missing('messages'));
  await openaiGenerate(sim, call, CHAT, body, Math.max(1, promptTokens(messages)));
}

export async function completions(sim: Sim, call: Call): Promise<void> {
  const body = objectBody(call);
  if (body === null) return;
  const prompt = body['prompt'];
  if (prompt === undefined || prompt === null) return sendError(call.res, 400, missing('prompt'));
  await openaiGenerate(sim, call, COMPLETION, body, Math.max(1, promptTokens(prompt)));
}

/** /v1/embeddings: `input` a string, a list of strings, or token ids (one list or a list of
 * lists); one forward pass, so it runs like a 1-token generation (pause gate, hazard 2). */
export async function embeddings(sim: Sim, call: Call): Promise<void> {
  const body = objectBody(call);
  if (body === null) return;
  const input = body['input'];
  if (input === undefined || input === null) return sendError(call.res, 400, missing('input'));
  const items: unknown[] = Array.isArray(input) && input.length > 0 && typeof input[0] !== 'number' ? input : [input];
  const format = body['encoding_format'] ?? 'float';
  if (format !== 'float' && format !== 'base64') return sendError(call.res, 400, `encoding_format must be 'float' or 'base64'`);
  const outcome = await generate(sim, call, 1, () => undefined);
  if (outcome === null) return;
  const data = items.map((item, index) => {
    const vector = embeddingOf(sim.args.servedName, typeof item === 'string' ? item : JSON.stringify(item));
    const embedding = format === 'float' ? vector : Buffer.from(new Float32Array(vector).buffer).toString('base64');
    return { object: 'embedding', embedding, index };
  });
  const prompt = Math.max(1, promptTokens(input));
  sendJson(call.res, 200, {
    object: 'list',
    data,
    model: typeof body['model'] === 'string' ? body['model'] : sim.args.servedName,
    usage: { prompt_tokens: prompt, total_tokens: prompt, completion_tokens: 0, prompt_tokens_details: null },
  });
}

/** Native /generate: {"text"|"input_ids", "sampling_params": {"max_new_tokens"}, "stream"}. */
export async function nativeGenerate(sim: Sim, call: Call): Promise<void> {
  const body = objectBody(call);
  if (body === null) return;
  const input = body['text'] ?? body['input_ids'];
  if (input === undefined || input === null) return sendError(call.res, 400, 'Either text or input_ids should be provided.');
  const params = (body['sampling_params'] ?? {}) as Body;
  const n = tokenBudget(params, ['max_new_tokens'], 128);
  if (typeof n === 'string') return sendError(call.res, 400, n);
  const prompt = Math.max(1, promptTokens(input));
  const res = call.res;
  const meta = (rid: string, tokens: number, finish: string | null): Record<string, unknown> => ({
    id: rid,
    finish_reason: finish === null ? null : { type: finish, length: tokens },
    prompt_tokens: prompt,
    completion_tokens: tokens,
    cached_tokens: 0,
  });

  if (body['stream'] === true) {
    startStream(res);
    const texts: string[] = [];
    let rid = '';
    const outcome = await generate(
      sim,
      call,
      n,
      (token) => {
        texts.push(token);
        // Native streams carry the cumulative text so far.
        sendEvent(res, { text: texts.join(' '), meta_info: meta(rid, texts.length, null) });
      },
      (id) => {
        rid = id;
      },
    );
    if (outcome !== null) sendEvent(res, { text: texts.join(' '), meta_info: meta(outcome.rid, texts.length, outcome.finish) });
    return done(res);
  }

  const outcome = await generate(sim, call, n, () => undefined);
  if (outcome === null) return;
  sendJson(res, 200, { text: outcome.tokens.join(' '), meta_info: meta(outcome.rid, outcome.tokens.length, outcome.finish) });
}
