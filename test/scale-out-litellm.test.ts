// Two sglangmux hosts behind LiteLLM's proxy (the real one, from PyPI, configured as
// docs/scale-out.md says): requests are routed by model to the host that serves it; a model being
// switched in is waited for, not failed over into errors; a 503 that says Retry-After is retried
// after that long; a host that stops mid-run loses no request (each ends in an answer, from the
// other host where it serves the model, or in a clear error); LiteLLM's health checks, configured
// as documented, never reach a model.
import assert from 'node:assert/strict';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Daemon, freePort, type ModelDef } from './support/daemon.js';
import { chatRequests, RouterProcess, routedChat, type RoutedAnswer } from './support/router.js';
import { crashes, expectedReply } from './support/sim.js';
import { testDeps, testTool } from './support/tools.js';

const LITELLM = 'litellm/bin/litellm';
const CHAT = '/v1/chat/completions';

/** Host A: `alpha` and `slow` only here; `shared` on both hosts. */
const HOST_A: readonly ModelDef[] = [
  { name: 'alpha', env: { SGLANG_SIM_RESUME_MS: '300' } },
  // Wakes slower than A's switch timeout (below): its first waiters time out.
  { name: 'slow', env: { SGLANG_SIM_RESUME_MS: '6000' } },
  { name: 'shared' },
];
/** Host B: `beta` only here. Its tokens are slow, so requests are still running when it stops. */
const HOST_B: readonly ModelDef[] = [
  { name: 'beta', env: { SGLANG_SIM_TOKEN_MS: '50' } },
  { name: 'shared', env: { SGLANG_SIM_TOKEN_MS: '50' } },
];

interface Host {
  readonly url: string;
  readonly models: readonly ModelDef[];
  /** LiteLLM's `order` of this host's deployment of a model (1 first); none: one order for all. */
  readonly order?: Readonly<Record<string, number>>;
}

/** The proxy's config: one deployment per (model, host), each the host's OpenAI-compatible /v1.
 * LiteLLM's health checks send real completions (which would wake models): every deployment is
 * left out of them, and background checks are on so the test sees that they stay away. */
function liteLLMConfig(hosts: readonly Host[]): string {
  const deployments = hosts.flatMap((h) => h.models.map((m) => {
    const order = h.order?.[m.name];
    return [
      `  - model_name: ${m.name}`,
      `    litellm_params: {model: openai/${m.name}, api_base: "${h.url}/v1", api_key: none${order ? `, order: ${order}` : ''}}`,
      '    model_info: {disable_background_health_check: true}',
    ].join('\n');
  }));
  return [
    'model_list:',
    ...deployments,
    'router_settings:',
    '  num_retries: 2',
    'litellm_settings:',
    '  request_timeout: 120',
    'general_settings:',
    '  background_health_checks: true',
    '  health_check_interval: 1',
    '',
  ].join('\n');
}

function assertAnswered(a: RoutedAnswer, maxTokens: number): void {
  assert.equal(a.status, 200, `${a.model}: ${a.error ?? ''}`);
  assert.equal(a.content, expectedReply(a.model, maxTokens));
}

describe('two sglangmux hosts behind LiteLLM', { timeout: 600_000 }, () => {
  let a: Daemon;
  let b: Daemon;
  let proxy: RouterProcess | undefined;
  let url = '';

  before(async () => {
    // Without LiteLLM every test skips (or, in CI, fails) through testTool below.
    if (!existsSync(join(testDeps, LITELLM))) return;
    const common = ['--min-active-secs', '0'];
    [a, b] = await Promise.all([
      // A short switch timeout on A, for the Retry-After test.
      Daemon.start({ models: HOST_A, args: [...common, '--model-switch-timeout-secs', '3'] }),
      Daemon.start({ models: HOST_B, args: common }),
    ]);
    const config = join(a.dir, 'litellm.yaml');
    // shared is pinned to B (order 1), with A as the spare (order 2): one host keeps it awake.
    writeFileSync(config, liteLLMConfig([
      { url: a.url, models: HOST_A, order: { shared: 2 } },
      { url: b.url, models: HOST_B, order: { shared: 1 } },
    ]));
    const port = await freePort();
    proxy = new RouterProcess('litellm', join(testDeps, LITELLM), ['--config', config, '--host', '127.0.0.1', '--port', String(port)], {
      // Everything stays on this machine: the model cost map bundled with LiteLLM, no fetch.
      LITELLM_LOCAL_MODEL_COST_MAP: 'True',
      // LiteLLM's own backoff between retries set to nothing, so a wait before a retry is the
      // Retry-After the host sent.
      INITIAL_RETRY_DELAY: '0',
      JITTER: '0',
    });
    url = `http://127.0.0.1:${port}`;
    // LiteLLM takes tens of seconds to start on a busy machine.
    await proxy.waitReady(`${url}/health/liveliness`, 180_000);
  });

  after(async () => {
    await proxy?.stop();
    for (const d of [a, b]) {
      await d?.stop();
      d?.cleanup();
    }
  });

  test('requests are routed by model to the host that serves it, a pinned model to its host; none is sent twice', async (t) => {
    if (!testTool(t, LITELLM)) return;
    const before = { alpha: chatRequests(a, 'alpha'), beta: chatRequests(b, 'beta'), shared: chatRequests(b, 'shared') };
    const models = ['alpha', 'beta', 'shared', 'alpha', 'beta', 'shared', 'shared', 'shared'];
    const answers = [];
    for (const m of models) answers.push(await routedChat(url, m, 4));
    for (const ans of answers) assertAnswered(ans, 4);
    assert.equal(chatRequests(a, 'alpha') - before.alpha, 2);
    assert.equal(chatRequests(b, 'beta') - before.beta, 2);
    assert.equal(chatRequests(b, 'shared') - before.shared, 4, 'shared to the host it is pinned to');
    assert.equal(chatRequests(a, 'shared'), 0);
    assert.equal(chatRequests(b, 'alpha') + chatRequests(a, 'beta'), 0, 'no model sent to a host without it');
  });

  test('a model being switched in is waited for, not failed over into errors', async (t) => {
    if (!testTool(t, LITELLM)) return;
    // shared awake on A (asked of A directly), alpha asleep: the next alpha requests wait for a switch.
    assert.equal((await a.chat('shared', 2)).status, 200);
    const from = a.output.length;
    const before = chatRequests(a, 'alpha');
    const answers = await Promise.all([1, 2, 3].map(() => routedChat(url, 'alpha', 5)));
    for (const ans of answers) assertAnswered(ans, 5);
    // Each reached A once: none was answered with an error and retried.
    assert.equal(chatRequests(a, 'alpha') - before, 3);
    assert.doesNotMatch(a.output.slice(from), / -> 5\d\d: /);
    assert.match(a.output.slice(from), /request for alpha waits/);
  });

  test('a 503 with Retry-After: LiteLLM waits that long, retries, and the client gets its answer', async (t) => {
    if (!testTool(t, LITELLM)) return;
    // slow takes 6 s to wake, A waits 3 s for a model: the first wait times out with a 503 that
    // says Retry-After: 1, and the retry finds slow (nearly) awake.
    const timedOut = a.waitLog(/ -> 503: model not ready: timed out after 3 s waiting for slow /, 60_000);
    const answer = routedChat(url, 'slow', 3);
    await timedOut;
    const at503 = Date.now();
    await a.waitLog(/request for slow waits/, 60_000);
    const retriedAfterMs = Date.now() - at503;
    assertAnswered(await answer, 3);
    // LiteLLM's own backoff is 0 here: the wait is the host's Retry-After.
    assert.ok(retriedAfterMs >= 900, `retried ${retriedAfterMs} ms after the 503`);
    assert.equal(chatRequests(a, 'slow'), 1);
  });

  test('a host stopped mid-run: its shared model is served by the other host, the rest end in clear errors, none is lost', async (t) => {
    if (!testTool(t, LITELLM)) return;
    const maxTokens = 20; // 1 s on host B
    const sharedOnA = chatRequests(a, 'shared');
    const bLedger = b.ledger().length;
    const during = ['beta', 'shared', 'beta', 'shared', 'beta', 'shared'].map((m) => routedChat(url, m, maxTokens));
    // Stop B once it is generating for some of them.
    await b.waitLedger((e) => e.event === 'request' && e.route === CHAT, 'a request running on host B', 60_000, bLedger);
    await b.stop();
    const afterStop = await Promise.all(['beta', 'shared'].map((m) => routedChat(url, m, maxTokens)));
    const answers = [...(await Promise.all(during)), ...afterStop];

    assert.equal(answers.length, 8, 'every request ended');
    for (const ans of answers) {
      if (ans.model === 'shared') {
        assertAnswered(ans, maxTokens); // from B before it stopped, or retried on A, the spare
      } else if (ans.status === 200) {
        assertAnswered(ans, maxTokens); // finished before B stopped
      } else {
        assert.ok(ans.status >= 400, `beta: status ${ans.status}`);
        assert.ok(ans.error && ans.error.length > 0, 'an error that says what happened');
      }
    }
    const betaAfterStop = afterStop.find((ans) => ans.model === 'beta')!;
    assert.notEqual(betaAfterStop.status, 200, 'no host serves beta any more');
    assert.ok(chatRequests(a, 'shared') > sharedOnA, 'A served shared after B stopped');
    assert.deepEqual(crashes(a.ledger()), []);
    assert.deepEqual(crashes(b.ledger()), []);
    t.diagnostic(`after the stop: beta ${betaAfterStop.status} ${betaAfterStop.error ?? ''}`);
  });
});
