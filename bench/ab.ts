// Compares sglangmux builds by CPU per unit of work, interleaved in one run: each build runs
// as its own daemon with its own simulated model, nginx stands in front of the first one's model
// server, and every trial runs the same load through each of them in a rotated order. On a
// shared, noisy machine this is the comparison that holds (bench/README.md, "A/B").
//
//   node --import tsx bench/ab.ts [--trials N] [--only nonstream,stream,startup] NAME=BUNDLE[,NODE_FLAG...]...
//
// `startup` (not run unless named) starts each build with two simulated models per trial and
// takes the time and the daemon's CPU from spawn to the first /health answer, and its resident
// memory once both models are up and one request of each kind has been answered.
//
// A build is a bundle and the node flags it runs with (e.g. `small=dist/sglangmux.mjs,--max-semi-space-size=2`).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { closedLoop, streams } from './lib/load.js';
import { cpuSeconds, findNginx, MuxDaemon, Nginx, rssMb, stopAll } from './lib/procs.js';
import { percentile } from './lib/stats.js';

const MODEL = 'bench';
const CHAT = '/v1/chat/completions';

interface Build {
  readonly name: string;
  readonly bundle: string;
  readonly nodeArgs: string[];
}

interface Target {
  readonly name: string;
  readonly port: number;
  readonly pids: () => number[];
  /** A daemon's peak resident memory so far. */
  readonly peakRssMb?: () => number;
}

function chatBody(maxTokens: number, stream: boolean, model = MODEL): Buffer {
  return Buffer.from(JSON.stringify({
    model, max_tokens: maxTokens, ...(stream ? { stream: true } : {}),
    messages: [{ role: 'user', content: 'Say hello to the benchmark' }],
  }));
}

function cpuOf(pids: number[]): number {
  return pids.reduce((s, p) => s + cpuSeconds(p), 0);
}

/** Runs `load` against the target; CPU µs of the target's processes per unit it reports. */
async function perUnit(t: Target, load: () => Promise<number>): Promise<number> {
  const pids = t.pids();
  const c0 = cpuOf(pids);
  const units = await load();
  return ((cpuOf(pids) - c0) / units) * 1e6;
}

const SCENARIOS = {
  nonstream: {
    unit: 'request, c=64',
    knobs: { SGLANG_SIM_TOKEN_MS: '0' },
    run: (port: number) => (): Promise<number> => closedLoop({
      port, path: CHAT, body: chatBody(4, false), concurrency: 64, warmupMs: 0, durationMs: 1500,
    }).then((r) => {
      if (r.errors > 0) throw new Error(`non-streaming: ${r.errors} errors, first: ${r.firstError}`);
      return r.latencies.length;
    }),
  },
  stream: {
    unit: 'SSE event, 256 streams',
    knobs: { SGLANG_SIM_TOKEN_MS: '20' },
    run: (port: number) => (): Promise<number> => streams({
      port, path: CHAT, body: chatBody(100, true), users: 256, streamsPerUser: 1, staggerMs: 4,
      tokens: 100, windowFromMs: 0, windowToMs: 1e9,
    }).then((r) => {
      if (r.streamsOk !== r.streams) throw new Error(`streams: ${r.streams - r.streamsOk} failed, first: ${r.firstError}`);
      return r.eventsOut;
    }),
  },
} as const;

type Which = keyof typeof SCENARIOS | 'startup';

function parse(argv: string[]): { trials: number; only: Which[]; builds: Build[] } {
  let trials = 7;
  let only: Which[] = ['nonstream', 'stream'];
  const builds: Build[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--trials') trials = Number(argv[++i]);
    else if (a === '--only') only = argv[++i]!.split(',') as Which[];
    else if (a.includes('=')) {
      const [bundle, ...nodeArgs] = a.slice(a.indexOf('=') + 1).split(',');
      builds.push({ name: a.slice(0, a.indexOf('=')), bundle: resolve(bundle!), nodeArgs });
    }
    else throw new Error(`unknown argument ${a}`);
  }
  if (builds.length === 0 || !(trials > 0) || only.some((s) => s !== 'startup' && !(s in SCENARIOS))) {
    throw new Error('usage: bench/ab.ts [--trials N] [--only nonstream,stream,startup] NAME=BUNDLE[,NODE_FLAG...]...');
  }
  return { trials, only, builds };
}

async function scenario(dir: string, which: keyof typeof SCENARIOS, builds: Build[], trials: number): Promise<void> {
  const sc = SCENARIOS[which];
  const daemons: MuxDaemon[] = [];
  const targets: Target[] = [];
  for (const b of builds) {
    const d = await MuxDaemon.start({
      bundle: b.bundle, nodeArgs: b.nodeArgs, dir: join(dir, `${which}-${b.name}`),
      models: [{ name: MODEL, knobs: { SGLANG_SIM_STARTUP_MS: '100', SGLANG_SIM_WARMUP_MS: '50', ...sc.knobs } }],
    });
    daemons.push(d);
    await d.waitBooted();
    targets.push({ name: b.name, port: d.port, pids: () => [d.pid], peakRssMb: () => rssMb(d.pid, 'VmHWM') });
  }
  const nginxBin = findNginx();
  if (nginxBin) {
    const n = await Nginx.start(nginxBin, join(dir, `${which}-nginx`), daemons[0]!.models[0]!.port);
    targets.push({ name: 'nginx', port: n.port, pids: () => n.workerPids() });
  }
  for (const t of targets) await sc.run(t.port)(); // unmeasured: V8 compiles the hot code
  const results: Record<string, number[]> = Object.fromEntries(targets.map((t) => [t.name, []]));
  for (let trial = 0; trial < trials; trial++) {
    const line: string[] = [];
    for (let k = 0; k < targets.length; k++) {
      const t = targets[(k + trial) % targets.length]!;
      const us = await perUnit(t, sc.run(t.port));
      results[t.name]!.push(us);
      line.push(`${t.name} ${us.toFixed(1)}`);
    }
    console.log(`${which} trial ${trial + 1}/${trials}: ${line.join(', ')} µs/${sc.unit.split(',')[0]}`);
  }
  console.log(`\n${which}: CPU µs per ${sc.unit}, median [min–max] of ${trials}; ratio to nginx per trial, median`);
  for (const t of targets) {
    const v = results[t.name]!;
    const ratio = results['nginx'] ? v.map((x, i) => x / results['nginx']![i]!) : [];
    console.log(`  ${t.name.padEnd(16)} ${percentile(v, 50).toFixed(1)} [${Math.min(...v).toFixed(1)}–${Math.max(...v).toFixed(1)}]` +
      (ratio.length && t.name !== 'nginx' ? `  ${percentile(ratio, 50).toFixed(2)}× nginx` : '') +
      (t.peakRssMb ? `  peak RSS ${t.peakRssMb().toFixed(1)} MB` : ''));
  }
  console.log('');
  await stopAll();
}

async function startups(dir: string, builds: Build[], trials: number): Promise<void> {
  const knobs = { SGLANG_SIM_STARTUP_MS: '100', SGLANG_SIM_WARMUP_MS: '50', SGLANG_SIM_TOKEN_MS: '1' };
  const rows: Record<string, { ms: number[]; cpuMs: number[]; rss: number[] }> =
    Object.fromEntries(builds.map((b) => [b.name, { ms: [], cpuMs: [], rss: [] }]));
  for (let trial = 0; trial < trials; trial++) {
    const line: string[] = [];
    for (let k = 0; k < builds.length; k++) {
      const b = builds[(k + trial) % builds.length]!;
      const d = await MuxDaemon.start({
        bundle: b.bundle, nodeArgs: b.nodeArgs, dir: join(dir, `startup-${b.name}-${trial}`),
        models: [{ name: 'start-a', knobs }, { name: 'start-b', knobs }],
      });
      const at = await d.waitListening(30_000, 1);
      const cpuMs = cpuSeconds(d.pid) * 1000;
      await d.waitBooted();
      await closedLoop({ port: d.port, path: CHAT, body: chatBody(4, false, 'start-a'), concurrency: 1, warmupMs: 0, durationMs: 50 });
      await streams({ port: d.port, path: CHAT, body: chatBody(4, true, 'start-a'), users: 1, streamsPerUser: 1, staggerMs: 0, tokens: 4, windowFromMs: 0, windowToMs: 1e9 });
      const ms = at - d.spawnedAt;
      const rss = rssMb(d.pid);
      const r = rows[b.name]!;
      r.ms.push(ms);
      r.cpuMs.push(cpuMs);
      r.rss.push(rss);
      line.push(`${b.name} ${ms.toFixed(0)} ms (CPU ${cpuMs.toFixed(0)} ms), ${rss.toFixed(1)} MB`);
      await d.stop();
    }
    console.log(`startup trial ${trial + 1}/${trials}: ${line.join('; ')}`);
  }
  console.log(`\nstartup: spawn → first /health answer, the daemon's CPU by then, RSS after both models and a request of each kind; median [min–max] of ${trials}`);
  const fmt = (v: number[], digits: number): string =>
    `${percentile(v, 50).toFixed(digits)} [${Math.min(...v).toFixed(digits)}–${Math.max(...v).toFixed(digits)}]`;
  for (const b of builds) {
    const r = rows[b.name]!;
    console.log(`  ${b.name.padEnd(16)} ${fmt(r.ms, 0)} ms  CPU ${fmt(r.cpuMs, 0)} ms  RSS ${fmt(r.rss, 1)} MB`);
  }
  console.log('');
}

async function main(): Promise<void> {
  const { trials, only, builds } = parse(process.argv.slice(2));
  const dir = mkdtempSync(join(tmpdir(), 'sglangmux-ab-'));
  try {
    for (const which of only) {
      if (which === 'startup') await startups(dir, builds, trials);
      else await scenario(dir, which, builds, trials);
    }
  } finally {
    await stopAll();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch(async (err: unknown) => {
  console.error(err instanceof Error ? err.message : String(err));
  await stopAll();
  process.exit(1);
});
