// The data plane's upstream half: one client request sent to a model server. Not got (which
// keeps the daemon's own control calls): this runs per request and its answer is read per token.
// A whole answer comes through node:http on the server's keep-alive pool, as the plain
// IncomingMessage. A streaming request gets a connection of its own, and its answer's chunked
// frames are handed on as the raw bytes they arrived in: no HTTP parser runs per token, no
// Readable carries it, and the relay has nothing to frame again.
import { request, type IncomingMessage } from 'node:http';
import { connect, type Socket } from 'node:net';
import { FrameError, frame, scanFrames } from './chunk-frames.js';
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
 * for 4 s, below uvicorn's 5 s). Resolves with the answer's head; the body is then read from the
 * message (`data`/`end`, or `error`, which carries an UpstreamTimeout when the limit struck), or
 * from its frames if it is an event stream.
 */
export function forward(server: ModelServer, path: string, opts: ForwardOptions): Promise<Answer> {
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
      const status = res.statusCode ?? 502;
      const contentType = String(res.headers['content-type'] ?? '');
      resolve(contentType.startsWith('text/event-stream')
        ? { kind: 'frames', status, contentType, body: messageFrames(res) }
        : { kind: 'message', status, contentType, body: res });
    });
    // After the head, a failure reaches the reader through the response's own `error`.
    req.on('error', (err) => {
      if (total && !response) clearTimeout(total);
      reject(err);
    });
    req.end(opts.body);
  });
}

/** The body of an event stream as runs of whole chunked-encoding frames. */
export interface FrameSource {
  /** Starts the flow: `onFrames` gets each run of whole data frames as it comes, then `onEnd`
   * once: null after the last frame, else the failure. */
  start(onFrames: (frames: Buffer) => void, onEnd: (err: Error | null) => void): void;
  pause(): void;
  resume(): void;
}

/** A model server's answer: an event stream as frames, or a body read whole here (a stream's
 * connection) or still to be read from node:http's message. */
export type Answer =
  | { readonly kind: 'frames'; readonly status: number; readonly contentType: string; readonly body: FrameSource }
  | { readonly kind: 'whole'; readonly status: number; readonly contentType: string; readonly body: Buffer }
  | { readonly kind: 'message'; readonly status: number; readonly contentType: string; readonly body: IncomingMessage };

/** The answer's head went wrong (not HTTP, or too large). */
class BadAnswer extends Error {
  constructor(problem: string) {
    super(`invalid answer from the model server: ${problem}`);
    this.name = 'BadAnswer';
  }
}

const HEAD_END = Buffer.from('\r\n\r\n');
const MAX_HEAD = 64 * 1024;

/**
 * Sends a streaming request on a connection of its own (`connection: close`: a stream outlives
 * any pool's idle limits, and its end is the connection's). Bounded like a stream through the
 * pool: by the socket's idleness, before the head and between frames. Aborting `signal` closes
 * the connection, so the model server sees the client leave.
 */
export function openStream(server: ModelServer, path: string, opts: ForwardOptions): Promise<Answer> {
  const { apiKey, port } = server.spec;
  const auth = apiKey ? `authorization: Bearer ${apiKey}\r\n` : '';
  const head = `POST ${path} HTTP/1.1\r\nhost: 127.0.0.1:${port}\r\ncontent-type: application/json\r\n` +
    `content-length: ${opts.body.length}\r\n${auth}connection: close\r\n\r\n`;
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, noDelay: true });
    const abort = (): void => {
      socket.destroy(opts.signal.reason instanceof Error ? opts.signal.reason : new Error('client left'));
    };
    if (opts.signal.aborted) abort();
    else opts.signal.addEventListener('abort', abort, { once: true });
    socket.once('close', () => opts.signal.removeEventListener('abort', abort));
    socket.setTimeout(opts.timeoutMs, () => socket.destroy(new UpstreamTimeout(opts.timeoutMs)));
    socket.write(head);
    socket.write(opts.body);

    let got: Buffer = Buffer.alloc(0);
    const beforeHead = (chunk: Buffer): void => {
      got = got.length === 0 ? chunk : Buffer.concat([got, chunk]);
      const at = got.indexOf(HEAD_END);
      if (at < 0) {
        if (got.length > MAX_HEAD) socket.destroy(new BadAnswer('a head without its end'));
        return;
      }
      socket.off('data', beforeHead);
      socket.off('error', reject);
      socket.off('end', endedEarly);
      socket.pause();
      let parsed: ReturnType<typeof parseHead>;
      try {
        parsed = parseHead(got.toString('latin1', 0, at));
      } catch (err) {
        socket.destroy();
        reject(err);
        return;
      }
      const rest = got.subarray(at + HEAD_END.length);
      const { status, headers } = parsed;
      const contentType = headers.get('content-type') ?? '';
      const chunked = /\bchunked\b/i.test(headers.get('transfer-encoding') ?? '');
      if (contentType.startsWith('text/event-stream') && chunked) {
        resolve({ kind: 'frames', status, contentType, body: new SocketFrames(socket, rest) });
      } else {
        readWhole(socket, rest, chunked, headers.get('content-length')).then((body) => resolve({ kind: 'whole', status, contentType, body }), reject);
      }
    };
    const endedEarly = (): void => {
      socket.destroy();
      reject(new BadAnswer('the connection closed before an answer'));
    };
    socket.on('data', beforeHead);
    socket.once('error', reject);
    socket.once('end', endedEarly);
  });
}

function parseHead(text: string): { status: number; headers: Map<string, string> } {
  const lines = text.split('\r\n');
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '');
  if (!m) throw new BadAnswer(`status line '${(lines[0] ?? '').slice(0, 80)}'`);
  const headers = new Map<string, string>();
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    if (colon <= 0) throw new BadAnswer(`header line '${line.slice(0, 80)}'`);
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    const seen = headers.get(name);
    headers.set(name, seen === undefined ? value : `${seen}, ${value}`);
  }
  return { status: Number(m[1]), headers };
}

/** The frames of a stream's body, from the bytes after the head, then the socket's. Only whole
 * frames are handed on: a failure between two of them can be followed by an error event. */
class SocketFrames implements FrameSource {
  private pending: Buffer | null;
  private onFrames: ((frames: Buffer) => void) | null = null;
  private onEnd: ((err: Error | null) => void) | null = null;
  /** How it ended (null: after the last frame); undefined while it runs. */
  private ended: Error | null | undefined = undefined;

  constructor(private readonly socket: Socket, rest: Buffer) {
    this.pending = rest.length > 0 ? rest : null;
    // From now on, before start() too: a failure is kept for it.
    socket.on('error', (err) => this.end(err));
  }

  start(onFrames: (frames: Buffer) => void, onEnd: (err: Error | null) => void): void {
    if (this.ended !== undefined) {
      onEnd(this.ended);
      return;
    }
    this.onFrames = onFrames;
    this.onEnd = onEnd;
    const first = this.pending;
    this.pending = null;
    if (first !== null) this.take(first);
    if (this.ended !== undefined) return;
    const closed = (): void => this.end(new Error('the model server closed the stream before its end'));
    if (this.socket.destroyed) return closed();
    this.socket.once('close', closed);
    this.socket.on('data', this.take);
    this.socket.resume();
  }

  pause(): void {
    this.socket.pause();
  }

  resume(): void {
    this.socket.resume();
  }

  private readonly take = (chunk: Buffer): void => {
    const buf = this.pending === null ? chunk : Buffer.concat([this.pending, chunk]);
    let scan;
    try {
      scan = scanFrames(buf);
    } catch (err) {
      this.end(err as FrameError);
      return;
    }
    this.pending = scan.end < buf.length ? buf.subarray(scan.end) : null;
    if (scan.end > 0) this.onFrames?.(scan.end === buf.length ? buf : buf.subarray(0, scan.end));
    if (scan.last) this.end(null);
  };

  private end(err: Error | null): void {
    if (this.ended !== undefined) return;
    this.ended = err;
    this.socket.off('data', this.take);
    this.socket.destroy();
    this.onEnd?.(err);
  }
}

/** A body that is not a chunked event stream, read whole: by its length, its chunks, or to the
 * connection's end. */
function readWhole(socket: Socket, rest: Buffer, chunked: boolean, length: string | undefined): Promise<Buffer> {
  const expected = length === undefined || chunked ? null : Number(length);
  return new Promise((resolve, reject) => {
    let got = rest;
    const done = (body: Buffer): void => {
      socket.off('data', take);
      socket.destroy();
      resolve(body);
    };
    const take = (chunk: Buffer | null): void => {
      if (chunk !== null) got = got.length === 0 ? chunk : Buffer.concat([got, chunk]);
      if (expected !== null && got.length >= expected) return done(got.subarray(0, expected));
      if (!chunked) return;
      const parts: Buffer[] = [];
      let scan;
      try {
        scan = scanFrames(got, (start, end) => parts.push(got.subarray(start, end)));
      } catch (err) {
        socket.destroy();
        reject(err);
        return;
      }
      if (scan.last) done(Buffer.concat(parts));
    };
    socket.on('data', take);
    socket.once('error', reject);
    socket.once('end', () => {
      if (expected === null && !chunked) done(got);
      else reject(new BadAnswer('the connection closed before the end of the answer'));
    });
    take(null);
    socket.resume();
  });
}

/** The frames of an event stream that came through node:http (decoded by it): framed again. */
function messageFrames(message: IncomingMessage): FrameSource {
  return {
    start(onFrames, onEnd) {
      message.on('data', (chunk: Buffer) => {
        if (chunk.length > 0) onFrames(frame(chunk));
      });
      message.once('end', () => onEnd(null));
      message.once('error', (err) => onEnd(err));
    },
    pause: () => message.pause(),
    resume: () => message.resume(),
  };
}
