// The Python package (pyproject.toml, python/, scripts/publish_pypi.sh), offline, with Debian's
// hatchling, build, venv and twine (see .ci/run and docs/packaging.md):
//  - the sdist and the wheel build once (before) and pass `twine check --strict`; their files;
//  - the wheel in a fresh venv: --help, --version (one version number everywhere), the venv's
//    bin/ first on PATH, no Node -> 127, and two simulated models served, switched and stopped;
//  - the sdist installs with no node/npm on PATH; `pip install .` and `pip install -e .` work;
//  - scripts/publish_pypi.sh on a committed copy of the checkout, with a twine that cannot upload.
import assert from 'node:assert/strict';
import { spawnSync, type SpawnOptions } from 'node:child_process';
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  archiveNames, checkSdist, checkWheel, cleanEnv, committedCopy, ok, repoRoot, run, sdistName, serveAndSwitch, VERSION, wheelName, type Result,
} from './support/python-package.js';

// Debian's Python with python3-hatchling, python3-build, python3-venv and twine (see .ci/run).
const PYTHON = process.env.SGLANGMUX_TEST_PYTHON ?? '/usr/bin/python3';

function missingTools(): string | undefined {
  if (!existsSync(PYTHON)) return `${PYTHON} is missing`;
  const r = spawnSync(PYTHON, ['-c', 'import build, hatchling, twine, venv, ensurepip'], { encoding: 'utf8' });
  return r.status === 0 ? undefined : `${PYTHON} lacks build/hatchling/twine/venv: ${r.stderr.trim().split('\n').pop()}`;
}
const missing = missingTools();
// CI must have the tools; a developer machine without them skips these tests (with the reason).
if (missing && process.env.CI) throw new Error(`packaging tests need Debian's python3-build, python3-hatchling, python3-venv and twine: ${missing}`);

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
      run(PYTHON, ['-m', 'build', '--no-isolation', '--skip-dependency-check', '--outdir', out, '.'], { cwd: repoRoot, env: cleanEnv() }),
      run(PYTHON, ['-m', 'venv', venv], { env: cleanEnv() }),
      run(PYTHON, ['-m', 'venv', '--system-site-packages', srcVenv], { env: cleanEnv() }),
    ]);
    ok(built, 'python -m build');
    ok(v1, 'python -m venv');
    ok(v2, 'python -m venv --system-site-packages');
    wheel = join(out, wheelName);
    sdist = join(out, sdistName);
    assert.deepEqual(readdirSync(out).sort(), [wheelName, sdistName]);
    ok(await run(join(venv, 'bin', 'pip'), ['install', '--no-index', wheel], { env: cleanEnv() }), 'pip install <wheel>');
  });

  after(() => {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  describe('artifacts', () => {
    test('the sdist and the wheel pass twine check --strict', async () => {
      ok(await run(PYTHON, ['-m', 'twine', 'check', '--strict', sdist, wheel], { env: cleanEnv() }), 'twine check --strict');
    });

    test('the wheel: the package, the bundle as built, its licences; no node_modules, tests or simulator', async () => {
      await checkWheel(PYTHON, wheel);
    });

    test('the sdist: sources and the prebuilt bundle; no node_modules, tests or other dist/ files', async () => {
      await checkSdist(PYTHON, sdist);
    });
  });

  describe('the wheel in a fresh venv', () => {
    const bin = (name: string): string => join(venv, 'bin', name);

    test('--help works', async () => {
      const r = ok(await run(bin('sglangmux'), ['--help'], { env: cleanEnv() }), 'sglangmux --help');
      assert.match(r.stdout + r.stderr, /usage/i);
    });

    test('one version number: package.json, __version__, sglangmux --version, python -m sglangmux --version', async () => {
      const [cli, module, attr] = await Promise.all([
        run(bin('sglangmux'), ['--version'], { env: cleanEnv() }),
        run(bin('python'), ['-m', 'sglangmux', '--version'], { env: cleanEnv() }),
        run(bin('python'), ['-c', 'import sglangmux; print(sglangmux.__version__)'], { env: cleanEnv() }),
      ]);
      assert.equal(ok(attr, '__version__').stdout.trim(), VERSION);
      assert.equal(ok(cli, 'sglangmux --version').stdout.trim(), VERSION);
      assert.equal(ok(module, 'python -m sglangmux --version').stdout.trim(), VERSION);
    });

    test('the venv\'s bin/ goes first on PATH, without activating the venv', async () => {
      const r = ok(await run(bin('sglangmux'), [], { env: cleanEnv({ SGLANGMUX_BUNDLE: probe }) }), 'sglangmux (probe)');
      const path = (JSON.parse(r.stdout) as { path: string }).path.split(delimiter);
      assert.equal(path[0], join(venv, 'bin'));
    });

    test('no usable Node: exit 127 and the fixes', async () => {
      const empty = join(tmp, 'empty-bin');
      mkdirSync(empty, { recursive: true });
      const r = await run(bin('sglangmux'), ['--version'], { env: cleanEnv({ PATH: empty }) });
      assert.equal(r.code, 127, r.stderr);
      assert.ok(r.stderr.includes("pip install 'sglangmux[nodejs]'"), r.stderr);
      assert.match(r.stderr, /SGLANGMUX_NODE/);
    });

    test('serves two simulated models, switches between them, and SIGTERM to sglangmux stops everything', { timeout: 180_000 }, async () => {
      await serveAndSwitch(bin('sglangmux'), join(tmp, 'e2e'), cleanEnv());
    });
  });

  describe('installs that build from source', () => {
    const bin = (name: string): string => join(srcVenv, 'bin', name);
    const pip = (args: string[], opts: SpawnOptions = {}): Promise<Result> =>
      run(bin('pip'), args, { env: cleanEnv(), ...opts });
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
      ok(await pip(['install', '--no-index', '--no-build-isolation', sdist], { cwd, env: cleanEnv({ PATH: path }) }), 'pip install <sdist>');
      const r = ok(await run(bin('sglangmux'), ['--version'], { env: cleanEnv() }), 'sglangmux --version');
      assert.equal(r.stdout.trim(), VERSION);
      await uninstall();
    });

    test('pip install . from the checkout', async () => {
      ok(await pip(['install', '--no-index', '--no-build-isolation', '.'], { cwd: repoRoot }), 'pip install .');
      const r = ok(await run(bin('sglangmux'), ['--version'], { env: cleanEnv() }), 'sglangmux --version');
      assert.equal(r.stdout.trim(), VERSION);
      const where = ok(await run(bin('python'), ['-c', 'import sglangmux; print(sglangmux.__file__)'], { env: cleanEnv(), cwd: tmp }), 'import');
      assert.ok(where.stdout.trim().startsWith(srcVenv), where.stdout);
      await uninstall();
    });

    test('pip install -e . from the checkout runs the checkout\'s code and bundle', async () => {
      ok(await pip(['install', '--no-index', '--no-build-isolation', '-e', '.'], { cwd: repoRoot }), 'pip install -e .');
      const where = ok(await run(bin('python'), ['-c', 'import sglangmux; print(sglangmux.__file__)'], { env: cleanEnv(), cwd: tmp }), 'import');
      assert.equal(where.stdout.trim(), join(repoRoot, 'python', 'sglangmux', '__init__.py'));
      const r = ok(await run(bin('sglangmux'), ['--version'], { env: cleanEnv({ SGLANGMUX_LAUNCHER_VERBOSE: '1' }) }), 'sglangmux --version');
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
    const failed = await run(PYTHON, args, { cwd: copy, env: cleanEnv({ PATH: pyBin }) });
    assert.notEqual(failed.code, 0);
    assert.match(failed.stdout + failed.stderr, /dist\/sglangmux\.mjs is missing, but node and npm are not on PATH/);
    ok(await run(PYTHON, args, { cwd: copy, env: cleanEnv() }), 'python -m build --wheel (runs npm run build)');
    assert.ok(existsSync(join(copy, 'dist', 'sglangmux.mjs')) && existsSync(join(copy, 'dist', 'THIRD_PARTY_LICENSES.txt')));
    const names = await archiveNames(PYTHON, join(copy, 'out', wheelName));
    assert.ok(names.includes('sglangmux/_bundle/sglangmux.mjs'), names.join(' '));
  });

  describe('scripts/publish_pypi.sh', () => {
    let copy = '';
    let twineLog = '';
    let fakeTwine = '';

    // A committed copy of the checkout (so the clean-tree check runs for real), with the bundle
    // built above (timestamps kept: no rebuild) and a twine whose `upload` only records.
    let commit: (message: string) => void;

    // A committed copy of the checkout (so the clean-tree check runs for real) and a twine whose
    // `upload` only records.
    before(() => {
      copy = join(tmp, 'publish');
      commit = committedCopy(copy);
      twineLog = join(tmp, 'twine.log');
      fakeTwine = join(tmp, 'twine');
      writeFileSync(fakeTwine, `#!/bin/sh\necho "$*" >> '${twineLog}'\nif [ "$1" = upload ]; then exit 0; fi\nexec '${PYTHON}' -m twine "$@"\n`);
      chmodSync(fakeTwine, 0o755);
    });

    function twineCalls(): string[] {
      return existsSync(twineLog) ? readFileSync(twineLog, 'utf8').split('\n').filter(Boolean) : [];
    }
    function publish(...args: string[]): Promise<Result> {
      if (existsSync(twineLog)) unlinkSync(twineLog);
      return run('bash', [join(copy, 'scripts', 'publish_pypi.sh'), ...args], {
        cwd: copy, env: cleanEnv({ PYTHON, TWINE: fakeTwine }),
      });
    }
    const files = (): string[] => [`dist/${sdistName}`, `dist/${wheelName}`];

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
          cwd: copy, env: cleanEnv({ PYTHON, TWINE: fakeTwine, SGLANGMUX_ALLOW_DIRTY: '1' }),
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
