// The official Python `openai` SDK (pinned in scripts/install-test-deps.sh) through the daemon,
// as SGLang's users call it: chat (plain and streamed), completions, embeddings, the model list
// and one model, and how each of the daemon's errors surfaces as the SDK's exceptions. The
// Python side (test/support/openai_client.py) runs the calls and reports what the SDK returned
// or raised; the assertions are here.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { gzipSync } from 'node:zlib';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { promisify } from 'node:util';
import { Daemon, repoRoot, useDaemon } from './support/daemon.js';
import { crashes, embeddingOf, expectedReply } from './support/sim.js';
import { testTool } from './support/tools.js';

const run = promisify(execFile);
const API_KEY = 'sk-python-sdk-test';
const UPSTREAM_TIMEOUT_SECS = 2;

interface Call {
  op: string;
  args?: Record<string, unknown>;
  /** `client.with_options(...)` for this call: timeout, max_retries, api_key. */
  options?: Record<string, unknown>;
}
interface SdkError {
  classes: string[];
  status: number | null;
  message: string;
  body: unknown;
  code: string | null;
  retries: string | null;
  chunks: unknown[];
}
type Outcome = { result: unknown; error?: undefined } | { error: SdkError; result?: undefined };

interface Chat { object: string; choices: { message: { role: string; content: string }; finish_reason: string }[]; usage: { completion_tokens: number } }
interface ChatChunk { object: string; choices: { delta: { content: string | null }; finish_reason: string | null }[] }
interface Completion { object: string; choices: { text: string }[] }
interface Embeddings { object: string; data: { object: string; index: number; embedding: number[] }[]; model: string }
interface Model { id: string; object: string; owned_by: string; state?: string }

const msg = [{ role: 'user', content: 'hi' }];

describe('the Python openai SDK', () => {
  let d: Daemon;
  useDaemon((started) => { d = started; }, {
    args: ['--api-key', API_KEY, '--upstream-timeout-secs', String(UPSTREAM_TIMEOUT_SECS)],
    models: [
      { name: 'org/alpha' },
      { name: 'beta' },
      // Every start fails: requests for it get 503 model not ready.
      { name: 'broken', env: { SGLANG_SIM_EXIT_AT_START: '1' } },
      // 1 s per token: a 4-token answer outlasts the daemon's upstream timeout (504).
      { name: 'slow', env: { SGLANG_SIM_TOKEN_MS: '1000' } },
      // Dies after its 3rd token: a stream that already began ends with an error event.
      { name: 'crashy', env: { SGLANG_SIM_CRASH_AFTER_TOKENS: '3' } },
    ],
  });

  /** Runs the calls in one Python process on one client; returns what each answered or raised. */
  async function sdk(t: TestContext, calls: Call[]): Promise<Outcome[] | null> {
    const python = testTool(t, 'openai/bin/python');
    if (python === null) return null;
    const spec = { client: { base_url: `${d.url}/v1`, api_key: API_KEY, max_retries: 0, timeout: 30 }, calls };
    const { stdout } = await run(python, [join(repoRoot, 'test', 'support', 'openai_client.py'), JSON.stringify(spec)], {
      env: { ...process.env, PYTHONNOUSERSITE: '1', OPENAI_BASE_URL: '', OPENAI_API_KEY: '' },
      maxBuffer: 16 * 1024 * 1024,
      timeout: 120_000,
    });
    return JSON.parse(stdout) as Outcome[];
  }
  const result = <T>(o: Outcome | undefined): T => {
    assert.ok(o && o.error === undefined, `the SDK raised: ${JSON.stringify(o?.error)}`);
    return o.result as T;
  };
  const error = (o: Outcome | undefined): SdkError => {
    assert.ok(o?.error, `the SDK did not raise: ${JSON.stringify(o?.result)}`);
    return o.error;
  };

  test('bodies as HTTP client libraries send them: charset in Content-Type, gzip-encoded, chunked; the SDK\'s extra headers', async (t) => {
    const body = JSON.stringify({ model: 'beta', max_tokens: 2, messages: [{ role: 'user', content: 'héllo ✓' }] });
    const auth = { authorization: `Bearer ${API_KEY}` };
    const variants: [string, RequestInit][] = [
      ['charset', { headers: { ...auth, 'content-type': 'application/json; charset=utf-8' }, body }],
      ['upper case', { headers: { ...auth, 'content-type': 'Application/JSON;charset=UTF-8' }, body }],
      ['gzip', { headers: { ...auth, 'content-type': 'application/json', 'content-encoding': 'gzip' }, body: gzipSync(body) }],
      ['chunked', { headers: { ...auth, 'content-type': 'application/json' }, body: new Blob([body]).stream(), duplex: 'half' } as RequestInit],
    ];
    for (const [what, init] of variants) {
      const res = await fetch(`${d.url}/v1/chat/completions`, { method: 'POST', ...init });
      const text = await res.text();
      assert.equal(res.status, 200, `${what}: ${text}`);
      assert.equal((JSON.parse(text) as Chat).choices[0]?.message.content, expectedReply('beta', 2), what);
    }
    const out = await sdk(t, [{
      op: 'chat.completions.create',
      args: { model: 'beta', max_tokens: 2, messages: msg, extra_headers: { 'Content-Type': 'application/json; charset=utf-8', 'X-Trace': 'abc' } },
    }]);
    if (out === null) return;
    assert.equal(result<Chat>(out[0]).choices[0]?.message.content, expectedReply('beta', 2));
  });

  test('chat (a switch), streamed chat (a switch back), completions plain and streamed, embeddings', async (t) => {
    const out = await sdk(t, [
      { op: 'chat.completions.create', args: { model: 'org/alpha', max_tokens: 5, messages: msg } },
      { op: 'chat.completions.create', args: { model: 'beta', max_tokens: 6, stream: true, messages: msg } },
      { op: 'completions.create', args: { model: 'beta', prompt: 'Once upon', max_tokens: 4 } },
      { op: 'completions.create', args: { model: 'beta', prompt: 'Once upon', max_tokens: 3, stream: true } },
      // Without encoding_format the SDK asks for base64 and decodes it; with "float", plain lists.
      { op: 'embeddings.create', args: { model: 'org/alpha', input: ['hello', 'world'] } },
      { op: 'embeddings.create', args: { model: 'org/alpha', input: 'hello', encoding_format: 'float' } },
    ]);
    if (out === null) return;
    const chat = result<Chat>(out[0]);
    assert.equal(chat.object, 'chat.completion');
    assert.equal(chat.choices[0]?.message.role, 'assistant');
    assert.equal(chat.choices[0]?.message.content, expectedReply('org/alpha', 5));
    assert.equal(chat.choices[0]?.finish_reason, 'length');
    assert.equal(chat.usage.completion_tokens, 5);

    const chunks = result<ChatChunk[]>(out[1]);
    assert.ok(chunks.every((c) => c.object === 'chat.completion.chunk'));
    assert.equal(chunks.map((c) => c.choices[0]?.delta.content ?? '').join(''), expectedReply('beta', 6));
    assert.equal(chunks.at(-1)?.choices[0]?.finish_reason, 'length');

    assert.equal(result<Completion>(out[2]).choices[0]?.text, expectedReply('beta', 4));
    assert.equal(result<Completion[]>(out[3]).map((c) => c.choices[0]?.text ?? '').join(''), expectedReply('beta', 3));

    const close = (got: number[], want: number[]): void => {
      assert.equal(got.length, want.length);
      got.forEach((v, i) => assert.ok(Math.abs(v - want[i]!) < 1e-6, `${JSON.stringify(got)} vs ${JSON.stringify(want)}`));
    };
    const emb = result<Embeddings>(out[4]);
    assert.equal(emb.object, 'list');
    assert.equal(emb.model, 'org/alpha');
    assert.deepEqual(emb.data.map((e) => [e.object, e.index]), [['embedding', 0], ['embedding', 1]]);
    close(emb.data[0]!.embedding, embeddingOf('org/alpha', 'hello'));
    close(emb.data[1]!.embedding, embeddingOf('org/alpha', 'world'));
    close(result<Embeddings>(out[5]).data[0]!.embedding, embeddingOf('org/alpha', 'hello'));
    assert.deepEqual(crashes(d.ledger()), []);
  });

  test('models.list() and models.retrieve() (an id with a slash); an unknown id is NotFoundError', async (t) => {
    const out = await sdk(t, [
      { op: 'models.list' },
      { op: 'models.retrieve', args: { model: 'org/alpha' } },
      { op: 'models.retrieve', args: { model: 'nope' } },
    ]);
    if (out === null) return;
    const list = result<Model[]>(out[0]);
    assert.deepEqual(list.map((m) => m.id).sort(), ['beta', 'broken', 'crashy', 'org/alpha', 'slow']);
    assert.ok(list.every((m) => m.object === 'model' && m.owned_by === 'sglangmux' && typeof m.state === 'string'));
    const one = result<Model>(out[1]);
    assert.equal(one.id, 'org/alpha');
    assert.equal(one.object, 'model');
    const err = error(out[2]);
    assert.equal(err.classes[0], 'NotFoundError');
    assert.equal(err.status, 404);
  });

  test('401 is AuthenticationError; 404 for an unknown model is NotFoundError, streaming or not', async (t) => {
    const out = await sdk(t, [
      { op: 'chat.completions.create', args: { model: 'beta', messages: msg }, options: { api_key: 'wrong' } },
      { op: 'chat.completions.create', args: { model: 'nope', messages: msg } },
      { op: 'chat.completions.create', args: { model: 'nope', stream: true, messages: msg } },
    ]);
    if (out === null) return;
    const auth = error(out[0]);
    assert.equal(auth.classes[0], 'AuthenticationError');
    assert.ok(auth.classes.includes('APIStatusError'));
    assert.equal(auth.status, 401);
    assert.equal(auth.code, 'invalid_api_key');
    assert.match(auth.message, /invalid API key/);
    for (const o of [out[1], out[2]]) {
      const err = error(o);
      assert.equal(err.classes[0], 'NotFoundError');
      assert.equal(err.status, 404);
      assert.equal(err.code, 'model_not_found');
      assert.match(err.message, /model not found: nope/);
      assert.deepEqual(err.body, { message: 'model not found: nope', type: 'invalid_request_error', param: 'model', code: 'model_not_found' });
    }
  });

  test('503 model not ready is an APIStatusError (InternalServerError) with our message, which the SDK retries', async (t) => {
    const out = await sdk(t, [
      { op: 'chat.completions.create', args: { model: 'broken', messages: msg } },
      { op: 'chat.completions.create', args: { model: 'broken', messages: msg }, options: { max_retries: 1 } },
      { op: 'chat.completions.create', args: { model: 'beta', max_tokens: 2, messages: msg } },
    ]);
    if (out === null) return;
    for (const o of [out[0], out[1]]) {
      const err = error(o);
      assert.equal(err.classes[0], 'InternalServerError');
      assert.ok(err.classes.includes('APIStatusError'));
      assert.equal(err.status, 503);
      assert.match(err.message, /model not ready: /);
      assert.match((err.body as { message: string }).message, /^model not ready: /);
    }
    assert.equal(error(out[0]).retries, '0');
    assert.equal(error(out[1]).retries, '1', 'the SDK retries a 503 (max_retries)');
    assert.equal(result<Chat>(out[2]).choices[0]?.message.content, expectedReply('beta', 2), 'the daemon keeps serving');
  });

  test('504: the daemon\'s upstream timeout is an InternalServerError 504; the SDK\'s own timeout is APITimeoutError', async (t) => {
    const out = await sdk(t, [
      { op: 'chat.completions.create', args: { model: 'slow', max_tokens: 4, messages: msg } },
      { op: 'chat.completions.create', args: { model: 'slow', max_tokens: 4, messages: msg }, options: { timeout: 1 } },
      { op: 'chat.completions.create', args: { model: 'beta', max_tokens: 2, messages: msg } },
    ]);
    if (out === null) return;
    const upstream = error(out[0]);
    assert.equal(upstream.classes[0], 'InternalServerError');
    assert.equal(upstream.status, 504);
    assert.match(upstream.message, /upstream request timed out/);
    const own = error(out[1]);
    assert.equal(own.classes[0], 'APITimeoutError');
    assert.ok(own.classes.includes('APIConnectionError'));
    assert.equal(result<Chat>(out[2]).choices[0]?.message.content, expectedReply('beta', 2), 'the daemon keeps serving');
    assert.deepEqual(crashes(d.ledger()), []);
  });

  test('an error event mid-stream (the model server died) raises APIError with our message after the chunks before it', async (t) => {
    const out = await sdk(t, [
      { op: 'chat.completions.create', args: { model: 'crashy', max_tokens: 10, stream: true, messages: msg } },
      { op: 'chat.completions.create', args: { model: 'beta', max_tokens: 2, messages: msg } },
    ]);
    if (out === null) return;
    const err = error(out[0]);
    assert.equal(err.classes[0], 'APIError', 'a plain APIError: the HTTP status was 200');
    assert.equal(err.status, null);
    const chunks = err.chunks as ChatChunk[];
    const text = chunks.map((c) => c.choices[0]?.delta.content ?? '').join('');
    assert.ok(expectedReply('crashy', 3).startsWith(text.trim()) && text.length > 0, `chunks before the error: ${JSON.stringify(text)}`);
    // The daemon's event, in the OpenAI error shape, is the exception's body and message.
    const body = err.body as { message: string; type: string; param: unknown; code: unknown };
    assert.deepEqual(Object.keys(body).sort(), ['code', 'message', 'param', 'type']);
    assert.match(body.message, /^upstream unreachable: /);
    assert.equal(err.message, body.message);
    assert.equal(result<Chat>(out[1]).choices[0]?.message.content, expectedReply('beta', 2), 'the daemon keeps serving');
  });
});
