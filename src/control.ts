// The control (admin) API under /admin/: list the models with their details, wake, sleep or
// restart one, follow one's log as server-sent events, and follow the event feed (switches,
// phases, requests) that the dashboard draws. Model ids may contain `/`, so the model routes
// take the rest of the path and split the action off its end.
import type Router from '@koa/router';
import type Koa from 'koa';
import type { EventFeed, FeedEvent } from './event-feed.js';
import { invalidParameter, modelNotFound, routeNotFound } from './errors.js';
import { respondJson } from './json-response.js';
import { log } from './log.js';
import { tailFile } from './log-tail.js';
import { clientGoneSignal, SSE_HEADERS } from './proxy.js';
import { ClientGone, type ModelDetail, type Scheduler } from './scheduler.js';

const ACTIONS = ['wake', 'sleep', 'restart'] as const;
type Action = (typeof ACTIONS)[number];

const DEFAULT_TAIL = 100;
const MAX_TAIL = 10_000;
const LOG_POLL_MS = 200;
const HEARTBEAT_MS = 15_000;
const MAX_EVENT_BACKLOG = 4 * 1024 * 1024;

export interface ControlOptions {
  /** How often the log stream looks for new lines. */
  readonly logPollMs?: number;
}

function detailOf(scheduler: Scheduler, id: string): ModelDetail {
  const detail = scheduler.details().find((m) => m.id === id);
  if (!detail) throw modelNotFound(id);
  return detail;
}

/** Adds the control routes; `guard` decides who may call them. */
export function addControlRoutes(
  router: Router, scheduler: Scheduler, feed: EventFeed, guard: Koa.Middleware, opts: ControlOptions = {},
): void {
  router.get('/admin/models', guard, (ctx) => {
    respondJson(ctx, { object: 'list', data: scheduler.details() });
  });

  router.get('/admin/events', guard, (ctx) => streamEvents(ctx, feed));

  router.get('/admin/models/*rest', guard, async (ctx) => {
    const rest = String(ctx.params.rest);
    if (rest.endsWith('/logs') && scheduler.has(rest.slice(0, -'/logs'.length))) {
      await streamLog(ctx, detailOf(scheduler, rest.slice(0, -'/logs'.length)), opts.logPollMs ?? LOG_POLL_MS);
      return;
    }
    respondJson(ctx, detailOf(scheduler, rest));
  });

  router.post('/admin/models/*rest', guard, async (ctx) => {
    const rest = String(ctx.params.rest);
    const cut = rest.lastIndexOf('/');
    const action = rest.slice(cut + 1);
    const id = rest.slice(0, Math.max(cut, 0));
    if (cut < 0 || !(ACTIONS as readonly string[]).includes(action)) throw routeNotFound(ctx.method, ctx.path);
    if (!scheduler.has(id)) throw modelNotFound(id);
    const started = Date.now();
    log.info(`control: ${action} ${id}`);
    try {
      await perform(ctx, scheduler, action as Action, id);
    } catch (err) {
      if (err instanceof ClientGone) {
        ctx.respond = false;
        log.info(`control: ${action} ${id}: client left after ${Date.now() - started} ms`);
        return;
      }
      throw err;
    }
    log.info(`control: ${action} ${id} done in ${Date.now() - started} ms`);
    respondJson(ctx, detailOf(scheduler, id));
  });
}

async function perform(ctx: Koa.Context, scheduler: Scheduler, action: Action, id: string): Promise<void> {
  switch (action) {
    case 'wake':
      return scheduler.preload(id, clientGoneSignal(ctx));
    case 'sleep':
      return scheduler.sleep(id);
    case 'restart':
      return scheduler.restart(id);
  }
}

function tailParam(ctx: Koa.Context): number {
  const raw = ctx.query.tail;
  if (raw === undefined) return DEFAULT_TAIL;
  const n = Number(raw);
  if (typeof raw !== 'string' || !/^\d+$/.test(raw) || n > MAX_TAIL) {
    throw invalidParameter('tail', `expected an integer from 0 to ${MAX_TAIL}`);
  }
  return n;
}

/** An open server-sent event stream (the answer is written directly, not through Koa): the
 * headers go out with the first write, so after whatever the caller reads before writing. */
interface EventStream {
  /** Writes unless the client has gone. */
  write(text: string): void;
  end(): void;
  /** Bytes written but not yet taken by the client. */
  readonly backlog: number;
  /** Resolves when the client has gone (or the stream was ended). */
  readonly closed: Promise<void>;
}

function openEventStream(ctx: Koa.Context, intro: string): EventStream {
  ctx.respond = false;
  const res = ctx.res;
  res.writeHead(200, SSE_HEADERS);
  let pending = intro;
  const write = (text: string): void => {
    if (res.destroyed || res.writableEnded) return;
    res.write(pending + text);
    pending = '';
  };
  // A comment line now and then keeps proxies from closing a quiet stream.
  const heartbeat = setInterval(() => write(': keepalive\n\n'), HEARTBEAT_MS);
  const closed = new Promise<void>((resolve) => res.once('close', resolve)).then(() => clearInterval(heartbeat));
  return {
    write,
    end: () => {
      if (!res.writableEnded) res.end();
    },
    get backlog() {
      return res.writableLength;
    },
    closed,
  };
}

/** An SSE tail of the model's stdout or stderr log: its last lines, then each new one, one
 * `data:` event per line, until the client disconnects. */
async function streamLog(ctx: Koa.Context, detail: ModelDetail, pollMs: number): Promise<void> {
  const which = ctx.query.stream ?? 'stderr';
  if (which !== 'stderr' && which !== 'stdout') throw invalidParameter('stream', 'expected stderr or stdout');
  const lines = tailParam(ctx);
  const path = which === 'stdout' ? detail.stdout_log : detail.stderr_log;

  // The existing lines are read before anything is written: a client that has the answer knows
  // every line written from then on will come as new.
  const stream = openEventStream(ctx, `: ${which} log of ${detail.id}\n\n`);
  let stop: () => void;
  try {
    stop = await tailFile(path, { lines, pollMs, onLine: (line) => stream.write(`data: ${line}\n\n`) });
  } catch (err) {
    stream.write(`: cannot read the log: ${err instanceof Error ? err.message : String(err)}\n\n`);
    stream.end();
    return;
  }
  stream.write('');
  log.debug(`control: following ${which} log of ${detail.id}`);
  await stream.closed;
  stop();
  log.debug(`control: log stream of ${detail.id} closed`);
}

/** The dashboard's feed as SSE: the kept history, then every new event, each as one `data:`
 * JSON event with its `seq` as the event id. */
async function streamEvents(ctx: Koa.Context, feed: EventFeed): Promise<void> {
  const stream = openEventStream(ctx, ': sglangmux events\n\n');
  const send = (e: FeedEvent): void => {
    // A client that stops reading is let go rather than buffered for without bound; a page
    // that reconnects gets the history again.
    if (stream.backlog > MAX_EVENT_BACKLOG) return stream.end();
    stream.write(`id: ${e.seq}\ndata: ${JSON.stringify(e)}\n\n`);
  };
  for (const e of feed.history()) send(e);
  stream.write('');
  const unsubscribe = feed.subscribe(send);
  await stream.closed;
  unsubscribe();
}
