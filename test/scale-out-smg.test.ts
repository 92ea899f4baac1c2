// Two sglangmux hosts behind SGLang's model gateway (smg, the real binary from PyPI) in IGW
// (multi-model) mode, set up as docs/scale-out.md says: both hosts registered with
// `POST /workers` as external OpenAI-compatible workers, so the gateway lists every model of
// each from `/v1/models`; requests routed by model; the gateway's health checks (`GET /health`,
// every second here) reach the hosts, are answered 200 while every model sleeps, and never wake
// a model; a model that cannot start answers 503, which the gateway (registered as documented)
// retries but does not hold against the host: its other models stay served; a host that stops
// costs a few 503s until the gateway's health checks take it out, then its shared model is
// served by the other host.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Daemon, freePort, type ModelDef } from './support/daemon.js';
import { chatRequests, HealthCountingForwarder, RouterProcess, routedChat } from './support/router.js';
import { crashes, expectedReply } from './support/sim.js';
import { testDeps, testTool } from './support/tools.js';

const SMG = 'smg/bin/smg';
const KEY = 'scale-out-test-key';

const HOST_A: readonly ModelDef[] = [{ name: 'alpha' }, { name: 'shared' }];
/** On host A too: a model whose server exits at every start (a broken launch script). */
const BROKEN: ModelDef = { name: 'broken', env: { SGLANG_SIM_EXIT_AT_START: '3' } };
const HOST_B: readonly ModelDef[] = [{ name: 'beta' }, { name: 'shared' }];

interface GatewayWorker {
  id: string;
  url: string;
  is_healthy: boolean;
  models?: { id: string }[];
}

async function workers(gateway: string): Promise<GatewayWorker[]> {
  const res = await fetch(`${gateway}/workers`);
  return ((await res.json()) as { workers: GatewayWorker[] }).workers;
}

async function until<T>(what: string, probe: () => Promise<T | null>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const got = await probe();
    if (got !== null) return got;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('two sglangmux hosts behind SGLang\'s gateway (IGW mode)', { timeout: 300_000 }, () => {
  let a: Daemon;
  let b: Daemon;
  let fa: HealthCountingForwarder;
  let fb: HealthCountingForwarder;
  let gateway: RouterProcess | undefined;
  let url = '';

  before(async () => {
    if (!existsSync(join(testDeps, SMG))) return; // each test skips (or fails in CI) via testTool
    const args = ['--min-active-secs', '0', '--api-key', KEY];
    [a, b] = await Promise.all([Daemon.start({ models: [...HOST_A, BROKEN], args }), Daemon.start({ models: HOST_B, args })]);
    [fa, fb] = await Promise.all([HealthCountingForwarder.start(a.url), HealthCountingForwarder.start(b.url)]);
    const [port, metricsPort] = [await freePort(), await freePort()];
    gateway = new RouterProcess('smg', join(testDeps, SMG), [
      'launch', '--enable-igw', '--host', '127.0.0.1', '--port', String(port),
      '--prometheus-host', '127.0.0.1', '--prometheus-port', String(metricsPort),
      '--health-check-interval-secs', '1', '--log-level', 'info',
    ]);
    url = `http://127.0.0.1:${port}`;
    await gateway.waitReady(`${url}/workers`, 60_000);
    for (const f of [fa, fb]) {
      // External: the gateway reads the host's /v1/models (with the key) and serves every model
      // listed there; health checks are off for external workers unless turned on, as here. A
      // 503 is one model not ready on this host: retried on another host, but not counted
      // against this one (by default it is, and a few open the host's circuit breaker).
      const res = await fetch(`${url}/workers`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          url: f.url, runtime_type: 'external', api_key: KEY,
          health: { disable_health_check: false, check_interval_secs: 1 },
          resilience: { capacity_status_codes: [429, 503] },
        }),
      });
      assert.equal(res.status, 202, await res.text());
    }
    await until('both hosts registered and healthy', async () => {
      const ws = await workers(url);
      return ws.length === 2 && ws.every((w) => w.is_healthy) ? ws : null;
    });
  });

  after(async () => {
    await gateway?.stop();
    await Promise.all([fa?.close(), fb?.close()]);
    for (const d of [a, b]) {
      await d?.stop();
      d?.cleanup();
    }
  });

  test('both hosts are registered with every model each serves', async (t) => {
    if (!testTool(t, SMG)) return;
    const ws = await workers(url);
    const modelsOf = (f: HealthCountingForwarder): string[] =>
      (ws.find((w) => w.url === f.url)?.models ?? []).map((m) => m.id).sort();
    assert.deepEqual(modelsOf(fa), ['alpha', 'broken', 'shared']);
    assert.deepEqual(modelsOf(fb), ['beta', 'shared']);
  });

  test('requests are routed by model to the host that serves it', async (t) => {
    if (!testTool(t, SMG)) return;
    const shared = (): number => chatRequests(a, 'shared') + chatRequests(b, 'shared');
    const before = { alpha: chatRequests(a, 'alpha'), beta: chatRequests(b, 'beta'), shared: shared() };
    for (const m of ['alpha', 'beta', 'shared', 'beta', 'alpha', 'shared']) {
      const ans = await routedChat(url, m, 4);
      assert.equal(ans.status, 200, `${m}: ${ans.error ?? ''}`);
      assert.equal(ans.content, expectedReply(m, 4));
    }
    assert.equal(chatRequests(a, 'alpha') - before.alpha, 2);
    assert.equal(chatRequests(b, 'beta') - before.beta, 2);
    assert.equal(shared() - before.shared, 2);
    assert.equal(chatRequests(a, 'beta') + chatRequests(b, 'alpha'), 0);
  });

  test('health checks are answered 200 while every model sleeps, and never wake one', async (t) => {
    if (!testTool(t, SMG)) return;
    for (const [d, models] of [[a, HOST_A], [b, HOST_B]] as const) {
      for (const m of models) {
        const res = await d.post(`/admin/models/${m.name}/sleep`, {});
        assert.equal(res.status, 200, await res.text());
      }
      assert.equal((await d.health()).active_model, null);
    }
    const mark = { a: a.ledger().length, b: b.ledger().length, fa: fa.health.length, fb: fb.health.length };
    // Three more checks of each host: past the gateway's failure threshold (3), had they failed.
    await until('3 health checks of each host', async () =>
      (fa.health.length >= mark.fa + 3 && fb.health.length >= mark.fb + 3 ? true : null), 30_000);
    assert.deepEqual([...fa.health.slice(mark.fa), ...fb.health.slice(mark.fb)].filter((s) => s !== 200), []);
    for (const [d, from] of [[a, mark.a], [b, mark.b]] as const) {
      const woke = d.ledger().slice(from).filter((e) => e.event === 'resume' || e.event === 'alloc' || e.event === 'request');
      assert.deepEqual(woke, [], 'no model woken or called while only health checks came');
    }
    assert.ok((await workers(url)).every((w) => w.is_healthy), 'both hosts still healthy in the gateway');
    // And a request still goes through: it wakes its model on its host.
    const ans = await routedChat(url, 'alpha', 3);
    assert.equal(ans.status, 200, ans.error ?? '');
    assert.equal(ans.content, expectedReply('alpha', 3));
    assert.deepEqual(crashes(a.ledger()), []);
    assert.deepEqual(crashes(b.ledger()), []);
  });

  test('a model that cannot start gets 503s that do not take its host out of the gateway', async (t) => {
    if (!testTool(t, SMG)) return;
    // Each is retried by the gateway (5 times by default): about 24 503s from host A.
    for (let i = 0; i < 4; i++) {
      const ans = await routedChat(url, 'broken', 2);
      assert.equal(ans.status, 503, ans.error ?? '');
      assert.match(ans.error ?? '', /^model not ready: broken exited with code 3 /);
    }
    for (const m of ['alpha', 'shared']) {
      const ans = await routedChat(url, m, 2);
      assert.equal(ans.status, 200, `${m}: ${ans.error ?? ''}`);
      assert.equal(ans.content, expectedReply(m, 2));
    }
    assert.ok((await workers(url)).every((w) => w.is_healthy));
  });

  test('a host stopped: its shared model goes to the other host once the gateway sees it down; every request ends', async (t) => {
    if (!testTool(t, SMG)) return;
    await b.stop();
    await fb.close(); // the host's address refuses connections, as a stopped host's does
    const stopped = Date.now();
    // Until its health checks (every second, 3 failures) take B out, the gateway may still pick
    // B for shared: those requests end in a 503 that says so, and none hangs.
    const early: string[] = [];
    await until('shared served again', async () => {
      const ans = await routedChat(url, 'shared', 2);
      if (ans.status === 200) return true;
      assert.equal(ans.status, 503, ans.error ?? '');
      assert.match(ans.error ?? '', /upstream|unavailable/i);
      early.push(ans.error ?? '');
      return null;
    }, 30_000);
    t.diagnostic(`shared failed over after ${Date.now() - stopped} ms, ${early.length} requests answered 503 before`);
    const sharedOnA = chatRequests(a, 'shared');
    for (let i = 0; i < 3; i++) {
      const ans = await routedChat(url, 'shared', 2);
      assert.equal(ans.status, 200, ans.error ?? '');
      assert.equal(ans.content, expectedReply('shared', 2));
    }
    assert.equal(chatRequests(a, 'shared') - sharedOnA, 3);
    // beta has no host left: the gateway says so (404 once B is out, 503 before).
    const beta = await routedChat(url, 'beta', 2);
    assert.ok(beta.status === 404 || beta.status === 503, `beta: ${beta.status}`);
    assert.match(beta.error ?? '', /beta|upstream/);
    t.diagnostic(`beta after its host stopped: ${beta.status} ${beta.error}`);
  });
});
