// frameWriter passes whole chunked frames to the socket of an HTTP/1.1 response and their data
// to ServerResponse for an HTTP/1.0 one: either way the client reads exactly the data, in order.
import assert from 'node:assert/strict';
import { createServer, get, type Server } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { frameWriter } from '../src/frame-writer.js';
import { frame } from './support/frames.js';

const PARTS = ['data: {"a":1}\n\n', '', 'data: ünïcode ✓\n\n', 'x'.repeat(70_000), 'data: [DONE]\n\n'];

describe('frameWriter', () => {
  let server: Server;
  let port: number;
  before(async () => {
    server = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.flushHeaders();
      const out = frameWriter(res);
      // One frame at a time, and two in one run.
      const frames = PARTS.filter((p) => p !== '').map((p) => frame(Buffer.from(p)));
      for (const f of frames.slice(0, -2)) out.write(f);
      out.write(Buffer.concat(frames.slice(-2)));
      res.end();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as AddressInfo).port;
  });
  after(() => new Promise<void>((r) => server.close(() => r())));

  test('HTTP/1.1: a valid chunked body carrying every chunk', async () => {
    const body = await new Promise<string>((resolve, reject) => {
      get({ port, host: '127.0.0.1', path: '/' }, (res) => {
        assert.equal(res.headers['transfer-encoding'], 'chunked');
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => resolve(text));
      }).on('error', reject);
    });
    assert.equal(body, PARTS.join(''));
  });

  test('HTTP/1.0: no chunked encoding, the plain bytes until the connection closes', async () => {
    const raw = await new Promise<string>((resolve, reject) => {
      const socket = connect(port, '127.0.0.1', () => socket.write('GET / HTTP/1.0\r\n\r\n'));
      let text = '';
      socket.setEncoding('utf8');
      socket.on('data', (c: string) => (text += c));
      socket.on('end', () => resolve(text));
      socket.on('error', reject);
    });
    const [head, body] = [raw.slice(0, raw.indexOf('\r\n\r\n')), raw.slice(raw.indexOf('\r\n\r\n') + 4)];
    assert.doesNotMatch(head, /transfer-encoding/i);
    assert.equal(body, PARTS.join(''));
  });
});
