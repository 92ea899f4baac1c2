// One inference request, route to upstream and back: validate the body, take a lease on the
// model (waiting while the scheduler switches), forward the exact bytes, and pass the answer
// through: event streams piped as they arrive, JSON answers checked and returned as sent.
import type { IncomingMessage } from 'node:http';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type Koa from 'koa';
import { TimeoutError, type Request } from 'got';
import {
  type ApiError, invalidUpstreamResponse, missingModel, modelNotFound, upstreamTimeout, upstreamUnreachable,
} from './errors.js';
import { log } from './log.js';
import { ClientGone, type Lease, type Scheduler } from './scheduler.js';

export interface ProxyOptions {
  readonly upstreamTimeoutMs: number;
}

const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

export function inferenceHandler(scheduler: Scheduler, opts: ProxyOptions): Koa.Middleware {
  return async (ctx) => {
    const body: unknown = ctx.request.body;
    const model = isRecord(body) ? body.model : undefined;
    if (typeof model !== 'string') throw missingModel();
    if (!scheduler.has(model)) throw modelNotFound(model);
    const stream = isRecord(body) && body.stream === true;
    const raw = Buffer.from(ctx.request.rawBody ?? JSON.stringify(body), 'utf8');
    const started = Date.now();

    // The client may leave while waiting or mid-answer; that must stop the wait or the upstream call.
    const client = new AbortController();
    ctx.res.once('close', () => {
      if (!ctx.res.writableFinished) client.abort();
    });

    let lease: Lease;
    try {
      lease = await scheduler.acquire(model, client.signal);
    } catch (err) {
      if (!(err instanceof ClientGone)) throw err;
      ctx.respond = false;
      log.info(`${ctx.method} ${ctx.path} model=${model}: client left after waiting ${Date.now() - started} ms`);
      return;
    }
    const route = `${ctx.method} ${ctx.path} model=${model} stream=${stream} -> ${lease.server.address}`;
    try {
      const outcome = await forward(ctx, lease, raw, stream, client.signal, opts.upstreamTimeoutMs);
      log.info(`${route}: ${outcome} (waited ${lease.waitedMs} ms, ${Date.now() - started} ms total)`);
    } finally {
      // Only now has the upstream side really ended: the model may be drained.
      lease.release();
    }
  };
}

/** Forwards the request and writes the answer; returns a short outcome for the log line. */
async function forward(
  ctx: Koa.Context, lease: Lease, body: Buffer, stream: boolean, signal: AbortSignal, timeoutMs: number,
): Promise<string> {
  const upstream = lease.server.forward(ctx.path, { body, signal, stream, timeoutMs });
  let response: IncomingMessage;
  try {
    response = await responseOf(upstream);
  } catch (err) {
    if (signal.aborted) return 'client left before the answer';
    throw upstreamFailure(err);
  }
  const status = response.statusCode ?? 502;
  const contentType = String(response.headers['content-type'] ?? '');

  if (contentType.startsWith('text/event-stream')) {
    ctx.respond = false;
    ctx.res.writeHead(status, {
      'content-type': contentType,
      'cache-control': 'no-cache',
      'x-accel-buffering': 'no',
    });
    ctx.res.flushHeaders();
    let outcome = `${status} stream`;
    const onBreak = (err: Error): void => {
      log.warn(`stream from ${lease.server.spec.name} broke: ${err.message}`);
      outcome = `${status} stream, upstream broke`;
    };
    try {
      await pipeline(Readable.from(endWithErrorEvent(upstream, signal, onBreak)), ctx.res);
    } catch {
      return `${status} stream, client left`;
    }
    return outcome;
  }

  let raw: Buffer;
  try {
    raw = await collect(upstream);
  } catch (err) {
    if (signal.aborted) return 'client left before the answer';
    throw upstreamFailure(err);
  }
  try {
    JSON.parse(raw.toString('utf8'));
  } catch {
    throw invalidUpstreamResponse(`status ${status}, ${contentType || 'no content type'}: ${raw.toString('utf8').slice(0, 200)}`);
  }
  ctx.status = status;
  ctx.type = 'application/json';
  ctx.body = raw;
  return String(status);
}

/**
 * Passes the upstream's bytes through as they come. If the upstream breaks mid-stream (the
 * server crashed, a timeout), the client gets a final `data: {"error":…}` event, the way SGLang
 * itself reports errors once the status is sent, instead of a silently truncated stream.
 */
async function* endWithErrorEvent(
  upstream: Request, signal: AbortSignal, onBreak: (err: Error) => void,
): AsyncGenerator<Buffer> {
  try {
    for await (const chunk of upstream) yield chunk as Buffer;
  } catch (err) {
    if (signal.aborted) throw err;
    const failure = upstreamFailure(err) as ApiError;
    onBreak(failure);
    yield Buffer.from(`data: ${JSON.stringify(failure.toBody())}\n\n`);
  }
}

function responseOf(upstream: Request): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    upstream.once('response', resolve);
    upstream.once('error', reject);
  });
}

async function collect(upstream: Request): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of upstream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

function upstreamFailure(err: unknown): ApiError {
  if (err instanceof TimeoutError) return upstreamTimeout();
  const e = err as NodeJS.ErrnoException;
  return upstreamUnreachable(e.code ? `${e.code} ${e.message}` : String(e.message ?? err));
}
