// The data plane's upstream half: one client request sent to a model server, on plain sockets
// kept alive in the model server's pool (src/upstream-pool.ts). Not got (which keeps the
// daemon's own control calls), nor node:http's client: this runs per request and a stream's
// answer is read per token, so it does only what a proxy needs. A whole answer is read and
// handed on as one buffer; an event stream's chunked frames are handed on as the raw bytes they
// arrived in: no HTTP parser runs per token, no Readable carries it, and the relay has nothing
// to frame again.
import type { Socket } from 'node:net';
import { bodyEnd, FrameError, scanFrames } from './chunk-frames.js';
import type { ModelSpec } from './launch-script.js';
import type { ConnectionPool } from './upstream-pool.js';

/** What a request needs of its model server (a ModelServer has it). */
export interface Upstream {
  readonly spec: Pick<ModelSpec, 'port' | 'apiKey'>;
  /** Its keep-alive connections. */
  readonly connections: ConnectionPool;
}

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
 * Sends `body` to `path` on a connection of the model server's pool. Resolves with the answer:
 * read whole, or as frames if it is an event stream. A whole answer is bounded in total by the
 * timeout, a stream by its idleness (before the head and between frames). Aborting `signal`
 * closes the connection, so the model server sees the client leave. The connection goes back
 * to the pool once an answer ended cleanly on it and the server keeps it open.
 */
export async function forward(server: Upstream, path: string, opts: ForwardOptions): Promise<Answer> {
  const hold = new Hold(server.connections, opts.signal);
  if (opts.stream) hold.limitIdleness(opts.timeoutMs);
  else hold.limitTotal(opts.timeoutMs);
  hold.socket.write(Buffer.concat([requestHead(server, path, opts.body.length), opts.body]));
  try {
    let head = await readHead(hold.socket);
    // An interim answer (100 Continue, 103 Early Hints) is followed by the real one.
    while (head.status >= 100 && head.status < 200) head = await readHead(hold.socket, head.rest);
    if (isFrames(head)) {
      if (!opts.stream) hold.limitIdleness(opts.timeoutMs);
      return { kind: 'frames', status: head.status, contentType: head.contentType, body: new SocketFrames(hold, head) };
    }
    const body = await readBody(hold.socket, head);
    hold.finish(body.reusable);
    return { kind: 'whole', status: head.status, contentType: head.contentType, body: body.data };
  } catch (err) {
    hold.finish(false);
    throw err;
  }
}

/**
 * One request's hold on a pooled connection: its time limit and its client's abort, both undone
 * when the request lets the connection go (back to the pool, where its client leaving later must
 * not close it, or closed).
 */
class Hold {
  readonly socket: Socket;
  private readonly stopWatching: () => void;
  private unlimit = (): void => {};

  constructor(private readonly pool: ConnectionPool, signal: AbortSignal) {
    const socket = (this.socket = pool.take());
    const abort = (): void => {
      socket.destroy(signal.reason instanceof Error ? signal.reason : new Error('client left'));
    };
    if (signal.aborted) abort();
    signal.addEventListener('abort', abort, { once: true });
    this.stopWatching = () => signal.removeEventListener('abort', abort);
  }

  limitTotal(ms: number): void {
    this.unlimit();
    const timer = setTimeout(() => this.socket.destroy(new UpstreamTimeout(ms)), ms);
    this.unlimit = () => clearTimeout(timer);
  }

  /** Bounds the time between reads instead. */
  limitIdleness(ms: number): void {
    this.unlimit();
    const idle = (): void => {
      this.socket.destroy(new UpstreamTimeout(ms));
    };
    this.socket.setTimeout(ms, idle);
    this.unlimit = () => {
      this.socket.off('timeout', idle);
      this.socket.setTimeout(0);
    };
  }

  /** Lets the connection go: back to the pool if `reusable`, else closed. */
  finish(reusable: boolean): void {
    this.unlimit();
    this.stopWatching();
    if (reusable) this.pool.give(this.socket);
    else this.socket.destroy();
  }
}

/** The body of an event stream as runs of whole chunked-encoding frames. */
export interface FrameSource {
  /** Starts the flow: `onFrames` gets each run of whole data frames as it comes, then `onEnd`
   * once: null after the last frame, else the failure. */
  start(onFrames: (frames: Buffer) => void, onEnd: (err: Error | null) => void): void;
  pause(): void;
  resume(): void;
}

/** A model server's answer: an event stream as its frames, or a body read whole. */
export type Answer =
  | { readonly kind: 'frames'; readonly status: number; readonly contentType: string; readonly body: FrameSource }
  | { readonly kind: 'whole'; readonly status: number; readonly contentType: string; readonly body: Buffer };

/** The answer went wrong as HTTP (not HTTP, too large a head, cut short). */
class BadAnswer extends Error {
  constructor(problem: string) {
    super(`invalid answer from the model server: ${problem}`);
    this.name = 'BadAnswer';
  }
}

const HEAD_END = Buffer.from('\r\n\r\n');
const MAX_HEAD = 64 * 1024;

function requestHead(server: Upstream, path: string, length: number): Buffer {
  const { apiKey, port } = server.spec;
  const auth = apiKey ? `authorization: Bearer ${apiKey}\r\n` : '';
  return Buffer.from(`POST ${path} HTTP/1.1\r\nhost: 127.0.0.1:${port}\r\ncontent-type: application/json\r\n` +
    `content-length: ${length}\r\n${auth}\r\n`, 'latin1');
}

/** How an answer's body is delimited (RFC 9112 §6.3). */
type Framing =
  | { readonly kind: 'length'; readonly length: number }
  | { readonly kind: 'chunked' }
  /** No body: 204, 304, a length of 0. */
  | { readonly kind: 'none' }
  /** Until the server closes the connection. */
  | { readonly kind: 'close' };

interface Head {
  readonly status: number;
  readonly contentType: string;
  readonly framing: Framing;
  /** The server keeps the connection open after this answer. */
  readonly keepAlive: boolean;
  /** What came after the head in the same reads. */
  readonly rest: Buffer;
}

const isFrames = (head: Head): boolean => head.framing.kind === 'chunked' && head.contentType.startsWith('text/event-stream');

/**
 * Reads an answer's head. Resolves with the socket paused and none of this function's listeners
 * left on it; rejects on the socket's failure (a timeout or an abort included) or its close.
 */
function readHead(socket: Socket, already: Buffer = Buffer.alloc(0)): Promise<Head> {
  return new Promise((resolve, reject) => {
    let got: Buffer = Buffer.alloc(0);
    let settled = false;
    const settle = (): void => {
      settled = true;
      socket.off('data', take);
      socket.off('error', fail);
      socket.off('close', closed);
      socket.pause();
    };
    const fail = (err: Error): void => {
      settle();
      reject(err);
    };
    const take = (chunk: Buffer): void => {
      got = got.length === 0 ? chunk : Buffer.concat([got, chunk]);
      const at = got.indexOf(HEAD_END);
      if (at < 0) {
        if (got.length > MAX_HEAD) fail(new BadAnswer('a head without its end'));
        return;
      }
      settle();
      try {
        resolve(parseHead(got.toString('latin1', 0, at), got.subarray(at + HEAD_END.length)));
      } catch (err) {
        reject(err);
      }
    };
    const closed = (): void => fail(new BadAnswer('the connection closed before an answer'));
    socket.on('data', take);
    socket.once('error', fail);
    socket.once('close', closed);
    if (already.length > 0) take(already);
    if (!settled) socket.resume();
  });
}

function parseHead(text: string, rest: Buffer): Head {
  const lines = text.split('\r\n');
  const m = /^HTTP\/1\.([01]) (\d{3})/.exec(lines[0] ?? '');
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
  const status = Number(m[2]);
  const connection = headers.get('connection') ?? '';
  const keepAlive = m[1] === '1' ? !/\bclose\b/i.test(connection) : /\bkeep-alive\b/i.test(connection);
  return { status, contentType: headers.get('content-type') ?? '', framing: framing(status, headers), keepAlive, rest };
}

function framing(status: number, headers: Map<string, string>): Framing {
  if (status === 204 || status === 304) return { kind: 'none' };
  if (/\bchunked\b/i.test(headers.get('transfer-encoding') ?? '')) return { kind: 'chunked' };
  const length = headers.get('content-length');
  if (length === undefined) return { kind: 'close' };
  if (!/^\d+$/.test(length)) throw new BadAnswer(`content-length '${length.slice(0, 40)}'`);
  return Number(length) === 0 ? { kind: 'none' } : { kind: 'length', length: Number(length) };
}

/** The frames of a stream's body, from the bytes after the head, then the socket's. Only whole
 * frames are handed on: a failure between two of them can be followed by an error event. */
class SocketFrames implements FrameSource {
  private readonly socket: Socket;
  private pending: Buffer | null;
  private onFrames: ((frames: Buffer) => void) | null = null;
  private onEnd: ((err: Error | null) => void) | null = null;
  /** How it ended (null: after the last frame); undefined while it runs. */
  private ended: Error | null | undefined = undefined;
  /** The relay asked for a pause (the client's socket buffer is full). */
  private paused = false;

  private readonly keepAlive: boolean;

  constructor(private readonly hold: Hold, head: Head) {
    this.socket = hold.socket;
    this.keepAlive = head.keepAlive;
    this.pending = head.rest.length > 0 ? head.rest : null;
    // From now on, before start() too: a failure is kept for it.
    this.socket.on('error', this.failed);
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
    if (this.socket.destroyed) return this.closed();
    this.socket.once('close', this.closed);
    this.socket.on('data', this.take);
    // Unless the first frames already filled the client's buffer.
    if (!this.paused) this.socket.resume();
  }

  pause(): void {
    this.paused = true;
    if (this.ended === undefined) this.socket.pause();
  }

  resume(): void {
    this.paused = false;
    if (this.ended === undefined) this.socket.resume();
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
    if (!scan.last) return;
    // The stream is over at its last frame. The connection is used again only if that frame and
    // its empty trailer came whole and nothing after them (the server sends them in one write).
    const rest = this.pending ?? Buffer.alloc(0);
    this.end(null, this.keepAlive && bodyEnd(rest) === rest.length);
  };

  private readonly failed = (err: Error): void => this.end(err);

  private readonly closed = (): void => this.end(new Error('the model server closed the stream before its end'));

  private end(err: Error | null, reusable = false): void {
    if (this.ended !== undefined) return;
    this.ended = err;
    this.socket.off('data', this.take);
    this.socket.off('error', this.failed);
    this.socket.off('close', this.closed);
    this.hold.finish(reusable);
    this.onEnd?.(err);
  }
}

/** A body read whole; `reusable`: the connection is at the start of the next answer. */
interface Body {
  readonly data: Buffer;
  readonly reusable: boolean;
}

/**
 * Reads a body whole, by its length, its chunks or to the connection's end. Resolves with the
 * socket paused and none of this function's listeners left on it; rejects on the socket's
 * failure or a close before the end.
 */
function readBody(socket: Socket, head: Head): Promise<Body> {
  const { framing } = head;
  if (framing.kind === 'none') return Promise.resolve({ data: Buffer.alloc(0), reusable: head.keepAlive && head.rest.length === 0 });
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let size = 0;
    /** Chunked: bytes after the last whole frame, not yet a frame. */
    let pending: Buffer = Buffer.alloc(0);
    let settled = false;
    const settle = (): void => {
      settled = true;
      socket.off('data', take);
      socket.off('error', fail);
      socket.off('end', ended);
      socket.off('close', closed);
      socket.pause();
    };
    const done = (data: Buffer, clean: boolean): void => {
      settle();
      resolve({ data, reusable: clean && head.keepAlive });
    };
    const fail = (err: Error): void => {
      settle();
      reject(err);
    };
    const take = (chunk: Buffer): void => {
      if (framing.kind === 'chunked') return takeChunked(chunk);
      parts.push(chunk);
      size += chunk.length;
      if (framing.kind === 'length' && size >= framing.length) {
        const all = parts.length === 1 ? chunk : Buffer.concat(parts, size);
        done(all.subarray(0, framing.length), size === framing.length);
      }
    };
    const takeChunked = (chunk: Buffer): void => {
      const buf = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
      let scan;
      try {
        scan = scanFrames(buf, (start, end) => {
          parts.push(buf.subarray(start, end));
        });
      } catch (err) {
        fail(err as FrameError);
        return;
      }
      pending = buf.subarray(scan.end);
      if (!scan.last) return;
      const end = bodyEnd(pending);
      if (end >= 0) done(Buffer.concat(parts), end === pending.length);
      else if (pending.length > MAX_HEAD) fail(new BadAnswer('trailers without their end'));
    };
    const ended = (): void => {
      if (framing.kind === 'close') done(Buffer.concat(parts, size), false);
      else fail(new BadAnswer('the connection closed before the end of the answer'));
    };
    const closed = (): void => fail(new BadAnswer('the connection closed before the end of the answer'));
    socket.on('data', take);
    socket.once('error', fail);
    socket.once('end', ended);
    socket.once('close', closed);
    if (head.rest.length > 0) take(head.rest);
    if (!settled) socket.resume();
  });
}
