// The command line and the launch-script contract: parsing as text, fallbacks, and the one-line
// configuration errors with exit code 2 that start nothing.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { HELP_PAGE } from '../src/cli.js';
import { optionText } from '../src/help.js';
import { parseLaunchScript, sanitizeName } from '../src/launch-script.js';
import { bundle, repoRoot } from './support/daemon.js';

const dir = mkdtempSync(join(tmpdir(), 'sglangmux-cli-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function script(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

function runWith(env: NodeJS.ProcessEnv, ...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [bundle, ...args], { encoding: 'utf8', cwd: dir, env: { ...process.env, ...env }, timeout: 20_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function run(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  return runWith({}, ...args);
}

/** Matches `text` with any whitespace (line breaks and indentation included) between its words,
 * and only between them: a word split across two lines does not match. */
function wordsOf(text: string): RegExp {
  return new RegExp(text.split(/\s+/).map((w) => w.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('\\s+'));
}

describe('launch-script parsing', () => {
  test('MODEL_NAME and PORT lines: export, quotes, comments, first match wins', () => {
    const spec = parseLaunchScript('/x.sh', [
      '#!/usr/bin/env bash',
      '# MODEL_NAME=commented-out',
      'export MODEL_NAME="Qwen/Qwen3-0.6B"  # the served name',
      "PORT='30001' # comment",
      'MODEL_NAME=second',
      'exec python3 -m sglang.launch_server --model-path Qwen/Qwen3-0.6B --port "$PORT" --enable-memory-saver',
    ].join('\n'));
    assert.equal(spec.name, 'Qwen/Qwen3-0.6B');
    assert.equal(spec.port, 30001);
    assert.equal(spec.memorySaver, true);
    assert.equal(spec.cpuBackup, false);
    assert.equal(spec.modelPath, 'Qwen/Qwen3-0.6B');
  });

  test('falls back to --served-model-name, then --model-path/--model, and --port', () => {
    const served = parseLaunchScript('/a.sh', 'python3 -m sglang.launch_server \\\n  --model-path /models/q --served-model-name q-chat \\\n  --port=30005 --enable-weights-cpu-backup\n');
    assert.deepEqual([served.name, served.port, served.modelPath, served.cpuBackup], ['q-chat', 30005, '/models/q', true]);
    const path = parseLaunchScript('/b.sh', "python -m sglang.launch_server --model 'org/m' --port 30006\n");
    assert.deepEqual([path.name, path.port], ['org/m', 30006]);
  });

  test('flags inside comments do not count; --api-key is read', () => {
    const spec = parseLaunchScript('/c.sh', 'MODEL_NAME=m\nPORT=1234\n# --enable-memory-saver\nexec sglang --api-key sk-1 # --enable-weights-cpu-backup\n');
    assert.equal(spec.memorySaver, false);
    assert.equal(spec.cpuBackup, false);
    assert.equal(spec.apiKey, 'sk-1');
  });

  test('variables are not expanded', () => {
    assert.throws(() => parseLaunchScript('/d.sh', 'MODEL_NAME=$NAME\nPORT=1\n'), /shell expansion/);
    assert.throws(() => parseLaunchScript('/e.sh', 'exec x --model-path "$M" --port 1\n'), /no model name/);
  });

  test('log names keep only [A-Za-z0-9_-]', () => {
    assert.equal(sanitizeName('Qwen/Qwen3-0.6B'), 'Qwen_Qwen3-0_6B');
    assert.equal(sanitizeName('../../etc/passwd'), '______etc_passwd');
  });
});

describe('command line', () => {
  const good = script('good.sh', 'MODEL_NAME=a\nPORT=31001\nexec true\n');

  test('--help and --version', () => {
    const help = run('--help');
    assert.equal(help.status, 0);
    for (const flag of ['--host', '--listen-port', '--upstream-timeout-secs', '--model-ready-timeout-secs', '--model-switch-timeout-secs', '--log-dir']) {
      assert.match(help.stdout, new RegExp(flag));
    }
    const version = run('--version');
    assert.equal(version.status, 0);
    const pkg = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version: string };
    assert.equal(version.stdout.trim(), pkg.version);
  });

  for (const width of [80, 120]) {
    test(`--help at ${width} columns: every text whole, within the width, options grouped, an example last`, () => {
      const help = runWith({ COLUMNS: String(width) }, '--help');
      assert.equal(help.status, 0, help.stderr);
      const lines = help.stdout.trimEnd().split('\n');
      for (const line of lines) assert.ok(line.length <= width, `wider than ${width}: ${line}`);
      assert.ok(lines.some((line) => line.length > width - 20), 'the width was not used');
      const options = HELP_PAGE.sections.flatMap((s) => s.options);
      const texts = [HELP_PAGE.about, ...HELP_PAGE.arguments.map((a) => a.describe), ...options.map(optionText)];
      for (const text of texts) assert.match(help.stdout, wordsOf(text), `split or missing: ${text}`);
      // Each option once, under its own section's title.
      const seen = new Map<string, string>();
      let title = '';
      for (const line of lines) {
        if (/^\S.*:$/.test(line)) title = line.slice(0, -1);
        const flag = /^ {2,6}(?:-\w, )?--([a-z-]+)/.exec(line)?.[1];
        if (flag === undefined) continue;
        assert.ok(!seen.has(flag), `--${flag} shown twice`);
        seen.set(flag, title);
      }
      const expected = HELP_PAGE.sections.flatMap((s) => s.options.map((o) => [o.flag, s.title] as const));
      assert.deepEqual([...seen], expected);
      assert.equal(lines.at(-2), 'Example:');
      assert.equal(lines.at(-1), `  ${HELP_PAGE.example}`);
    });
  }

  test('a value that is not a number is quoted as typed', () => {
    const r = run('--listen-port', 'abc', good);
    assert.equal(r.status, 2, r.stderr);
    assert.equal(r.stderr.split('\n')[0], "error: --listen-port must be a port number (1-65535), got 'abc'");
  });

  test('an unknown option is named once, as typed', () => {
    const r = run('--bogus-flag', good);
    assert.equal(r.status, 2, r.stderr);
    assert.equal(r.stderr.split('\n')[0], "error: unknown option '--bogus-flag'");
    assert.equal(r.stderr.match(/bogus/gi)?.length, 1, r.stderr);
  });

  const cases: [string, () => string[], RegExp][] = [
    ['no scripts', () => [], /no launch scripts given/],
    ['unreadable script', () => [join(dir, 'missing.sh')], /missing\.sh: cannot read launch script \(ENOENT\)/],
    ['no model name', () => [script('noname.sh', 'PORT=31002\nexec x\n')], /noname\.sh: no model name/],
    ['no port', () => [script('noport.sh', 'MODEL_NAME=b\nexec x\n')], /noport\.sh: no port/],
    ['same model name', () => [good, script('dupname.sh', 'MODEL_NAME=a\nPORT=31003\n')], /dupname\.sh: model name 'a' is also used by good\.sh/],
    ['same port', () => [good, script('dupport.sh', 'MODEL_NAME=c\nPORT=31001\n')], /dupport\.sh: port 31001 is also used by good\.sh/],
    ['GPUs beyond the visible list', () => [script('place.sh', 'MODEL_NAME=d\nPORT=31004\nexport CUDA_VISIBLE_DEVICES=0\nexec x --tp 2\n')], /place\.sh: needs 2 GPU\(s\) from --base-gpu-id 0, but CUDA_VISIBLE_DEVICES=0 lists 1/],
    ['a share outside (0, 1]', () => [script('share.sh', 'MODEL_NAME=e\nPORT=31005\nexec x --mem-fraction-static 1.4\n')], /share\.sh: invalid --mem-fraction-static '1\.4'/],
    ['port equal to the listen port', () => ['--listen-port', '31001', good], /good\.sh: port 31001 is the listen port/],
    ['unknown flag', () => ['--bogus=1', good], /unknown option '--bogus'$/],
    ['unknown short flag', () => ['-hx', good], /unknown option '-x'$/],
    ['no --no- form', () => ['--no-lazy', good], /unknown option '--no-lazy'$/],
    ['a switch with a value', () => ['--lazy=maybe', good], /--lazy takes no value, got 'maybe'$/],
    ['port out of range', () => ['--listen-port', '70000', good], /--listen-port must be a port number \(1-65535\), got '70000'$/],
    ['not a plain number', () => ['--upstream-timeout-secs', '0x10', good], /--upstream-timeout-secs must be a positive number, got '0x10'$/],
    ['negative', () => ['--min-active-secs', '-1', good], /--min-active-secs must be a number >= 0, got '-1'$/],
    ['given twice', () => ['--host', 'a', '--host', 'b', good], /--host given more than once$/],
    ['no value', () => [good, '--host'], /--host needs a value$/],
  ];
  for (const [name, args, message] of cases) {
    test(`${name}: one-line error, usage hint, exit 2, nothing started`, () => {
      const r = run('--log-dir', join(dir, `logs-${name.replace(/\W/g, '_')}`), ...args());
      assert.equal(r.status, 2, r.stderr);
      const lines = r.stderr.trim().split('\n');
      assert.match(lines[0]!, /^error: /);
      assert.match(lines[0]!, message);
      assert.match(r.stderr, /Usage: sglangmux \[options\] <launch-script>\.\.\./);
      assert.doesNotMatch(r.stderr, /starting/);
    });
  }
});
