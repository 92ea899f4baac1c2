// The HTTP frontend: Koa middleware in the order a request meets it. Errors of any route leave
// in the OpenAI error shape, each logged once.
import Router from '@koa/router';
import Koa from 'koa';
import { koaBody } from 'koa-body';
import { ApiError, bodyTooLarge, invalidJson, routeNotFound } from './errors.js';
import { log } from './log.js';
import { inferenceHandler } from './proxy.js';
import type { Scheduler } from './scheduler.js';

export const BODY_LIMIT = '32mb';

export interface FrontendOptions {
  readonly upstreamTimeoutMs: number;
}

/** Turns any thrown error into an OpenAI-shaped answer. */
const errorShape: Koa.Middleware = async (ctx, next) => {
  try {
    await next();
  } catch (err) {
    const apiError = err instanceof ApiError
      ? err
      : new ApiError(500, `internal error: ${err instanceof Error ? err.message : String(err)}`, 'server_error');
    const line = `${ctx.method} ${ctx.path} -> ${apiError.status}: ${apiError.message}`;
    if (apiError.status >= 500) log.warn(line);
    else log.info(line);
    if (apiError.status === 500) log.debug(err instanceof Error ? (err.stack ?? '') : '');
    ctx.status = apiError.status;
    ctx.body = apiError.toBody();
  }
};

/** Parses JSON whatever the Content-Type says (`curl -d` sends form encoding), within the limit. */
const jsonBody: Koa.Middleware = async (ctx, next) => {
  if (!ctx.is('application/json')) ctx.req.headers['content-type'] = 'application/json';
  await koaBody({
    json: true,
    jsonStrict: false,
    jsonLimit: BODY_LIMIT,
    urlencoded: false,
    text: false,
    multipart: false,
    includeUnparsed: true,
    onError: (err) => {
      const status = (err as Error & { status?: number }).status;
      throw status === 413 ? bodyTooLarge(BODY_LIMIT) : invalidJson(err.message);
    },
  })(ctx, next);
};

export function createApp(scheduler: Scheduler, opts: FrontendOptions): Koa {
  const app = new Koa();
  const router = new Router();
  const created = Math.floor(Date.now() / 1000);

  router.get('/health', (ctx) => {
    ctx.body = { status: 'ok', ...scheduler.status() };
  });

  router.get(['/models', '/v1/models'], (ctx) => {
    ctx.body = {
      object: 'list',
      data: scheduler.status().models.map((m) => ({ id: m.id, object: 'model', created, owned_by: 'sglangmux' })),
    };
  });

  router.post(['/v1/chat/completions', '/v1/completions'], jsonBody, inferenceHandler(scheduler, opts));

  app.use(errorShape);
  app.use(router.routes());
  app.use((ctx) => {
    throw routeNotFound(ctx.method, ctx.path);
  });
  return app;
}
