// The HTTP client for one SGLang server: readiness and the sleep/wake control calls, each with a
// timeout. Users' requests are forwarded on the same connection pool by src/upstream.ts.
import { Agent } from 'node:http';
import got, { type Got } from 'got';
import type { ModelSpec } from './launch-script.js';

/** uvicorn closes idle keep-alive connections at 5 s; drop ours earlier so none is reused dead. */
export const FREE_SOCKET_TIMEOUT_MS = 4000;

const PROBE_TIMEOUT_MS = 2000;

export class ModelServer {
  /** Shared with the data plane (src/upstream.ts). */
  readonly agent = new Agent({ keepAlive: true, timeout: FREE_SOCKET_TIMEOUT_MS });
  private readonly http: Got;

  constructor(readonly spec: ModelSpec) {
    this.http = got.extend({
      prefixUrl: `http://127.0.0.1:${spec.port}`,
      agent: { http: this.agent },
      retry: { limit: 0 },
      throwHttpErrors: false,
      headers: spec.apiKey ? { authorization: `Bearer ${spec.apiKey}` } : {},
    });
  }

  get address(): string {
    return `127.0.0.1:${this.spec.port}`;
  }

  /** GET /health. Runs a forward pass on the GPU: only for a server that holds its memory. */
  async healthStatus(): Promise<number> {
    const res = await this.http.get('health', { timeout: { request: PROBE_TIMEOUT_MS } });
    return res.statusCode;
  }

  /** The server's own model path, from the probe that never touches the GPU. */
  async modelPath(): Promise<string | null> {
    for (const route of ['get_model_info', 'model_info']) {
      const res = await this.http.get(route, { timeout: { request: PROBE_TIMEOUT_MS } });
      if (res.statusCode !== 200) continue;
      const info = JSON.parse(res.body) as { model_path?: unknown };
      return typeof info.model_path === 'string' ? info.model_path : null;
    }
    return null;
  }

  /** True when /flush_cache succeeded, i.e. nothing is running or waiting inside the server. */
  async isIdle(timeoutMs: number): Promise<boolean> {
    const res = await this.http.post('flush_cache', { timeout: { request: timeoutMs } });
    if (res.statusCode === 200) return true;
    if (res.statusCode === 400) return false;
    throw new Error(`/flush_cache answered ${res.statusCode}`);
  }

  release(timeoutMs: number): Promise<void> {
    return this.control('release_memory_occupation', {}, timeoutMs);
  }

  resume(timeoutMs: number): Promise<void> {
    return this.control('resume_memory_occupation', {}, timeoutMs);
  }

  reloadWeights(modelPath: string, timeoutMs: number): Promise<void> {
    return this.control('update_weights_from_disk', { model_path: modelPath }, timeoutMs);
  }

  private async control(route: string, body: object, timeoutMs: number): Promise<void> {
    const res = await this.http.post(route, { json: body, timeout: { request: timeoutMs } });
    if (res.statusCode !== 200) {
      throw new Error(`/${route} answered ${res.statusCode}: ${res.body.slice(0, 200)}`);
    }
  }

  close(): void {
    this.agent.destroy();
  }
}
