// Lifecycle options: lazy start, idle sleep, and SIGHUP reloads (added, removed, changed and
// broken scripts) while the rest keeps serving.
import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { Daemon, pidGone, freePort, launchScript } from './support/daemon.js';
import { crashes, expectedReply } from './support/sim.js';

const daemons: Daemon[] = [];
after(async () => {
  for (const d of daemons) {
    await d.stop();
    d.cleanup();
  }
});

const serverPids = (d: Daemon, model: string): number[] =>
  d.ledger().filter((e) => e.event === 'listening' && e.model === model).map((e) => e.pid);

describe('lifecycle options', () => {
  test('--lazy starts nothing at start-up and each model on its first request', async () => {
    const d = await Daemon.start({ models: [{ name: 'a' }, { name: 'b' }], args: ['--lazy'], waitBoot: false });
    daemons.push(d);
    await d.waitLog(/lazy start/, 30_000, true);
    const h = await d.health();
    assert.deepEqual(h.models.map((m) => m.state), ['stopped', 'stopped']);
    assert.equal(h.active_model, null);
    assert.equal(d.ledger().filter((e) => e.event === 'start').length, 0);
    assert.equal((await d.chat('b', 2)).body.choices?.[0]?.message?.content, expectedReply('b', 2));
    assert.deepEqual(d.ledger().filter((e) => e.event === 'start').map((e) => e.model), ['b']);
    assert.equal((await d.chat('a', 2)).body.choices?.[0]?.message?.content, expectedReply('a', 2));
    assert.deepEqual(crashes(d.ledger()), []);
  });

  test('--idle-sleep-secs puts the awake model to sleep when idle; the next request wakes it', async () => {
    const d = await Daemon.start({ models: [{ name: 'a' }, { name: 'b' }], args: ['--idle-sleep-secs', '0.3'] });
    daemons.push(d);
    await d.waitHealth((h) => h.models.every((m) => m.state === 'asleep'), 'both asleep');
    assert.equal((await d.health()).active_model, null);
    const mark = d.ledger().length;
    assert.equal((await d.chat('b', 2)).body.choices?.[0]?.message?.content, expectedReply('b', 2));
    assert.deepEqual(d.ledger().slice(mark).filter((e) => e.event === 'resume').map((e) => e.model), ['b']);
    await d.waitLog(/model b: idle for 300 ms, putting it to sleep/);
    await d.waitHealth((h) => d.state(h, 'b') === 'asleep', 'b asleep again');
    assert.deepEqual(crashes(d.ledger()), []);
  });
});

describe('SIGHUP reload', () => {
  test('added, removed, changed and broken scripts; the rest keeps serving', async () => {
    const d = await Daemon.start({ models: [{ name: 'a' }, { name: 'b' }], scriptDir: true });
    daemons.push(d);
    const scripts = join(d.dir, 'scripts');
    const [aPid] = serverPids(d, 'a');
    const [bPid] = serverPids(d, 'b');

    // Added: c appears in the directory.
    writeFileSync(join(scripts, 'c.sh'), launchScript({ name: 'c' }, await freePort()));
    d.proc.kill('SIGHUP');
    await d.waitLog(/configuration reloaded: added c; removed none; changed none/);
    assert.equal((await d.chat('c', 2)).body.choices?.[0]?.message?.content, expectedReply('c', 2));

    // Removed: a's script is deleted; its server stops and the model is gone.
    rmSync(join(scripts, 'a.sh'));
    d.proc.kill('SIGHUP');
    await d.waitLog(/configuration reloaded: added none; removed a; changed none/);
    await d.waitLog(/model a: retired/, 30_000, true);
    assert.ok(pidGone(aPid!));
    const gone = await d.chat('a', 1);
    assert.equal(gone.status, 404);
    assert.equal(gone.body.error?.code, 'model_not_found');

    // Changed: b's script gets a new line; b restarts from the new script.
    const bPort = d.models.find((m) => m.name === 'b')!.port;
    writeFileSync(join(scripts, 'b.sh'), launchScript({ name: 'b', env: { SGLANG_SIM_TOKEN_MS: '3' } }, bPort));
    d.proc.kill('SIGHUP');
    await d.waitLog(/configuration reloaded: added none; removed none; changed b/);
    assert.equal((await d.chat('b', 2)).body.choices?.[0]?.message?.content, expectedReply('b', 2));
    assert.ok(pidGone(bPid!), 'the old b server was stopped');
    assert.equal(serverPids(d, 'b').length, 2, 'b was started again');

    // Broken: a script without a port is rejected whole; the old configuration keeps serving.
    writeFileSync(join(scripts, 'd.sh'), 'MODEL_NAME=d\nexec true\n');
    d.proc.kill('SIGHUP');
    await d.waitLog(/SIGHUP: configuration rejected, keeping the running one: .*d\.sh: no port/);
    assert.equal((await d.chat('c', 2)).status, 200);
    assert.equal((await d.chat('b', 2)).status, 200);
    assert.deepEqual((await d.health()).models.map((m) => m.id), ['b', 'c']);
    assert.deepEqual(crashes(d.ledger()), []);
    assert.deepEqual(d.ledger().filter((e) => e.event === 'oom' || e.event === 'hang'), []);
  });
});
