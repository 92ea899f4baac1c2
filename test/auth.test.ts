// API keys and CORS: inference routes need the API key, the control API and /metrics the admin
// key (each right, wrong, missing), from flags or the environment; /health stays open; keys
// never show in the daemon's output or the model logs; CORS only for the configured origin.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import OpenAI from 'openai';
import { bundle, Daemon, useDaemon } from './support/daemon.js';
import { expectedReply } from './support/sim.js';

const API_KEY = 'sk-inference-7f3a9c1e5b';
const ADMIN_KEY = 'sk-admin-2d8e4b6f0a';
const WRONG_KEY = 'sk-wrong-9e1c3a5d7b';
const ORIGIN = 'http://app.example';
const messages = [{ role: 'user', content: 'hi' }];

type Auth = 'right' | 'wrong' | 'missing' | 'other';

function headers(auth: Auth, right: string, other: string): Record<string, string> {
  switch (auth) {
    case 'right': return { authorization: `Bearer ${right}` };
    case 'wrong': return { authorization: `Bearer ${WRONG_KEY}` };
    case 'other': return { authorization: `Bearer ${other}` };
    case 'missing': return {};
  }
}

async function assert401(res: Response, missing: boolean, which: 'API key' | 'admin API key'): Promise<void> {
  const text = await res.text();
  assert.equal(res.status, 401, text);
  assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
  assert.equal(res.headers.get('www-authenticate'), 'Bearer');
  const body = JSON.parse(text) as { error: { message: string; type: string; param: unknown; code: unknown } };
  assert.deepEqual(body, {
    error: {
      message: missing ? `missing ${which}: send the header Authorization: Bearer <key>` : `invalid ${which}`,
      type: 'invalid_request_error', param: null, code: 'invalid_api_key',
    },
  });
}

/** Every file under the daemon's log dir, concatenated. */
function modelLogs(d: Daemon): string {
  return readdirSync(d.logDir).map((f) => readFileSync(join(d.logDir, f), 'utf8')).join('\n');
}

function keysNeverShown(d: Daemon): void {
  const logs = modelLogs(d);
  assert.match(logs, /^PATH=/m, 'the launch script dumped its environment into its log');
  const text = d.output + logs;
  for (const key of [API_KEY, ADMIN_KEY, WRONG_KEY]) {
    assert.ok(!text.includes(key), `a key appears in the output or the model logs: ${key}`);
    // Not even a recognisable part of it.
    assert.ok(!text.includes(key.slice(3, 15)), `part of a key appears: ${key}`);
  }
}

/** A model whose launch script first dumps its environment to its stderr log: the keys given
 * to sglangmux through the environment must not reach the launch scripts. */
const M = {
  name: 'm',
  command: `bash -c 'env >&2; exec python3 -m sglang.launch_server --model-path sim/m --served-model-name m --port "$PORT" --enable-memory-saver --enable-weights-cpu-backup'`,
};

/** Runs the same checks on a daemon configured with API_KEY and ADMIN_KEY, however. */
function keyChecks(get: () => Daemon): void {
  const inference: { name: string; send: (h: Record<string, string>) => Promise<Response> }[] = [
    {
      name: 'POST /v1/chat/completions',
      send: (h) => get().post('/v1/chat/completions', { model: 'm', max_tokens: 3, messages }, { headers: { 'content-type': 'application/json', ...h } }),
    },
    { name: 'POST /v1/embeddings', send: (h) => get().post('/v1/embeddings', { model: 'm', input: 'x' }, { headers: h }) },
    { name: 'GET /v1/models', send: (h) => fetch(`${get().url}/v1/models`, { headers: h }) },
    { name: 'GET /models', send: (h) => fetch(`${get().url}/models`, { headers: h }) },
    { name: 'GET /v1/models/{id}', send: (h) => fetch(`${get().url}/v1/models/m`, { headers: h }) },
  ];
  for (const route of inference) {
    test(`${route.name}: API key right, wrong, missing, and the admin key is not it`, async () => {
      await assert401(await route.send(headers('missing', API_KEY, ADMIN_KEY)), true, 'API key');
      await assert401(await route.send(headers('wrong', API_KEY, ADMIN_KEY)), false, 'API key');
      await assert401(await route.send(headers('other', API_KEY, ADMIN_KEY)), false, 'API key');
      await assert401(await route.send({ authorization: API_KEY }), true, 'API key'); // no Bearer
      const ok = await route.send(headers('right', API_KEY, ADMIN_KEY));
      assert.equal(ok.status, 200, await ok.clone().text());
      if (route.name.startsWith('POST /v1/chat')) {
        const body = (await ok.json()) as { choices: { message: { content: string } }[] };
        assert.equal(body.choices[0]?.message.content, expectedReply('m', 3));
      }
    });
  }

  const admin: { name: string; send: (h: Record<string, string>) => Promise<Response> }[] = [
    { name: 'GET /admin/models', send: (h) => fetch(`${get().url}/admin/models`, { headers: h }) },
    { name: 'GET /admin/models/{id}', send: (h) => fetch(`${get().url}/admin/models/m`, { headers: h }) },
    { name: 'POST /admin/models/{id}/wake', send: (h) => fetch(`${get().url}/admin/models/m/wake`, { method: 'POST', headers: h }) },
    { name: 'GET /metrics', send: (h) => fetch(`${get().url}/metrics`, { headers: h }) },
  ];
  for (const route of admin) {
    test(`${route.name}: admin key right, wrong, missing, and the API key is not it`, async () => {
      await assert401(await route.send(headers('missing', ADMIN_KEY, API_KEY)), true, 'admin API key');
      await assert401(await route.send(headers('wrong', ADMIN_KEY, API_KEY)), false, 'admin API key');
      await assert401(await route.send(headers('other', ADMIN_KEY, API_KEY)), false, 'admin API key');
      const ok = await route.send(headers('right', ADMIN_KEY, API_KEY));
      assert.equal(ok.status, 200, await ok.text());
    });
  }

  test('/health needs no key', async () => {
    const res = await fetch(`${get().url}/health`);
    assert.equal(res.status, 200);
    assert.equal(((await res.json()) as { status: string }).status, 'ok');
  });

  test('the openai SDK with the key works; with a wrong one it gets AuthenticationError', async () => {
    const d = get();
    const client = new OpenAI({ baseURL: `${d.url}/v1`, apiKey: API_KEY, maxRetries: 0 });
    const res = await client.chat.completions.create({ model: 'm', max_tokens: 2, messages: [{ role: 'user', content: 'hi' }] });
    assert.equal(res.choices[0]?.message.content, expectedReply('m', 2));
    const wrong = new OpenAI({ baseURL: `${d.url}/v1`, apiKey: WRONG_KEY, maxRetries: 0 });
    await assert.rejects(wrong.models.list(), (err: unknown) => {
      assert.ok(err instanceof OpenAI.AuthenticationError, String(err));
      assert.equal(err.code, 'invalid_api_key');
      return true;
    });
  });

  test('no key, nor part of one, appears in the daemon output or the model logs', async () => {
    const d = get();
    // A logged sentinel error after all the requests above: every line about them has arrived.
    const seen = d.waitLog(/model not found: key-sentinel/);
    await d.post('/v1/chat/completions', { model: 'key-sentinel', messages }, { headers: { 'content-type': 'application/json', authorization: `Bearer ${API_KEY}` } });
    await seen;
    assert.match(d.output, /-> 401: invalid API key/); // the failures were logged, without the keys
    keysNeverShown(d);
  });
}

describe('keys from the flags (API) and the environment (admin), with CORS', () => {
  let d: Daemon;
  useDaemon((started) => (d = started), {
    models: [M],
    args: ['--api-key', API_KEY, '--cors-origin', ORIGIN],
    env: { SGLANGMUX_ADMIN_API_KEY: ADMIN_KEY },
  });

  keyChecks(() => d);

  test('CORS preflight for the configured origin: 204 with the headers, no key needed', async () => {
    const res = await fetch(`${d.url}/v1/chat/completions`, {
      method: 'OPTIONS',
      headers: { origin: ORIGIN, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type' },
    });
    assert.equal(res.status, 204);
    assert.equal(res.headers.get('access-control-allow-origin'), ORIGIN);
    assert.match(res.headers.get('access-control-allow-methods') ?? '', /POST/);
    assert.equal(res.headers.get('access-control-allow-headers'), 'authorization, content-type');
    assert.match(res.headers.get('vary') ?? '', /Origin/);
  });

  test('CORS headers on answers to that origin (errors and streams included), none for another', async () => {
    const ok = await fetch(`${d.url}/v1/models`, { headers: { origin: ORIGIN, authorization: `Bearer ${API_KEY}` } });
    assert.equal(ok.status, 200);
    assert.equal(ok.headers.get('access-control-allow-origin'), ORIGIN);
    const denied = await fetch(`${d.url}/v1/models`, { headers: { origin: ORIGIN } });
    assert.equal(denied.status, 401);
    assert.equal(denied.headers.get('access-control-allow-origin'), ORIGIN);
    const stream = await d.post('/v1/chat/completions', { model: 'm', max_tokens: 2, stream: true, messages }, {
      headers: { 'content-type': 'application/json', origin: ORIGIN, authorization: `Bearer ${API_KEY}` },
    });
    assert.equal(stream.status, 200);
    assert.equal(stream.headers.get('access-control-allow-origin'), ORIGIN);
    await stream.text();

    const other = await fetch(`${d.url}/v1/models`, { headers: { origin: 'http://evil.example', authorization: `Bearer ${API_KEY}` } });
    assert.equal(other.status, 200);
    assert.equal(other.headers.get('access-control-allow-origin'), null);
    const preflight = await fetch(`${d.url}/v1/models`, {
      method: 'OPTIONS', headers: { origin: 'http://evil.example', 'access-control-request-method': 'GET' },
    });
    assert.equal(preflight.status, 404);
    assert.equal(preflight.headers.get('access-control-allow-origin'), null);
  });
});

describe('keys from the environment (API) and the flags (admin), no CORS', () => {
  let d: Daemon;
  useDaemon((started) => (d = started), {
    models: [M],
    args: ['--admin-api-key', ADMIN_KEY],
    env: { SGLANGMUX_API_KEY: API_KEY },
  });

  keyChecks(() => d);

  test('without --cors-origin: no CORS headers, OPTIONS is an unknown route', async () => {
    const res = await fetch(`${d.url}/v1/models`, { headers: { origin: ORIGIN, authorization: `Bearer ${API_KEY}` } });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('access-control-allow-origin'), null);
    const preflight = await fetch(`${d.url}/v1/models`, { method: 'OPTIONS', headers: { origin: ORIGIN, 'access-control-request-method': 'GET' } });
    assert.equal(preflight.status, 404);
  });
});

test('an empty --api-key is a usage error (exit 2), without echoing anything secret', () => {
  const r = spawnSync(process.execPath, [bundle, '--api-key', '', 'x.sh'], { encoding: 'utf8', timeout: 20_000 });
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, /^error: --api-key needs a value$/m);
});
