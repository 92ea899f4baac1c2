// The benchmark harness (bench/, `npm run bench`) in smoke mode: tiny counts, well under a
// minute, so that the harness cannot rot. Checks that a run produced every figure, the report
// and the plot, and that no request failed; never the figures' values (timing is not a
// pass/fail). Needs nginx (the reverse proxy sglangmux is compared with): under CI=true its
// absence fails the test, elsewhere the test is skipped with a message.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { expectedFigureIds, type Figure } from '../bench/lib/figures.js';
import { findNginx } from '../bench/lib/procs.js';

const repoRoot = fileURLToPath(new URL('..', import.meta.url));
const nginx = findNginx();
const ci = !['', '0', 'false'].includes((process.env.CI ?? '').toLowerCase());
const skip = nginx === null && !ci
  ? 'nginx is not installed (apt-get install -y nginx): the benchmark smoke test compares sglangmux with it'
  : false;

test('the benchmark harness runs in smoke mode and produces every figure', { skip, timeout: 180_000 }, async () => {
  assert.ok(nginx, 'nginx is required under CI=true: it belongs in the apt packages of .ci/run');
  const out = mkdtempSync(join(tmpdir(), 'sglangmux-bench-smoke-test-'));
  try {
    // The harness measures SGLANGMUX_TEST_BUNDLE when it is set, like the other tests.
    const child = spawn(process.execPath, ['--import', 'tsx', join(repoRoot, 'bench', 'run.ts'), '--smoke', '--out', out], {
      cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'], env: process.env,
    });
    let output = '';
    child.stdout.on('data', (c: Buffer) => (output += c.toString('utf8')));
    child.stderr.on('data', (c: Buffer) => (output += c.toString('utf8')));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    assert.equal(code, 0, `bench/run.ts --smoke failed:\n${output}`);

    const results = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8')) as { figures: Figure[] };
    const byId = new Map(results.figures.map((f) => [f.id, f]));
    const missing = expectedFigureIds().filter((id) => !byId.has(id));
    assert.deepEqual(missing, [], 'figures missing from results.json');
    const notNumbers = expectedFigureIds().filter((id) => !Number.isFinite(byId.get(id)!.value.median));
    assert.deepEqual(notNumbers, [], `figures without a value:\n${output}`);
    for (const id of ['ns.c1.errors', 'ns.cN.errors', 'st.errors', 'sw.errors', 'sw.smi.errors']) {
      assert.equal(byId.get(id)!.value.median, 0, `${id}: requests failed during the smoke run:\n${output}`);
    }

    const report = readFileSync(join(out, 'RESULTS.md'), 'utf8');
    assert.match(report, /## Against the targets/);
    assert.match(report, /\| commit \| \S+/);
    assert.match(report, /\| machine \| .+cores/);
    for (const id of expectedFigureIds()) assert.ok(report.includes(`\`${id}\``), `RESULTS.md lacks ${id}`);
    const svg = readFileSync(join(out, 'latency.svg'), 'utf8');
    assert.match(svg, /^<\?xml[^>]*>\s*<svg /);
    assert.ok(svg.trimEnd().endsWith('</svg>'));
    // four panels, three paths each
    assert.equal((svg.match(/<path d="M/g) ?? []).length, 12, 'latency.svg should hold 4 panels × 3 curves');
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});
