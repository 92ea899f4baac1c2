// The data plane's upstream half: one client request sent to a model server with node:http and
// its answer handed back as the plain IncomingMessage. Not got (which keeps the daemon's own
// control calls): this runs per request and its answer is read per token, so there is no layer
// between the socket and the relay, no options merged per call, and no second stream.
import { request, type IncomingMessage } from 'node:http';
import type { ModelServer } from './model-server.js';

export interface ForwardOptions {
  readonly body: Buffer;
  /** Aborting it ends the upstream call (the client left): the model server sees the close. */
  readonly signal: AbortSignal;
  /** Streams are bounded per gap between bytes; whole answers are bounded in total. */
  readonly stream: boolean;
  readonly timeoutMs: number;
}

/** The model server did not answer within --upstream-timeout-secs. */
export class UpstreamTimeout extends Error {
  constructor(ms: number) {
    super(`no answer within ${ms} ms`);
    this.name = 'UpstreamTimeout';
  }
}

/**
 * Sends `body` to `path` on the model server, on its keep-alive pool (which closes sockets idle
 * for 4 s, below uvicorn's 5 s). Resolves with the answer's head; the body is then read from it
 * (`data`/`end`, or `error`, which carries an UpstreamTimeout when the limit struck).
 */
export function forward(server: ModelServer, path: string, opts: ForwardOptions): Promise<IncomingMessage> {
  const { apiKey, port } = server.spec;
  const headers: Record<string, string | number> = { 'content-type': 'application/json', 'content-length': opts.body.length };
  if (apiKey) headers.authorization = `Bearer ${apiKey}`;
  return new Promise((resolve, reject) => {
    const req = request({
      host: '127.0.0.1', port, path, method: 'POST', headers, agent: server.agent, signal: opts.signal,
      // A stream's limit is the socket's idleness (before the head, between chunks).
      timeout: opts.stream ? opts.timeoutMs : undefined,
    });
    let response: IncomingMessage | null = null;
    const timeOut = (): void => {
      const err = new UpstreamTimeout(opts.timeoutMs);
      if (response) response.destroy(err);
      else req.destroy(err);
    };
    const total = opts.stream ? null : setTimeout(timeOut, opts.timeoutMs);
    if (opts.stream) req.once('timeout', timeOut);
    req.once('response', (res: IncomingMessage) => {
      response = res;
      if (total) res.once('close', () => clearTimeout(total));
      resolve(res);
    });
    // After the head, a failure reaches the reader through the response's own `error`.
    req.on('error', (err) => {
      if (total && !response) clearTimeout(total);
      reject(err);
    });
    req.end(opts.body);
  });
}
