// The control (admin) API under /admin/: list the models with their details, wake, sleep or
// restart one, and follow one's log as server-sent events. Model ids may contain `/`, so the
// routes take the rest of the path and split the action off its end.
import type Router from '@koa/router';
import type Koa from 'koa';
import { invalidParameter, modelNotFound, routeNotFound } from './errors.js';
import { log } from './log.js';
import { tailFile } from './log-tail.js';
import { clientGoneSignal, SSE_HEADERS } from './proxy.js';
import { ClientGone, type ModelDetail, type Scheduler } from './scheduler.js';

const ACTIONS = ['wake', 'sleep', 'restart'] as const;
type Action = (typeof ACTIONS)[number];

const DEFAULT_TAIL = 100;
const MAX_TAIL = 10_000;
const LOG_POLL_MS = 200;
/** A comment line now and then keeps proxies from closing a quiet log stream. */
const LOG_HEARTBEAT_MS = 15_000;

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
export function addControlRoutes(router: Router, scheduler: Scheduler, guard: Koa.Middleware, opts: ControlOptions = {}): void {
  router.get('/admin/models', guard, (ctx) => {
    ctx.body = { object: 'list', data: scheduler.details() };
  });

  router.get('/admin/models/*rest', guard, async (ctx) => {
    const rest = String(ctx.params.rest);
    if (rest.endsWith('/logs') && scheduler.has(rest.slice(0, -'/logs'.length))) {
      await streamLog(ctx, detailOf(scheduler, rest.slice(0, -'/logs'.length)), opts.logPollMs ?? LOG_POLL_MS);
      return;
    }
    ctx.body = detailOf(scheduler, rest);
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
    ctx.body = detailOf(scheduler, id);
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

/** An SSE tail of the model's stdout or stderr log: its last lines, then each new one, one
 * `data:` event per line, until the client disconnects. */
async function streamLog(ctx: Koa.Context, detail: ModelDetail, pollMs: number): Promise<void> {
  const which = ctx.query.stream ?? 'stderr';
  if (which !== 'stderr' && which !== 'stdout') throw invalidParameter('stream', 'expected stderr or stdout');
  const lines = tailParam(ctx);
  const path = which === 'stdout' ? detail.stdout_log : detail.stderr_log;

  ctx.respond = false;
  const res = ctx.res;
  const closed = new Promise<void>((resolve) => res.once('close', resolve));
  // The headers go out with the first write: after the existing lines were read, so a client
  // that has the answer knows every line written from then on will come as new.
  res.writeHead(200, SSE_HEADERS);
  let intro = `: ${which} log of ${detail.id}\n\n`;
  const write = (text: string): void => {
    if (res.destroyed || res.writableEnded) return;
    res.write(intro + text);
    intro = '';
  };
  let stop: () => void;
  try {
    stop = await tailFile(path, { lines, pollMs, onLine: (line) => write(`data: ${line}\n\n`) });
  } catch (err) {
    write(`: cannot read the log: ${err instanceof Error ? err.message : String(err)}\n\n`);
    res.end();
    return;
  }
  write('');
  const heartbeat = setInterval(() => write(': keepalive\n\n'), LOG_HEARTBEAT_MS);
  log.debug(`control: following ${which} log of ${detail.id}`);
  await closed;
  stop();
  clearInterval(heartbeat);
  log.debug(`control: log stream of ${detail.id} closed`);
}
