// The HTTP frontend: Koa middleware in the order a request meets it. Errors of any route leave
// in the OpenAI error shape, each logged once.
import Router from '@koa/router';
import Koa from 'koa';
import { cors, requireAdmin, requireAdminPage, requireKey } from './auth.js';
import { addControlRoutes } from './control.js';
import { addDashboardRoutes } from './dashboard.js';
import { requestReports, type EventFeed } from './event-feed.js';
import { ApiError, bodyTooLarge, invalidJson, logApiError, modelNotFound, routeNotFound } from './errors.js';
import { respondJson } from './json-response.js';
import { log } from './log.js';
import type { Metrics } from './metrics.js';
import { inferenceHandler } from './proxy.js';
import type { ModelState, ModelStatus, Scheduler } from './scheduler.js';

export const BODY_LIMIT = '32mb';
/** The same limit in bytes, for koa-body: a string would be parsed again on every request. */
const BODY_LIMIT_BYTES = 32 * 1024 * 1024;

export interface FrontendOptions {
  readonly upstreamTimeoutMs: number;
  /** SSE comments while a streaming request waits for its model, every this many ms; 0: off. */
  readonly sseKeepaliveMs: number;
  /** Required as a bearer token on inference routes; null: open. */
  readonly apiKey: string | null;
  /** Required as a bearer token on the control API and /metrics; null: loopback only. */
  readonly adminApiKey: string | null;
  /** The address the daemon listens on (decides loopback-only control without an admin key). */
  readonly host: string;
  /** Origins answered with CORS headers (`*`: any); empty: no CORS. */
  readonly corsOrigins: readonly string[];
  readonly metrics: Metrics;
  /** What the dashboard's timeline shows; the proxy adds each finished request to it. */
  readonly events: EventFeed;
}

/** The state shown in the OpenAI model list: the scheduler's eight collapsed into five. */
export type PublicState = 'starting' | 'awake' | 'asleep' | 'switching' | 'failed';

export function publicState(state: ModelState): PublicState {
  switch (state) {
    case 'starting': return 'starting';
    case 'awake': return 'awake';
    case 'draining': case 'sleeping': case 'waking': return 'switching';
    case 'asleep': case 'stopped': return 'asleep';
    case 'failed': return 'failed';
  }
}

/** Turns any thrown error into an OpenAI-shaped answer. */
const errorShape: Koa.Middleware = async (ctx, next) => {
  try {
    await next();
  } catch (err) {
    const apiError = err instanceof ApiError
      ? err
      : new ApiError(500, `internal error: ${err instanceof Error ? err.message : String(err)}`, 'server_error');
    logApiError(ctx.method, ctx.path, apiError);
    if (apiError.status === 500) log.debug(err instanceof Error ? (err.stack ?? '') : '');
    ctx.status = apiError.status;
    if (apiError.retryAfterSecs !== null) ctx.set('Retry-After', String(apiError.retryAfterSecs));
    respondJson(ctx, apiError.toBody());
  }
};

/** Parses JSON whatever the Content-Type says (`curl -d` sends form encoding), within the limit. */
let parseJson: Koa.Middleware | null = null;
let loadingParser: Promise<Koa.Middleware> | null = null;

/**
 * Loads koa-body and builds the parser, once, for the first request with a body. koa-body brings
 * zod (it validates its options), formidable and iconv-lite: half of the daemon's code, which
 * /health and the start need none of (the build keeps it out of the start's way too:
 * scripts/lazy-parts.mjs). Loaded then, it delays that one request by a few tens of ms, and that
 * request comes after a model is up anyway.
 */
function loadBodyParser(): Promise<Koa.Middleware> {
  loadingParser ??= import('koa-body').then(({ koaBody }) => (parseJson = koaBody({
    json: true,
    jsonStrict: false,
    jsonLimit: BODY_LIMIT_BYTES,
    urlencoded: false,
    text: false,
    multipart: false,
    includeUnparsed: true,
    onError: (err, ctx) => {
      const status = (err as Error & { status?: number }).status;
      // Read off and drop the rest of the body (a chunked body is left half-read at the limit):
      // otherwise the client's next request on this keep-alive connection waits behind it.
      ctx.req.resume();
      throw status === 413 ? bodyTooLarge(BODY_LIMIT) : invalidJson(err.message);
    },
  })));
  return loadingParser;
}

const jsonBody: Koa.Middleware = (ctx, next) => {
  if (!ctx.is('application/json')) ctx.req.headers['content-type'] = 'application/json';
  if (parseJson) return parseJson(ctx, next);
  return loadBodyParser().then((parse) => parse(ctx, next));
};

export function createApp(scheduler: Scheduler, opts: FrontendOptions): Koa {
  const app = new Koa();
  // The inference route has a router of its own, ahead of the other routes: the request that
  // comes thousands of times a second is matched against one pattern, not against every route.
  const inferenceRouter = new Router();
  const router = new Router();
  const created = Math.floor(Date.now() / 1000);
  const inference = requireKey(opts.apiKey, 'API key');
  const admin = requireAdmin(opts.adminApiKey, opts.host);

  router.get('/health', (ctx) => {
    respondJson(ctx, { status: 'ok', ...scheduler.status() });
  });

  const modelObject = (m: ModelStatus): object =>
    ({ id: m.id, object: 'model', created, owned_by: 'sglangmux', state: publicState(m.state), gpus: m.gpus, gpu_share: m.gpu_share });

  router.get(['/models', '/v1/models'], inference, (ctx) => {
    respondJson(ctx, { object: 'list', data: scheduler.status().models.map(modelObject) });
  });

  // Every POST /v1/* naming a configured model goes to the same path on that model's server.
  const requests = requestReports(opts.metrics, opts.events);
  inferenceRouter.post('/v1/*path', inference, jsonBody, inferenceHandler(scheduler, { ...opts, metrics: requests }));

  router.get('/v1/models/*id', inference, (ctx) => {
    const id = String(ctx.params.id);
    const model = scheduler.status().models.find((m) => m.id === id);
    if (!model) throw modelNotFound(id);
    respondJson(ctx, modelObject(model));
  });

  router.get('/metrics', admin, async (ctx) => {
    const { contentType, text } = await opts.metrics.render();
    ctx.type = contentType;
    ctx.body = text;
  });

  addControlRoutes(router, scheduler, opts.events, admin);
  addDashboardRoutes(router, requireAdminPage(opts.adminApiKey, opts.host));

  app.use(errorShape);
  if (opts.corsOrigins.length > 0) app.use(cors(opts.corsOrigins));
  app.use(inferenceRouter.routes());
  app.use(router.routes());
  app.use((ctx) => {
    throw routeNotFound(ctx.method, ctx.path);
  });
  return app;
}
