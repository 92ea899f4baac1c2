// What a real SGLang server needs that the first simulator did not demand (SGLANG-FACTS, issue
// P6): keys from `$VAR` and the admin key on control routes, a refused key as a loud
// configuration error, the pause barrier guarding a sleeping server, failed or corrupt weight
// reloads, residual memory of sleeping servers, data-parallel ranks.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { parseLaunchScript, reloadRisk, ScriptError } from '../src/launch-script.js';
import { bundle, Daemon, type ModelDef } from './support/daemon.js';
import { crashes, expectedReply, isGarbage } from './support/sim.js';

const daemons: Daemon[] = [];
after(async () => {
  for (const d of daemons) {
    await d.stop();
    d.cleanup();
  }
});

async function start(models: ModelDef[], env: Record<string, string> = {}, args: string[] = []): Promise<Daemon> {
  const d = await Daemon.start({ models, env, args });
  daemons.push(d);
  return d;
}

/** The simulator's launch command with extra flags (memory saver and CPU backup unless told). */
function command(name: string, extra: string, cpuBackup = true): string {
  return `python3 -m sglang.launch_server --model-path sim/${name} --served-model-name "$MODEL_NAME" --port "$PORT" --enable-memory-saver${cpuBackup ? ' --enable-weights-cpu-backup' : ''} ${extra}`;
}

/** GET straight to a model server, bypassing sglangmux. */
function direct(port: number, path: string, init: RequestInit = {}): Promise<Response> {
  return fetch(`http://127.0.0.1:${port}${path}`, init);
}

const reply = async (d: Daemon, model: string): Promise<string | undefined> => (await d.chat(model, 3)).body.choices?.[0]?.message?.content;

describe('launch script keys', () => {
  test('$VAR and ${VAR} in --api-key / --admin-api-key come from the environment; an unset one is an error naming the script', () => {
    const text = 'MODEL_NAME=m\nPORT=1\nexec python3 -m sglang.launch_server --api-key "$SGL_KEY" --admin-api-key=${SGL_ADMIN}\n';
    const spec = parseLaunchScript('/k.sh', text, { SGL_KEY: 'k1', SGL_ADMIN: 'a1' });
    assert.equal(spec.apiKey, 'k1');
    assert.equal(spec.adminApiKey, 'a1');
    const own = parseLaunchScript('/k.sh', `SGL_KEY=inscript\n${text}`, { SGL_KEY: 'env', SGL_ADMIN: 'a1' });
    assert.equal(own.apiKey, 'inscript', 'an assignment in the script wins, as in bash');
    assert.throws(() => parseLaunchScript('/k.sh', text, { SGL_KEY: 'k1' }), (err: Error) =>
      err instanceof ScriptError && /^\/k\.sh: --admin-api-key uses \$SGL_ADMIN, which is not set/.test(err.message));
  });

  test('an unset key variable stops sglangmux at start with exit 2 and the script named', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sglangmux-keys-'));
    try {
      const script = join(dir, 'm.sh');
      writeFileSync(script, 'MODEL_NAME=m\nPORT=30555\nexec python3 -m sglang.launch_server --api-key "$NOT_SET_ANYWHERE"\n');
      const r = spawnSync(process.execPath, [bundle, script], { encoding: 'utf8', env: { PATH: process.env.PATH } });
      assert.equal(r.status, 2);
      assert.match(r.stderr, /m\.sh: --api-key uses \$NOT_SET_ANYWHERE, which is not set/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a served name with ":" (a LoRA adapter to SGLang) is refused at start', () => {
    assert.throws(() => parseLaunchScript('/l.sh', 'MODEL_NAME=base:v1\nPORT=1\n'), /contains ':'/);
  });

  test('reloads known to break are named, so the start warns per script', () => {
    const spec = (flags: string): ReturnType<typeof parseLaunchScript> =>
      parseLaunchScript('/r.sh', `MODEL_NAME=m\nPORT=1\nexec sglang --enable-memory-saver ${flags}\n`);
    const cases: [string, string | null][] = [
      ['', null],
      ['--quantization fp8', '--quantization fp8'],
      ['--quantization compressed-tensors', '--quantization compressed-tensors'],
      ['--quantization awq', null],
      ['--load-format gguf', '--load-format gguf'],
      ['--load-format auto', null],
    ];
    for (const [flags, risk] of cases) assert.equal(reloadRisk(spec(flags)), risk, flags);
  });

  test('a model whose script passes $VAR keys and an admin key sleeps and wakes by release/resume', async () => {
    const env = { SGL_KEY: 'user-key-1', SGL_ADMIN: 'admin-key-1' };
    const keyed = command('a', '--api-key "$SGL_KEY" --admin-api-key "${SGL_ADMIN}"');
    const d = await start([{ name: 'a', command: keyed }, { name: 'b' }], env);
    assert.equal(await reply(d, 'a'), expectedReply('a', 3));
    assert.equal(await reply(d, 'b'), expectedReply('b', 3));
    assert.equal(await reply(d, 'a'), expectedReply('a', 3));
    const ev = d.ledger().filter((e) => e.model === 'a');
    assert.equal(ev.filter((e) => e.event === 'start').length, 1, 'never stopped and started again');
    assert.ok(ev.filter((e) => e.event === 'release').length >= 2, 'released at bootstrap and at the switch');
    assert.ok(ev.some((e) => e.event === 'resume'));
    assert.ok(ev.some((e) => e.event === 'pause'), 'the admin key opened /pause_generation');
    assert.deepEqual(crashes(d.ledger()), []);
    assert.doesNotMatch(d.output, /user-key-1|admin-key-1/, 'keys never logged');
  });

  for (const [key, when] of [['admin_api_key', 'at its first sleep'], ['api_key', 'at its first start']] as const) {
    test(`a key the script does not show (${key} in a --config file) is a loud configuration error ${when}, never stop-and-start`, async () => {
      const d0 = mkdtempSync(join(tmpdir(), 'sglangmux-config-'));
      const config = join(d0, 'a.yaml');
      writeFileSync(config, `${key}: hidden-key\n`);
      try {
        const d = await start([{ name: 'a', command: command('a', `--config ${config}`) }, { name: 'b' }]);
        // Bootstrap met the refused key (/server_info after the start, or /pause_generation).
        const h = await d.health();
        const a = h.models.find((m) => m.id === 'a') as unknown as { state: string; last_error: string | null };
        assert.equal(a.state, 'failed');
        assert.match(a.last_error ?? '', /configuration error: a's server answered 401/);
        const res = await d.chat('a', 2);
        assert.equal(res.status, 503);
        assert.match(res.body.error?.message ?? '', /configuration error/);
        assert.equal((d.output.match(/model a: configuration error/g) ?? []).length, 1, 'logged once');
        assert.equal(d.ledger().filter((e) => e.model === 'a' && e.event === 'start').length, 1, 'not started again');
        assert.equal(await reply(d, 'b'), expectedReply('b', 3));
        assert.deepEqual(crashes(d.ledger()), []);
        assert.doesNotMatch(d.output, /hidden-key/);
      } finally {
        rmSync(d0, { recursive: true, force: true });
      }
    });
  }
});

describe('the pause barrier', () => {
  test('a /health probe sent straight to a sleeping server waits instead of crashing it', async () => {
    const d = await start([{ name: 'a' }, { name: 'b' }]);
    const a = d.models.find((m) => m.name === 'a')!;
    assert.equal((await d.health()).active_model, 'b');
    const probe = direct(a.port, '/health');
    await d.waitLedger((e) => e.model === 'a' && e.event === 'request' && e.route === '/health', 'the probe reached a');
    // Waking a continues its generation: the waiting probe then runs on resumed memory.
    assert.equal(await reply(d, 'a'), expectedReply('a', 3));
    assert.equal((await probe).status, 200);
    const ev = d.ledger();
    const order = ev.filter((e) => e.model === 'a' && ['pause', 'release', 'resume', 'continue'].includes(e.event)).map((e) => e.event);
    assert.deepEqual(order.slice(0, 4), ['pause', 'release', 'resume', 'continue']);
    assert.deepEqual(crashes(ev), []);
  });

  test('a build without /pause_generation (404) sleeps the old way, detected once', async () => {
    const d = await start([{ name: 'a', env: { SGLANG_SIM_NO_PAUSE: '1' } }, { name: 'b' }]);
    for (const m of ['a', 'b', 'a', 'b']) assert.equal(await reply(d, m), expectedReply(m, 3));
    assert.equal((d.output.match(/model a: this SGLang build has no \/pause_generation/g) ?? []).length, 1);
    const pauses = d.ledger().filter((e) => e.model === 'a' && e.event === 'request' && e.route === '/pause_generation');
    assert.equal(pauses.length, 0, 'a 404 is not a request that reached a handler');
    assert.equal(d.ledger().filter((e) => e.model === 'a' && e.event === 'start').length, 1);
    assert.deepEqual(crashes(d.ledger()), []);
  });
});

describe('weight reloads', () => {
  test('a failed reload never serves: the model is stopped and started cold, its waiter served by the fresh start', async () => {
    const d = await start([{ name: 'a', cpuBackup: false, env: { SGLANG_SIM_FAIL_RELOAD: '1' } }, { name: 'b' }]);
    const answer = await reply(d, 'a');
    assert.equal(answer, expectedReply('a', 3));
    assert.ok(!isGarbage(answer ?? ''));
    await d.waitLog(/model a: reloading its weights failed .*; stopping it and starting it cold instead/, 5000, true);
    assert.equal(d.ledger().filter((e) => e.model === 'a' && e.event === 'start').length, 2);
    assert.deepEqual(crashes(d.ledger()), []);
  });

  test('a reload that succeeds into corrupt weights fails the checksum taken at cold start', async () => {
    const d = await start([{ name: 'a', cpuBackup: false, env: { SGLANG_SIM_CORRUPT_RELOAD: '1' } }, { name: 'b' }]);
    assert.equal(await reply(d, 'a'), expectedReply('a', 3));
    await d.waitLog(/model a: its reloaded weights do not match the checksum/, 5000, true);
    assert.deepEqual(crashes(d.ledger()), []);
  });
});

describe('residual memory', () => {
  test('a resume that would not fit beside sleeping servers\' residue is not attempted: room is made or the model starts cold', async () => {
    // 1000 MiB GPU; each server keeps 150 MiB after release and sizes its KV cache from what is
    // free at its start (0.8 of it): a starts big, b smaller, and a's resume no longer fits.
    const env = { SGLANG_SIM_GPU_MB: '1000', SGLANG_SIM_RESIDUE_MB: '150' };
    const models = ['a', 'b'].map((name) => ({ name, command: command(name, '--mem-fraction-static 0.8') }));
    const d = await start(models, env);
    assert.equal(await reply(d, 'a'), expectedReply('a', 3));
    await d.waitLog(/model a: \d+ MiB of GPU memory free, its resume needs \d+ MiB/, 5000, true);
    const ev = d.ledger();
    assert.deepEqual(ev.filter((e) => e.event === 'hang'), [], 'no resume walked into the hang');
    assert.deepEqual(crashes(ev), []);
    assert.equal(await reply(d, 'b'), expectedReply('b', 3));
  });
});

describe('data parallelism', () => {
  test('with --dp-size 2 a request on rank 1 is waited for, though /flush_cache (rank 0) says idle', async () => {
    // An old build without pause: only /v1/loads can tell that rank 1 still runs.
    const dp = { name: 'a', command: command('a', '--dp-size 2'), env: { SGLANG_SIM_NO_PAUSE: '1', SGLANG_SIM_TOKEN_MS: '20' } };
    // Two data-parallel ranks take a GPU each.
    const d = await start([dp, { name: 'b' }], { SGLANG_SIM_GPUS: '2' }, ['--min-active-secs', '0']);
    const a = d.models.find((m) => m.name === 'a')!;
    assert.equal(await reply(d, 'a'), expectedReply('a', 3));
    const body = (n: number): RequestInit => ({
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'a', max_tokens: n, messages: [{ role: 'user', content: 'hi' }] }),
    });
    // Straight to the server, bypassing sglangmux: a shorter one (rank 0), then a long one (rank 1).
    const chats = (): number => d.ledger().filter((e) => e.model === 'a' && e.event === 'request' && e.route === '/v1/chat/completions').length;
    const before = chats();
    const short = direct(a.port, '/v1/chat/completions', body(5));
    await d.waitLedger(() => chats() > before, 'the short request reached a');
    const long = direct(a.port, '/v1/chat/completions', body(100));
    await d.waitLedger(() => chats() > before + 1, 'the long request reached a');
    assert.equal(await reply(d, 'b'), expectedReply('b', 3));
    assert.equal((await short).status, 200);
    assert.equal((await long).status, 200);
    assert.deepEqual(crashes(d.ledger()), []);
  });
});
