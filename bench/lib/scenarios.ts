// The four scenarios of issue 6. The load scenarios measure three paths to ONE simulator in the
// same run: direct to the simulated SGLang server, through nginx, and through sglangmux (which
// started that server from its launch script). Repetitions rotate the order of the paths.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { readLedger, type LedgerEvent } from '../../test/support/sim.js';
import type { BenchConfig } from './config.js';
import { PATHS, type Figures, type PathName } from './figures.js';
import { closedLoop, keepAliveAgent, post, streams } from './load.js';
import { cpuSeconds, ForeignLoad, MuxDaemon, Nginx, ProcSampler, rssMb, simBinDir, sleep, waitQuiet, type CpuWindow } from './procs.js';
import { percentile } from './stats.js';

export interface Context {
  readonly config: BenchConfig;
  readonly bundle: string;
  readonly nginxBin: string;
  readonly dir: string;
  readonly daemonNodeArgs: readonly string[];
  readonly figures: Figures;
  /** Raw samples pooled over repetitions, per plot and path, for the latency plot. */
  readonly samples: Record<string, Record<PathName, number[]>>;
  readonly notes: string[];
  readonly progress: (line: string) => void;
  /** CPU windows per load scenario and path, for the CPU table. */
  readonly cpuTables: Record<string, Record<PathName, CpuWindow[]>>;
  startupSamples?: { listen: number[]; ready: number[]; idleRss: number[] };
}

const MODEL = 'bench';
const CHAT = '/v1/chat/completions';

function chatBody(maxTokens: number, stream: boolean): Buffer {
  return Buffer.from(JSON.stringify({
    model: MODEL,
    max_tokens: maxTokens,
    ...(stream ? { stream: true } : {}),
    messages: [{ role: 'user', content: 'Say hello to the benchmark' }],
  }));
}

/** a[i] ÷ b[i] per repetition (both measured in the same repetition). */
function ratios(a: readonly number[], b: readonly number[]): number[] {
  return a.map((x, i) => x / b[i]!);
}

/** Paths in the order of repetition `rep` (rotated, so no path always runs first or last). */
function order(rep: number): PathName[] {
  return PATHS.map((_, i) => PATHS[(i + rep) % PATHS.length]!);
}

function pool(ctx: Context, plot: string, path: PathName, values: readonly number[]): void {
  ctx.samples[plot] ??= { direct: [], nginx: [], sglangmux: [] };
  const into = ctx.samples[plot]![path];
  for (const v of values) into.push(v);
}

/** Before a measured run: waits (bounded) for other processes on the machine to calm down. */
async function quiet(ctx: Context, what: string): Promise<void> {
  if (ctx.config.quietWaitMs <= 0) return;
  const r = await waitQuiet(ctx.config.quietWaitMs);
  if (!r.quiet) ctx.notes.push(`${what}: the machine was still busy after waiting ${Math.round(r.waitedMs / 1000)} s; measured anyway`);
  else if (r.waitedMs > 2000) ctx.progress(`(waited ${(r.waitedMs / 1000).toFixed(0)} s for other processes to finish)`);
}

/** Records a note when processes outside the benchmark used the CPU during a measured window. */
function foreignLoad(ctx: Context, what: string, w: CpuWindow): void {
  const named = ['sglangmux', 'nginx', 'simulator', 'generator'].reduce((s, k) => s + (w.cpuPct[k] ?? 0), 0);
  const other = w.machineProcPct - named;
  if (other > 25) ctx.notes.push(`${what}: other processes on the machine used ${other.toFixed(0)} % of a core while it was measured`);
}

/** One daemon serving one simulated model, and nginx in front of the same model server. */
async function threePaths(ctx: Context, name: string, knobs: Record<string, string>): Promise<{
  daemon: MuxDaemon; nginx: Nginx; ports: Record<PathName, number>; pids: Record<string, number[]>;
}> {
  const daemon = await MuxDaemon.start({
    bundle: ctx.bundle, dir: join(ctx.dir, name), nodeArgs: ctx.daemonNodeArgs,
    models: [{ name: MODEL, knobs: { SGLANG_SIM_STARTUP_MS: '100', SGLANG_SIM_WARMUP_MS: '50', ...knobs } }],
  });
  try {
    await daemon.waitBooted();
    const simPids = daemon.modelPids();
    if (simPids.length !== 1) throw new Error(`expected one model server process, found ${simPids.length}`);
    const nginx = await Nginx.start(ctx.nginxBin, join(ctx.dir, `${name}-nginx`), daemon.models[0]!.port);
    return {
      daemon,
      nginx,
      ports: { direct: daemon.models[0]!.port, nginx: nginx.port, sglangmux: daemon.port },
      pids: { sglangmux: [daemon.pid], simulator: simPids, nginx: nginx.workerPids() },
    };
  } catch (err) {
    await daemon.stop();
    throw err;
  }
}

/** Adds per-path figures and the differences (mux − direct, mux − nginx, nginx − direct; or
 * ratios for throughput) computed within each repetition, then summarized over repetitions. */
function addComparison(
  ctx: Context, id: string, label: string, unit: string,
  perRep: Record<PathName, number>[], kind: 'difference' | 'ratio',
  targets: { mux_vs_direct?: Parameters<Figures['add']>[4]; mux_vs_nginx?: Parameters<Figures['add']>[4] } = {},
): void {
  for (const p of PATHS) ctx.figures.add(`${id}.${p}`, `${label}, ${p}`, unit, perRep.map((r) => r[p]));
  const rel = (a: PathName, b: PathName): number[] =>
    perRep.map((r) => (kind === 'difference' ? r[a] - r[b] : r[a] / r[b]));
  const relUnit = kind === 'difference' ? unit : '×';
  const word = kind === 'difference' ? 'added' : 'ratio';
  ctx.figures.add(`${id}.mux_vs_direct`, `${label}, sglangmux ${word} vs direct`, relUnit, rel('sglangmux', 'direct'), targets.mux_vs_direct);
  ctx.figures.add(`${id}.mux_vs_nginx`, `${label}, sglangmux ${word} vs nginx`, relUnit, rel('sglangmux', 'nginx'), targets.mux_vs_nginx);
  ctx.figures.add(`${id}.nginx_vs_direct`, `${label}, nginx ${word} vs direct`, relUnit, rel('nginx', 'direct'));
  if (kind === 'difference') {
    const ratio = (a: PathName, b: PathName): number[] => perRep.map((r) => r[a] / r[b]);
    ctx.figures.add(`${id}.mux_ratio_direct`, `${label}, sglangmux ÷ direct`, '×', ratio('sglangmux', 'direct'));
    ctx.figures.add(`${id}.mux_ratio_nginx`, `${label}, sglangmux ÷ nginx`, '×', ratio('sglangmux', 'nginx'));
  }
}

// ---------------------------------------------------------------------------------------------

/** Scenario 1: small non-streaming chat completions, closed loop at concurrency 1 and N. */
export async function nonStreaming(ctx: Context): Promise<void> {
  const cfg = ctx.config.nonStream;
  const { daemon, nginx, ports, pids } = await threePaths(ctx, 'nonstream', { SGLANG_SIM_TOKEN_MS: String(cfg.tokenMs) });
  const body = chatBody(cfg.maxTokens, false);
  const runs: { c: number; key: 'c1' | 'cN' }[] = [{ c: cfg.concurrency[0], key: 'c1' }, { c: cfg.concurrency[1], key: 'cN' }];
  const perRep: Record<'c1' | 'cN', Record<'p50' | 'p99' | 'rps', Record<PathName, number>[]>> = {
    c1: { p50: [], p99: [], rps: [] }, cN: { p50: [], p99: [], rps: [] },
  };
  const errors: Record<'c1' | 'cN', number> = { c1: 0, cN: 0 };
  const cpu: Record<PathName, CpuWindow[]> = { direct: [], nginx: [], sglangmux: [] };
  const perReqUs: Record<'c1' | 'cN', Record<PathName, number[]>> = {
    c1: { direct: [], nginx: [], sglangmux: [] }, cN: { direct: [], nginx: [], sglangmux: [] },
  };
  try {
    // Unmeasured: every path carries load once before the first repetition, so that no path is
    // measured while V8 is still compiling its hot code.
    for (const path of PATHS) {
      await closedLoop({ port: ports[path], path: CHAT, body, concurrency: cfg.concurrency[1], warmupMs: 0, durationMs: cfg.jitWarmupMs });
    }
    for (let rep = 0; rep < cfg.reps; rep++) {
      const row = {
        c1: { p50: {}, p99: {}, rps: {} }, cN: { p50: {}, p99: {}, rps: {} },
      } as Record<'c1' | 'cN', Record<'p50' | 'p99' | 'rps', Record<PathName, number>>>;
      for (const path of order(rep)) {
        for (const { c, key } of runs) {
          await quiet(ctx, `non-streaming rep ${rep + 1} ${path} c=${c}`);
          const sampler = new ProcSampler(pids);
          const timer = setTimeout(() => sampler.start(), cfg.warmupMs);
          const r = await closedLoop({ port: ports[path], path: CHAT, body, concurrency: c, warmupMs: cfg.warmupMs, durationMs: cfg.durationMs });
          clearTimeout(timer);
          const window = sampler.stop();
          // CPU time per request of the process in the middle (the simulator's, for direct):
          // far less disturbed by other load on the machine than latency is.
          const proc = path === 'direct' ? 'simulator' : path;
          perReqUs[key][path].push((window.cpuPct[proc]! / 100) / r.throughput * 1e6);
          if (key === 'cN') cpu[path].push(window);
          foreignLoad(ctx, `non-streaming rep ${rep + 1} ${path} c=${c}`, window);
          errors[key] += r.errors;
          if (r.firstError) ctx.notes.push(`non-streaming c=${c} ${path}: ${r.errors} errors, first: ${r.firstError}`);
          row[key].p50[path] = percentile(r.latencies, 50);
          row[key].p99[path] = percentile(r.latencies, 99);
          row[key].rps[path] = r.throughput;
          pool(ctx, `ns.${key}`, path, r.latencies);
          ctx.progress(`non-streaming rep ${rep + 1}/${cfg.reps} ${path} c=${c}: p50 ${row[key].p50[path]!.toFixed(2)} ms, ` +
            `p99 ${row[key].p99[path]!.toFixed(2)} ms, ${r.throughput.toFixed(0)} req/s${r.errors ? `, ${r.errors} errors` : ''}`);
          await sleep(ctx.config.settleMs / 2);
        }
      }
      for (const key of ['c1', 'cN'] as const) for (const stat of ['p50', 'p99', 'rps'] as const) perRep[key][stat].push(row[key][stat]);
    }
  } finally {
    await nginx.stop();
    await daemon.stop();
  }
  for (const { c, key } of runs) {
    const target = key === 'c1';
    addComparison(ctx, `ns.${key}.p50`, `non-streaming c=${c} latency p50`, 'ms', perRep[key].p50, 'difference',
      target ? { mux_vs_direct: { op: '<=', value: 0.5, on: 'median' } } : {});
    addComparison(ctx, `ns.${key}.p99`, `non-streaming c=${c} latency p99`, 'ms', perRep[key].p99, 'difference');
    addComparison(ctx, `ns.${key}.rps`, `non-streaming c=${c} throughput`, 'req/s', perRep[key].rps, 'ratio',
      key === 'cN' ? { mux_vs_nginx: { op: '>=', value: 0.5, on: 'median' } } : {});
    ctx.figures.add(`ns.${key}.errors`, `non-streaming c=${c} failed requests (all repetitions)`, 'count', [errors[key]], undefined, 'the whole run');
  }
  // CPU during the concurrency-N runs through each path: each process's share.
  const cN = cfg.concurrency[1];
  ctx.figures.add('ns.cN.cpu.sglangmux', `non-streaming c=${cN} via sglangmux: sglangmux CPU`, '% of a core', cpu.sglangmux.map((w) => w.cpuPct['sglangmux']!));
  ctx.figures.add('ns.cN.cpu.nginx', `non-streaming c=${cN} via nginx: nginx worker CPU`, '% of a core', cpu.nginx.map((w) => w.cpuPct['nginx']!));
  ctx.figures.add('ns.cN.cpu.simulator', `non-streaming c=${cN} direct: simulator CPU`, '% of a core', cpu.direct.map((w) => w.cpuPct['simulator']!));
  ctx.figures.add('ns.cN.cpu.generator', `non-streaming c=${cN} direct: load generator CPU`, '% of a core', cpu.direct.map((w) => w.cpuPct['generator']!));
  ctx.figures.add('ns.cN.cpu.machine', `non-streaming c=${cN} via sglangmux: whole machine busy`, '% of a core', cpu.sglangmux.map((w) => w.machinePct));
  for (const { c, key } of runs) {
    ctx.figures.add(`ns.${key}.cpu_per_req.sglangmux`, `non-streaming c=${c}: sglangmux CPU time per request`, 'µs', perReqUs[key].sglangmux);
    ctx.figures.add(`ns.${key}.cpu_per_req.nginx`, `non-streaming c=${c}: nginx worker CPU time per request`, 'µs', perReqUs[key].nginx);
    ctx.figures.add(`ns.${key}.cpu_per_req.simulator`, `non-streaming c=${c}, direct: simulator CPU time per request (for scale)`, 'µs', perReqUs[key].direct);
    ctx.figures.add(`ns.${key}.cpu_per_req.mux_ratio_nginx`, `non-streaming c=${c}: sglangmux CPU per request ÷ nginx's`, '×',
      ratios(perReqUs[key].sglangmux, perReqUs[key].nginx), key === 'cN' ? { op: '<=', value: 5, on: 'median' } : undefined);
  }
  ctx.cpuTables['nonstream'] = cpu;
}

// ---------------------------------------------------------------------------------------------

/** Scenario 2: N concurrent SSE streams of T tokens at tokenMs per token. */
export async function streaming(ctx: Context): Promise<void> {
  const cfg = ctx.config.stream;
  const { daemon, nginx, ports, pids } = await threePaths(ctx, 'stream', { SGLANG_SIM_TOKEN_MS: String(cfg.tokenMs) });
  const body = chatBody(cfg.tokens, true);
  const streamMs = cfg.tokens * cfg.tokenMs;
  const perRep: Record<'ttfb.p50' | 'ttfb.p99' | 'gap.p50' | 'gap.p99', Record<PathName, number>[]> = {
    'ttfb.p50': [], 'ttfb.p99': [], 'gap.p50': [], 'gap.p99': [],
  };
  const events: Record<PathName, { out: number; expected: number }> = {
    direct: { out: 0, expected: 0 }, nginx: { out: 0, expected: 0 }, sglangmux: { out: 0, expected: 0 },
  };
  const shared: Record<PathName, number[]> = { direct: [], nginx: [], sglangmux: [] };
  const loopP99: Record<PathName, number[]> = { direct: [], nginx: [], sglangmux: [] };
  const cpu: Record<PathName, CpuWindow[]> = { direct: [], nginx: [], sglangmux: [] };
  const perEventUs: Record<PathName, number[]> = { direct: [], nginx: [], sglangmux: [] };
  let errors = 0;
  let rssAfter = Number.NaN;
  try {
    // Unmeasured: a short burst of streams through every path first (JIT warm-up).
    for (const path of PATHS) {
      await streams({
        port: ports[path], path: CHAT, body: chatBody(10, true), users: Math.min(cfg.users, 64), streamsPerUser: 2, staggerMs: 1,
        tokens: 10, windowFromMs: 0, windowToMs: 0,
      });
    }
    await sleep(ctx.config.settleMs);
    for (let rep = 0; rep < cfg.reps; rep++) {
      const row = { 'ttfb.p50': {}, 'ttfb.p99': {}, 'gap.p50': {}, 'gap.p99': {} } as Record<keyof typeof perRep, Record<PathName, number>>;
      for (const path of order(rep)) {
        await quiet(ctx, `streaming rep ${rep + 1} ${path}`);
        const sampler = new ProcSampler(pids);
        const loop = monitorEventLoopDelay({ resolution: 1 });
        let window: CpuWindow | null = null;
        const r = await streams({
          port: ports[path], path: CHAT, body, users: cfg.users, streamsPerUser: 2, staggerMs: streamMs / cfg.users,
          tokens: cfg.tokens, windowFromMs: streamMs, windowToMs: 2 * streamMs,
          onWindow: (phase) => {
            if (phase === 'start') {
              sampler.start();
              loop.enable();
            } else {
              window = sampler.stop();
              loop.disable();
            }
          },
        });
        cpu[path].push(window!);
        {
          const proc = path === 'direct' ? 'simulator' : path;
          const eventsPerS = r.gaps.length / window!.seconds;
          perEventUs[path].push((window!.cpuPct[proc]! / 100) / eventsPerS * 1e6);
        }
        foreignLoad(ctx, `streaming rep ${rep + 1} ${path}`, window!);
        loopP99[path].push(loop.percentile(99) / 1e6);
        errors += r.streams - r.streamsOk;
        if (r.firstError) ctx.notes.push(`streaming ${path}: ${r.streams - r.streamsOk} of ${r.streams} streams failed, first: ${r.firstError}`);
        events[path].out += r.eventsOut;
        events[path].expected += r.eventsExpected;
        shared[path].push((100 * r.sharedReads) / Math.max(1, r.gaps.length));
        row['ttfb.p50'][path] = percentile(r.ttfb, 50);
        row['ttfb.p99'][path] = percentile(r.ttfb, 99);
        row['gap.p50'][path] = percentile(r.gaps, 50);
        row['gap.p99'][path] = percentile(r.gaps, 99);
        pool(ctx, 'st.ttfb', path, r.ttfb);
        pool(ctx, 'st.gap', path, r.gaps);
        ctx.progress(`streaming rep ${rep + 1}/${cfg.reps} ${path}: TTFB p50 ${row['ttfb.p50'][path]!.toFixed(2)} p99 ${row['ttfb.p99'][path]!.toFixed(2)} ms, ` +
          `gap p50 ${row['gap.p50'][path]!.toFixed(2)} p99 ${row['gap.p99'][path]!.toFixed(2)} ms, events ${r.eventsOut}/${r.eventsExpected}, ` +
          `sglangmux CPU ${window!.cpuPct['sglangmux']!.toFixed(0)} %, RSS ${window!.maxRssMb['sglangmux']!.toFixed(0)} MB`);
        await sleep(ctx.config.settleMs);
      }
      for (const k of Object.keys(perRep) as (keyof typeof perRep)[]) perRep[k].push(row[k]);
    }
    await sleep(Math.max(ctx.config.settleMs, 1000));
    rssAfter = rssMb(daemon.pid);
  } finally {
    await nginx.stop();
    await daemon.stop();
  }
  const n = cfg.users;
  addComparison(ctx, 'st.ttfb.p50', `${n} streams: time to first byte p50`, 'ms', perRep['ttfb.p50'], 'difference',
    { mux_vs_direct: { op: '<=', value: 1, on: 'median' } });
  addComparison(ctx, 'st.ttfb.p99', `${n} streams: time to first byte p99`, 'ms', perRep['ttfb.p99'], 'difference',
    { mux_vs_direct: { op: '<=', value: 5, on: 'median' } });
  addComparison(ctx, 'st.gap.p50', `${n} streams: inter-event delay p50`, 'ms', perRep['gap.p50'], 'difference');
  addComparison(ctx, 'st.gap.p99', `${n} streams: inter-event delay p99`, 'ms', perRep['gap.p99'], 'difference',
    { mux_vs_direct: { op: '<=', value: 2, on: 'median' } });
  for (const p of PATHS) {
    ctx.figures.add(`st.events.${p}`, `${n} streams: SSE events out / events in, ${p}`, 'ratio',
      [events[p].out / Math.max(1, events[p].expected)], { op: '==', value: 1, on: 'median' }, 'the whole run');
    ctx.figures.add(`st.shared.${p}`, `${n} streams: events that arrived in the same read as the previous one, ${p}`, '%', shared[p]);
    ctx.figures.add(`st.loop_p99.${p}`, `${n} streams: load generator event-loop delay p99 while measuring ${p}`, 'ms', loopP99[p]);
  }
  ctx.figures.add('st.errors', `${n} streams: failed streams (all repetitions)`, 'count', [errors], undefined, 'the whole run');
  ctx.figures.add('st.cpu.sglangmux', `${n} streams via sglangmux: sglangmux CPU`, '% of a core', cpu.sglangmux.map((w) => w.cpuPct['sglangmux']!));
  ctx.figures.add('st.cpu.nginx', `${n} streams via nginx: nginx worker CPU`, '% of a core', cpu.nginx.map((w) => w.cpuPct['nginx']!));
  ctx.figures.add('st.cpu.simulator', `${n} streams direct: simulator CPU`, '% of a core', cpu.direct.map((w) => w.cpuPct['simulator']!));
  ctx.figures.add('st.cpu.generator', `${n} streams direct: load generator CPU`, '% of a core', cpu.direct.map((w) => w.cpuPct['generator']!));
  ctx.figures.add('st.cpu.machine', `${n} streams via sglangmux: whole machine busy`, '% of a core', cpu.sglangmux.map((w) => w.machinePct));
  ctx.figures.add('st.rss.sglangmux', `${n} streams via sglangmux: sglangmux peak RSS`, 'MB', cpu.sglangmux.map((w) => w.maxRssMb['sglangmux']!),
    { op: '<=', value: 100, on: 'max' });
  ctx.figures.add('st.rss_after.sglangmux', 'sglangmux RSS, idle after the streaming runs', 'MB', [rssAfter], undefined, 'one reading');
  ctx.figures.add('st.cpu_per_event.sglangmux', `${n} streams: sglangmux CPU time per SSE event relayed`, 'µs', perEventUs.sglangmux);
  ctx.figures.add('st.cpu_per_event.nginx', `${n} streams: nginx worker CPU time per SSE event relayed`, 'µs', perEventUs.nginx);
  ctx.figures.add('st.cpu_per_event.simulator', `${n} streams, direct: simulator CPU time per SSE event sent (for scale)`, 'µs', perEventUs.direct);
  ctx.figures.add('st.cpu_per_event.mux_ratio_nginx', `${n} streams: sglangmux CPU per SSE event ÷ nginx's`, '×',
    ratios(perEventUs.sglangmux, perEventUs.nginx), { op: '<=', value: 2, on: 'median' });
  // Capacity: the SSE events one core can relay per second at that CPU cost per event.
  ctx.figures.add('st.capacity.sglangmux', 'SSE events per second one core can relay (10⁶ ÷ CPU µs per event), sglangmux', 'events/s',
    perEventUs.sglangmux.map((us) => 1e6 / us));
  ctx.figures.add('st.capacity.nginx', 'SSE events per second one core can relay (10⁶ ÷ CPU µs per event), nginx', 'events/s',
    perEventUs.nginx.map((us) => 1e6 / us));
  ctx.cpuTables['stream'] = cpu;
}

// ---------------------------------------------------------------------------------------------

interface LogLine {
  readonly t: number;
  readonly text: string;
}

function logLines(text: string): LogLine[] {
  const out: LogLine[] = [];
  for (const line of text.split('\n')) {
    const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z)\s+\w+\s+(.*)$/.exec(line);
    if (m) out.push({ t: Date.parse(m[1]!), text: m[2]! });
  }
  return out;
}

/** For each ledger event, the first daemon log line for that model matching `re`, at or after it:
 * log time − event time (ms; both are this machine's wall clock at ms resolution). */
function noticed(events: readonly LedgerEvent[], lines: readonly LogLine[], re: (model: string) => RegExp): number[] {
  const out: number[] = [];
  for (const e of events) {
    const hit = lines.find((l) => l.t >= e.t - 1 && re(e.model).test(l.text));
    if (hit) out.push(hit.t - e.t);
  }
  return out;
}

const escape = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** Scenario 3: strictly alternating requests for two models, each needing a switch, with fixed
 * simulator release/resume times. The daemon runs with --min-active-secs 0. */
export async function switching(ctx: Context): Promise<void> {
  const cfg = ctx.config.switching;
  const overheadMedians: number[] = [];
  const overheadMaxes: number[] = [];
  const switchMs: number[] = [];
  const gapMedians: number[] = [];
  const partMedians = { beforeRelease: [] as number[], releaseToResume: [] as number[], resumeToForward: [] as number[], simRelease: [] as number[], simResume: [] as number[] };
  const wakeMedians: number[] = [];
  const wakeMaxes: number[] = [];
  let errors = 0;
  const allOverheads: number[] = [];
  for (let rep = 0; rep < cfg.reps; rep++) {
    const dir = join(ctx.dir, `switching-${rep}`);
    const ledger = join(dir, 'ledger.jsonl');
    const knobs = {
      SGLANG_SIM_STARTUP_MS: '100', SGLANG_SIM_WARMUP_MS: '50', SGLANG_SIM_TOKEN_MS: String(cfg.tokenMs),
      SGLANG_SIM_RELEASE_MS: String(cfg.releaseMs), SGLANG_SIM_RESUME_MS: String(cfg.resumeMs),
    };
    const daemon = await MuxDaemon.start({
      bundle: ctx.bundle, dir, ledger, nodeArgs: ctx.daemonNodeArgs, args: ['--min-active-secs', '0'],
      models: [{ name: 'sw-a', knobs }, { name: 'sw-b', knobs }],
    });
    const agent = keepAliveAgent(1);
    const body = (model: string): Buffer => Buffer.from(JSON.stringify({ model, max_tokens: 1, messages: [{ role: 'user', content: 'hi' }] }));
    const bodies = { 'sw-a': body('sw-a'), 'sw-b': body('sw-b') };
    const switches: { model: string; wall: number; wallEnd: number; ms: number }[] = [];
    const plain: number[] = [];
    try {
      await daemon.waitBooted();
      await quiet(ctx, `switching rep ${rep + 1}`);
      const foreign = new ForeignLoad();
      const pids = [daemon.pid, ...daemon.modelPids()];
      const cpu0 = pids.reduce((sum, pid) => sum + (cpuSeconds(pid) || 0), 0);
      // The last model started stays awake: alternate starting with the other one.
      const t0 = performance.now();
      for (let i = 0; i < cfg.switches; i++) {
        const model = i % 2 === 0 ? 'sw-a' : 'sw-b';
        const wall = Date.now();
        const t = performance.now();
        const r = await post(agent, daemon.port, CHAT, bodies[model]);
        const ms = performance.now() - t;
        if (r.status !== 200) errors++;
        switches.push({ model, wall, wallEnd: Date.now(), ms });
        // The same model again, already awake: the cost of the request itself, without a switch.
        const t2 = performance.now();
        const r2 = await post(agent, daemon.port, CHAT, bodies[model]);
        plain.push(performance.now() - t2);
        if (r2.status !== 200) errors++;
      }
      // Only what ran during the switches: the daemon's and models' CPU before them is not foreign.
      const other = foreign.otherPct(pids) + (100 * cpu0) / ((performance.now() - t0) / 1000);
      if (other > 25) ctx.notes.push(`switching rep ${rep + 1}: other processes on the machine used ${other.toFixed(0)} % of a core meanwhile`);
    } finally {
      agent.destroy();
      await daemon.stop();
    }
    const base = percentile(plain, 50);
    const overheads = switches.map((s) => s.ms - base - cfg.releaseMs - cfg.resumeMs);
    allOverheads.push(...overheads);
    overheadMedians.push(percentile(overheads, 50));
    overheadMaxes.push(Math.max(...overheads));
    switchMs.push(percentile(switches.map((s) => s.ms), 50));

    // From the ledger: the gaps in which the daemon, not a server, had the next move.
    const evs = readLedger(ledger);
    const gaps: number[] = [];
    const parts = { beforeRelease: [] as number[], releaseToResume: [] as number[], resumeToForward: [] as number[], simRelease: [] as number[], simResume: [] as number[] };
    for (const s of switches) {
      const inSwitch = evs.filter((e) => e.t >= s.wall - 1 && e.t <= s.wallEnd + 1);
      const first = (pred: (e: LedgerEvent) => boolean): LedgerEvent | undefined => inSwitch.find(pred);
      const releaseReq = first((e) => e.event === 'request' && e.route === '/release_memory_occupation');
      const release = first((e) => e.event === 'release');
      const resumeReq = first((e) => e.event === 'request' && e.route === '/resume_memory_occupation');
      const resume = first((e) => e.event === 'resume');
      const chat = inSwitch.find((e) => e.event === 'request' && e.route === CHAT && resume !== undefined && e.t >= resume.t);
      if (releaseReq && release && resumeReq && resume && chat) {
        gaps.push((releaseReq.t - s.wall) + (resumeReq.t - release.t) + (chat.t - resume.t));
        parts.beforeRelease.push(releaseReq.t - s.wall);
        parts.releaseToResume.push(resumeReq.t - release.t);
        parts.resumeToForward.push(chat.t - resume.t);
        parts.simRelease.push(release.t - releaseReq.t - cfg.releaseMs);
        parts.simResume.push(resume.t - resumeReq.t - cfg.resumeMs);
      }
    }
    gapMedians.push(percentile(gaps, 50));
    for (const k of Object.keys(parts) as (keyof typeof parts)[]) partMedians[k].push(percentile(parts[k], 50));
    const wakes = noticed(evs.filter((e) => e.event === 'resume'), logLines(daemon.log()), (m) => new RegExp(`model ${escape(m)}: awake`));
    wakeMedians.push(percentile(wakes, 50));
    wakeMaxes.push(Math.max(...wakes));
    ctx.progress(`switching rep ${rep + 1}/${cfg.reps}: ${switches.length} switches, median ${switchMs[rep]!.toFixed(1)} ms ` +
      `(request alone ${base.toFixed(1)} ms), overhead median ${overheadMedians[rep]!.toFixed(1)} max ${overheadMaxes[rep]!.toFixed(1)} ms, ` +
      `wake noticed median ${wakeMedians[rep]} max ${wakeMaxes[rep]} ms`);
  }
  const delays = `${cfg.releaseMs} ms release + ${cfg.resumeMs} ms resume`;
  ctx.figures.add('sw.switch_ms', `switch: request latency when it needs a switch, median (${delays})`, 'ms', switchMs);
  ctx.figures.add('sw.overhead.median', `switch overhead beyond ${delays} and the request itself, median of ${cfg.switches}`, 'ms', overheadMedians,
    { op: '<=', value: 20, on: 'median' });
  ctx.figures.add('sw.overhead.max', `switch overhead, max of ${cfg.switches}`, 'ms', overheadMaxes);
  ctx.figures.add('sw.daemon_gaps.median', 'switch: time the daemon held the next move (client→release call, release done→resume call, resume done→request forwarded), median', 'ms', gapMedians);
  ctx.figures.add('sw.gap.before_release', 'switch: client request sent → release call reaches the old model (drain, /flush_cache), median', 'ms', partMedians.beforeRelease);
  ctx.figures.add('sw.gap.release_to_resume', 'switch: release done → resume call reaches the new model, median', 'ms', partMedians.releaseToResume);
  ctx.figures.add('sw.gap.resume_to_forward', 'switch: resume done → the waiting request reaches the new model, median', 'ms', partMedians.resumeToForward);
  ctx.figures.add('sw.sim.release_extra', `switch: the simulator's release beyond its ${cfg.releaseMs} ms (its own bookkeeping), median`, 'ms', partMedians.simRelease);
  ctx.figures.add('sw.sim.resume_extra', `switch: the simulator's resume beyond its ${cfg.resumeMs} ms (its own bookkeeping), median`, 'ms', partMedians.simResume);
  ctx.figures.add('sw.noticed_wake.median', 'wake: resume done (ledger) → daemon logs the model awake, median', 'ms', wakeMedians);
  ctx.figures.add('sw.noticed_wake.max', 'wake: resume done → daemon logs it awake, max', 'ms', wakeMaxes, { op: '<=', value: 50, on: 'max' });
  ctx.figures.add('sw.errors', 'switch: failed requests (all repetitions)', 'count', [errors], undefined, 'the whole run');
  await switchingWithNvidiaSmi(ctx);
}

/** The same alternation with the simulator's nvidia-smi on the daemon's PATH, as on a GPU host:
 * after each sleep the daemon polls nvidia-smi until the released memory shows free (hazard 4). */
async function switchingWithNvidiaSmi(ctx: Context): Promise<void> {
  const cfg = ctx.config.switching;
  const medians: number[] = [];
  const maxes: number[] = [];
  const latencies: number[] = [];
  let errors = 0;
  for (let rep = 0; rep < cfg.reps; rep++) {
    const dir = join(ctx.dir, `switching-smi-${rep}`);
    const knobs = {
      SGLANG_SIM_STARTUP_MS: '100', SGLANG_SIM_WARMUP_MS: '50', SGLANG_SIM_TOKEN_MS: String(cfg.tokenMs),
      SGLANG_SIM_RELEASE_MS: String(cfg.releaseMs), SGLANG_SIM_RESUME_MS: String(cfg.resumeMs),
    };
    const daemon = await MuxDaemon.start({
      bundle: ctx.bundle, dir, ledger: join(dir, 'ledger.jsonl'), nvidiaSmi: true, nodeArgs: ctx.daemonNodeArgs,
      args: ['--min-active-secs', '0'], models: [{ name: 'sw-a', knobs }, { name: 'sw-b', knobs }],
    });
    const agent = keepAliveAgent(1);
    const bodyOf = (model: string): Buffer => Buffer.from(JSON.stringify({ model, max_tokens: 1, messages: [{ role: 'user', content: 'hi' }] }));
    const switched: number[] = [];
    const plain: number[] = [];
    try {
      await daemon.waitBooted();
      await quiet(ctx, `switching with nvidia-smi rep ${rep + 1}`);
      for (let i = 0; i < cfg.switches; i++) {
        const body = bodyOf(i % 2 === 0 ? 'sw-a' : 'sw-b');
        let t = performance.now();
        if ((await post(agent, daemon.port, CHAT, body)).status !== 200) errors++;
        switched.push(performance.now() - t);
        t = performance.now();
        if ((await post(agent, daemon.port, CHAT, body)).status !== 200) errors++;
        plain.push(performance.now() - t);
      }
    } finally {
      agent.destroy();
      await daemon.stop();
    }
    const base = percentile(plain, 50);
    const overheads = switched.map((ms) => ms - base - cfg.releaseMs - cfg.resumeMs);
    medians.push(percentile(overheads, 50));
    maxes.push(Math.max(...overheads));
    latencies.push(percentile(switched, 50));
    ctx.progress(`switching with nvidia-smi rep ${rep + 1}/${cfg.reps}: median ${latencies[rep]!.toFixed(1)} ms, ` +
      `overhead median ${medians[rep]!.toFixed(1)} max ${maxes[rep]!.toFixed(1)} ms`);
  }
  // What one call of the simulator's nvidia-smi costs here (bash + node start, one ledger read).
  const calls: number[] = [];
  for (let i = 0; i < 5; i++) {
    const t = performance.now();
    spawnSync(join(simBinDir(), 'nvidia-smi'), ['--query-gpu=memory.used', '--format=csv,noheader,nounits'], {
      env: { ...process.env, SGLANG_SIM_NODE: process.execPath }, stdio: 'ignore',
    });
    calls.push(performance.now() - t);
  }
  ctx.figures.add('sw.smi.switch_ms', 'switch with the simulator\'s nvidia-smi on PATH: request latency, median', 'ms', latencies);
  ctx.figures.add('sw.smi.overhead.median', 'switch with nvidia-smi: overhead beyond release/resume and the request, median', 'ms', medians);
  ctx.figures.add('sw.smi.overhead.max', 'switch with nvidia-smi: overhead, max', 'ms', maxes);
  ctx.figures.add('sw.smi.call_ms', 'one call of the simulator\'s nvidia-smi (bash + node start), median of 5', 'ms', [percentile(calls, 50)], undefined, '5 calls');
  ctx.figures.add('sw.smi.errors', 'switch with nvidia-smi: failed requests (all repetitions)', 'count', [errors], undefined, 'the whole run');
}

// ---------------------------------------------------------------------------------------------

/** Scenario 4: daemon start to listening, readiness noticed at start, idle RSS. */
export async function startup(ctx: Context): Promise<void> {
  const cfg = ctx.config.startup;
  const listen: number[] = [];
  const idleRss: number[] = [];
  const ready: number[] = [];
  for (let i = 0; i < cfg.starts; i++) {
    await quiet(ctx, `start ${i + 1}`);
    const dir = join(ctx.dir, `startup-${i}`);
    const ledger = join(dir, 'ledger.jsonl');
    const knobs = { SGLANG_SIM_STARTUP_MS: '100', SGLANG_SIM_WARMUP_MS: '50', SGLANG_SIM_TOKEN_MS: '1' };
    const foreign = new ForeignLoad();
    const daemon = await MuxDaemon.start({
      bundle: ctx.bundle, dir, ledger, nodeArgs: ctx.daemonNodeArgs,
      models: [{ name: 'start-a', knobs }, { name: 'start-b', knobs }],
    });
    try {
      const at = await daemon.waitListening(30_000, 1);
      listen.push(at - daemon.spawnedAt);
      await daemon.waitBooted();
      await sleep(cfg.idleWaitMs);
      idleRss.push(rssMb(daemon.pid));
      const other = foreign.otherPct([daemon.pid, ...daemon.modelPids()]);
      if (other > 25) ctx.notes.push(`start ${i + 1}: other processes on the machine used ${other.toFixed(0)} % of a core meanwhile`);
    } finally {
      await daemon.stop();
    }
    const evs = readLedger(ledger).filter((e) => e.event === 'ready');
    const seen = noticed(evs, logLines(daemon.log()), (m) => new RegExp(`model ${escape(m)}: ready`));
    ready.push(...seen);
    ctx.progress(`start ${i + 1}/${cfg.starts}: listening after ${listen[i]!.toFixed(0)} ms, idle RSS ${idleRss[i]!.toFixed(1)} MB, ` +
      `ready noticed after ${seen.join(', ')} ms`);
    await sleep(ctx.config.settleMs / 2);
  }
  ctx.figures.add('su.listen.median', 'start: spawn → /health answers, median', 'ms', [percentile(listen, 50)], { op: '<=', value: 250, on: 'median' },
    `${cfg.starts} starts`);
  ctx.figures.add('su.listen.max', 'start: spawn → /health answers, max', 'ms', [Math.max(...listen)], undefined, `${cfg.starts} starts`);
  ctx.figures.add('su.idle_rss', 'idle RSS after start (2 models, one awake)', 'MB', idleRss, undefined, `${cfg.starts} starts`);
  ctx.figures.add('su.noticed_ready.median', 'start: model ready (ledger) → daemon logs it ready, median', 'ms', [percentile(ready, 50)], undefined,
    `${ready.length} model starts`);
  ctx.figures.add('su.noticed_ready.max', 'start: model ready → daemon logs it ready, max', 'ms', [Math.max(...ready)], { op: '<=', value: 50, on: 'max' },
    `${ready.length} model starts`);
  ctx.startupSamples = { listen, ready, idleRss };
}
