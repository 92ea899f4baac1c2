// The benchmark harness (issue 6): `npm run bench` (full, a few minutes) or `npm run bench:smoke`
// (tiny counts, under a minute). Measures the simulated SGLang server direct, through nginx and
// through sglangmux; writes RESULTS.md, latency.svg and results.json. See bench/README.md.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, release, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { FULL, SMOKE, type BenchConfig } from './lib/config.js';
import { expectedFigureIds, Figures, meets } from './lib/figures.js';
import { findNginx, nginxVersionOf, stopAll } from './lib/procs.js';
import { markdown, num, type Meta } from './lib/report.js';
import { nonStreaming, startup, streaming, switching, type Context } from './lib/scenarios.js';
import { curveOf, latencySvg, type Panel } from './lib/svg.js';
import type { PathName } from './lib/figures.js';

const repoRoot = fileURLToPath(new URL('..', import.meta.url));
const SCENARIOS = ['startup', 'switching', 'nonstream', 'stream'] as const;
type Scenario = (typeof SCENARIOS)[number];

const USAGE = `usage: node --import tsx bench/run.ts [--smoke] [--out DIR] [--bundle PATH] [--only LIST]
                                    [--reps N] [--quiet-wait SECS] [--node-arg ARG]...
                                    [--cpu-prof-dir DIR] [--keep]
       node --import tsx bench/run.ts --replot DIR
  --smoke          tiny counts (< 60 s); writes to a temp dir unless --out is given
  --out DIR        where RESULTS.md, latency.svg and results.json go (default: bench/ for a full run)
  --bundle PATH    the sglangmux bundle to measure (default: $SGLANGMUX_BENCH_BUNDLE,
                   $SGLANGMUX_TEST_BUNDLE, or dist/sglangmux.mjs)
  --only LIST      comma-separated subset of ${SCENARIOS.join(',')}
  --reps N         repetitions of the load and switching scenarios (default 5, 3, 3)
  --quiet-wait S   before each measured run, wait up to S s for other processes to calm down
                   (default 30 for a full run, 0 for smoke)
  --node-arg ARG   a node flag for the daemon (repeatable), e.g. --node-arg=--max-semi-space-size=4
  --cpu-prof-dir D run the daemon with node --cpu-prof, profiles written to D
  --keep           keep the work dir (daemon logs, ledgers, nginx config)
  --replot DIR     only redraw DIR/latency.svg from DIR/results.json
Exit codes: 0 done, 2 usage, 3 nginx not found, 1 anything else.`;

function git(args: string[]): string {
  try {
    return execFileSync('git', args, { cwd: repoRoot, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trimEnd();
  } catch {
    return '';
  }
}

function cpuModel(): string {
  try {
    const m = /model name\s*:\s*(.+)/.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    if (m) return m[1]!.trim();
  } catch {
    // not Linux
  }
  return cpus()[0]?.model ?? 'unknown CPU';
}

function plot(meta: Meta, panels: readonly Panel[]): string {
  return latencySvg(
    'sglangmux vs nginx vs direct: latency by percentile',
    `${meta.date}, commit ${meta.commit}, ${meta.cpu} (${meta.cores} cores), Node ${meta.node}; all repetitions pooled`,
    panels,
  );
}

async function main(): Promise<void> {
  let opts;
  try {
    opts = parseArgs({
      options: {
        smoke: { type: 'boolean', default: false },
        out: { type: 'string' },
        bundle: { type: 'string' },
        only: { type: 'string' },
        'cpu-prof-dir': { type: 'string' },
        reps: { type: 'string' },
        'quiet-wait': { type: 'string' },
        'node-arg': { type: 'string', multiple: true },
        keep: { type: 'boolean', default: false },
        replot: { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false },
      },
      strict: true,
    }).values;
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n${USAGE}\n`);
    process.exit(2);
  }
  if (opts.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  if (opts.replot !== undefined) {
    // Redraws DIR/latency.svg from DIR/results.json (the curves are kept there), without a run.
    const dir = resolve(opts.replot);
    const saved = JSON.parse(readFileSync(join(dir, 'results.json'), 'utf8')) as { meta: Meta; plot: Panel[] };
    writeFileSync(join(dir, 'latency.svg'), plot(saved.meta, saved.plot));
    process.stdout.write(`Wrote ${dir}/latency.svg\n`);
    return;
  }
  let config: BenchConfig = opts.smoke ? SMOKE : FULL;
  if (opts['quiet-wait'] !== undefined) {
    const secs = Number(opts['quiet-wait']);
    if (!Number.isFinite(secs) || secs < 0) {
      process.stderr.write(`--quiet-wait must be a number of seconds >= 0\n${USAGE}\n`);
      process.exit(2);
    }
    config = { ...config, quietWaitMs: secs * 1000, deadlineMs: config.deadlineMs + 40 * secs * 1000 };
  }
  if (opts.reps !== undefined) {
    const reps = Number(opts.reps);
    if (!Number.isInteger(reps) || reps < 1) {
      process.stderr.write(`--reps must be a positive integer\n${USAGE}\n`);
      process.exit(2);
    }
    config = {
      ...config,
      nonStream: { ...config.nonStream, reps },
      stream: { ...config.stream, reps },
      switching: { ...config.switching, reps },
    };
  }
  const only = (opts.only ?? SCENARIOS.join(',')).split(',').map((s) => s.trim()) as Scenario[];
  for (const s of only) {
    if (!SCENARIOS.includes(s)) {
      process.stderr.write(`unknown scenario ${s}\n${USAGE}\n`);
      process.exit(2);
    }
  }
  const bundle = resolve(opts.bundle ?? process.env['SGLANGMUX_BENCH_BUNDLE'] ?? process.env['SGLANGMUX_TEST_BUNDLE'] ?? join(repoRoot, 'dist', 'sglangmux.mjs'));
  for (const file of [bundle, join(repoRoot, 'dist', 'sglang-sim.mjs'), join(repoRoot, 'dist', 'sim-nvidia-smi.mjs')]) {
    if (!existsSync(file)) {
      process.stderr.write(`${file} not found: run \`npm run build\` first\n`);
      process.exit(1);
    }
  }
  const nginxBin = findNginx();
  if (nginxBin === null) {
    process.stderr.write('nginx not found (looked in NGINX_BIN, PATH and /usr/sbin): install it, e.g. `apt-get install -y nginx`.\n' +
      'The harness starts its own nginx on 127.0.0.1 with its own config; the system service is never touched.\n');
    process.exit(3);
  }
  const out = resolve(opts.out ?? (opts.smoke ? mkdtempSync(join(tmpdir(), 'sglangmux-bench-smoke-')) : join(repoRoot, 'bench')));
  mkdirSync(out, { recursive: true });
  const work = mkdtempSync(join(tmpdir(), 'sglangmux-bench-'));
  const profDir = opts['cpu-prof-dir'] ? resolve(opts['cpu-prof-dir']) : null;
  if (profDir) mkdirSync(profDir, { recursive: true });

  // The commit measured: read before the run (the bundle was built from this checkout just before).
  const commit = git(['rev-parse', '--short', 'HEAD']) || 'unknown';
  const dirtyFiles = git(['status', '--porcelain', '--', 'src', 'package.json', 'package-lock.json']);
  const started = Date.now();
  // Bounded in time whatever happens: past the deadline, or on a signal, stop everything and exit.
  const abort = (why: string, code: number): void => {
    process.stderr.write(`bench: ${why}; stopping\n`);
    void stopAll().finally(() => {
      if (!opts.keep) rmSync(work, { recursive: true, force: true });
      process.exit(code);
    });
  };
  setTimeout(() => abort(`not done after ${config.deadlineMs / 60_000} min`, 1), config.deadlineMs).unref();
  process.once('SIGINT', () => abort('SIGINT', 130));
  process.once('SIGTERM', () => abort('SIGTERM', 143));
  const loadBefore = loadavg().map((l) => l.toFixed(2)).join(' ');
  const ctx: Context = {
    config, bundle, nginxBin, dir: work,
    daemonNodeArgs: [...(opts['node-arg'] ?? []), ...(profDir ? ['--cpu-prof', '--cpu-prof-dir', profDir] : [])],
    figures: new Figures(), samples: {}, notes: [], cpuTables: {},
    progress: (line) => process.stdout.write(`[${((Date.now() - started) / 1000).toFixed(0).padStart(4)} s] ${line}\n`),
  };
  ctx.progress(`${config.mode} run of ${only.join(', ')}; bundle ${bundle}; nginx ${nginxBin}; work dir ${work}; load average ${loadBefore}`);
  const runners: Record<Scenario, (c: Context) => Promise<void>> = { startup, switching, nonstream: nonStreaming, stream: streaming };
  try {
    for (const s of SCENARIOS) if (only.includes(s)) await runners[s](ctx);
  } finally {
    if (!opts.keep) rmSync(work, { recursive: true, force: true });
  }


  const meta: Meta = {
    date: new Date(started).toISOString().replace(/\.\d+Z$/, 'Z'),
    commit,
    dirty: dirtyFiles ? `plus uncommitted changes to ${[...new Set(dirtyFiles.split('\n').filter(Boolean).map((l) => l.slice(3)))].join(', ')}` : '',
    cpu: cpuModel(),
    cores: cpus().length,
    kernel: release(),
    node: process.version,
    nginx: nginxVersionOf(nginxBin),
    loadBefore,
    durationS: (Date.now() - started) / 1000,
    command: opts.smoke ? 'npm run bench:smoke' : 'npm run bench',
    bundle: opts.bundle || process.env['SGLANGMUX_BENCH_BUNDLE'] || process.env['SGLANGMUX_TEST_BUNDLE'] ? 'an override bundle' : 'dist/sglangmux.mjs',
  };
  if ((opts['node-arg'] ?? []).length > 0) meta.dirty = [meta.dirty, `daemon run with node ${opts['node-arg']!.join(' ')}`].filter(Boolean).join('; ');
  if (meta.bundle !== 'dist/sglangmux.mjs') meta.dirty = [meta.dirty, 'measured with an override bundle, not this commit\'s'].filter(Boolean).join('; ');

  // The Findings section of an earlier RESULTS.md in the same place is hand-written: keep it.
  const resultsPath = join(out, 'RESULTS.md');
  let findings = '## Findings\n\n(none recorded)\n';
  if (existsSync(resultsPath)) {
    const old = readFileSync(resultsPath, 'utf8');
    const at = old.indexOf('\n## Findings');
    if (at >= 0) findings = old.slice(at + 1);
  }
  if (only.length === SCENARIOS.length) {
    writeFileSync(resultsPath, markdown(meta, config, ctx.figures, ctx.cpuTables, ctx.notes, findings));
  } else {
    ctx.progress(`partial run (--only): RESULTS.md not written`);
  }
  const panels: Panel[] = [
    { key: 'ns.c1', title: `Non-streaming, concurrency ${config.nonStream.concurrency[0]}: latency` },
    { key: 'ns.cN', title: `Non-streaming, concurrency ${config.nonStream.concurrency[1]}: latency` },
    { key: 'st.ttfb', title: `${config.stream.users} streams: time to first byte` },
    { key: 'st.gap', title: `${config.stream.users} streams: inter-event delay (${config.stream.tokenMs} ms/token)` },
  ].filter((p) => ctx.samples[p.key]).map((p) => {
    const curves: Panel['curves'] = {};
    for (const [path, values] of Object.entries(ctx.samples[p.key]!) as [PathName, number[]][]) {
      const c = curveOf(values);
      if (c) curves[path] = c;
    }
    return { title: p.title, curves };
  });
  if (panels.length > 0) writeFileSync(join(out, 'latency.svg'), plot(meta, panels));
  // Figures readable in a diff; the plotted curves (for --replot) compact on one line.
  const json = JSON.stringify({ meta, config, figures: ctx.figures.list, notes: ctx.notes }, null, 1);
  writeFileSync(join(out, 'results.json'), `${json.slice(0, -2)},\n "plot": ${JSON.stringify(panels)}\n}\n`);

  const missing = only.length === SCENARIOS.length ? expectedFigureIds().filter((id) => !ctx.figures.get(id)) : [];
  if (missing.length > 0) ctx.progress(`MISSING figures: ${missing.join(', ')}`);
  process.stdout.write('\nTargets:\n');
  for (const f of ctx.figures.list) {
    const m = meets(f);
    if (m === null) continue;
    process.stdout.write(`  ${m ? 'met   ' : 'MISSED'}  ${f.label}: ${num(f.value[f.target!.on])} ${f.unit} (target ${f.target!.op} ${f.target!.value}, ${f.target!.on})\n`);
  }
  process.stdout.write(`\nWrote ${out}/RESULTS.md, latency.svg, results.json in ${Math.round((Date.now() - started) / 1000)} s\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
