// The data plane's upstream half (src/upstream.ts, src/upstream-pool.ts) against a model server
// scripted byte by byte: whole answers however they are delimited, connections kept for the
// next request only when the answer ended cleanly and the server keeps them, and every failure
// (a cut answer, a timeout, the client leaving) ending the request and its connection; event
// streams handed on as their raw frames, on the same connections.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { after, before, beforeEach, describe, test } from 'node:test';
import { forward, UpstreamTimeout, type Answer, type Upstream } from '../src/upstream.js';
import { ConnectionPool } from '../src/upstream-pool.js';

/** What the scripted server does with one request: answer these bytes (then close the
 * connection), or nothing. */
type Reply = string | { readonly thenClose: string } | 'hang';

/** A server that answers each request with the next scripted reply and counts connections. */
class ScriptedServer {
  readonly server: Server;
  replies: Reply[] = [];
  connections = 0;
  readonly sockets = new Set<Socket>();
  /** Resolvers waiting for a connection to close. */
  private closedWaiters: (() => void)[] = [];
  received: string[] = [];

  constructor() {
    this.server = createServer((socket) => {
      this.connections++;
      this.sockets.add(socket);
      socket.on('close', () => {
        this.sockets.delete(socket);
        this.closedWaiters.splice(0).forEach((r) => r());
      });
      socket.on('error', () => {});
      let buf = '';
      socket.on('data', (chunk) => {
        buf += chunk.toString('latin1');
        for (;;) {
          const headEnd = buf.indexOf('\r\n\r\n');
          if (headEnd < 0) return;
          const length = Number(/content-length: (\d+)/i.exec(buf.slice(0, headEnd))?.[1] ?? 0);
          if (buf.length < headEnd + 4 + length) return;
          this.received.push(buf.slice(0, headEnd + 4 + length));
          buf = buf.slice(headEnd + 4 + length);
          const reply = this.replies.shift() ?? 'hang';
          if (reply === 'hang') continue;
          if (typeof reply === 'string') socket.write(reply);
          else socket.end(reply.thenClose);
        }
      });
    });
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  /** Resolves once `n` connections are open no more. */
  async untilOpen(n: number): Promise<void> {
    while (this.sockets.size > n) await new Promise<void>((r) => this.closedWaiters.push(r));
  }
}

/** The suite's server listens; before each test the last pool is closed, the server has no
 * connection left, and a fresh pool to it is set (with `apiKey`). */
function useScripted(sim: ScriptedServer, apiKey: string | null, get: () => Upstream | undefined, set: (u: Upstream) => void): void {
  before(async () => {
    await new Promise<void>((r) => sim.server.listen(0, '127.0.0.1', r));
  });
  after(async () => {
    get()?.connections.close();
    for (const s of sim.sockets) s.destroy();
    await new Promise<void>((r) => sim.server.close(() => r()));
  });
  beforeEach(async () => {
    get()?.connections.close();
    await sim.untilOpen(0);
    set({ spec: { port: sim.port, apiKey }, connections: new ConnectionPool(sim.port, 60_000) });
    sim.connections = 0;
    sim.received = [];
  });
}

const json = (body: string, extra = ''): string =>
  `HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n${extra}\r\n${body}`;

/** A whole answer's request, as the proxy sends it. */
function send(upstream: Upstream, opts: { signal?: AbortSignal; timeoutMs?: number } = {}): Promise<Answer> {
  return forward(upstream, '/v1/completions', {
    body: Buffer.from('{"model":"m"}'), signal: opts.signal ?? new AbortController().signal, stream: false, timeoutMs: opts.timeoutMs ?? 10_000,
  });
}

function whole(answer: Answer): string {
  assert.equal(answer.kind, 'whole');
  return answer.kind === 'whole' ? answer.body.toString('utf8') : '';
}

describe('forward: whole answers on keep-alive connections', () => {
  const sim = new ScriptedServer();
  let upstream: Upstream;

  useScripted(sim, 'sk-up', () => upstream, (u) => (upstream = u));

  test('answers by length, one after another on one connection; the request as sent', async () => {
    sim.replies = [json('{"a":1}'), json('{"ünï":2}'), json('{}')];
    assert.equal(whole(await send(upstream)), '{"a":1}');
    assert.equal(whole(await send(upstream)), '{"ünï":2}');
    assert.equal(whole(await send(upstream)), '{}');
    assert.equal(sim.connections, 1);
    assert.match(sim.received[0]!, /^POST \/v1\/completions HTTP\/1\.1\r\n/);
    assert.match(sim.received[0]!, /\r\nauthorization: Bearer sk-up\r\n/);
    assert.match(sim.received[0]!, /\r\ncontent-length: 13\r\n/);
    assert.ok(sim.received[0]!.endsWith('\r\n\r\n{"model":"m"}'));
  });

  test('a chunked answer that is no event stream, with a trailer, read whole; the connection kept', async () => {
    sim.replies = [
      'HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n' +
        '5\r\n{"err\r\n7\r\nor":1}\n\r\n0\r\nx-trailer: 1\r\n\r\n',
      json('{"next":true}'),
    ];
    const answer = await send(upstream);
    assert.equal(answer.status, 400);
    assert.equal(whole(answer), '{"error":1}\n');
    assert.equal(whole(await send(upstream)), '{"next":true}');
    assert.equal(sim.connections, 1);
  });

  test('a 204 has no body; the connection kept', async () => {
    sim.replies = ['HTTP/1.1 204 No Content\r\n\r\n', json('{}')];
    const answer = await send(upstream);
    assert.equal(answer.status, 204);
    assert.equal(whole(answer), '');
    assert.equal(whole(await send(upstream)), '{}');
    assert.equal(sim.connections, 1);
  });

  test('an empty answer by its length (content-length: 0) is answered at once; the connection kept', async () => {
    sim.replies = ['HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 0\r\n\r\n', json('{}')];
    assert.equal(whole(await send(upstream, { timeoutMs: 60_000 })), '');
    assert.equal(whole(await send(upstream)), '{}');
    assert.equal(sim.connections, 1);
  });

  test('an interim 1xx head is passed over: the answer is the final one, apart or in the same read', async () => {
    sim.replies = ['HTTP/1.1 103 Early Hints\r\nlink: </x>\r\n\r\n' + json('{"final":1}'), 'HTTP/1.1 100 Continue\r\n\r\n'];
    assert.equal(whole(await send(upstream)), '{"final":1}');
    const second = send(upstream);
    while (sim.received.length < 2) await new Promise((r) => setImmediate(r));
    for (const s of sim.sockets) s.write(json('{"final":2}'));
    assert.equal(whole(await second), '{"final":2}');
    assert.equal(sim.connections, 1);
  });

  test('a connection the server closes after its answer, or answers past their end, is not used again', async () => {
    sim.replies = [json('{"a":1}', 'connection: close\r\n'), json('{"b":2}') + 'HTTP/1.1 200 OK\r\n', json('{"c":3}')];
    assert.equal(whole(await send(upstream)), '{"a":1}');
    assert.equal(whole(await send(upstream)), '{"b":2}');
    assert.equal(whole(await send(upstream)), '{"c":3}');
    assert.equal(sim.connections, 3);
  });

  test('an HTTP/1.0 answer without a length is read to the connection\'s end', async () => {
    sim.replies = [{ thenClose: 'HTTP/1.0 200 OK\r\ncontent-type: application/json\r\n\r\n{"old":"server"}' }];
    assert.equal(whole(await send(upstream)), '{"old":"server"}');
  });

  test('an idle connection the server closes is dropped; the next request opens a new one', async () => {
    sim.replies = [json('{"a":1}'), json('{"b":2}')];
    assert.equal(whole(await send(upstream)), '{"a":1}');
    for (const s of sim.sockets) s.end();
    await sim.untilOpen(0);
    assert.equal(whole(await send(upstream)), '{"b":2}');
    assert.equal(sim.connections, 2);
  });

  test('an idle connection is closed after the idle limit', async () => {
    upstream = { ...upstream, connections: new ConnectionPool(sim.port, 50) };
    sim.replies = [json('{"a":1}')];
    assert.equal(whole(await send(upstream)), '{"a":1}');
    await sim.untilOpen(0);
  });

  test('an answer cut short fails the request', async () => {
    sim.replies = [{ thenClose: json('{"a":1}').slice(0, -3) }];
    await assert.rejects(send(upstream), /closed before the end of the answer/);
  });

  test('no answer within the limit: UpstreamTimeout, and the connection is closed', async () => {
    sim.replies = ['hang'];
    await assert.rejects(send(upstream, { timeoutMs: 50 }), UpstreamTimeout);
    await sim.untilOpen(0);
  });

  test('the client leaving closes the connection; leaving after its answer closes nothing', async () => {
    const leaving = new AbortController();
    sim.replies = ['hang'];
    const pending = send(upstream, { signal: leaving.signal });
    await once(sim.server, 'connection');
    leaving.abort();
    await assert.rejects(pending);
    await sim.untilOpen(0);

    const later = new AbortController();
    sim.replies = [json('{"a":1}'), json('{"b":2}')];
    assert.equal(whole(await send(upstream, { signal: later.signal })), '{"a":1}');
    later.abort();
    assert.equal(whole(await send(upstream)), '{"b":2}');
    assert.equal(sim.connections, 2);
  });
});

describe('forward: event streams on the same connections', () => {
  const sim = new ScriptedServer();
  let upstream: Upstream;
  const SSE = 'HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n';
  const open = (opts: { signal?: AbortSignal; timeoutMs?: number } = {}): Promise<Answer> => forward(upstream, '/v1/chat/completions', {
    body: Buffer.from('{"model":"m","stream":true}'), signal: opts.signal ?? new AbortController().signal, stream: true, timeoutMs: opts.timeoutMs ?? 10_000,
  });
  /** The frames' bytes as they came, and how the stream ended. */
  const drain = (answer: Answer): Promise<{ bytes: string; err: Error | null }> => new Promise((resolve) => {
    assert.equal(answer.kind, 'frames');
    if (answer.kind !== 'frames') return;
    let bytes = '';
    answer.body.start((frames) => {
      bytes += frames.toString('latin1');
    }, (err) => resolve({ bytes, err }));
  });

  useScripted(sim, null, () => upstream, (u) => (upstream = u));

  test('frames handed on as they came; a stream that ended whole leaves its connection for the next request', async () => {
    sim.replies = [SSE + '6\r\ndata: \r\n3\r\n1\n\n\r\n0\r\n\r\n', json('{"after":"stream"}')];
    const answer = await open();
    assert.equal(answer.status, 200);
    assert.deepEqual(await drain(answer), { bytes: '6\r\ndata: \r\n3\r\n1\n\n\r\n', err: null });
    assert.equal(whole(await send(upstream)), '{"after":"stream"}');
    assert.equal(sim.connections, 1);
  });

  test('a last frame whose trailer did not come with it: the stream ends, its connection is closed', async () => {
    sim.replies = [SSE + '3\r\nabc\r\n0\r\n', json('{}')];
    assert.deepEqual(await drain(await open()), { bytes: '3\r\nabc\r\n', err: null });
    await sim.untilOpen(0);
    assert.equal(whole(await send(upstream)), '{}');
    assert.equal(sim.connections, 2);
  });

  test('the server closing mid-stream ends it with an error after the whole frames', async () => {
    sim.replies = [{ thenClose: SSE + '3\r\nabc\r\n5\r\nde' }];
    const { bytes, err } = await drain(await open());
    assert.equal(bytes, '3\r\nabc\r\n');
    assert.match(String(err), /closed the stream before its end/);
  });

  test('silence longer than the limit between frames: UpstreamTimeout, the connection closed', async () => {
    sim.replies = [SSE + '3\r\nabc\r\n'];
    const { err } = await drain(await open({ timeoutMs: 50 }));
    assert.ok(err instanceof UpstreamTimeout);
    await sim.untilOpen(0);
  });

  test('the client leaving mid-stream closes the connection', async () => {
    const leaving = new AbortController();
    sim.replies = [SSE + '3\r\nabc\r\n'];
    const answer = await open({ signal: leaving.signal });
    const ended = drain(answer);
    leaving.abort();
    assert.notEqual((await ended).err, null);
    await sim.untilOpen(0);
  });
});

describe('ConnectionPool', () => {
  test('a connection dropped for idleness is not handed out in the moment before its close', async (t) => {
    // Found by bench/ab.ts: a request arriving in the same turn of the event loop as an idle
    // connection's timeout got that connection, already destroyed, and failed with a 502.
    const server = createServer((socket) => socket.on('error', () => {}));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    t.after(() => new Promise<void>((r) => server.close(() => r())));
    const pool = new ConnectionPool((server.address() as AddressInfo).port, 60_000);
    t.after(() => pool.close());
    const first = pool.take();
    await once(first, 'connect');
    pool.give(first);
    first.emit('timeout'); // what the idle limit does; its close comes later in the loop
    const next = pool.take();
    assert.notEqual(next, first);
    next.destroy();
  });
});
