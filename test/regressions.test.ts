// Regressions found in review, each pinned by a test written before its fix: a rule of
// docs/scheduling.md or an SGLang fact the daemon once broke. Waits are on events (log lines,
// ledger events, /health states).
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { Daemon, launchScript, pidGone, repoRoot } from './support/daemon.js';
import { crashes, expectedReply } from './support/sim.js';

const daemons: Daemon[] = [];
after(async () => {
  for (const d of daemons) {
    await d.stop();
    d.cleanup();
  }
});

async function start(opts: Parameters<typeof Daemon.start>[0]): Promise<Daemon> {
  const d = await Daemon.start(opts);
  daemons.push(d);
  return d;
}

describe('idle sleep', () => {
  test('--idle-sleep-secs does not put the model bootstrap left awake to sleep before it was idle that long', async () => {
    const d = await start({ models: [{ name: 'a' }, { name: 'b' }], args: ['--idle-sleep-secs', '60'] });
    // b was awake for a few ms, not 60 s: it must still be awake.
    const h = await d.health();
    assert.equal(d.state(h, 'b'), 'awake', JSON.stringify(h));
    assert.doesNotMatch(d.output, /model b: idle for 60000 ms, putting it to sleep/);
  });

  test('--idle-sleep-secs does not put a model to sleep right after a control-API restart', async () => {
    const d = await start({ models: [{ name: 'a' }, { name: 'b' }], args: ['--idle-sleep-secs', '1', '--min-active-secs', '0'] });
    // a was last used at bootstrap; once a has been asleep longer than the idle time, restart it.
    await d.waitHealth((h) => d.state(h, 'b') === 'asleep', 'b asleep after its idle time');
    assert.equal((await d.chat('a', 1)).status, 200);
    await d.waitLog(/model a: idle for 1000 ms, putting it to sleep/);
    await d.waitHealth((h) => d.state(h, 'a') === 'asleep', 'a asleep');
    const res = await fetch(`${d.url}/admin/models/a/restart`, { method: 'POST' });
    assert.equal(res.status, 200);
    const h = await d.health();
    assert.equal(d.state(h, 'a'), 'awake', `a was just restarted: ${JSON.stringify(h)}`);
  });
});

describe('a model woken by the control API', () => {
  test('has served nothing, so it yields at once to a waiting request (docs/scheduling.md)', async () => {
    const d = await start({
      models: [{ name: 'a' }, { name: 'b' }],
      args: ['--min-active-secs', '4', '--model-switch-timeout-secs', '20'],
    });
    const woke = await fetch(`${d.url}/admin/models/a/wake`, { method: 'POST' });
    assert.equal(woke.status, 200);
    const started = Date.now();
    const r = await d.chat('b', 2);
    const waited = Date.now() - started;
    assert.equal(r.body.choices?.[0]?.message?.content, expectedReply('b', 2));
    // One switch costs ~0.1 s here; the 4 s window is only for a model that served something.
    assert.ok(waited < 2000, `b waited ${waited} ms behind a model nobody had used`);
    assert.deepEqual(crashes(d.ledger()), []);
  });
});

describe('SIGHUP during bootstrap', () => {
  test('changing the script of the model being started does not skip the next model of the bootstrap', async () => {
    const slow = { SGLANG_SIM_STARTUP_MS: '1500' };
    const d = await start({ models: [{ name: 'a', env: slow }, { name: 'b' }, { name: 'c' }], scriptDir: true, waitBoot: false });
    await d.waitLedger((e) => e.event === 'start' && e.model === 'a', 'a starting');
    const aPort = d.models.find((m) => m.name === 'a')!.port;
    writeFileSync(join(d.dir, 'scripts', 'a.sh'), launchScript({ name: 'a', env: { ...slow, SGLANG_SIM_TOKEN_MS: '3' } }, aPort));
    d.proc.kill('SIGHUP');
    await d.waitLog(/configuration reloaded: added none; removed none; changed a/, 30_000, true);
    await d.waitLog(/bootstrap done/, 30_000, true);
    const started = new Set(d.ledger().filter((e) => e.event === 'start').map((e) => e.model));
    assert.ok(started.has('b'), `b was never started by the bootstrap; /health: ${JSON.stringify(await d.health())}`);
    assert.deepEqual(crashes(d.ledger()), []);
  });
});

describe('crash loops', () => {
  test('a model that crashes on every request after a good start is backed off too', async () => {
    const d = await start({ models: [{ name: 'a', env: { SGLANG_SIM_CRASH_AFTER_TOKENS: '1' } }, { name: 'b' }] });
    const answers: { status: number; message: string }[] = [];
    for (let i = 0; i < 6; i++) {
      const r = await d.chat('a', 2);
      answers.push({ status: r.status, message: r.body.error?.message ?? '' });
      await d.waitHealth((h) => d.state(h, 'a') === 'failed', 'a failed again');
    }
    const starts = d.ledger().filter((e) => e.event === 'start' && e.model === 'a').length;
    assert.ok(
      answers.some((a) => /times in a row, next start in/.test(a.message)),
      `6 crashes in a row, ${starts} starts, never backed off: ${JSON.stringify(answers)}`,
    );
  });

  test('a model without the memory saver that was stopped normally after a good start is no longer in a crash loop', async (t) => {
    // a's start fails while `faults` names a fault; it is read at each start of a.
    const faults = join(mkdtempSync(join(tmpdir(), 'sglangmux-faults-')), 'a.env');
    t.after(() => rmSync(join(faults, '..'), { recursive: true, force: true }));
    writeFileSync(faults, '');
    const command = `env $(cat '${faults}') python3 -m sglang.launch_server --model-path sim/a --served-model-name "$MODEL_NAME" --port "$PORT"`;
    const d = await start({ models: [{ name: 'a', memorySaver: false, command }, { name: 'b' }], args: ['--min-active-secs', '0'] });
    writeFileSync(faults, 'SGLANG_SIM_EXIT_AT_START=3');
    assert.equal((await d.chat('a', 1)).status, 503, 'a fails to start once');
    writeFileSync(faults, '');
    assert.equal((await d.chat('a', 1)).status, 200, 'a started again after one failure');
    assert.equal((await d.chat('b', 1)).status, 200, 'b served: a was stopped, normally');
    writeFileSync(faults, 'SGLANG_SIM_EXIT_AT_START=3');
    assert.equal((await d.chat('a', 1)).status, 503, 'a fails to start once more');
    writeFileSync(faults, '');
    const r = await d.chat('a', 1);
    assert.equal(r.status, 200, `one failure since a normal stop is not two in a row: ${JSON.stringify(r.body)}`);
  });
});

describe('hazard 4 (memory still in use for a while after release answered)', () => {
  test('the next model is not started or resumed before the released memory is really free', async () => {
    const d = await start({ models: [{ name: 'a' }, { name: 'b' }], env: { SGLANG_SIM_FREE_LAG_MS: '300' }, args: ['--min-active-secs', '0'] });
    const r = await d.chat('a', 2);
    assert.equal(r.body.choices?.[0]?.message?.content, expectedReply('a', 2), JSON.stringify(r.body));
    const refused = d.ledger().filter((e) => e.event === 'oom' || e.event === 'hang');
    assert.deepEqual(refused.map((e) => `${e.event} ${e.model}`), [], 'a start or a resume met memory not yet freed');
  });

  test('nvidia-smi is started once for the daemon, not for every reading (a start costs 50-100 ms on a GPU host)', async (t) => {
    const bin = mkdtempSync(join(tmpdir(), 'sglangmux-smi-'));
    t.after(() => rmSync(bin, { recursive: true, force: true }));
    const calls = join(bin, 'calls');
    writeFileSync(join(bin, 'nvidia-smi'), `#!/usr/bin/env bash\necho "$$ $*" >> '${calls}'\nexec '${join(repoRoot, 'src', 'simulator', 'bin', 'nvidia-smi')}' "$@"\n`, { mode: 0o755 });
    const d = await start({
      models: [{ name: 'a' }, { name: 'b' }],
      env: { SGLANG_SIM_FREE_LAG_MS: '200', PATH: `${bin}:${process.env.PATH ?? ''}` },
      args: ['--min-active-secs', '0'],
    });
    for (const model of ['a', 'b', 'a', 'b']) {
      const r = await d.chat(model, 2);
      assert.equal(r.body.choices?.[0]?.message?.content, expectedReply(model, 2), JSON.stringify(r.body));
    }
    const refused = d.ledger().filter((e) => e.event === 'oom' || e.event === 'hang');
    assert.deepEqual(refused.map((e) => `${e.event} ${e.model}`), [], 'a start or a resume met memory not yet freed');
    const lines = readFileSync(calls, 'utf8').trim().split('\n');
    assert.equal(lines.length, 1, `nvidia-smi started ${lines.length} times for 2 starts and 4 switches:\n${lines.join('\n')}`);
    assert.match(lines[0], / -lms \d+$/);
    await d.stop();
    assert.ok(pidGone(Number(lines[0].split(' ')[0])), 'nvidia-smi still runs after the daemon stopped');
  });
});
