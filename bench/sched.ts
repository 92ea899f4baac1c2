// `npm run bench:sched`: the switch policy against plain first-come-first-served and the old
// fixed 2 s window, on five workloads at three switch costs (issue 11). Every run is replayed
// by the discrete-event simulation of the policy (bench/lib/sched-sim.ts, the real decide());
// the short workloads also run end to end, time-scaled, through the daemon against the SGLang
// simulator. Then the co-residency workloads (issue 12: models placed on GPUs with shares,
// discrete-event only). Writes bench/sched-results.json, bench/sched.svg and the scheduling
// section of bench/RESULTS.md. Options: --e2e-scale F (default 0.2), --no-e2e, --only WORKLOAD,..., --out DIR, --keep (the
// daemons' logs)
// (the traces are read from ../shared/traces, or SGLANGMUX_TRACES).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { keepAliveAgent, post } from './lib/load.js';
import { MuxDaemon, sleep, stopAll } from './lib/procs.js';
import { coResidency, coTable, type CoFigures } from './lib/coresidency.js';
import { simulate } from './lib/sched-sim.js';
import { SLEEP_SHARE, TOKEN_MS, shortWorkloads, simModels, traceWorkload, type Workload } from './lib/sched-workloads.js';
import { percentile } from './lib/stats.js';
import type { PolicySettings } from '../src/policy.js';

const repo = fileURLToPath(new URL('..', import.meta.url));
const COSTS_MS = [300, 2500, 10_000];
const POLICIES = ['fifo', 'fixed2s', 'auto'] as const;
type Policy = (typeof POLICIES)[number];
/** The daemon's default switch timeout is 60 s; the runs use 600 s so that nobody times out. */
const SWITCH_TIMEOUT_MS = 600_000;
/** The daemon's default --gpu-memory-budget. */
const GPU_BUDGET = 0.9;

interface Figures {
  readonly workload: string;
  readonly costMs: number;
  readonly policy: Policy;
  readonly how: 'des' | 'e2e';
  readonly requests: number;
  readonly errors: number;
  /** First request sent to last answered, s (e2e: scaled back to real time). */
  readonly timeS: number;
  readonly p50LatencyMs: number;
  readonly p99LatencyMs: number;
  readonly p50WaitMs: number;
  readonly p99WaitMs: number;
  readonly switches: number;
  /** Share of the time at least one generation ran. */
  readonly servingShare: number;
}

function settings(policy: Policy, scale: number): PolicySettings {
  const fixedWindowMs = policy === 'fifo' ? 0 : policy === 'fixed2s' ? 2000 * scale : null;
  return { fixedWindowMs, maxWindowMs: (SWITCH_TIMEOUT_MS * scale) / 2, idleSleepMs: null, gpuBudget: GPU_BUDGET };
}

/** Length of the union of intervals. */
function covered(intervals: [number, number][]): number {
  intervals.sort((a, b) => a[0] - b[0]);
  let total = 0;
  let end = -Infinity;
  for (const [s, e] of intervals) {
    if (e <= end) continue;
    total += e - Math.max(s, end);
    end = e;
  }
  return total;
}

interface Sample { sentAt: number; doneAt: number; waitMs: number; serviceMs: number }

function figures(base: Omit<Figures, 'requests' | 'timeS' | 'p50LatencyMs' | 'p99LatencyMs' | 'p50WaitMs' | 'p99WaitMs' | 'servingShare'>, samples: Sample[], servingMs: number | null): Figures {
  const lat = samples.map((s) => s.doneAt - s.sentAt);
  const wait = samples.map((s) => s.waitMs);
  const first = Math.min(...samples.map((s) => s.sentAt));
  const last = Math.max(...samples.map((s) => s.doneAt));
  const serving = servingMs ?? covered(samples.map((s) => [s.doneAt - s.serviceMs, s.doneAt]));
  return {
    ...base, requests: samples.length, timeS: (last - first) / 1000,
    p50LatencyMs: percentile(lat, 50), p99LatencyMs: percentile(lat, 99),
    p50WaitMs: percentile(wait, 50), p99WaitMs: percentile(wait, 99), servingShare: serving / (last - first),
  };
}

function runDes(w: Workload, costMs: number, policy: Policy): Figures {
  const r = simulate(simModels(w, costMs), w.clients, settings(policy, 1));
  const samples = r.requests.map((q) => ({ sentAt: q.sentAt, doneAt: q.doneAt, waitMs: q.admittedAt - q.sentAt, serviceMs: q.doneAt - q.admittedAt }));
  return figures({ workload: w.name, costMs, policy, how: 'des', errors: 0, switches: r.switches }, samples, r.servingMs);
}

/** The same clients against the daemon and simulated servers, every duration times `scale`;
 * figures are scaled back. Wait = latency minus the nominal generation time. */
async function runE2e(w: Workload, costMs: number, policy: Policy, scale: number, dir: string): Promise<Figures> {
  const knobs = {
    SGLANG_SIM_STARTUP_MS: '50', SGLANG_SIM_WARMUP_MS: '20', SGLANG_SIM_TOKEN_MS: String(TOKEN_MS * scale),
    SGLANG_SIM_RELEASE_MS: String(SLEEP_SHARE * costMs * scale), SGLANG_SIM_RESUME_MS: String((1 - SLEEP_SHARE) * costMs * scale),
  };
  const fixed = settings(policy, scale).fixedWindowMs;
  const daemon = await MuxDaemon.start({
    bundle: join(repo, 'dist', 'sglangmux.mjs'), dir: join(dir, `${w.name}-${costMs}-${policy}`),
    models: w.models.map((name) => ({ name, knobs })),
    args: ['--model-switch-timeout-secs', String(SWITCH_TIMEOUT_MS / 1000), ...(fixed === null ? [] : ['--min-active-secs', String(fixed / 1000)])],
  });
  try {
    await daemon.waitListening();
    await daemon.waitBooted();
    const agent = keepAliveAgent(w.clients.length);
    const samples: Sample[] = [];
    let errors = 0;
    const t0 = performance.now();
    await Promise.all(w.clients.map(async (c) => {
      await sleep(c.startAt * scale);
      for (const s of c.steps) {
        await sleep(s.thinkMs * scale);
        const body = Buffer.from(JSON.stringify({ model: s.model, max_tokens: Math.round(s.serviceMs / TOKEN_MS), messages: [{ role: 'user', content: 'hi' }] }));
        const sent = performance.now();
        const reply = await post(agent, daemon.port, '/v1/chat/completions', body).catch(() => ({ status: 0, bytes: 0 }));
        const done = performance.now();
        if (reply.status !== 200) errors++;
        const latency = (done - sent) / scale;
        samples.push({ sentAt: (sent - t0) / scale, doneAt: (done - t0) / scale, waitMs: Math.max(0, latency - s.serviceMs), serviceMs: s.serviceMs });
      }
    }));
    agent.destroy();
    const switches = (daemon.log().match(/: awake \(resumed in/g) ?? []).length;
    return figures({ workload: w.name, costMs, policy, how: 'e2e', errors, switches }, samples, null);
  } finally {
    await daemon.stop();
  }
}

// ---- report ----

const LABEL: Record<Policy, string> = { fifo: 'FIFO', fixed2s: 'fixed 2 s', auto: 'policy' };
const COLOR: Record<Policy, string> = { fifo: '#7570b3', fixed2s: '#1b9e77', auto: '#d95f02' };
const s1 = (ms: number): string => (ms / 1000).toFixed(ms < 10_000 ? 2 : 1);
const pc = (x: number): string => `${(100 * x).toFixed(0)} %`;

function table(rows: Figures[]): string {
  const head = '| workload | switch cost | policy | time (s) | p50 / p99 latency (s) | p50 / p99 wait (s) | switches | serving |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n';
  return head + rows.map((f) =>
    `| ${f.workload} | ${f.costMs / 1000} s | ${LABEL[f.policy]} | ${f.timeS.toFixed(1)} | ${s1(f.p50LatencyMs)} / ${s1(f.p99LatencyMs)} | ${s1(f.p50WaitMs)} / ${s1(f.p99WaitMs)} | ${f.switches} | ${pc(f.servingShare)} |`,
  ).join('\n') + '\n';
}

/** The targets of issue 11, checked on the discrete-event figures. */
function targets(des: Figures[]): string {
  const out: string[] = [];
  const find = (w: string, c: number, p: Policy): Figures => des.find((f) => f.workload === w && f.costMs === c && f.policy === p)!;
  for (const w of [...new Set(des.map((f) => f.workload))]) {
    for (const c of COSTS_MS) {
      const a = find(w, c, 'auto');
      const f = find(w, c, 'fifo');
      const misses: string[] = [];
      if (a.timeS > f.timeS * 1.001) misses.push(`time ${a.timeS.toFixed(1)} s > FIFO ${f.timeS.toFixed(1)} s`);
      if (a.p99LatencyMs > 1.1 * f.p99LatencyMs) misses.push(`p99 ${s1(a.p99LatencyMs)} s > 1.1 × FIFO ${s1(f.p99LatencyMs)} s (${(a.p99LatencyMs / f.p99LatencyMs).toFixed(2)}×)`);
      if (a.switches > f.switches) misses.push(`switches ${a.switches} > FIFO ${f.switches}`);
      if ((w === 'pingpong' || w === 'trace') && c >= 2500) {
        if (a.switches > 0.5 * f.switches) misses.push(`switches ${a.switches} > 0.5 × FIFO ${f.switches}`);
        if (a.servingShare < 1.5 * f.servingShare) misses.push(`serving ${pc(a.servingShare)} < 1.5 × FIFO ${pc(f.servingShare)}`);
      }
      if (w === 'interactive' && a.p50WaitMs > c + 50) misses.push(`switching request waits ${a.p50WaitMs.toFixed(0)} ms > switch ${c} ms + 50 ms`);
      out.push(`| ${w} | ${c / 1000} s | ${misses.length ? `miss: ${misses.join('; ')}` : 'met'} |`);
    }
  }
  return '| workload | switch cost | targets (policy vs FIFO, discrete-event figures) |\n| --- | --- | --- |\n' + out.join('\n') + '\n';
}

/** One panel per workload: p99 latency (log scale) by switch cost, one line per policy. */
function svg(des: Figures[]): string {
  const workloads = [...new Set(des.map((f) => f.workload))];
  const PW = 230, PH = 200, M = { l: 52, t: 30, b: 36, r: 10 };
  const width = workloads.length * PW;
  const height = PH + 30;
  const parts: string[] = [];
  workloads.forEach((w, i) => {
    const rows = des.filter((f) => f.workload === w);
    const vals = rows.map((f) => f.p99LatencyMs / 1000);
    const lo = Math.log10(Math.min(...vals) * 0.8);
    const hi = Math.log10(Math.max(...vals) * 1.25);
    const x0 = i * PW + M.l;
    const iw = PW - M.l - M.r;
    const ih = PH - M.t - M.b;
    const X = (k: number): number => x0 + (iw * (k + 0.5)) / COSTS_MS.length;
    const Y = (v: number): number => M.t + ih * (1 - (Math.log10(v) - lo) / (hi - lo));
    parts.push(`<text x="${x0 + iw / 2}" y="16" text-anchor="middle" font-weight="bold">${w}</text>`);
    parts.push(`<rect x="${x0}" y="${M.t}" width="${iw}" height="${ih}" fill="none" stroke="#999"/>`);
    for (let e = Math.floor(lo); e <= Math.ceil(hi); e++) {
      for (const m of [1, 2, 5]) {
        const v = m * 10 ** e;
        if (Math.log10(v) < lo || Math.log10(v) > hi) continue;
        parts.push(`<line x1="${x0}" x2="${x0 + iw}" y1="${Y(v).toFixed(1)}" y2="${Y(v).toFixed(1)}" stroke="#eee"/><text x="${x0 - 4}" y="${(Y(v) + 4).toFixed(1)}" text-anchor="end" font-size="10">${+v.toPrecision(2)}</text>`);
      }
    }
    COSTS_MS.forEach((c, k) => parts.push(`<text x="${X(k)}" y="${M.t + ih + 14}" text-anchor="middle" font-size="10">${c / 1000} s</text>`));
    for (const p of POLICIES) {
      const pts = COSTS_MS.map((c, k) => `${X(k).toFixed(1)},${Y(rows.find((f) => f.costMs === c && f.policy === p)!.p99LatencyMs / 1000).toFixed(1)}`);
      parts.push(`<polyline points="${pts.join(' ')}" fill="none" stroke="${COLOR[p]}" stroke-width="2"/>`);
      for (const pt of pts) parts.push(`<circle cx="${pt.split(',')[0]}" cy="${pt.split(',')[1]}" r="3" fill="${COLOR[p]}"/>`);
    }
    parts.push(`<text x="${x0 + iw / 2}" y="${M.t + ih + 28}" text-anchor="middle" font-size="10">switch cost</text>`);
  });
  parts.push(`<text x="12" y="${M.t + 80}" font-size="11" transform="rotate(-90 12 ${M.t + 80})" text-anchor="middle">p99 latency (s, log)</text>`);
  POLICIES.forEach((p, k) => parts.push(`<rect x="${20 + k * 110}" y="${PH + 10}" width="12" height="12" fill="${COLOR[p]}"/><text x="${36 + k * 110}" y="${PH + 20}" font-size="11">${LABEL[p]}</text>`));
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/>${parts.join('')}</svg>\n`;
}

const BEGIN = '<!-- bench:sched begin -->';
const END = '<!-- bench:sched end -->';

function section(des: Figures[], e2e: Figures[], scale: number, workloads: Workload[], commit: string, co: { titles: string[]; rows: CoFigures[] }): string {
  const titles = workloads.map((w) => `- **${w.name}**: ${w.title}${w.endToEnd ? '' : ' (discrete-event only)'}`).join('\n');
  const agree = e2e.map((e) => {
    const d = des.find((f) => f.workload === e.workload && f.costMs === e.costMs && f.policy === e.policy)!;
    return `| ${e.workload} | ${e.costMs / 1000} s | ${LABEL[e.policy]} | ${d.timeS.toFixed(1)} / ${e.timeS.toFixed(1)} | ${s1(d.p99LatencyMs)} / ${s1(e.p99LatencyMs)} | ${d.switches} / ${e.switches} | ${pc(d.servingShare)} / ${pc(e.servingShare)} | ${e.errors} |`;
  }).join('\n');
  return `${BEGIN}
## Scheduling: the switch policy against FIFO and the old fixed 2 s window (issue 11)

\`npm run bench:sched\` at commit ${commit}, ${new Date().toISOString().slice(0, 10)}. **policy**: the default
(src/policy.ts, docs/scheduling.md); **FIFO**: \`--min-active-secs 0\` (switch as soon as the awake
model's in-flight requests end whenever another model has waiters, longest waiter first);
**fixed 2 s**: \`--min-active-secs 2\` (the old default). A switch costs 40 % sleep and 60 % wake
of the stated cost; generation takes ${TOKEN_MS} ms per token, batched. Workloads:

${titles}

The trace: \`../shared/traces/\` (code model + chat model), the whole hour both traces overlap,
replayed at real speed (no time compression), \`GeneratedTokens\` as \`max_tokens\`.

Discrete-event simulation of the real policy code (every workload, every cost):

${table(des)}
![p99 latency by switch cost](sched.svg)

Targets of the issue, checked on the figures above:

${targets(des)}
End to end through the daemon and the SGLang simulator (the short workloads, every duration
scaled by ${scale}; figures scaled back; wait is latency minus the nominal generation time, and
the serving share is derived the same way), next to the discrete-event figures
(discrete-event / end-to-end):

| workload | switch cost | policy | time (s) | p99 latency (s) | switches | serving | errors |
| --- | --- | --- | --- | --- | --- | --- | --- |
${agree}

### Several models awake where they fit (issue 12)

The policy above with models placed on GPUs (src/fit.ts, docs/scheduling.md "Several models
awake", budget ${GPU_BUDGET}), discrete-event, against the same traffic with one model awake per
host (every model taking the one GPU whole: sglangmux before it planned by placement). Wakes and
sleeps after the bootstrap (which leaves the last model on each GPU awake).

${co.titles.join('\n')}

${coTable(co.rows)}
${END}
`;
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const opt = (name: string): string | undefined => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const scale = Number(opt('--e2e-scale') ?? '0.2');
  const out = opt('--out') ?? join(repo, 'bench');
  const traces = join(repo, '..', 'shared', 'traces');
  const only = opt('--only')?.split(',');
  const workloads = [...shortWorkloads(), traceWorkload(process.env['SGLANGMUX_TRACES'] ?? traces)]
    .filter((w) => !only || only.includes(w.name));
  const co = coResidency(COSTS_MS, settings('auto', 1));
  console.log(coTable(co.rows));
  const des: Figures[] = [];
  for (const w of workloads) for (const c of COSTS_MS) for (const p of POLICIES) des.push(runDes(w, c, p));
  console.log(table(des));
  const e2e: Figures[] = [];
  if (!argv.includes('--no-e2e')) {
    const dir = mkdtempSync(join(tmpdir(), 'sglangmux-sched-'));
    try {
      for (const w of workloads.filter((x) => x.endToEnd)) {
        for (const c of COSTS_MS) {
          for (const p of POLICIES) {
            const f = await runE2e(w, c, p, scale, dir);
            console.log(`e2e ${w.name} ${c} ms ${p}: ${f.timeS.toFixed(1)} s, p99 ${s1(f.p99LatencyMs)} s, ${f.switches} switches, ${f.errors} errors`);
            e2e.push(f);
          }
        }
      }
    } finally {
      await stopAll();
      if (argv.includes('--keep')) console.log(`kept ${dir}`);
      else rmSync(dir, { recursive: true, force: true });
    }
  }
  writeFileSync(join(out, 'sched-results.json'), JSON.stringify({ scale, des, e2e, coResidency: co.rows }, null, 1) + '\n');
  writeFileSync(join(out, 'sched.svg'), svg(des));
  const resultsPath = join(out, 'RESULTS.md');
  let results = '';
  try {
    results = readFileSync(resultsPath, 'utf8');
  } catch {
    // a fresh output directory
  }
  const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: repo, encoding: 'utf8' }).trim();
  const text = section(des, e2e, scale, workloads, commit, co);
  const b = results.indexOf(BEGIN);
  const e = results.indexOf(END);
  results = b >= 0 && e > b ? results.slice(0, b) + text + results.slice(e + END.length + 1) : `${results.trimEnd()}\n\n${text}`;
  writeFileSync(resultsPath, results);
  console.log(`wrote ${resultsPath}, sched.svg, sched-results.json`);
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.stack : String(err));
  process.exitCode = 1;
});
