// One inference request, route to upstream and back: validate the body, take a lease on the
// model (waiting while the scheduler switches), forward the exact bytes, and pass the answer
// through: event streams relayed chunk by chunk as they arrive, JSON answers checked and
// returned as sent.
//
// A streaming request that waits for its model may get its 200 and event-stream headers early,
// with SSE comment lines while it waits (--sse-keepalive-secs). From then on the answer can only
// be events: the upstream's events follow on the same response, and any failure (the wait, the
// upstream call, a non-stream upstream answer) becomes a final `data: {"error":…}` event.
import type Koa from 'koa';
import { frameWriter } from './frame-writer.js';
import {
  ApiError, invalidUpstreamResponse, logApiError, missingModel, modelNotFound, upstreamTimeout, upstreamUnreachable,
} from './errors.js';
import { log } from './log.js';
import type { RequestMetrics, UpstreamErrorKind } from './metrics.js';
import { ClientGone, type Lease, type Scheduler } from './scheduler.js';
import { forward as send, UpstreamTimeout, type Answer, type FrameSource } from './upstream.js';

export interface ProxyOptions {
  readonly upstreamTimeoutMs: number;
  /** While a streaming request waits for its model, an SSE comment every this many ms; 0: off. */
  readonly sseKeepaliveMs: number;
  readonly metrics: RequestMetrics;
}

/** Status recorded for a request whose client left before it was answered (nginx's convention). */
const CLIENT_CLOSED = 499;

/** Headers of every event stream the daemon sends (answers and log tails): not cached, not
 * buffered by a proxy in front. */
export const SSE_HEADERS = { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', 'x-accel-buffering': 'no' };

/** Aborted when the client goes away before its answer was fully sent: stops a wait for a model
 * or the upstream call made for it. */
export function clientGoneSignal(ctx: Koa.Context): AbortSignal {
  const client = new AbortController();
  ctx.res.once('close', () => {
    if (!ctx.res.writableFinished) client.abort();
  });
  return client.signal;
}

const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/** How a request ended: the status for the metrics and a short note for the log line. */
interface Outcome {
  readonly status: number;
  readonly note: string;
}

/** One request on its way through: what forward() and its helpers need. */
interface Call {
  readonly ctx: Koa.Context;
  readonly model: string;
  readonly route: string;
  readonly stream: boolean;
  readonly started: number;
  readonly signal: AbortSignal;
  readonly metrics: RequestMetrics;
  /** The 200 and event-stream headers are already sent (the request waited with keepalives). */
  committed: boolean;
  firstByteSeen: boolean;
}

export function inferenceHandler(scheduler: Scheduler, opts: ProxyOptions): Koa.Middleware {
  return async (ctx) => {
    const body: unknown = ctx.request.body;
    const model = isRecord(body) ? body.model : undefined;
    if (typeof model !== 'string') throw missingModel();
    if (!scheduler.has(model)) throw modelNotFound(model);
    const raw = Buffer.from(ctx.request.rawBody ?? JSON.stringify(body), 'utf8');

    const call: Call = {
      ctx, model, route: ctx.path, stream: isRecord(body) && body.stream === true, started: Date.now(),
      signal: clientGoneSignal(ctx), metrics: opts.metrics, committed: false, firstByteSeen: false,
    };
    let status = 500;
    try {
      status = await serve(scheduler, opts, call, raw);
    } catch (err) {
      status = err instanceof ApiError ? err.status : 500;
      throw err;
    } finally {
      opts.metrics.request({ model, route: call.route, status, ms: Date.now() - call.started });
    }
  };
}

/** Waits for the model, forwards, answers; returns the status to record. */
async function serve(scheduler: Scheduler, opts: ProxyOptions, call: Call, raw: Buffer): Promise<number> {
  const { ctx, model } = call;
  const waiting = call.stream && opts.sseKeepaliveMs > 0 ? new WaitingStream(call, opts.sseKeepaliveMs) : null;
  let lease: Lease;
  try {
    lease = await scheduler.acquire(model, call.signal);
  } catch (err) {
    if (err instanceof ClientGone) {
      ctx.respond = false;
      log.info(`${ctx.method} ${ctx.path} model=${model}: client left after waiting ${Date.now() - call.started} ms`);
      return CLIENT_CLOSED;
    }
    if (!call.committed) throw err;
    return endWithError(call, err instanceof ApiError ? err : new ApiError(500, `internal error: ${String(err)}`, 'server_error'));
  } finally {
    waiting?.stop();
  }
  const route = `${ctx.method} ${ctx.path} model=${model} stream=${call.stream} -> ${lease.server.address}`;
  try {
    const outcome = await forward(call, lease, raw, opts.upstreamTimeoutMs);
    log.info(`${route}: ${outcome.note} (waited ${lease.waitedMs} ms, ${Date.now() - call.started} ms total)`);
    return outcome.status;
  } finally {
    // Only now has the upstream side really ended: the model may be drained.
    lease.release();
  }
}

/**
 * The keepalive of a streaming request waiting for its model: every `everyMs` an SSE comment,
 * the 200 and event-stream headers going out with the first. A wait shorter than `everyMs`
 * changes nothing.
 */
class WaitingStream {
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly call: Call, everyMs: number) {
    this.timer = setInterval(() => this.tick(), everyMs);
  }

  stop(): void {
    clearInterval(this.timer);
  }

  private tick(): void {
    const { ctx } = this.call;
    if (ctx.res.destroyed || ctx.res.writableEnded) return;
    if (!this.call.committed) {
      this.call.committed = true;
      ctx.respond = false;
      ctx.res.writeHead(200, SSE_HEADERS);
    }
    ctx.res.write(`: sglangmux waiting for ${this.call.model}\n\n`);
  }
}

/** Forwards the request and writes the answer. */
async function forward(call: Call, lease: Lease, body: Buffer, timeoutMs: number): Promise<Outcome> {
  const { ctx, signal } = call;
  let answer: Answer;
  try {
    answer = await send(lease.server, ctx.path, { body, signal, stream: call.stream, timeoutMs });
  } catch (err) {
    if (signal.aborted) return { status: CLIENT_CLOSED, note: 'client left before the answer' };
    return fail(call, upstreamFailure(call, err));
  }
  const { status, contentType } = answer;

  if (answer.kind === 'frames') {
    if (!call.committed) {
      ctx.respond = false;
      ctx.res.writeHead(status, { ...SSE_HEADERS, 'content-type': contentType });
      ctx.res.flushHeaders();
      call.committed = true;
    }
    const end = await relay(call, answer.body);
    if (end === 'client left') return { status: CLIENT_CLOSED, note: `${status} stream, client left` };
    if (end === 'done') return { status, note: `${status} stream` };
    log.warn(`stream from ${lease.server.spec.name} broke: ${end.message}`);
    return { status: end.status, note: `${status} stream, upstream broke` };
  }

  const raw = answer.body;
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw.toString('utf8'));
  } catch {
    call.metrics.upstreamError({ model: call.model, kind: 'invalid_response' });
    return fail(call, invalidUpstreamResponse(`status ${status}, ${contentType || 'no content type'}: ${raw.toString('utf8').slice(0, 200)}`));
  }
  firstByte(call);
  if (call.committed) {
    // The 200 went out while waiting: the answer can only be an event now. An error answer
    // becomes an error event in the OpenAI shape; anything else is passed as one data event.
    const event = status === 200 ? raw.toString('utf8') : JSON.stringify(errorEventBody(parsed, status));
    ctx.res.end(`data: ${event}\n\n`);
    return { status, note: `${status} JSON, sent as an event after waiting` };
  }
  ctx.status = status;
  ctx.type = 'application/json';
  ctx.body = raw;
  return { status, note: String(status) };
}

/** An error before the answer began: thrown (answered by the error middleware) unless the
 * event-stream headers are already out, in which case it becomes the stream's last event. */
function fail(call: Call, err: ApiError): Outcome {
  if (!call.committed) throw err;
  return { status: endWithError(call, err), note: `${err.status} as an error event: ${err.message}` };
}

function endWithError(call: Call, err: ApiError): number {
  logApiError(call.ctx.method, call.ctx.path, err);
  if (!call.ctx.res.destroyed) call.ctx.res.end(`data: ${JSON.stringify(err.toBody())}\n\n`);
  return err.status;
}

/** An upstream's non-200 JSON answer in the OpenAI error shape (SGLang's own errors carry
 * message/type/code at the top level; FastAPI's carry `detail`). */
function errorEventBody(parsed: unknown, status: number): { error: unknown } {
  if (isRecord(parsed) && isRecord(parsed.error)) return { error: parsed.error };
  const r = isRecord(parsed) ? parsed : {};
  const message = typeof r.message === 'string' ? r.message
    : typeof r.detail === 'string' ? r.detail
      : JSON.stringify(parsed);
  return {
    error: {
      message,
      type: typeof r.type === 'string' ? r.type : 'upstream_error',
      param: typeof r.param === 'string' ? r.param : null,
      code: typeof r.code === 'string' || typeof r.code === 'number' ? r.code : status,
    },
  };
}

function firstByte(call: Call): void {
  if (call.firstByteSeen) return;
  call.firstByteSeen = true;
  call.metrics.firstByte({ model: call.model, route: call.route, ms: Date.now() - call.started });
}

/** How a relayed stream ended: fully, by the client leaving, or by an upstream failure. */
type StreamEnd = 'done' | 'client left' | ApiError;

/**
 * Passes the upstream's frames through as they come: each run is written the moment it arrives
 * (no coalescing of events), and the upstream is paused while the client's socket buffer is
 * full. If the upstream breaks mid-stream (the server crashed, a timeout), the client gets a
 * final `data: {"error":…}` event, the way SGLang itself reports errors once the status is sent,
 * instead of a silently truncated stream. A plain event relay rather than stream.pipeline: this
 * runs per token for every open stream, and each stream layer costs CPU per event.
 */
function relay(call: Call, upstream: FrameSource): Promise<StreamEnd> {
  const res = call.ctx.res;
  const out = frameWriter(res);
  return new Promise((resolve) => {
    if (call.signal.aborted) return resolve('client left');
    const resume = (): void => {
      upstream.resume();
    };
    let ended = false;
    const clientLeft = (): void => finish('client left');
    const finish = (end: StreamEnd): void => {
      if (ended) return;
      ended = true;
      out.drains.off('drain', resume);
      call.signal.removeEventListener('abort', clientLeft);
      resolve(end);
    };
    out.drains.on('drain', resume);
    call.signal.addEventListener('abort', clientLeft);
    upstream.start((frames) => {
      firstByte(call);
      if (!out.write(frames)) upstream.pause();
    }, (err) => {
      if (err === null) {
        res.end();
        return finish('done');
      }
      if (call.signal.aborted) return finish('client left');
      const failure = upstreamFailure(call, err, 'stream_broken');
      res.end(`data: ${JSON.stringify(failure.toBody())}\n\n`);
      finish(failure);
    });
  });
}

/** The client-facing error for an upstream failure, counted in the metrics. */
function upstreamFailure(call: Call, err: unknown, otherKind: UpstreamErrorKind = 'unreachable'): ApiError {
  const timedOut = err instanceof UpstreamTimeout;
  call.metrics.upstreamError({ model: call.model, kind: timedOut ? 'timeout' : otherKind });
  if (timedOut) return upstreamTimeout();
  const e = err as NodeJS.ErrnoException;
  return upstreamUnreachable(e.code ? `${e.code} ${e.message}` : String(e.message ?? err));
}
