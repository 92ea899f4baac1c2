// The route classes: every POST /v1/* naming a model is routed to the same path on that model's
// server (the model's own answer, 404 included, passes through), GET /v1/models/{id} with ids
// containing `/`, the model list with each model's state, and OpenAI-shaped 404s elsewhere.
import assert from 'node:assert/strict';
import { Agent as HttpAgent, get as httpGet } from 'node:http';
import { describe, test } from 'node:test';
import { Daemon, sseData, useDaemon, type Health } from './support/daemon.js';
import { crashes, expectedReply } from './support/sim.js';

interface ModelObject {
  id: string;
  object: string;
  created: number;
  owned_by: string;
  state: string;
  gpus: number[];
  gpu_share: number | null;
}

const STATES = ['starting', 'awake', 'asleep', 'switching', 'failed'];

async function models(d: Daemon, path = '/v1/models'): Promise<ModelObject[]> {
  const res = await fetch(`${d.url}${path}`);
  assert.equal(res.status, 200);
  const body = (await res.json()) as { object: string; data: ModelObject[] };
  assert.equal(body.object, 'list');
  return body.data;
}

function stateOf(list: readonly ModelObject[], id: string): string | undefined {
  return list.find((m) => m.id === id)?.state;
}

async function assertOpenAIError(res: Response, status: number, code: string, message?: RegExp): Promise<void> {
  const text = await res.text();
  assert.equal(res.status, status, text);
  const body = JSON.parse(text) as { error: { message: string; type: string; param: unknown; code: unknown } };
  assert.deepEqual(Object.keys(body.error).sort(), ['code', 'message', 'param', 'type'], text);
  assert.equal(body.error.code, code, text);
  if (message) assert.match(body.error.message, message);
}

/**
 * A launch-script command running a tiny model server that echoes what it got: /health and
 * /flush_cache answer 200; every other POST answers 200 JSON {path, body} (or, with
 * `"stream": true`, two SSE events and [DONE]). No single quotes: it sits in '...' in bash.
 */
function echoServer(): string {
  const js = [
    'const http = require("node:http");',
    'http.createServer((req, res) => {',
    '  const path = req.url.split("?")[0];',
    '  if (path === "/health" || path === "/flush_cache") { res.writeHead(200); res.end(); return; }',
    '  let raw = ""; req.on("data", (c) => { raw += c; });',
    '  req.on("end", () => {',
    '    const body = JSON.parse(raw || "{}");',
    '    console.log("echo " + req.method + " " + path);',
    '    if (body.stream === true) {',
    '      res.writeHead(200, { "content-type": "text/event-stream" });',
    '      res.write("data: " + JSON.stringify({ path, n: 1 }) + "\\n\\n");',
    '      res.write("data: " + JSON.stringify({ path, n: 2 }) + "\\n\\n");',
    '      res.end("data: [DONE]\\n\\n");',
    '      return;',
    '    }',
    '    res.writeHead(200, { "content-type": "application/json" });',
    '    res.end(JSON.stringify({ path, body }));',
    '  });',
    '}).listen(Number(process.argv[1]), "127.0.0.1");',
  ].join(' ');
  return `"${process.execPath}" -e '${js}' "$PORT"`;
}

describe('every POST /v1/* route, forwarded to the same path', () => {
  let d: Daemon;
  useDaemon((started) => (d = started), { models: [{ name: 'echo/one', command: echoServer() }] });

  for (const path of ['/v1/embeddings', '/v1/rerank', '/v1/score', '/v1/responses', '/v1/images/generations', '/v1/audio/speech']) {
    test(`POST ${path}`, async () => {
      const sent = { model: 'echo/one', input: ['a', 'b'], extra: { deep: true } };
      const res = await d.post(path, sent);
      assert.equal(res.status, 200);
      assert.deepEqual(await res.json(), { path, body: sent });
    });
  }

  test('streamed, on a route other than chat', async () => {
    const res = await d.post('/v1/responses', { model: 'echo/one', stream: true });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/);
    const events = sseData(await res.text());
    assert.deepEqual(events, [JSON.stringify({ path: '/v1/responses', n: 1 }), JSON.stringify({ path: '/v1/responses', n: 2 }), '[DONE]']);
  });

  test('the body must still name a configured model', async () => {
    await assertOpenAIError(await d.post('/v1/embeddings', { input: 'x' }), 400, 'invalid_request', /missing string field: model/);
    await assertOpenAIError(await d.post('/v1/embeddings', { model: 'nope', input: 'x' }), 404, 'model_not_found', /model not found: nope/);
    await assertOpenAIError(await d.post('/v1/embeddings', 'not json'), 400, 'invalid_json');
  });
});

describe('models, states and route classes against the simulator', () => {
  let d: Daemon;
  useDaemon((started) => (d = started), {
    models: [
      { name: 'broken', env: { SGLANG_SIM_EXIT_AT_START: '3' } },
      { name: 'org/alpha', env: { SGLANG_SIM_RESUME_MS: '1500', CUDA_VISIBLE_DEVICES: '2,3' } },
      {
        name: 'beta',
        env: { CUDA_VISIBLE_DEVICES: '2' },
        command: 'python3 -m sglang.launch_server --model-path sim/beta --served-model-name "$MODEL_NAME" --port "$PORT" --enable-memory-saver --enable-weights-cpu-backup --mem-fraction-static 0.4',
      },
    ],
    args: ['--min-active-secs', '0'],
    env: { SGLANG_SIM_GPUS: '4' },
  });

  test('/v1/models and /models: OpenAI fields plus the state and place of each model', async () => {
    for (const path of ['/v1/models', '/models']) {
      const list = await models(d, path);
      assert.deepEqual(list.map((m) => m.id), ['broken', 'org/alpha', 'beta']);
      for (const m of list) {
        assert.deepEqual(Object.keys(m).sort(), ['created', 'gpu_share', 'gpus', 'id', 'object', 'owned_by', 'state']);
        assert.equal(m.object, 'model');
        assert.equal(typeof m.created, 'number');
        assert.equal(m.owned_by, 'sglangmux');
        assert.ok(STATES.includes(m.state), m.state);
      }
      assert.equal(stateOf(list, 'beta'), 'awake');
      assert.equal(stateOf(list, 'org/alpha'), 'asleep');
      assert.equal(stateOf(list, 'broken'), 'failed');
      assert.deepEqual(list.map((m) => [m.gpus, m.gpu_share]), [[[0], null], [[2], null], [[2], 0.4]]);
    }
  });

  test('GET /v1/models/{id}: ids with a slash, encoded or not; unknown -> 404 model_not_found', async () => {
    for (const path of ['/v1/models/org/alpha', '/v1/models/org%2Falpha']) {
      const res = await fetch(`${d.url}${path}`);
      assert.equal(res.status, 200, path);
      const m = (await res.json()) as ModelObject;
      assert.equal(m.id, 'org/alpha');
      assert.equal(m.object, 'model');
      assert.equal(m.owned_by, 'sglangmux');
      assert.equal(m.state, 'asleep');
      assert.deepEqual([m.gpus, m.gpu_share], [[2], null]);
    }
    const beta = (await (await fetch(`${d.url}/v1/models/beta`)).json()) as ModelObject;
    assert.equal(beta.state, 'awake');
    await assertOpenAIError(await fetch(`${d.url}/v1/models/org/nope`), 404, 'model_not_found', /model not found: org\/nope/);
  });

  test('a switch shows as "switching", then "awake"', async () => {
    // org/alpha takes 1.5 s to resume: the list shows the switch while the request waits.
    const answer = d.chat('org/alpha', 3);
    const seen = new Set<string>();
    const deadline = Date.now() + 20_000;
    while (!seen.has('switching') && Date.now() < deadline) seen.add(stateOf(await models(d), 'org/alpha') ?? '');
    assert.ok(seen.has('switching'), `states seen: ${[...seen].join(', ')}`);
    const { status, body } = await answer;
    assert.equal(status, 200);
    assert.equal(body.choices?.[0]?.message?.content, expectedReply('org/alpha', 3));
    const list = await models(d);
    assert.equal(stateOf(list, 'org/alpha'), 'awake');
    assert.equal(stateOf(list, 'beta'), 'asleep');
  });

  test('a route the model server lacks: its own 404 passes through, after routing by model', async () => {
    const res = await d.post('/v1/rerank', { model: 'beta', query: 'x', documents: ['y'] });
    assert.equal(res.status, 404);
    assert.deepEqual(await res.json(), { detail: 'Not Found' });
    // Routed like a chat request: beta was woken for it.
    assert.equal(d.state(await d.health(), 'beta'), 'awake');
    // A route the server has, with another method: its 405 passes through too.
    const res405 = await d.post('/v1/models', { model: 'beta' });
    assert.equal(res405.status, 405);
    assert.deepEqual(await res405.json(), { detail: 'Method Not Allowed' });
  });

  test('unknown paths: 404 in the OpenAI shape', async () => {
    await assertOpenAIError(await fetch(`${d.url}/v1/nope`), 404, 'not_found', /^no route for GET \/v1\/nope$/);
    await assertOpenAIError(await d.post('/generate', { model: 'beta' }), 404, 'not_found', /^no route for POST \/generate$/);
    await assertOpenAIError(await fetch(`${d.url}/admin/nope`), 404, 'not_found');
  });

  test('/health: the status, the awake model, and each model with its place', async () => {
    const h = await d.health();
    assert.equal(h.status, 'ok');
    assert.deepEqual(Object.keys(h).sort(), ['active_model', 'awake_models', 'models', 'status']);
    assert.deepEqual(Object.keys(h.models[0]!).sort(), ['gpu_share', 'gpus', 'id', 'last_error', 'port', 'state']);
    assert.deepEqual(h.models.map((m) => [m.id, m.gpus, m.gpu_share]), [['broken', [0], null], ['org/alpha', [2], null], ['beta', [2], 0.4]]);
    assert.deepEqual(crashes(d.ledger()), []);
  });

  test('/health is 200 with a model failed and none awake, and calls no model server', async () => {
    // A router's health check (SGLang's gateway) takes anything but 200 for a host that is down.
    const awake = (await d.health()).models.filter((m) => m.state === 'awake');
    for (const m of awake) assert.equal((await d.post(`/admin/models/${m.id}/sleep`, {})).status, 200);
    const mark = d.ledger().length;
    for (let i = 0; i < 5; i++) {
      const res = await fetch(`${d.url}/health`);
      assert.equal(res.status, 200);
      const h = (await res.json()) as Health;
      assert.equal(h.active_model, null);
      assert.equal(d.state(h, 'broken'), 'failed');
    }
    assert.deepEqual(d.ledger().slice(mark), [], 'no model server was called');
  });
});

describe('client connections', () => {
  let d: Daemon;
  useDaemon((started) => (d = started), { models: [{ name: 'm' }] });

  test('are kept open longer than clients keep idle ones (Keep-Alive: timeout=65), so a client never reuses one the daemon is closing', async () => {
    // Node's default is 5 s, the same as httpx's pool expiry (the Python openai SDK): a request
    // sent on a connection idle for 5 s could meet the daemon's close.
    const keepAlive = await new Promise<string | undefined>((resolve, reject) => {
      httpGet(`${d.url}/health`, { agent: new HttpAgent({ keepAlive: true }) }, (res) => {
        res.resume();
        const header = res.headers['keep-alive'];
        resolve(Array.isArray(header) ? header.join(', ') : header);
      }).on('error', reject);
    });
    assert.equal(keepAlive, 'timeout=65');
  });
});

// Koa tests an object body against the fetch API's classes; the first touch of `Response` loads
// Node's fetch implementation (~20 ms on the first answer, 9 MB resident for good), which the
// daemon never uses. Every kind of answer is given to Koa as text or bytes instead.
describe('no answer loads Node\'s fetch implementation', () => {
  let d: Daemon;
  const trap = new URL('./support/fetch-trap.mjs', import.meta.url).href;
  useDaemon((started) => (d = started), { models: [{ name: 'a' }, { name: 'b' }], env: { NODE_OPTIONS: `--import=${trap}` } });

  test('health, lists, errors, answers, streams, control, metrics, dashboard', async () => {
    const status = async (res: Promise<Response>): Promise<number> => {
      const r = await res;
      await r.arrayBuffer();
      return r.status;
    };
    const get = (path: string): Promise<number> => status(fetch(`${d.url}${path}`));
    const chat = (body: unknown): Promise<number> => status(d.post('/v1/chat/completions', body));
    const statuses = [
      await get('/health'), await get('/v1/models'), await get('/v1/models/a'), await get('/nope'),
      await chat({ model: 'a', messages: [{ role: 'user', content: 'hi' }] }),
      await chat({ model: 'b', stream: true, messages: [{ role: 'user', content: 'hi' }] }),
      await chat('{bad'), await chat({ model: 'nobody', messages: [] }),
      await get('/admin/models'), await get('/admin/models/a'), await get('/metrics'), await get('/ui'),
    ];
    assert.deepEqual(statuses, [200, 200, 200, 404, 200, 200, 400, 404, 200, 200, 200, 200]);
    assert.doesNotMatch(d.output, /FETCH-API-LOADED/);
  });
});
