// The SGLang simulator itself: shapes, timings and every hazard of SGLANG-FACTS.md.
// Run: npm run build && node --import tsx --test test/simulator.test.ts
// Waits are on events (process output, HTTP answers, ledger lines), never on fixed sleeps.
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request, type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import { connect, createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, afterEach, before, describe, test } from 'node:test';
import {
  crashes,
  events,
  expectedReply,
  isGarbage,
  maxUsage,
  readLedger,
  simBundle,
  simEnv,
  type LedgerEvent,
  type SimOptions,
} from './support/sim.js';

const FAST: SimOptions = {
  startupMs: 30,
  warmupMs: 20,
  releaseMs: 10,
  resumeMs: 10,
  reloadMs: 10,
  tokenMs: 2,
  abortNoticeMs: 200,
};

let dir = '';
let ledgerSeq = 0;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'sglang-sim-test-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

function newLedger(): string {
  return join(dir, `ledger-${++ledgerSeq}.jsonl`);
}

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address() as { port: number };
  await new Promise((r) => srv.close(r));
  return port;
}

// ---------------------------------------------------------------- processes

const live = new Set<Sim>();
afterEach(async () => {
  for (const s of [...live]) await s.kill();
});

class Sim {
  output = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private done = false;

  private constructor(
    readonly proc: ChildProcess,
    readonly port: number,
    readonly ledger: string,
  ) {
    const onData = (chunk: Buffer): void => {
      this.output += chunk.toString('utf8');
    };
    proc.stdout!.on('data', onData);
    proc.stderr!.on('data', onData);
    this.exited = new Promise((resolve) =>
      proc.once('exit', (code, signal) => {
        this.done = true;
        live.delete(this);
        resolve({ code, signal });
      }),
    );
    live.add(this);
  }

  static async start(
    opts: { args?: string[]; env?: SimOptions; python?: boolean; port?: number; name?: string; wait?: boolean; visibleDevices?: string } = {},
  ): Promise<Sim> {
    const port = opts.port ?? (await freePort());
    const ledger = opts.env?.ledger ?? newLedger();
    const args = ['--model-path', `sim/${opts.name ?? 'm'}`, '--served-model-name', opts.name ?? 'm', '--port', String(port), ...(opts.args ?? [])];
    const env = simEnv({ ...FAST, ...opts.env, ledger });
    if (opts.visibleDevices !== undefined) env['CUDA_VISIBLE_DEVICES'] = opts.visibleDevices;
    const proc = opts.python
      ? spawn('python3', ['-m', 'sglang.launch_server', ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] })
      : spawn(process.execPath, [simBundle(), ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    const sim = new Sim(proc, port, ledger);
    if (opts.wait !== false) await sim.waitOutput(/The server is fired up and ready to roll!/);
    return sim;
  }

  /** Resolves once the output (from the start) matches re; rejects if the process exits first. */
  waitOutput(re: RegExp, timeoutMs = 10_000): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        if (!re.test(this.output)) return false;
        cleanup();
        resolve();
        return true;
      };
      const onData = (): void => void check();
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`no output matching ${re} within ${timeoutMs} ms:\n${this.output}`));
      }, timeoutMs);
      const cleanup = (): void => {
        clearTimeout(timer);
        this.proc.stdout!.off('data', onData);
        this.proc.stderr!.off('data', onData);
      };
      this.proc.stdout!.on('data', onData);
      this.proc.stderr!.on('data', onData);
      if (check()) return;
      void this.exited.then(() => {
        if (!check()) {
          cleanup();
          reject(new Error(`process exited while waiting for ${re}:\n${this.output}`));
        }
      });
    });
  }

  events(): LedgerEvent[] {
    return readLedger(this.ledger).filter((e) => e.pid === this.proc.pid);
  }

  async kill(): Promise<void> {
    if (!this.done) this.proc.kill('SIGKILL');
    await this.exited;
  }
}

async function waitLedger(path: string, pred: (e: LedgerEvent) => boolean, what: string, timeoutMs = 10_000): Promise<LedgerEvent> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const hit = readLedger(path).find(pred);
    if (hit) return hit;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; ledger:\n${JSON.stringify(readLedger(path), null, 1)}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

// ---------------------------------------------------------------- HTTP

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
}

function http(
  port: number,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
    const req = request(
      {
        host: '127.0.0.1',
        port,
        method,
        path,
        agent: false,
        headers: payload === undefined ? headers : { 'content-type': 'application/json', ...headers },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

const get = (port: number, path: string, headers?: Record<string, string>): Promise<Answer> => http(port, 'GET', path, undefined, headers);
const post = (port: number, path: string, body: unknown = {}, headers?: Record<string, string>): Promise<Answer> =>
  http(port, 'POST', path, body, headers);
const json = (a: Answer): unknown => JSON.parse(a.text);

function chatBody(n: number, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { model: 'whatever', max_tokens: n, messages: [{ role: 'user', content: 'say something nice' }], ...extra };
}

interface ChatAnswer {
  choices: { message: { content: string }; finish_reason: string }[];
}
async function chatText(port: number, n: number): Promise<string> {
  const a = await post(port, '/v1/chat/completions', chatBody(n));
  assert.equal(a.status, 200, a.text);
  return (json(a) as ChatAnswer).choices[0]!.message.content;
}

/** An open SSE stream: events as they arrive, and the request to destroy (client disconnect). */
class Stream {
  readonly events: string[] = [];
  ended = false;
  private wake: (() => void) | null = null;
  private buffer = '';

  constructor(
    readonly res: IncomingMessage,
    readonly destroy: () => void,
  ) {
    res.setEncoding('utf8');
    res.on('data', (c: string) => {
      this.buffer += c;
      let i: number;
      while ((i = this.buffer.indexOf('\n\n')) >= 0) {
        this.events.push(this.buffer.slice(0, i));
        this.buffer = this.buffer.slice(i + 2);
      }
      this.wake?.();
    });
    const end = (): void => {
      this.ended = true;
      this.wake?.();
    };
    res.on('end', end);
    res.on('close', end);
    res.on('error', end);
  }

  static open(port: number, path: string, body: unknown): Promise<Stream> {
    return new Promise((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, method: 'POST', path, agent: false, headers: { 'content-type': 'application/json' } }, (res) =>
        resolve(new Stream(res, () => req.destroy())),
      );
      req.on('error', reject);
      req.end(JSON.stringify(body));
    });
  }

  /** Waits until `count` events arrived (or the stream ended). */
  async waitEvents(count: number): Promise<void> {
    while (this.events.length < count && !this.ended) await new Promise<void>((r) => (this.wake = r));
  }

  async all(): Promise<string[]> {
    while (!this.ended) await new Promise<void>((r) => (this.wake = r));
    return this.events;
  }
}

function data(event: string): unknown {
  assert.ok(event.startsWith('data: '), event);
  const payload = event.slice('data: '.length);
  return payload === '[DONE]' ? '[DONE]' : JSON.parse(payload);
}

/** Tracks whether a promise settled, to show a call still hangs when its hang event appears. */
function track<T>(p: Promise<T>): { settled: () => boolean } {
  let settled = false;
  p.then(
    () => (settled = true),
    () => (settled = true),
  );
  return { settled: () => settled };
}

// ---------------------------------------------------------------- tests

describe('startup', () => {
  test('python shim execs the simulator: warmup 503, ready line, /health 200, unknown flags ignored', async () => {
    const sim = await Sim.start({
      python: true,
      wait: false,
      env: { warmupMs: 800 },
      args: ['--tp', '1', '--trust-remote-code', '--context-length=4096', '--mem-fraction-static', '0.8', '--dtype', 'auto'],
    });
    await sim.waitOutput(/Uvicorn running on http:\/\/127\.0\.0\.1:\d+/);
    assert.doesNotMatch(sim.output, /fired up/);
    assert.equal((await get(sim.port, '/health')).status, 503);
    await sim.waitOutput(/The server is fired up and ready to roll!/);
    const h = await get(sim.port, '/health');
    assert.equal(h.status, 200);
    assert.equal(h.text, '');
    assert.equal((await get(sim.port, '/health_generate')).status, 200);
    // exec kept the pid: the ledger's writer is the process python3 was started as.
    const kinds = sim.events().map((e) => e.event);
    for (const k of ['start', 'alloc', 'listening', 'ready'] as const) assert.ok(kinds.includes(k), k);
    assert.match(sim.output, /tp_size=1, dp_size=1, base_gpu_id=0, .*ignored=\[--trust-remote-code --context-length=4096 --dtype=auto\]/);
  });

  test('python shim without a bundle says to build', async () => {
    const env = { ...simEnv(), SGLANG_SIM_BUNDLE: join(dir, 'missing.mjs') };
    const proc = spawn('python3', ['-m', 'sglang.launch_server', '--model-path', 'x'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    proc.stderr.on('data', (c: Buffer) => (err += c.toString()));
    const code = await new Promise<number | null>((r) => proc.once('exit', r));
    assert.equal(code, 1);
    assert.match(err, /npm run build/);
  });

  test('missing --model-path is a usage error (exit 2)', async () => {
    const proc = spawn(process.execPath, [simBundle(), '--port', '1234'], { env: simEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    proc.stderr.on('data', (c: Buffer) => (err += c.toString()));
    const code = await new Promise<number | null>((r) => proc.once('exit', r));
    assert.equal(code, 2);
    assert.match(err, /required: --model-path/);
  });

  test('port already taken: error on stderr, exit 1, memory given back', async () => {
    const blocker: Server = createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
    const port = (blocker.address() as { port: number }).port;
    try {
      const sim = await Sim.start({ port, wait: false });
      const { code } = await sim.exited;
      assert.equal(code, 1);
      assert.match(sim.output, /address already in use/);
      assert.equal(maxUsage(readLedger(sim.ledger)), 600);
      const evs = readLedger(sim.ledger);
      assert.equal(sum(evs, 'alloc') - sum(evs, 'free'), 0);
    } finally {
      await new Promise((r) => blocker.close(r));
    }
  });
});

function sum(evs: readonly LedgerEvent[], kind: 'alloc' | 'free'): number {
  return evs.filter((e) => e.event === kind).reduce((s, e) => s + (e.mb ?? 0), 0);
}

describe('routes and shapes', () => {
  test('model info, /v1/models, 404, 405, bad bodies', async () => {
    const sim = await Sim.start({ name: 'alpha', args: ['--model', 'org/alpha-7b'] });
    const info = await get(sim.port, '/get_model_info');
    assert.equal(info.status, 200);
    assert.match(String(info.headers['content-type']), /application\/json/);
    assert.deepEqual(json(info), {
      model_path: 'org/alpha-7b',
      tokenizer_path: 'org/alpha-7b',
      is_generation: true,
      preferred_sampling_params: null,
      weight_version: 'default',
    });
    assert.deepEqual(json(await get(sim.port, '/model_info')), json(info));

    const models = json(await get(sim.port, '/v1/models')) as { object: string; data: Record<string, unknown>[] };
    assert.equal(models.object, 'list');
    assert.equal(models.data.length, 1);
    const m = models.data[0]!;
    assert.equal(typeof m['created'], 'number');
    assert.deepEqual({ ...m, created: 0 }, { id: 'alpha', object: 'model', created: 0, owned_by: 'sglang', root: 'alpha', parent: null, max_model_len: 4096 });

    const nf = await get(sim.port, '/nope');
    assert.equal(nf.status, 404);
    assert.deepEqual(json(nf), { detail: 'Not Found' });
    const na = await get(sim.port, '/v1/chat/completions');
    assert.equal(na.status, 405);
    assert.deepEqual(json(na), { detail: 'Method Not Allowed' });

    const wrongType = await http(sim.port, 'POST', '/v1/chat/completions', JSON.stringify(chatBody(2)), { 'content-type': 'text/plain' });
    assert.equal(wrongType.status, 400);
    const err = json(wrongType) as Record<string, unknown>;
    assert.equal(err['object'], 'error');
    assert.equal(err['type'], 'BadRequestError');
    assert.equal(err['param'], null);
    assert.equal(err['code'], 400);
    assert.equal(typeof err['message'], 'string');
    const badJson = await post(sim.port, '/v1/completions', '{"prompt": ');
    assert.equal(badJson.status, 400);
    assert.equal((json(badJson) as { code: number }).code, 400);
    const noMessages = await post(sim.port, '/v1/chat/completions', { max_tokens: 2 });
    assert.equal(noMessages.status, 400);

    const flush = await get(sim.port, '/flush_cache');
    assert.equal(flush.status, 200);
    assert.match(String(flush.headers['content-type']), /text\/plain/);
    assert.match(flush.text, /^Cache flushed\./);
    assert.equal((await post(sim.port, '/flush_cache')).status, 200);
  });

  test('non-stream chat, completion and /generate answer expectedReply', async () => {
    const sim = await Sim.start({ name: 'beta' });
    const chat = await post(sim.port, '/v1/chat/completions', chatBody(5));
    assert.equal(chat.status, 200);
    const c = json(chat) as Record<string, unknown> & { choices: Record<string, unknown>[]; usage: Record<string, unknown> };
    assert.match(String(c['id']), /^[0-9a-f]{32}$/);
    assert.equal(c['object'], 'chat.completion');
    assert.equal(c['model'], 'whatever', 'model is echoed');
    assert.deepEqual(c.choices, [
      {
        index: 0,
        message: { role: 'assistant', content: expectedReply('beta', 5), reasoning_content: null, tool_calls: null },
        logprobs: null,
        finish_reason: 'length',
        matched_stop: null,
      },
    ]);
    assert.deepEqual(c.usage, { prompt_tokens: 3, total_tokens: 8, completion_tokens: 5, prompt_tokens_details: null });
    assert.equal(expectedReply('beta', 3), 'beta#1 beta#2 beta#3');

    const comp = json(await post(sim.port, '/v1/completions', { model: 'beta', prompt: 'once upon', max_tokens: 4 })) as Record<string, unknown>;
    assert.equal(comp['object'], 'text_completion');
    assert.deepEqual(comp['choices'], [{ index: 0, text: expectedReply('beta', 4), logprobs: null, finish_reason: 'length', matched_stop: null }]);

    // default budget is 16 tokens; max_completion_tokens is honoured too
    assert.equal(await chatText(sim.port, 16), expectedReply('beta', 16));
    const defaults = json(await post(sim.port, '/v1/chat/completions', { messages: [{ role: 'user', content: 'x' }] })) as ChatAnswer;
    assert.equal(defaults.choices[0]!.message.content, expectedReply('beta', 16));
    const mct = json(await post(sim.port, '/v1/chat/completions', { max_completion_tokens: 2, messages: [{ role: 'user', content: 'x' }] })) as ChatAnswer;
    assert.equal(mct.choices[0]!.message.content, expectedReply('beta', 2));

    const gen = json(await post(sim.port, '/generate', { text: 'hi', sampling_params: { max_new_tokens: 3 } })) as { text: string; meta_info: Record<string, unknown> };
    assert.equal(gen.text, expectedReply('beta', 3));
    assert.deepEqual(gen.meta_info['finish_reason'], { type: 'length', length: 3 });
    const gs = await Stream.open(sim.port, '/generate', { text: 'hi', sampling_params: { max_new_tokens: 2 }, stream: true });
    const gevs = (await gs.all()).map(data);
    assert.equal(gevs.at(-1), '[DONE]');
    assert.equal((gevs.at(-2) as { text: string }).text, expectedReply('beta', 2), 'native streams carry cumulative text');
  });

  test('chat stream: role chunk, one chunk per token, finish, usage, [DONE]', async () => {
    const sim = await Sim.start({ name: 'gamma' });
    const s = await Stream.open(sim.port, '/v1/chat/completions', chatBody(3, { stream: true, stream_options: { include_usage: true } }));
    assert.equal(s.res.statusCode, 200);
    assert.match(String(s.res.headers['content-type']), /^text\/event-stream/);
    const evs = (await s.all()).map(data);
    assert.equal(evs.length, 7);
    assert.equal(evs[6], '[DONE]');
    const chunks = evs.slice(0, 6) as { id: string; object: string; created: number; model: string; choices: Record<string, unknown>[]; usage?: unknown }[];
    for (const ch of chunks) {
      assert.equal(ch.object, 'chat.completion.chunk');
      assert.equal(ch.id, chunks[0]!.id);
      assert.equal(ch.model, 'whatever');
    }
    assert.deepEqual(chunks[0]!.choices[0]!['delta'], { role: 'assistant', content: '' });
    const text = chunks.slice(1, 4).map((ch) => (ch.choices[0]!['delta'] as { content: string }).content);
    assert.deepEqual(text, ['gamma#1 ', 'gamma#2 ', 'gamma#3']);
    assert.equal(text.join(''), expectedReply('gamma', 3));
    assert.deepEqual(chunks[4]!.choices[0], { index: 0, delta: {}, logprobs: null, finish_reason: 'length', matched_stop: null });
    assert.deepEqual(chunks[5]!.choices, []);
    assert.deepEqual(chunks[5]!.usage, { prompt_tokens: 3, total_tokens: 6, completion_tokens: 3, prompt_tokens_details: null });

    // completions stream, no usage asked: no role chunk, no usage chunk
    const c = await Stream.open(sim.port, '/v1/completions', { prompt: 'a b', max_tokens: 2, stream: true });
    const cevs = (await c.all()).map(data) as ({ object: string; choices: { text: string; finish_reason: string | null }[] } | string)[];
    assert.equal(cevs.length, 4);
    assert.equal(cevs[3], '[DONE]');
    const [a, b, fin] = cevs as { object: string; choices: { text: string; finish_reason: string | null }[] }[];
    assert.equal(a!.object, 'text_completion');
    assert.equal(a!.choices[0]!.text + b!.choices[0]!.text, expectedReply('gamma', 2));
    assert.equal(fin!.choices[0]!.finish_reason, 'length');
  });

  test('--api-key: 401 without the bearer token except /health', async () => {
    const sim = await Sim.start({ args: ['--api-key', 'sekrit'] });
    for (const path of ['/v1/models', '/get_model_info', '/nope']) {
      const a = await get(sim.port, path);
      assert.equal(a.status, 401, path);
      assert.deepEqual(json(a), { error: 'Unauthorized' });
    }
    assert.equal((await get(sim.port, '/v1/models', { authorization: 'Bearer wrong' })).status, 401);
    assert.equal((await post(sim.port, '/v1/chat/completions', chatBody(1))).status, 401);
    assert.equal((await get(sim.port, '/v1/models', { authorization: 'Bearer sekrit' })).status, 200);
    assert.equal((await get(sim.port, '/health')).status, 200);
    assert.equal((await get(sim.port, '/health_generate')).status, 200);
  });

  test('keep-alive like uvicorn: no Keep-Alive header, idle connection closed after SGLANG_SIM_KEEPALIVE_MS', async () => {
    const sim = await Sim.start({ env: { keepAliveMs: 300 } });
    const socket = connect(sim.port, '127.0.0.1');
    let received = '';
    let wake: (() => void) | null = null;
    socket.setEncoding('utf8');
    socket.on('data', (c: string) => {
      received += c;
      wake?.();
    });
    const closed = new Promise<number>((r) => socket.once('close', () => r(Date.now())));
    const ask = async (): Promise<number> => {
      const before = received.length;
      socket.write(`GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
      while (!/\r\n\r\n[\s\S]*\}\]\}$/.test(received.slice(before))) await new Promise<void>((r) => (wake = r));
      return Date.now();
    };
    await ask();
    await ask(); // same connection still usable
    const last = Date.now();
    assert.equal((received.match(/HTTP\/1\.1 200 OK/g) ?? []).length, 2);
    assert.doesNotMatch(received, /^keep-alive:/im);
    const closedAt = await closed;
    assert.ok(closedAt - last >= 250, `closed after ${closedAt - last} ms idle`);
    assert.ok(closedAt - last < 3000, `closed after ${closedAt - last} ms idle`);
  });
});

describe('hazards', () => {
  test('hazard 2: /health on a released server crashes it', async () => {
    const sim = await Sim.start({ args: ['--enable-memory-saver'] });
    const rel = await post(sim.port, '/release_memory_occupation', {});
    assert.equal(rel.status, 200);
    assert.equal(rel.text, 'null');
    assert.match(String(rel.headers['content-type']), /application\/json/);
    // safe probes on a sleeping server
    assert.equal((await get(sim.port, '/get_model_info')).status, 200);
    assert.equal((await get(sim.port, '/v1/models')).status, 200);
    assert.equal((await get(sim.port, '/flush_cache')).status, 200);
    await assert.rejects(get(sim.port, '/health'));
    const { code } = await sim.exited;
    assert.equal(code, 1);
    const evs = sim.events();
    assert.deepEqual(
      crashes(evs).map((e) => [e.reason, e.hazard]),
      [['forward_while_released', 2]],
    );
    assert.match(sim.output, /RuntimeError: CUDA error: an illegal memory access was encountered/);
    assert.equal(sum(evs, 'alloc') - sum(evs, 'free'), 0, 'crash frees the memory in the ledger');
  });

  test('hazard 2: a generation on a released server crashes it', async () => {
    const sim = await Sim.start({ args: ['--enable-memory-saver'] });
    assert.equal((await post(sim.port, '/release_memory_occupation', { tags: ['kv_cache'] })).status, 200);
    await assert.rejects(post(sim.port, '/v1/chat/completions', chatBody(2)));
    await sim.exited;
    assert.equal(crashes(sim.events())[0]?.reason, 'forward_while_released');
  });

  test('hazard 1: release while a request runs crashes the server', async () => {
    const sim = await Sim.start({ args: ['--enable-memory-saver'] });
    const dropped = assert.rejects(post(sim.port, '/v1/chat/completions', chatBody(2000)), 'the running request is dropped');
    await waitLedger(sim.ledger, (e) => e.event === 'request' && e.route === '/v1/chat/completions', 'chat request');
    assert.equal((await get(sim.port, '/flush_cache')).status, 400);
    await assert.rejects(post(sim.port, '/release_memory_occupation', {}));
    await dropped;
    assert.equal((await sim.exited).code, 1);
    assert.deepEqual(crashes(sim.events()).map((e) => e.reason), ['release_while_running']);
    assert.match(sim.output, /AssertionError/);
  });

  test('hazard 6: a disconnected stream keeps running until noticed (flush 400, then 200, then release ok)', async () => {
    const sim = await Sim.start({ args: ['--enable-memory-saver'], env: { abortNoticeMs: 1000 } });
    const s = await Stream.open(sim.port, '/v1/chat/completions', chatBody(3000, { stream: true }));
    await s.waitEvents(2); // role chunk + first token
    s.destroy();
    const flush = await get(sim.port, '/flush_cache');
    assert.equal(flush.status, 400, 'a disconnected request still runs');
    assert.match(flush.text, /^Cache flushed\./);
    await waitLedger(sim.ledger, (e) => e.event === 'abort', 'abort notice');
    assert.equal((await get(sim.port, '/flush_cache')).status, 200);
    assert.equal((await post(sim.port, '/release_memory_occupation', {})).status, 200);
    assert.deepEqual(crashes(sim.events()), []);
  });

  test('hazard 6: release right after a client disconnected crashes (hazard 1)', async () => {
    const sim = await Sim.start({ args: ['--enable-memory-saver'], env: { abortNoticeMs: 1000 } });
    const s = await Stream.open(sim.port, '/v1/chat/completions', chatBody(3000, { stream: true }));
    await s.waitEvents(2);
    s.destroy();
    await assert.rejects(post(sim.port, '/release_memory_occupation', {}));
    await sim.exited;
    assert.deepEqual(crashes(sim.events()).map((e) => e.reason), ['release_while_running']);
  });

  test('hazard 3: resuming tags that were not released crashes (KeyError)', async () => {
    const sim = await Sim.start({ args: ['--enable-memory-saver'] });
    assert.equal((await post(sim.port, '/release_memory_occupation', { tags: ['kv_cache'] })).status, 200);
    await assert.rejects(post(sim.port, '/resume_memory_occupation', { tags: null }));
    assert.equal((await sim.exited).code, 1);
    assert.deepEqual(crashes(sim.events()).map((e) => [e.reason, e.hazard]), [['resume_not_released', 3]]);
    assert.match(sim.output, /KeyError: 'weights'/);
  });

  test('release without --enable-weights-cpu-backup: garbage after resume until update_weights_from_disk', async () => {
    const sim = await Sim.start({ name: 'delta', args: ['--enable-memory-saver'] });
    assert.equal(await chatText(sim.port, 4), expectedReply('delta', 4));
    assert.equal((await post(sim.port, '/release_memory_occupation', { tags: ['weights', 'kv_cache', 'cuda_graph'] })).text, 'null');
    const evs = sim.events();
    assert.equal(evs.filter((e) => e.event === 'free').at(-1)?.mb, 600);
    assert.equal((await post(sim.port, '/resume_memory_occupation', {})).text, 'null');
    assert.equal(sim.events().filter((e) => e.event === 'alloc').at(-1)?.mb, 600);
    const bad = await chatText(sim.port, 4);
    assert.ok(isGarbage(bad), bad);
    assert.ok(!isGarbage(expectedReply('delta', 4)));
    assert.equal((await get(sim.port, '/health')).status, 200, 'health passes, answers are still wrong');
    const up = await post(sim.port, '/update_weights_from_disk', { model_path: 'sim/delta' });
    assert.equal(up.status, 200);
    assert.deepEqual(json(up), { success: true, message: 'Succeeded to update model weights.', num_paused_requests: 0 });
    assert.equal(await chatText(sim.port, 4), expectedReply('delta', 4));
    assert.deepEqual(crashes(sim.events()), []);
  });

  test('release with --enable-weights-cpu-backup: correct answers after resume', async () => {
    const sim = await Sim.start({ name: 'eps', args: ['--enable-memory-saver', '--enable-weights-cpu-backup'] });
    assert.equal((await post(sim.port, '/release_memory_occupation', { tags: null })).status, 200);
    assert.equal((await post(sim.port, '/resume_memory_occupation', { tags: null })).status, 200);
    assert.equal(await chatText(sim.port, 6), expectedReply('eps', 6));
  });

  test('update_weights_from_disk on a released server crashes', async () => {
    const sim = await Sim.start({ args: ['--enable-memory-saver'] });
    assert.equal((await post(sim.port, '/release_memory_occupation', {})).status, 200);
    await assert.rejects(post(sim.port, '/update_weights_from_disk', { model_path: 'sim/m' }));
    await sim.exited;
    assert.deepEqual(crashes(sim.events()).map((e) => e.reason), ['reload_while_released']);
  });

  test('without --enable-memory-saver, release answers 200 but frees nothing', async () => {
    const sim = await Sim.start({ name: 'zeta' });
    assert.equal((await post(sim.port, '/release_memory_occupation', {})).text, 'null');
    assert.equal(sim.events().filter((e) => e.event === 'free').length, 0);
    assert.equal(await chatText(sim.port, 2), expectedReply('zeta', 2), 'memory never went away');
    assert.equal((await post(sim.port, '/resume_memory_occupation', {})).text, 'null');
    assert.equal(sim.events().filter((e) => e.event === 'alloc').length, 1);
    assert.deepEqual(crashes(sim.events()), []);
  });

  test('one GPU: a second server cannot start while the first is awake; a resume that does not fit hangs', async () => {
    const ledger = newLedger();
    const a = await Sim.start({ name: 'a', args: ['--enable-memory-saver', '--enable-weights-cpu-backup'], env: { ledger } });
    const b1 = await Sim.start({ name: 'b', args: ['--enable-memory-saver'], env: { ledger }, wait: false });
    assert.equal((await b1.exited).code, 1);
    assert.match(b1.output, /CUDA out of memory/);
    assert.equal(events(ledger, 'oom').length, 1);

    assert.equal((await post(a.port, '/release_memory_occupation', {})).status, 200);
    const b2 = await Sim.start({ name: 'b', args: ['--enable-memory-saver'], env: { ledger } });
    assert.equal((await chatText(b2.port, 2)), expectedReply('b', 2));
    const resume = track(post(a.port, '/resume_memory_occupation', {}).catch(() => undefined));
    const hang = await waitLedger(ledger, (e) => e.event === 'hang', 'hang event');
    assert.equal(hang.reason, 'no_memory');
    assert.equal(hang.pid, a.proc.pid);
    assert.equal(resume.settled(), false, 'resume never answers');
    assert.ok(maxUsage(readLedger(ledger)) <= 1000);
    assert.deepEqual(crashes(readLedger(ledger)), []);
  });

  test('SIGTERM exits 0 promptly and the ledger balances', async () => {
    const sim = await Sim.start({ args: ['--enable-memory-saver'] });
    assert.equal((await post(sim.port, '/release_memory_occupation', { tags: ['kv_cache'] })).status, 200);
    const t0 = Date.now();
    sim.proc.kill('SIGTERM');
    const { code } = await sim.exited;
    assert.equal(code, 0);
    assert.ok(Date.now() - t0 < 1000, `took ${Date.now() - t0} ms`);
    const evs = sim.events();
    assert.equal(sum(evs, 'alloc'), 600);
    assert.equal(sum(evs, 'free'), 600);
    assert.deepEqual(evs.filter((e) => e.event === 'free').map((e) => e.mb), [210, 390]);
    assert.equal(evs.at(-1)?.event, 'exit');
    assert.equal(evs.at(-1)?.code, 0);
  });

  test('a SIGKILLed server\'s memory is given back when the next server takes the ledger lock', async () => {
    const ledger = newLedger();
    const a = await Sim.start({ name: 'a', env: { ledger } });
    await a.kill();
    const b = await Sim.start({ name: 'b', env: { ledger } });
    const reaped = events(ledger, 'free').find((e) => e.pid === a.proc.pid);
    assert.equal(reaped?.reason, 'process_gone');
    assert.equal(reaped?.by, b.proc.pid);
    assert.ok(maxUsage(readLedger(ledger)) <= 1000);
  });

  test('pause_generation: new requests wait outside the scheduler; release/resume while paused is safe', async () => {
    const sim = await Sim.start({ name: 'eta', args: ['--enable-memory-saver', '--enable-weights-cpu-backup'] });
    const paused = await post(sim.port, '/pause_generation', { mode: 'abort' });
    assert.equal(paused.status, 200);
    const waiting = post(sim.port, '/v1/chat/completions', chatBody(3));
    const waitingState = track(waiting);
    await waitLedger(sim.ledger, (e) => e.event === 'request' && e.route === '/v1/chat/completions', 'chat request');
    assert.equal((await get(sim.port, '/flush_cache')).status, 200, 'a request blocked by pause is not in the scheduler');
    assert.equal((await post(sim.port, '/release_memory_occupation', {})).status, 200);
    assert.equal((await post(sim.port, '/resume_memory_occupation', {})).status, 200);
    assert.equal(waitingState.settled(), false);
    assert.equal((await post(sim.port, '/continue_generation', {})).status, 200);
    const a = await waiting;
    assert.equal((json(a) as ChatAnswer).choices[0]!.message.content, expectedReply('eta', 3));
    assert.deepEqual(crashes(sim.events()), []);
  });

  test('pause_generation(retract) keeps running requests: flush 400; abort mode ends them', async () => {
    const sim = await Sim.start({ args: ['--enable-memory-saver'] });
    const running = post(sim.port, '/v1/chat/completions', chatBody(2000));
    await waitLedger(sim.ledger, (e) => e.event === 'request' && e.route === '/v1/chat/completions', 'chat request');
    assert.equal((await post(sim.port, '/pause_generation', { mode: 'retract' })).status, 200);
    assert.equal((await get(sim.port, '/flush_cache')).status, 400);
    assert.equal((await post(sim.port, '/pause_generation', { mode: 'abort' })).status, 200);
    const a = json(await running) as ChatAnswer;
    assert.equal(a.choices[0]!.finish_reason, 'abort');
    assert.equal((await get(sim.port, '/flush_cache')).status, 200);
  });
});

describe('ledger', () => {
  test('hazard 4 (SGLANG_SIM_FREE_LAG_MS): memory stays counted after release answers', async () => {
    const ledger = newLedger();
    const a = await Sim.start({ name: 'a', args: ['--enable-memory-saver'], env: { ledger, freeLagMs: 60_000 } });
    assert.equal((await post(a.port, '/release_memory_occupation', {})).status, 200);
    const free = events(ledger, 'free').at(-1)!;
    assert.ok(free.at !== undefined && free.at >= free.t + 59_000, JSON.stringify(free));
    const b = await Sim.start({ name: 'b', env: { ledger }, wait: false });
    assert.equal((await b.exited).code, 1, 'the released memory is not free yet');
    assert.equal(events(ledger, 'oom').length, 1);
    assert.ok(maxUsage(readLedger(ledger)) <= 1000);
  });

  test('SGLANG_SIM_CUDA_GRAPH_MB: the graphs come outside --mem-fraction-static, and go and come back with release and resume', async () => {
    const ledger = newLedger();
    const sim = await Sim.start({ args: ['--enable-memory-saver', '--mem-fraction-static', '0.4'], env: { ledger, modelMb: 200, cudaGraphMb: 150 } });
    assert.deepEqual(sim.events().filter((e) => e.event === 'alloc').map((e) => e.mb), [550]);
    assert.equal((await post(sim.port, '/release_memory_occupation', {})).status, 200);
    assert.equal((await post(sim.port, '/resume_memory_occupation', {})).status, 200);
    assert.deepEqual(sim.events().filter((e) => e.event === 'alloc').map((e) => e.mb), [550, 550]);
  });

  test('a stale ledger lock left by a dead process is taken over', async () => {
    const ledger = newLedger();
    const dead = spawn(process.execPath, ['-e', '0']);
    await new Promise((r) => dead.once('exit', r));
    mkdirSync(`${ledger}.lock`);
    writeFileSync(`${ledger}.lock/owner`, String(dead.pid));
    const sim = await Sim.start({ env: { ledger } });
    assert.equal(sim.events().filter((e) => e.event === 'alloc').length, 1);
    assert.equal(existsSync(`${ledger}.lock`), false);
  });
});

describe('several GPUs (SGLANG_SIM_GPUS)', () => {
  /** The simulator's nvidia-smi, once: the MB in use on each GPU by index. */
  const smi = (ledger: string, gpus: number): number[] => {
    const out = execFileSync(process.execPath, [fileURLToPath(new URL('../dist/sim-nvidia-smi.mjs', import.meta.url)), '--query-gpu=index,memory.used', '--format=csv,noheader,nounits'], {
      env: simEnv({ ledger, gpus }),
      encoding: 'utf8',
    });
    return out.trim().split('\n').map((line, i) => {
      const [index, used] = line.split(', ').map(Number);
      assert.equal(index, i);
      return used!;
    });
  };
  const gpusOf = async (args: string[], visibleDevices?: string): Promise<number[] | undefined> => {
    const sim = await Sim.start({ args, env: { gpus: 4 }, visibleDevices });
    const gpus = sim.events().find((e) => e.event === 'start')?.gpus;
    await sim.kill();
    return gpus;
  };

  test('a TP=2 server takes its share on each of its GPUs; nvidia-smi prints a line per GPU', async () => {
    const ledger = newLedger();
    const t = await Sim.start({ name: 't', args: ['--enable-memory-saver', '--tp', '2'], env: { ledger, gpus: 3 } });
    const allocs = t.events().filter((e) => e.event === 'alloc');
    assert.deepEqual(allocs.map((e) => e.gpu), [0, 1]);
    assert.equal(allocs[0]!.mb, allocs[1]!.mb);
    assert.deepEqual(smi(ledger, 3), [allocs[0]!.mb, allocs[0]!.mb, 0]);
    assert.equal((await post(t.port, '/release_memory_occupation', {})).status, 200);
    assert.deepEqual(t.events().filter((e) => e.event === 'free').map((e) => e.gpu), [0, 1]);
    assert.deepEqual(smi(ledger, 3), [0, 0, 0]);
  });

  test('CUDA_VISIBLE_DEVICES, --base-gpu-id, --dp-size and --enable-dp-attention choose the GPUs', async () => {
    assert.deepEqual(await gpusOf([]), [0]);
    assert.deepEqual(await gpusOf([], '2,3'), [2]);
    assert.deepEqual(await gpusOf(['--base-gpu-id', '1'], '2,3'), [3]);
    assert.deepEqual(await gpusOf(['--dp-size', '2']), [0, 1]);
    assert.deepEqual(await gpusOf(['--tp-size', '2', '--dp', '2']), [0, 1, 2, 3]);
    assert.deepEqual(await gpusOf(['--tp', '2', '--dp-size', '2', '--enable-dp-attention']), [0, 1]);
  });

  test('a GPU the host does not have: CUDA\'s error at start, exit 1', async () => {
    const beyond = await Sim.start({ args: ['--tp', '2'], wait: false });
    assert.equal((await beyond.exited).code, 1);
    assert.match(beyond.output, /CUDA error: invalid device ordinal/);
    const none = await Sim.start({ env: { gpus: 2 }, visibleDevices: '5', wait: false });
    assert.equal((await none.exited).code, 1);
    assert.match(none.output, /No CUDA GPUs are available/);
  });

  test('a server over two GPUs does not start where one of them is full (out of memory)', async () => {
    const ledger = newLedger();
    await Sim.start({ name: 'one', env: { ledger, gpus: 2 }, visibleDevices: '1' });
    const t = await Sim.start({ name: 't', args: ['--tp', '2'], env: { ledger, gpus: 2 }, wait: false });
    assert.equal((await t.exited).code, 1);
    assert.match(t.output, /CUDA out of memory/);
    const zero = await Sim.start({ name: 'zero', env: { ledger, gpus: 2 }, visibleDevices: '0' });
    assert.deepEqual(zero.events().filter((e) => e.event === 'alloc').map((e) => e.gpu), [0]);
    assert.ok(maxUsage(readLedger(ledger)) <= 1000);
  });
});

describe('fault knobs', () => {
  test('SGLANG_SIM_HANG_RESUME: resume never answers', async () => {
    const sim = await Sim.start({ args: ['--enable-memory-saver'], env: { hangResume: true } });
    assert.equal((await post(sim.port, '/release_memory_occupation', {})).status, 200);
    const resume = track(post(sim.port, '/resume_memory_occupation', {}).catch(() => undefined));
    const hang = await waitLedger(sim.ledger, (e) => e.event === 'hang', 'hang event');
    assert.equal(hang.reason, 'injected');
    assert.equal(hang.route, '/resume_memory_occupation');
    assert.equal(resume.settled(), false);
    assert.equal((await get(sim.port, '/get_model_info')).status, 200, 'tokenizer-side routes still answer');
  });

  test('SGLANG_SIM_HANG_RELEASE: release never answers', async () => {
    const sim = await Sim.start({ args: ['--enable-memory-saver'], env: { hangRelease: true } });
    const release = track(post(sim.port, '/release_memory_occupation', {}).catch(() => undefined));
    const hang = await waitLedger(sim.ledger, (e) => e.event === 'hang', 'hang event');
    assert.equal(hang.route, '/release_memory_occupation');
    assert.equal(release.settled(), false);
    assert.equal(sim.events().filter((e) => e.event === 'free').length, 0);
  });

  test('SGLANG_SIM_FAIL_RELEASE: release answers 500 and frees nothing', async () => {
    const sim = await Sim.start({ name: 'theta', args: ['--enable-memory-saver'], env: { failRelease: true } });
    const rel = await post(sim.port, '/release_memory_occupation', {});
    assert.equal(rel.status, 500);
    assert.equal((json(rel) as { code: number }).code, 500);
    assert.equal(sim.events().filter((e) => e.event === 'free').length, 0);
    assert.equal(await chatText(sim.port, 2), expectedReply('theta', 2), 'still awake');
  });

  test('SGLANG_SIM_EXIT_AT_START: exits with that code after an error', async () => {
    const sim = await Sim.start({ env: { exitAtStart: 3 }, wait: false });
    assert.equal((await sim.exited).code, 3);
    assert.match(sim.output, /EXIT_AT_START/);
    const evs = sim.events();
    assert.deepEqual(evs.map((e) => e.event), ['start', 'fault', 'exit']);
    assert.deepEqual(crashes(evs), []);
  });

  test('SGLANG_SIM_CRASH_AFTER_TOKENS: the stream is cut after n tokens and the process dies', async () => {
    const sim = await Sim.start({ name: 'iota', env: { crashAfterTokens: 3 } });
    const s = await Stream.open(sim.port, '/v1/chat/completions', chatBody(10, { stream: true }));
    const evs = await s.all();
    assert.equal(evs.length, 4, 'role chunk + 3 tokens, no finish, no [DONE]');
    assert.equal((data(evs[3]!) as { choices: { delta: { content: string } }[] }).choices[0]!.delta.content, 'iota#3 ');
    assert.notEqual((await sim.exited).code, 0);
    const ledgerEvents = sim.events();
    assert.deepEqual(crashes(ledgerEvents), [], 'an injected fault is not a hazard crash');
    assert.equal(ledgerEvents.find((e) => e.event === 'fault')?.fault, 'crash_after_tokens');
    assert.equal(sum(ledgerEvents, 'alloc') - sum(ledgerEvents, 'free'), 0);
  });
});

describe('what SGLang does that the daemon must respect (issue P6)', () => {
  test('--admin-api-key: only it opens the control routes; the API key opens the others', async () => {
    const sim = await Sim.start({ args: ['--api-key', 'user', '--admin-api-key', 'admin'] });
    const user = { authorization: 'Bearer user' };
    const admin = { authorization: 'Bearer admin' };
    for (const path of ['/flush_cache', '/pause_generation', '/continue_generation', '/weights_checker']) {
      assert.equal((await post(sim.port, path, {}, user)).status, 401, `${path} with the API key`);
      assert.equal((await post(sim.port, path, {}, admin)).status, 200, `${path} with the admin key`);
    }
    assert.equal((await get(sim.port, '/model_info', user)).status, 200);
    assert.equal((await get(sim.port, '/model_info', admin)).status, 401, 'the admin key is not the API key');
    assert.equal((await post(sim.port, '/v1/chat/completions', chatBody(1), user)).status, 200);
    assert.equal((await get(sim.port, '/health')).status, 200);
  });

  test('--config: flags hidden from the command line, shown by /server_info', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sim-config-'));
    try {
      const config = join(dir, 'c.yaml');
      writeFileSync(config, 'enable_memory_saver: true\nenable-weights-cpu-backup: false\ndp_size: 2\napi_key: "hidden"\n');
      const sim = await Sim.start({ args: ['--config', config], env: { gpus: 2 } });
      assert.equal((await get(sim.port, '/server_info')).status, 401);
      const info = json(await get(sim.port, '/server_info', { authorization: 'Bearer hidden' })) as Record<string, unknown>;
      assert.equal(info.enable_memory_saver, true);
      assert.equal(info.enable_weights_cpu_backup, false);
      assert.equal(info.dp_size, 2);
      assert.deepEqual(json(await get(sim.port, '/get_server_info', { authorization: 'Bearer hidden' })), info);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('paused: a /health probe on a released server waits for continue instead of crashing it', async () => {
    const sim = await Sim.start({ args: ['--enable-memory-saver', '--enable-weights-cpu-backup'] });
    assert.equal((await post(sim.port, '/pause_generation', { mode: 'abort' })).status, 200);
    assert.equal((await post(sim.port, '/release_memory_occupation', {})).status, 200);
    const probe = track(get(sim.port, '/health'));
    await waitLedger(sim.ledger, (e) => e.event === 'request' && e.route === '/health', 'the probe arrived');
    assert.equal(probe.settled(), false);
    assert.equal((await post(sim.port, '/resume_memory_occupation', {})).status, 200);
    assert.equal((await post(sim.port, '/continue_generation', {})).status, 200);
    await waitLedger(sim.ledger, (e) => e.event === 'continue', 'continued');
    assert.deepEqual(crashes(sim.events()), []);
  });

  test('SGLANG_SIM_NO_PAUSE: pause and continue are 404 (builds before 2025-07)', async () => {
    const sim = await Sim.start({ env: { noPause: true } });
    assert.equal((await post(sim.port, '/pause_generation', { mode: 'abort' })).status, 404);
    assert.equal((await post(sim.port, '/continue_generation', {})).status, 404);
  });

  test('--dp-size 2: /flush_cache sees rank 0 only, /v1/loads every rank, a release crashes on rank 1 work', async () => {
    const sim = await Sim.start({ args: ['--enable-memory-saver', '--dp-size', '2'], env: { tokenMs: 20, gpus: 2 } });
    const first = post(sim.port, '/v1/chat/completions', chatBody(2));
    await waitLedger(sim.ledger, (e) => e.event === 'request' && e.route === '/v1/chat/completions', 'rank 0 busy');
    const second = post(sim.port, '/v1/chat/completions', chatBody(100)).catch(() => null); // dropped by the crash
    await first;
    // Rank 0 idle, rank 1 running.
    assert.equal((await post(sim.port, '/flush_cache')).status, 200);
    const loads = json(await get(sim.port, '/v1/loads?include=core')) as { loads: { dp_rank: number; num_running_reqs: number }[] };
    assert.deepEqual(loads.loads.map((l) => [l.dp_rank, l.num_running_reqs]), [[0, 0], [1, 1]]);
    await post(sim.port, '/release_memory_occupation', {}).catch(() => null);
    await sim.exited;
    await second;
    assert.equal(crashes(sim.events())[0]?.reason, 'release_while_running');
  });

  test('/flush_cache?timeout= waits inside the server until idle', async () => {
    const sim = await Sim.start({ env: { tokenMs: 10 } });
    const gen = post(sim.port, '/v1/chat/completions', chatBody(10));
    await waitLedger(sim.ledger, (e) => e.event === 'request' && e.route === '/v1/chat/completions', 'busy');
    assert.equal((await post(sim.port, '/flush_cache?timeout=5')).status, 200);
    assert.equal((await gen).status, 200);
  });

  test('residue stays after release; --mem-fraction-static sizes the KV cache from the memory free at start', async () => {
    const ledger = newLedger();
    const a = await Sim.start({ name: 'a', args: ['--enable-memory-saver', '--mem-fraction-static', '0.8'], env: { ledger, residueMb: 150 } });
    // 0.8 × 1000 free = 800 (weights 360 + graphs 30 + KV 410), plus the residue.
    assert.equal(a.events().find((e) => e.event === 'alloc')?.mb, 950);
    assert.equal((await post(a.port, '/release_memory_occupation', {})).status, 200);
    const b = await Sim.start({ name: 'b', args: ['--enable-memory-saver', '--mem-fraction-static', '0.8'], env: { ledger, residueMb: 150 } });
    // 0.8 × 850 free = 680, plus the residue: b got a smaller KV cache.
    assert.equal(b.events().find((e) => e.event === 'alloc')?.mb, 830);
    assert.equal((await post(b.port, '/release_memory_occupation', {})).status, 200);
    // a's 800 no longer fit next to two residues (300): its resume hangs (hazard 5).
    void post(a.port, '/resume_memory_occupation', {}).catch(() => null);
    const hang = await waitLedger(ledger, (e) => e.event === 'hang', 'a resume that does not fit');
    assert.equal(hang.reason, 'no_memory');
  });

  test('reload faults: FAIL_RELOAD 400 and garbage; CORRUPT_RELOAD 200 and garbage; /weights_checker tells', async () => {
    const args = ['--enable-memory-saver'];
    for (const env of [{ failReload: true }, { corruptReload: true }]) {
      const sim = await Sim.start({ args, env });
      const good = json(await post(sim.port, '/weights_checker', { action: 'checksum' })) as { per_engine_checksum: string };
      await post(sim.port, '/release_memory_occupation', {});
      await post(sim.port, '/resume_memory_occupation', {});
      const r = await post(sim.port, '/update_weights_from_disk', { model_path: 'sim/m' });
      assert.equal(r.status, env.failReload ? 400 : 200);
      assert.ok(isGarbage(await chatText(sim.port, 2)));
      const now = json(await post(sim.port, '/weights_checker', { action: 'checksum' })) as { per_engine_checksum: string };
      assert.notEqual(now.per_engine_checksum, good.per_engine_checksum);
    }
  });
});
