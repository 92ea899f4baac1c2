// The HTTP client for one SGLang server: readiness and the sleep/wake control calls, each with a
// timeout, through the SGLang API table (src/sglang-api.ts) and with the key its route needs.
// Users' requests go on connections of their own (`connections`, read by src/upstream.ts).
import { Agent } from 'node:http';
import type { Got } from 'got';
import type { ModelSpec } from './launch-script.js';
import { log } from './log.js';
import { SGLANG_ROUTES, type SglangBody, type SglangQuery, type SglangRoute, type SglangRouteName } from './sglang-api.js';
import { ConnectionPool } from './upstream-pool.js';

/** uvicorn closes idle keep-alive connections at 5 s; drop ours earlier so none is reused dead. */
export const FREE_SOCKET_TIMEOUT_MS = 4000;

const PROBE_TIMEOUT_MS = 2000;

const bearer = (key: string | null): Record<string, string> => (key ? { authorization: `Bearer ${key}` } : {});

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return null;
  }
}

function expectOk(name: SglangRouteName, res: Answer): void {
  if (res.status !== 200) throw new Error(`${SGLANG_ROUTES[name].path} answered ${res.status}: ${res.body.slice(0, 200)}`);
}

/** A model server refused the key sglangmux sent (401/403): a configuration error, never a
 * reason to stop and start the server instead of releasing it. */
export class ServerAuthError extends Error {
  constructor(readonly model: string, route: string, status: number, admin: boolean) {
    const key = admin ? '--admin-api-key (or, without one, --api-key)' : '--api-key';
    super(`configuration error: ${model}'s server answered ${status} to ${route}: the ${key} that sglangmux read from its launch script is not the one the server uses (a --config file?); fix the script and send SIGHUP`);
    this.name = 'ServerAuthError';
  }
}

/** got could not be loaded (it is loaded at the first call: scripts/lazy-parts.mjs): a broken
 * installation, never a server that is still starting. */
export class ClientUnavailable extends Error {
  constructor(cause: unknown) {
    super(`cannot load got, the HTTP client for model servers: ${cause instanceof Error ? cause.message : String(cause)}`);
    this.name = 'ClientUnavailable';
  }
}

/** What /v1/loads says about one data-parallel rank. */
export interface RankLoad {
  readonly rank: number;
  readonly busy: number;
}

/** The settings a running server reports as in effect (/server_info). */
export interface ServerSettings {
  readonly modelPath: string | null;
  readonly memorySaver: boolean | null;
  readonly cpuBackup: boolean | null;
  readonly dpSize: number | null;
}

interface Answer {
  readonly status: number;
  readonly body: string;
}

export class ModelServer {
  private readonly agent = new Agent({ keepAlive: true, timeout: FREE_SOCKET_TIMEOUT_MS });
  /** The data plane's keep-alive connections (src/upstream.ts). */
  readonly connections: ConnectionPool;
  /** got, loaded at the first call: it and what it loads (node:http2 among them) are not needed
   * before the daemon listens, and cost ~20 ms of its start. */
  private http: Promise<Got> | null = null;
  /** Whether the build has /pause_generation (2025-07+), learned from its first answer. */
  private pauseRoutes: 'unknown' | 'present' | 'absent' = 'unknown';
  /** New info routes this build answered 404: it has only their old names. */
  private readonly oldOnly = new Set<SglangRouteName>();

  constructor(readonly spec: ModelSpec) {
    this.connections = new ConnectionPool(spec.port, FREE_SOCKET_TIMEOUT_MS);
  }

  private client(): Promise<Got> {
    this.http ??= import('got').then(({ default: got }) => got.extend({
      prefixUrl: `http://127.0.0.1:${this.spec.port}`,
      agent: { http: this.agent },
      retry: { limit: 0 },
      throwHttpErrors: false,
      headers: bearer(this.spec.apiKey),
    })).catch((err: unknown) => {
      throw new ClientUnavailable(err);
    });
    return this.http;
  }

  get address(): string {
    return `127.0.0.1:${this.spec.port}`;
  }

  /** GET /health. Runs a forward pass on the GPU: only for a server that holds its memory. */
  async healthStatus(): Promise<number> {
    return (await this.call('health', { timeoutMs: PROBE_TIMEOUT_MS })).status;
  }

  /** The server's own model path, from the probe that never touches the GPU. */
  async modelPath(): Promise<string | null> {
    const info = await this.info('modelInfo', 'modelInfoOld');
    return info !== null && typeof info.model_path === 'string' ? info.model_path : null;
  }

  /** The settings in effect (talks to the scheduler: ask an awake server only); null when the
   * build has no such route. */
  async settings(): Promise<ServerSettings | null> {
    const info = await this.info('serverInfo', 'serverInfoOld');
    if (info === null) return null;
    const bool = (v: unknown): boolean | null => (typeof v === 'boolean' ? v : null);
    return {
      modelPath: typeof info.model_path === 'string' ? info.model_path : null,
      memorySaver: bool(info.enable_memory_saver),
      cpuBackup: bool(info.enable_weights_cpu_backup),
      dpSize: typeof info.dp_size === 'number' ? info.dp_size : null,
    };
  }

  /** True when /flush_cache succeeded, i.e. nothing is running or waiting inside the server (on
   * rank 0: see loads()). Builds from 2026-03 wait up to `waitMs` inside the server; older ones
   * ignore the parameter and answer at once. */
  async isIdle(waitMs: number, timeoutMs: number): Promise<boolean> {
    const res = await this.call('flushCache', { timeoutMs, query: { timeout: String(waitMs / 1000) } });
    if (res.status === 200) return true;
    if (res.status === 400) return false;
    throw new Error(`/flush_cache answered ${res.status}`);
  }

  /** Requests running or waiting per data-parallel rank; null when the build has no /v1/loads. */
  async loads(timeoutMs: number): Promise<RankLoad[] | null> {
    const res = await this.call('loads', { timeoutMs, query: { include: 'core' } });
    if (res.status === 404) return null;
    if (res.status !== 200) throw new Error(`/v1/loads answered ${res.status}`);
    const { loads } = JSON.parse(res.body) as { loads?: { dp_rank?: number; num_running_reqs?: number; num_waiting_reqs?: number }[] };
    return (loads ?? []).map((l) => ({ rank: l.dp_rank ?? 0, busy: (l.num_running_reqs ?? 0) + (l.num_waiting_reqs ?? 0) }));
  }

  /** Pauses generation, aborting what still runs (stragglers /flush_cache cannot see included);
   * new requests, /health's generation among them, then wait inside the server. False on a
   * build without the route (404), remembered. */
  async pause(timeoutMs: number): Promise<boolean> {
    if (this.pauseRoutes === 'absent') return false;
    const res = await this.call('pause', { timeoutMs, json: { mode: 'abort' } });
    if (res.status === 404) {
      this.pauseRoutes = 'absent';
      log.info(`model ${this.spec.name}: this SGLang build has no /pause_generation; sleeping without the pause barrier`);
      return false;
    }
    expectOk('pause', res);
    this.pauseRoutes = 'present';
    return true;
  }

  /** Lets the requests that waited during a pause run (nothing to do on builds without pause). */
  async continueGeneration(timeoutMs: number): Promise<void> {
    if (this.pauseRoutes === 'absent') return;
    const res = await this.call('continue', { timeoutMs, json: {} });
    if (res.status === 404) {
      this.pauseRoutes = 'absent';
      return;
    }
    expectOk('continue', res);
  }

  async release(timeoutMs: number): Promise<void> {
    expectOk('release', await this.call('release', { timeoutMs, json: {} }));
  }

  async resume(timeoutMs: number): Promise<void> {
    expectOk('resume', await this.call('resume', { timeoutMs, json: {} }));
  }

  async reloadWeights(modelPath: string, timeoutMs: number): Promise<void> {
    const res = await this.call('reload', { timeoutMs, json: { model_path: modelPath } });
    expectOk('reload', res);
    // 200 is not enough on every build: the answer says whether the weights were loaded.
    const answer = parseJson(res.body) as { success?: unknown; message?: unknown } | null;
    if (answer?.success === false) throw new Error(`/update_weights_from_disk failed: ${String(answer.message)}`);
  }

  /** A checksum of the weights (/weights_checker, 2025-11+), or null where the build has none. */
  async weightsChecksum(timeoutMs: number): Promise<string | null> {
    const res = await this.call('weightsChecker', { timeoutMs, json: { action: 'checksum' } });
    if (res.status === 404) return null;
    expectOk('weightsChecker', res);
    const answer = parseJson(res.body) as { per_engine_checksum?: unknown } | null;
    return typeof answer?.per_engine_checksum === 'string' ? answer.per_engine_checksum : null;
  }

  /** One call of the SGLang API table, with the key that route needs; a refused key throws
   * ServerAuthError whatever the caller expected. */
  private async call<N extends SglangRouteName>(name: N, opts: { timeoutMs: number; json?: SglangBody<N>; query?: SglangQuery<N> }): Promise<Answer> {
    const r: SglangRoute = SGLANG_ROUTES[name];
    const admin = r.admin && this.spec.adminApiKey !== null;
    const http = await this.client();
    const res = await http(r.path.slice(1), {
      method: r.method,
      json: opts.json as object | undefined,
      searchParams: opts.query as Record<string, string> | undefined,
      timeout: { request: opts.timeoutMs },
      headers: admin ? bearer(this.spec.adminApiKey) : {},
    });
    if (res.statusCode === 401 || res.statusCode === 403) {
      throw new ServerAuthError(this.spec.name, r.path, res.statusCode, r.admin);
    }
    return { status: res.statusCode, body: res.body };
  }

  /** GETs a JSON info route, falling back to its old name on builds without the new one. */
  private async info(name: SglangRouteName, old: SglangRouteName): Promise<Record<string, unknown> | null> {
    if (!this.oldOnly.has(name)) {
      const res = await this.call(name, { timeoutMs: PROBE_TIMEOUT_MS });
      if (res.status !== 404) return res.status === 200 ? (parseJson(res.body) as Record<string, unknown> | null) : null;
      this.oldOnly.add(name);
    }
    const res = await this.call(old, { timeoutMs: PROBE_TIMEOUT_MS });
    return res.status === 200 ? (parseJson(res.body) as Record<string, unknown> | null) : null;
  }

  close(): void {
    this.agent.destroy();
    this.connections.close();
  }
}
