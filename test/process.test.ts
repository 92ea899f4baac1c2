// Process supervision against the simulator: a model process that dies (while a request waits for
// it, or while it is the awake model) is shown failed and started again for its waiters or by
// the next request, but not before every process of its old group is gone; shutdown leaves no process
// behind (checked by pid, with and without `exec` in the launch script, by SIGTERM and SIGINT,
// during bootstrap, and with a second signal); per-model log files with sanitized names; scripts
// that exit at once or whose port is taken; and the listener answering during bootstrap.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { bundle, Daemon, freePort, pidGone as gone, type Health, type ModelDef, useDaemon } from './support/daemon.js';
import { crashes, expectedReply, type LedgerEvent } from './support/sim.js';

/** Pids of the launch scripts, from the daemon's `model X: starting <script> (pid N, port P)` lines. */
function scriptPids(d: Daemon): Map<string, number[]> {
  const out = new Map<string, number[]>();
  for (const m of d.output.matchAll(/model (\S+): starting (\S+) \(pid (\d+), port (\d+)\)/g)) {
    out.set(m[1]!, [...(out.get(m[1]!) ?? []), Number(m[3])]);
  }
  return out;
}

/** Pids of the model servers themselves, from the simulators' ledger `start` events. */
function serverPids(events: readonly LedgerEvent[], model?: string): number[] {
  return events.filter((e) => e.event === 'start' && (model === undefined || e.model === model)).map((e) => e.pid);
}

/** The pid of the current server process of `model`: its latest ledger `start` event. */
function currentServerPid(d: Daemon, model: string): number {
  const pids = serverPids(d.ledger(), model);
  assert.ok(pids.length > 0, `a start event for ${model} in the ledger`);
  return pids[pids.length - 1]!;
}

/** The parent pid of a live process, from /proc. */
function parentPid(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // pid (comm) state ppid ...; comm may contain spaces and parentheses: split after the last ')'.
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
}

/** Every process in a process group, from /proc (zombies included). */
function groupMembers(pgid: number): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2]) === pgid) out.push(Number(entry));
    } catch {
      // exited meanwhile
    }
  }
  return out;
}

/** Waits until no process has that pid any more: a killed orphan stays a zombie until init reaps it. */
async function waitGone(pid: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!gone(pid)) {
    if (Date.now() > deadline) throw new Error(`pid ${pid} still exists after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Switch as soon as the awake model is idle: these tests are about processes, not about the
 * scheduler's minimum active window. */
const NO_ACTIVE_WINDOW = ['--min-active-secs', '0'];

const stateOf = (h: Health, model: string): string | undefined => h.models.find((m) => m.id === model)?.state;
const escapeRe = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const stderrLogOf = (d: Daemon, model: string, fileBase = model): string =>
  join(d.logDir, `${fileBase}_${d.models.find((m) => m.name === model)!.port}.stderr.log`);

async function errorOf(res: Response): Promise<{ status: number; message: string; type: string; code: unknown }> {
  const body = (await res.json()) as { error: { message: string; type: string; code: unknown } };
  return { status: res.status, message: body.error.message, type: body.error.type, code: body.error.code };
}

/** After model a failed to start: /health shows it failed, and b, awake, still answers. */
async function assertAFailedBServes(d: Daemon): Promise<void> {
  const h = await d.health();
  assert.equal(stateOf(h, 'a'), 'failed');
  assert.equal(stateOf(h, 'b'), 'awake');
  const b = await d.chat('b', 3);
  assert.equal(b.status, 200);
  assert.equal(b.body.choices?.[0]?.message?.content, expectedReply('b', 3));
}

describe('a model process killed while a request waits for it', () => {
  let d: Daemon;
  useDaemon((started) => (d = started), {
    // b is awake after bootstrap; its tokens are slow so a long generation keeps it busy.
    models: [{ name: 'a' }, { name: 'b', env: { SGLANG_SIM_TOKEN_MS: '20' } }],
    args: ['--model-switch-timeout-secs', '60', ...NO_ACTIVE_WINDOW],
  });

  // Issue 11: the waiting request was sent nowhere, so it is served after a restart (it used to
  // get the crash's 503); the crash still shows in /health and the log.
  test('the waiting request is served by a restarted process; /health shows the failure meanwhile', async () => {
    assert.equal(d.state(await d.health(), 'b'), 'awake');
    const killedPid = currentServerPid(d, 'a');
    // A 2 s generation on b, so a request for a has to wait.
    const long = d.chat('b', 100);
    await d.waitLedger((e) => e.event === 'request' && e.model === 'b', 'b generating');
    const waits = d.waitLog(/request for a waits/);
    const forA = d.chat('a', 3);
    await waits;

    const logged = d.waitLog(new RegExp(`model a: process killed by SIGKILL; its stderr is in ${escapeRe(stderrLogOf(d, 'a'))}`));
    process.kill(killedPid, 'SIGKILL');
    await logged;
    const h = await d.health();
    assert.equal(stateOf(h, 'a'), 'failed');
    const lastError = (h.models.find((m) => m.id === 'a') as { last_error?: string }).last_error;
    assert.match(lastError ?? '', /a killed by SIGKILL/);
    assert.ok(gone(killedPid));

    // b was not disturbed.
    const bAnswer = await long;
    assert.equal(bAnswer.status, 200);
    assert.equal(bAnswer.body.choices?.[0]?.message?.content, expectedReply('b', 100));

    const answer = await forA;
    assert.equal(answer.status, 200, JSON.stringify(answer.body));
    assert.equal(answer.body.choices?.[0]?.message?.content, expectedReply('a', 3));
    assert.notEqual(currentServerPid(d, 'a'), killedPid, 'a new process serves a');
    const now = await d.health();
    assert.equal(stateOf(now, 'a'), 'awake');
    assert.equal(now.active_model, 'a');
    assert.deepEqual(crashes(d.ledger()), []);
  });
});

describe('the awake model process killed', () => {
  let d: Daemon;
  useDaemon((started) => (d = started), { models: [{ name: 'a' }, { name: 'b' }], args: NO_ACTIVE_WINDOW });

  test('/health shows failed; the next request restarts it and succeeds', async () => {
    assert.equal(d.state(await d.health(), 'b'), 'awake');
    const killedPid = currentServerPid(d, 'b');
    const logged = d.waitLog(new RegExp(`model b: process killed by SIGKILL; its stderr is in ${escapeRe(stderrLogOf(d, 'b'))}`));
    process.kill(killedPid, 'SIGKILL');
    await logged;
    const h = await d.waitHealth((x) => d.state(x, 'b') === 'failed', 'b failed');
    assert.equal(h.active_model, null);
    assert.equal(stateOf(h, 'a'), 'asleep');

    const again = await d.chat('b', 4);
    assert.equal(again.status, 200, JSON.stringify(again.body));
    assert.equal(again.body.choices?.[0]?.message?.content, expectedReply('b', 4));
    assert.notEqual(currentServerPid(d, 'b'), killedPid);
    assert.equal(d.state(await d.health(), 'b'), 'awake');
    // And switching still works afterwards.
    const other = await d.chat('a', 2);
    assert.equal(other.body.choices?.[0]?.message?.content, expectedReply('a', 2));
    assert.deepEqual(crashes(d.ledger()), []);
  });
});

describe('a dead script whose process group lingers', () => {
  let d: Daemon;
  let stopped: number | undefined;
  before(async () => {
    // b (awake) runs without exec: bash is the group leader, the server its child.
    d = await Daemon.start({ models: [{ name: 'a' }, { name: 'b', exec: false }] });
  });
  after(async () => {
    if (stopped !== undefined && !gone(stopped)) process.kill(stopped, 'SIGCONT');
    await d.stop();
    d.cleanup();
  });

  test('the model is restarted only once its old processes are gone (no port clash, no OOM)', async () => {
    const [bash] = scriptPids(d).get('b')!;
    const server = currentServerPid(d, 'b');
    assert.equal(parentPid(server), bash);
    // The server is slow to go away (as SGLang's scheduler processes can be, tearing down CUDA):
    // stopped, it still holds its port and its GPU memory, and only SIGKILL ends it.
    stopped = server;
    process.kill(server, 'SIGSTOP');
    process.kill(bash!, 'SIGKILL');
    await d.waitHealth((h) => d.state(h, 'b') === 'failed', 'b failed', 20_000);

    const again = await d.chat('b', 3);
    assert.equal(again.status, 200, JSON.stringify(again.body));
    assert.equal(again.body.choices?.[0]?.message?.content, expectedReply('b', 3));
    assert.ok(gone(server), 'the old server was killed');
    const ev = d.ledger();
    assert.deepEqual(ev.filter((e) => e.event === 'oom' || e.event === 'hang'), [], 'no start while the old server held the GPU');
    assert.deepEqual(crashes(ev), []);
  });
});

describe('shutdown leaves no process behind', () => {
  const cases: [exec: boolean, signal: NodeJS.Signals][] = [
    [true, 'SIGTERM'], [false, 'SIGTERM'], [true, 'SIGINT'], [false, 'SIGINT'],
  ];
  const started: Daemon[] = [];
  after(async () => {
    for (const d of started) {
      await d.stop();
      d.cleanup();
    }
  });

  for (const [exec, signal] of cases) {
    test(`${signal}, scripts ${exec ? 'with' : 'without'} exec`, async () => {
      const models: ModelDef[] = [{ name: 'a', exec }, { name: 'b', exec }];
      const d = await Daemon.start({ models });
      started.push(d);
      const scripts = scriptPids(d);
      const servers = serverPids(d.ledger());
      assert.equal(scripts.size, 2, d.output);
      assert.equal(servers.length, 2);
      for (const m of ['a', 'b']) {
        const [bash] = scripts.get(m)!;
        const server = currentServerPid(d, m);
        if (exec) assert.equal(server, bash, `${m}: the server replaced bash`);
        else assert.equal(parentPid(server), bash, `${m}: bash is the parent of the server`);
      }
      const groups = [...scripts.values()].flat().flatMap(groupMembers);
      const pids = [...new Set([...[...scripts.values()].flat(), ...servers, ...groups])];
      for (const pid of pids) assert.ok(!gone(pid), `pid ${pid} runs before the shutdown`);

      d.proc.kill(signal);
      const exit = await d.exited;
      assert.deepEqual(exit, { code: 0, signal: null }, d.output);
      for (const pid of pids) assert.ok(gone(pid), `pid ${pid} is gone after the daemon exited`);
      // The servers were stopped by a signal (no crash), each writing its exit.
      const exits = d.ledger().filter((e) => e.event === 'exit');
      assert.deepEqual(exits.map((e) => e.pid).sort(), [...servers].sort());
      assert.deepEqual(crashes(d.ledger()), []);
    });
  }
});

describe('shutdown in special cases', () => {
  const started: Daemon[] = [];
  after(async () => {
    for (const d of started) {
      await d.stop();
      d.cleanup();
    }
  });

  test('SIGTERM during bootstrap: exit 0, nothing left, no further model started', async () => {
    const slow = { SGLANG_SIM_STARTUP_MS: '300' };
    const d = await Daemon.start({
      models: [{ name: 'a', env: slow }, { name: 'b', env: slow }, { name: 'c', env: slow }],
      waitBoot: false,
    });
    started.push(d);
    await d.waitLedger((e) => e.event === 'start' && e.model === 'b', 'b starting');
    const pids = [...new Set([...serverPids(d.ledger()), ...[...scriptPids(d).values()].flat()])];
    d.proc.kill('SIGTERM');
    const exit = await d.exited;
    assert.deepEqual(exit, { code: 0, signal: null }, d.output);
    for (const pid of pids) assert.ok(gone(pid), `pid ${pid} is gone after the daemon exited`);
    assert.deepEqual(serverPids(d.ledger(), 'c'), [], 'c was never started');
    assert.doesNotMatch(d.output, /model c: starting/);
  });

  test('a second signal exits at once; the process groups are still killed', async () => {
    // a's script ignores SIGTERM and, once its server has stopped, runs a `sleep` that ignores
    // it too: the first SIGTERM cannot finish the shutdown before the 10 s SIGKILL.
    const stubborn: ModelDef = {
      name: 'a',
      exec: false,
      command: `trap '' TERM; python3 -m sglang.launch_server --model-path sim/a --served-model-name "$MODEL_NAME" --port "$PORT" --enable-memory-saver --enable-weights-cpu-backup; sleep 60`,
    };
    const d = await Daemon.start({ models: [stubborn, { name: 'b' }] });
    started.push(d);
    const [bashA] = scriptPids(d).get('a')!;
    const serverA = currentServerPid(d, 'a');
    const pids = [...new Set([...serverPids(d.ledger()), ...[...scriptPids(d).values()].flat()])];

    d.proc.kill('SIGTERM');
    await d.waitLedger((e) => e.event === 'exit' && e.pid === serverA, 'a\'s server stopped');
    await d.waitLog(/model b: stopping process group/, 5000, true);
    const left = groupMembers(bashA!).filter((pid) => pid !== bashA);
    assert.ok(left.length > 0, 'the sleep of a\'s script still runs after the first SIGTERM');
    assert.equal(d.proc.exitCode, null, 'the daemon is still waiting for a');

    d.proc.kill('SIGTERM');
    const exit = await d.exited;
    assert.equal(exit.code, 1, d.output);
    assert.match(d.output, /SIGTERM again: exiting now/);
    assert.doesNotMatch(d.output, /all models stopped/);
    // Killed by the daemon's exit hook; orphans may stay zombies until init reaps them.
    for (const pid of [...pids, ...left]) await waitGone(pid);
  });
});

describe('per-model log files', () => {
  let d: Daemon;
  const qwen = 'Qwen/Qwen3-0.6B';
  const sneaky = '../evil/m.1';
  useDaemon((started) => (d = started), { models: [{ name: qwen }, { name: sneaky }], args: NO_ACTIVE_WINDOW });

  test('sanitized names under --log-dir, with the servers\' output, nothing outside', async () => {
    for (const model of [qwen, sneaky]) {
      const r = await d.chat(model, 3);
      assert.equal(r.body.choices?.[0]?.message?.content, expectedReply(model, 3));
    }
    const qp = d.models.find((m) => m.name === qwen)!.port;
    const sp = d.models.find((m) => m.name === sneaky)!.port;
    const files = [
      `Qwen_Qwen3-0_6B_${qp}.stderr.log`, `Qwen_Qwen3-0_6B_${qp}.stdout.log`,
      `___evil_m_1_${sp}.stderr.log`, `___evil_m_1_${sp}.stdout.log`,
    ];
    assert.deepEqual(readdirSync(d.logDir).sort(), files.sort());
    for (const [base, model, port] of [['Qwen_Qwen3-0_6B', qwen, qp], ['___evil_m_1', sneaky, sp]] as const) {
      const out = readFileSync(join(d.logDir, `${base}_${port}.stdout.log`), 'utf8');
      assert.match(out, /=== sglangmux: starting .* ===/);
      assert.match(out, /The server is fired up and ready to roll!/);
      assert.match(out, new RegExp(`Uvicorn running on http://127\\.0\\.0\\.1:${port}`));
      assert.match(out, /"POST \/v1\/chat\/completions HTTP\/1\.1" 200/, `${model} served a request`);
      const err = readFileSync(join(d.logDir, `${base}_${port}.stderr.log`), 'utf8');
      assert.match(err, /=== sglangmux: starting .* ===/);
    }
    // Nothing but the scripts, the ledger and the log dir in the test's directory (a model name
    // with `../` would have written next to the log dir, e.g. `<dir>/evil/`).
    const entries = readdirSync(d.dir).filter((f) => !f.endsWith('.lock')).sort();
    assert.deepEqual(entries, ['Qwen_Qwen3_0_6B.sh', '___evil_m_1.sh', 'ledger.jsonl', 'logs']);
    assert.ok(!existsSync(join(d.dir, 'evil')));
  });
});

describe('a launch script that exits at once', () => {
  let d: Daemon;
  useDaemon((started) => (d = started), {
    models: [{ name: 'a', env: { SGLANG_SIM_EXIT_AT_START: '3' } }, { name: 'b' }],
    args: NO_ACTIVE_WINDOW,
  });

  test('is reported with its exit code and stderr log; the other model serves', async () => {
    const stderrLog = stderrLogOf(d, 'a');
    await d.waitLog(new RegExp(`ERROR model a: failed to start: a exited with code 3 \\(see ${escapeRe(stderrLog)}\\)`), 5000, true);
    await d.waitLog(/bootstrap done: 1 of 2 models started; awake: b/, 5000, true);
    assert.match(readFileSync(stderrLog, 'utf8'), /simulated startup failure \(SGLANG_SIM_EXIT_AT_START=3\)/);
    await assertAFailedBServes(d);
  });

  test('a request for it tries again and gets the reason; the other model still serves', async () => {
    const res = await d.post('/v1/chat/completions', { model: 'a', messages: [{ role: 'user', content: 'hi' }] });
    const err = await errorOf(res);
    assert.equal(err.status, 503);
    assert.match(err.message, new RegExp(`^model not ready: a exited with code 3 \\(see ${escapeRe(stderrLogOf(d, 'a'))}\\)`));
    const b = await d.chat('b', 2);
    assert.equal(b.status, 200);
    assert.equal(b.body.choices?.[0]?.message?.content, expectedReply('b', 2));
  });
});

describe('no model can start', () => {
  let d: Daemon | undefined;
  after(async () => {
    await d?.stop();
    d?.cleanup();
  });

  test('the daemon exits non-zero by itself, leaving no process', async () => {
    d = await Daemon.start({
      models: [
        { name: 'a', env: { SGLANG_SIM_EXIT_AT_START: '3' } },
        { name: 'b', env: { SGLANG_SIM_EXIT_AT_START: '4' } },
      ],
      waitBoot: false,
    });
    const exit = await d.exited;
    assert.equal(exit.signal, null);
    assert.equal(exit.code, 1, d.output);
    assert.match(d.output, /model a: failed to start: a exited with code 3/);
    assert.match(d.output, /model b: failed to start: b exited with code 4/);
    assert.match(d.output, /no model could be started/);
    for (const pid of [...[...scriptPids(d).values()].flat(), ...serverPids(d.ledger())]) assert.ok(gone(pid), `pid ${pid} gone`);
  });
});

// got, which the daemon loads at its first call to a model server, is in the bundle as text
// (scripts/lazy-parts.mjs): if it cannot load, that is said at once, not taken for a server
// that never became ready.
describe('a bundle whose got cannot load', () => {
  let d: Daemon | undefined;
  const copyDir = mkdtempSync(join(tmpdir(), 'sglangmux-broken-'));
  after(async () => {
    await d?.stop();
    d?.cleanup();
    rmSync(copyDir, { recursive: true, force: true });
  });

  test('the model fails with got\'s error at once, not at its ready timeout', async () => {
    const copy = join(copyDir, 'sglangmux.mjs');
    const text = readFileSync(bundle, 'utf8');
    const fn = text.indexOf('function gotCommentedOut()');
    assert.ok(fn > 0, 'got\'s commented-out lines are in the bundle');
    const at = text.indexOf('\n//', fn);
    writeFileSync(copy, `${text.slice(0, at)}\n//throw new Error("got broken on purpose");${text.slice(at)}`);
    d = await Daemon.start({ bundle: copy, models: [{ name: 'a' }], args: ['--model-ready-timeout-secs', '600'], waitBoot: false });
    await d.waitLog(/model a: failed to start: .*got broken on purpose/, 20_000, true);
    const exit = await d.exited;
    assert.equal(exit.code, 1, d.output);
  });
});

describe('a model whose port is taken', () => {
  let d: Daemon;
  let squatter: Server;
  const sockets = new Set<Socket>();
  before(async () => {
    const port = await freePort();
    // Another process holds the port: it accepts connections and drops them.
    squatter = createServer((s) => s.destroy());
    squatter.on('connection', (s) => sockets.add(s));
    await new Promise<void>((r) => squatter.listen(port, '127.0.0.1', r));
    d = await Daemon.start({ models: [{ name: 'a', port }, { name: 'b' }] });
  });
  after(async () => {
    await d.stop();
    d.cleanup();
    for (const s of sockets) s.destroy();
    await new Promise((r) => squatter.close(r));
  });

  test('fails with a clear error naming its script and log; the rest serves', async () => {
    const a = d.models.find((m) => m.name === 'a')!;
    const stderrLog = stderrLogOf(d, 'a');
    assert.match(d.output, new RegExp(`model a: starting ${escapeRe(a.script)} \\(pid \\d+, port ${a.port}\\)`));
    assert.match(d.output, new RegExp(`ERROR model a: process exited with code 1; its stderr is in ${escapeRe(stderrLog)}`));
    assert.match(d.output, new RegExp(`ERROR model a: failed to start: a exited with code 1 \\(see ${escapeRe(stderrLog)}\\)`));
    assert.match(readFileSync(stderrLog, 'utf8'), /\[Errno 98\] error while attempting to bind on address .*address already in use/);
    await assertAFailedBServes(d);
  });
});

describe('sequential bootstrap of slow-starting models', () => {
  let d: Daemon;
  const slow = { SGLANG_SIM_STARTUP_MS: '300' };
  useDaemon((started) => (d = started), {
    models: [{ name: 'a', env: slow }, { name: 'b', env: slow }, { name: 'c', env: slow }],
    waitBoot: false,
  });

  test('/health answers at once; requests sent meanwhile wait and are answered', async () => {
    await d.waitListening();
    const res = await fetch(`${d.url}/health`);
    assert.equal(res.status, 200);
    const h = (await res.json()) as Health;
    assert.equal(h.status, 'ok');
    const pending = h.models.filter((m) => m.state === 'stopped' || m.state === 'starting');
    assert.ok(pending.length > 0, `bootstrap still in progress: ${JSON.stringify(h)}`);
    assert.doesNotMatch(d.output, /bootstrap done/);

    const answers = await Promise.all(['a', 'b', 'c'].map(async (m) => [m, await d.chat(m, 3)] as const));
    for (const [m, r] of answers) {
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.equal(r.body.choices?.[0]?.message?.content, expectedReply(m, 3));
    }
    await d.waitLog(/bootstrap done: 3 of 3 models started/, 5000, true);
    const ev = d.ledger();
    // Started one at a time: each start after the previous model was ready.
    assert.deepEqual(
      ev.filter((e) => e.event === 'start' || e.event === 'ready').slice(0, 6).map((e) => `${e.event} ${e.model}`),
      ['start a', 'ready a', 'start b', 'ready b', 'start c', 'ready c'],
    );
    assert.deepEqual(crashes(ev), []);
  });
});
