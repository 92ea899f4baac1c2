// The uvicorn-like HTTP layer: routing with FastAPI's 404/405 bodies, the --api-key middleware,
// access log lines, and uvicorn's keep-alive behaviour (no Keep-Alive header, idle connections
// closed after SGLANG_SIM_KEEPALIVE_MS, default 5 s — hazard 7).
import { createServer, STATUS_CODES, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Sim } from './context.js';
import * as log from './log.js';

export interface Call {
  req: IncomingMessage;
  res: ServerResponse;
  path: string;
  method: string;
  /** Raw request body (empty for GET). */
  raw: string;
  query: URLSearchParams;
}

export type Handler = (call: Call) => Promise<void> | void;

export interface Route {
  path: string;
  methods: readonly string[];
  /** SGLang's ADMIN_OPTIONAL level: once --admin-api-key is set, only that key opens it. */
  admin: boolean;
  handler: Handler;
}

const BASE_HEADERS = { server: 'uvicorn' };

export function sendJson(res: ServerResponse, status: number, value: unknown): void {
  if (res.destroyed || res.headersSent) return;
  const body = JSON.stringify(value);
  res.writeHead(status, { ...BASE_HEADERS, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

export function sendText(res: ServerResponse, status: number, text: string): void {
  if (res.destroyed || res.headersSent) return;
  res.writeHead(status, { ...BASE_HEADERS, 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** Empty-bodied answer (/health). */
export function sendEmpty(res: ServerResponse, status: number): void {
  if (res.destroyed || res.headersSent) return;
  res.writeHead(status, { ...BASE_HEADERS, 'content-length': 0 });
  res.end();
}

/** SGLang's OpenAI-style error: HTTP status equals `code`. */
export function sendError(res: ServerResponse, status: number, message: string, type = 'BadRequestError'): void {
  sendJson(res, status, { object: 'error', message, type, param: null, code: status });
}

/** Starts a text/event-stream answer (headers go out at once, status already 200). */
export function startStream(res: ServerResponse): void {
  res.writeHead(200, { ...BASE_HEADERS, 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' });
  res.flushHeaders();
}

export function sendEvent(res: ServerResponse, data: unknown): void {
  if (res.destroyed || res.writableEnded) return;
  res.write(`data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`);
}

/** Parses a JSON request body the way SGLang's pydantic endpoints do: Content-Type must be
 * application/json and the body valid JSON, else a 400 error is sent and null returned.
 * An empty body parses as {} when `emptyOk` (old builds post no body to some routes). */
export function jsonBody(call: Call, emptyOk = false): { value: unknown } | null {
  if (emptyOk && call.raw.trim() === '') return { value: {} };
  const type = String(call.req.headers['content-type'] ?? '').toLowerCase();
  if (!type.includes('application/json')) {
    sendError(call.res, 400, `Content-Type must be application/json, got '${type}'`);
    return null;
  }
  try {
    return { value: JSON.parse(call.raw) as unknown };
  } catch (e) {
    sendError(call.res, 400, `JSON decode error: ${(e as Error).message}`);
    return null;
  }
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

/** Closes connections idle for keepAliveMs, like uvicorn's timeout_keep_alive. Node's own timer
 * is off (keepAliveTimeout = 0) because it would add a `Keep-Alive:` header uvicorn never sends. */
function idleCloser(server: Server, keepAliveMs: number): void {
  server.keepAliveTimeout = 0;
  server.requestTimeout = 0;
  const conns = new Map<Socket, { active: number; timer: NodeJS.Timeout | null }>();
  const arm = (socket: Socket): void => {
    const c = conns.get(socket);
    if (c === undefined || c.active > 0) return;
    if (c.timer !== null) clearTimeout(c.timer);
    c.timer = setTimeout(() => socket.destroy(), keepAliveMs);
  };
  server.on('connection', (socket: Socket) => {
    conns.set(socket, { active: 0, timer: null });
    arm(socket);
    socket.on('close', () => {
      const c = conns.get(socket);
      if (c?.timer) clearTimeout(c.timer);
      conns.delete(socket);
    });
  });
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const c = conns.get(req.socket);
    if (c === undefined) return;
    c.active++;
    if (c.timer !== null) clearTimeout(c.timer);
    c.timer = null;
    res.on('close', () => {
      c.active--;
      arm(req.socket);
    });
  });
}

export function createHttpServer(sim: Sim, routes: readonly Route[]): Server {
  const server = createServer();
  idleCloser(server, sim.knobs.keepAliveMs);
  const byPath = new Map(routes.map((r) => [r.path, r]));

  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const method = req.method ?? 'GET';
    const url = req.url ?? '/';
    res.on('finish', () => {
      const status = res.statusCode;
      log.uvicorn(`${req.socket.remoteAddress ?? '-'}:${req.socket.remotePort ?? 0} - "${method} ${url} HTTP/${req.httpVersion}" ${status} ${STATUS_CODES[status] ?? ''}`);
    });
    dispatch(sim, byPath, req, res, method, url).catch((e: unknown) => {
      log.error(`Exception in ASGI application: ${(e as Error).stack ?? String(e)}`);
      sendJson(res, 500, { detail: 'Internal Server Error' });
    });
  });
  return server;
}

async function dispatch(
  sim: Sim,
  byPath: ReadonlyMap<string, Route>,
  req: IncomingMessage,
  res: ServerResponse,
  method: string,
  url: string,
): Promise<void> {
  const parsedUrl = new URL(url, 'http://localhost');
  const path = parsedUrl.pathname;
  const route = byPath.get(path);
  if (!authorized(sim, path, route?.admin ?? false, req.headers.authorization)) {
    sendJson(res, 401, { error: 'Unauthorized' });
    return;
  }
  if (route === undefined) {
    sendJson(res, 404, { detail: 'Not Found' });
    return;
  }
  if (!route.methods.includes(method)) {
    sendJson(res, 405, { detail: 'Method Not Allowed' });
    return;
  }
  const raw = method === 'GET' ? '' : await readBody(req);
  let stream = false;
  try {
    const parsed = JSON.parse(raw) as { stream?: unknown } | null;
    stream = parsed !== null && typeof parsed === 'object' && parsed.stream === true;
  } catch {
    // not JSON: the handler will say so
  }
  sim.ledger.record('request', { route: path, method, stream });
  await route.handler({ req, res, path, method, raw, query: parsedUrl.searchParams });
}

/** SGLang's auth middleware (utils/auth.py): /health*, /metrics open; an admin-level route takes
 * only the admin key once one is set (else the API key); every other route the API key. */
function authorized(sim: Sim, path: string, admin: boolean, header: string | undefined): boolean {
  if (path.startsWith('/health') || path.startsWith('/metrics')) return true;
  const { apiKey, adminApiKey } = sim.args;
  const key = admin && adminApiKey !== null ? adminApiKey : apiKey;
  return key === null || header === `Bearer ${key}`;
}
