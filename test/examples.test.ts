// The example scripts of examples/sglangmux-manual/ run unchanged against the simulator: the start
// script (using this checkout's bundle, as no `sglangmux` command is on PATH), the three request
// scripts, the per-model logs, and a clean stop. Then the demo (`npm run demo`, the README's first
// command) and Ctrl+C: it leaves nothing in the checkout. The scripts fix their ports: 30100,
// 30001, 30002.
import assert from 'node:assert/strict';
import { execFile, spawn, spawnSync } from 'node:child_process';
import { accessSync, constants, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { Daemon, FAST_SIM, repoRoot, sseData } from './support/daemon.js';
import { crashes, expectedReply, simPythonPath } from './support/sim.js';

const run = promisify(execFile);
const examples = join(repoRoot, 'examples', 'sglangmux-manual');
const QWEN = 'Qwen/Qwen3-0.6B';
const SMOL = 'HuggingFaceTB/SmolLM2-360M-Instruct';
const PORTS = [30100, 30001, 30002];

function executableIn(dir: string, name: string): boolean {
  try {
    accessSync(join(dir, name), constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** PATH without any directory holding a `sglangmux` command; node, python3 and curl stay
 * reachable (linked into `bin` if their only directory had to go). */
function pathWithoutSglangmux(bin: string): string {
  const dirs = (process.env.PATH ?? '').split(delimiter).filter((p) => p !== '');
  const kept = dirs.filter((p) => !executableIn(p, 'sglangmux'));
  mkdirSync(bin, { recursive: true });
  symlinkSync(process.execPath, join(bin, 'node')); // the node running the tests
  for (const tool of ['python3', 'curl']) {
    if (kept.some((p) => executableIn(p, tool))) continue;
    const from = dirs.find((p) => executableIn(p, tool));
    if (from) symlinkSync(join(from, tool), join(bin, tool));
  }
  return [bin, ...kept].join(delimiter);
}

/** Every file and directory under `dir` with its modification time: what a run must leave alone. */
function snapshot(dir: string): Record<string, number> {
  const seen: Record<string, number> = {};
  for (const name of readdirSync(dir, { recursive: true }) as string[]) seen[name] = statSync(join(dir, name)).mtimeMs;
  return seen;
}

async function assertPortFree(port: number): Promise<void> {
  const srv = createServer();
  await new Promise<void>((resolve, reject) => {
    srv.once('error', (err) => reject(new Error(`port ${port} is needed by the example scripts but is taken: ${err.message}`)));
    srv.listen(port, '127.0.0.1', resolve);
  });
  await new Promise((r) => srv.close(r));
}

/** The environment without inherited simulator knobs or a SGLANGMUX_URL. */
function baseEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith('SGLANG_SIM_') && k !== 'SGLANGMUX_URL' && k !== 'LISTEN_PORT') env[k] = v;
  }
  return env;
}

describe('examples/sglangmux-manual', () => {
  let dir: string;
  let d: Daemon;
  let env: NodeJS.ProcessEnv;
  let examplesBefore: Record<string, number>;
  before(async () => {
    for (const port of PORTS) await assertPortFree(port);
    examplesBefore = snapshot(examples);
    dir = mkdtempSync(join(tmpdir(), 'sglangmux-examples-'));
    env = {
      ...baseEnv(),
      ...FAST_SIM,
      PATH: pathWithoutSglangmux(join(dir, 'bin')),
      PYTHONPATH: simPythonPath(),
      SGLANG_SIM_LEDGER: join(dir, 'ledger.jsonl'),
      LOG_DIR: join(dir, 'logs'),
    };
    const proc = spawn('bash', [join(examples, 'start_sglangmux.sh')], { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
    d = Daemon.attach(proc, { dir, port: 30100 });
    await d.waitLog(/bootstrap done/, 30_000, true);
  });
  after(async () => {
    await d?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('start_sglangmux.sh uses the checkout\'s bundle and starts both models', async () => {
    const { stdout } = await run('bash', ['-c', 'command -v sglangmux || echo none'], { env });
    assert.equal(stdout.trim(), 'none', 'no sglangmux command on PATH');
    assert.match(d.output, /bootstrap done: 2 of 2 models started; awake: HuggingFaceTB\/SmolLM2-360M-Instruct/);
    assert.match(d.output, new RegExp(`listening on http://127\\.0\\.0\\.1:30100 for ${QWEN}, ${SMOL}`));
    const h = await d.health();
    assert.deepEqual(h.models.map((m) => [m.id, m.port]), [[QWEN, 30001], [SMOL, 30002]]);
  });

  test('request_models.sh lists both models and /health', async () => {
    const { stdout } = await run('bash', [join(examples, 'request_models.sh')], { env });
    const [models, health] = stdout.trim().split('\n');
    const list = JSON.parse(models!) as { object: string; data: { id: string }[] };
    assert.equal(list.object, 'list');
    assert.deepEqual(list.data.map((m) => m.id).sort(), [SMOL, QWEN].sort());
    const h = JSON.parse(health!) as { status: string; active_model: string };
    assert.equal(h.status, 'ok');
    assert.equal(h.active_model, SMOL);
  });

  test('request_qwen.sh gets Qwen\'s answer (woken beside SmolLM2: 0.4 + 0.4 of the GPU fit)', async () => {
    const { stdout } = await run('bash', [join(examples, 'request_qwen.sh')], { env });
    const body = JSON.parse(stdout) as { choices: { message: { content: string } }[] };
    assert.equal(body.choices[0]?.message.content, expectedReply(QWEN, 32));
    const h = await d.health();
    assert.equal(h.active_model, QWEN);
    assert.deepEqual(h.awake_models, [QWEN, SMOL]);
  });

  test('request_hf.sh streams SmolLM2\'s answer (awake all along)', async () => {
    const { stdout } = await run('bash', [join(examples, 'request_hf.sh')], { env });
    const events = sseData(stdout);
    assert.ok(events.length > 2, `data events: ${stdout}`);
    assert.equal(events[events.length - 1], '[DONE]');
    let content = '';
    for (const data of events.slice(0, -1)) {
      const chunk = JSON.parse(data) as { choices: { delta?: { content?: string } }[] };
      content += chunk.choices[0]?.delta?.content ?? '';
    }
    assert.equal(content, expectedReply(SMOL, 32));
    assert.equal((await d.health()).active_model, SMOL);
  });

  test('per-model logs in LOG_DIR, none in the examples directory', () => {
    const logs = join(dir, 'logs');
    assert.deepEqual(readdirSync(logs).sort(), [
      'HuggingFaceTB_SmolLM2-360M-Instruct_30002.stderr.log',
      'HuggingFaceTB_SmolLM2-360M-Instruct_30002.stdout.log',
      'Qwen_Qwen3-0_6B_30001.stderr.log',
      'Qwen_Qwen3-0_6B_30001.stdout.log',
    ]);
    assert.match(readFileSync(join(logs, 'Qwen_Qwen3-0_6B_30001.stdout.log'), 'utf8'), /The server is fired up and ready to roll!/);
    // Compared with what was there before, so that an earlier run's leftovers do not count.
    assert.deepEqual(snapshot(examples), examplesBefore, 'LOG_DIR was used: files appeared or changed in the examples directory');
  });

  test('SIGTERM stops everything, exit 0', async () => {
    const servers = d.ledger().filter((e) => e.event === 'start').map((e) => e.pid);
    assert.equal(servers.length, 2);
    const exit = await d.stop();
    assert.deepEqual(exit, { code: 0, signal: null }, d.output);
    for (const pid of servers) {
      assert.throws(() => process.kill(pid, 0), (err: NodeJS.ErrnoException) => err.code === 'ESRCH', `server ${pid} gone`);
    }
    assert.deepEqual(crashes(d.ledger()), []);
  });
});

describe('npm run demo (scripts/demo.sh), then Ctrl+C', () => {
  test('serves the example models, stops on SIGINT, and leaves nothing in the checkout', async () => {
    for (const port of PORTS) await assertPortFree(port);
    const dir = mkdtempSync(join(tmpdir(), 'sglangmux-demo-'));
    const status = (): string => {
      // Untracked and ignored files, a new directory as one line (examples/ is compared file by file).
      const r = spawnSync('git', ['status', '--porcelain', '--ignored'], { cwd: repoRoot, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
      assert.equal(r.status, 0, `git status: ${r.error?.message ?? r.stderr}`);
      return r.stdout;
    };
    const before = status();
    const examplesBefore = snapshot(examples);
    // As from a terminal: the demo in its own process group, Ctrl+C sends SIGINT to the group.
    const env: NodeJS.ProcessEnv = { ...baseEnv(), ...FAST_SIM, PATH: pathWithoutSglangmux(join(dir, 'bin')), TMPDIR: dir };
    delete env.LOG_DIR;
    const proc = spawn('bash', [join(repoRoot, 'scripts', 'demo.sh')], { cwd: repoRoot, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    const d = Daemon.attach(proc, { dir, port: 30100 });
    try {
      await d.waitLog(/bootstrap done: 2 of 2 models started/, 30_000, true);
      const logLine = /Per-model logs: (\S+)/.exec(d.output);
      assert.ok(logLine, d.output);
      const { stdout } = await run('bash', [join(examples, 'request_qwen.sh')], { env });
      assert.equal((JSON.parse(stdout) as { choices: { message: { content: string } }[] }).choices[0]?.message.content, expectedReply(QWEN, 32));
      process.kill(-proc.pid!, 'SIGINT');
      assert.deepEqual(await d.exited, { code: 0, signal: null }, d.output);
      assert.ok(logLine[1]!.startsWith(dir), `the demo's logs are in the temporary directory: ${logLine[1]}`);
      assert.ok(readdirSync(logLine[1]!).includes('Qwen_Qwen3-0_6B_30001.stdout.log'), logLine[1]);
      assert.deepEqual(snapshot(examples), examplesBefore, 'the demo wrote into examples/');
      assert.equal(status(), before, 'the demo changed the checkout');
    } finally {
      // SIGTERM, not SIGKILL: the daemon then stops the model servers in their own groups.
      if (proc.exitCode === null && proc.signalCode === null) process.kill(-proc.pid!, 'SIGTERM');
      await d.exited;
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
