// The co-residency workloads of `npm run bench:sched` (issue 12): models placed on GPUs with
// shares, replayed by the discrete-event simulation of the real policy, against the same
// traffic with one model awake per host (what sglangmux did before it planned by placement).
import { simulate, type Client, type SimModel } from './sched-sim.js';
import { SLEEP_SHARE, TOKEN_MS } from './sched-workloads.js';
import { percentile } from './stats.js';
import type { PolicySettings } from '../../src/policy.js';

interface Placed {
  readonly name: string;
  readonly gpus: readonly number[];
  readonly share: number | null;
}

interface CoWorkload {
  readonly name: string;
  readonly title: string;
  readonly models: readonly Placed[];
  readonly clients: readonly Client[];
}

export interface CoFigures {
  readonly workload: string;
  readonly costMs: number;
  /** placed: GPUs and shares as declared; one: one model awake per host. */
  readonly plan: 'placed' | 'one';
  readonly requests: number;
  readonly timeS: number;
  readonly p99LatencyMs: number;
  readonly wakes: number;
  readonly sleeps: number;
}

const closedLoop = (model: string, n: number, tokens: number, thinkMs: number): Client =>
  ({ startAt: 0, steps: Array.from({ length: n }, () => ({ model, serviceMs: tokens * TOKEN_MS, thinkMs })) });

function workloads(): CoWorkload[] {
  return [
    {
      name: 'pair-pingpong', title: 'two models at 0.4 on one GPU, two clients ping-ponging, each on its own model, 2 x 200 requests',
      models: ['a', 'b'].map((name) => ({ name, gpus: [0], share: 0.4 })),
      clients: ['a', 'b'].map((m) => closedLoop(m, 200, 10, 2)),
    },
    {
      name: 'pair-interactive', title: 'two models at 0.4 on one GPU, one user alternating them, 300 ms think time, 40 requests',
      models: ['a', 'b'].map((name) => ({ name, gpus: [0], share: 0.4 })),
      clients: [{ startAt: 0, steps: Array.from({ length: 40 }, (_, i) => ({ model: i % 2 ? 'b' : 'a', serviceMs: 20 * TOKEN_MS, thinkMs: 300 })) }],
    },
    {
      name: '4gpu-6models', title: '4 GPUs, 6 models (tp2 over GPUs 0-1 whole; g1 on GPU 1 at 0.4; s1, s2, s3 on GPU 2 at 0.45; g3 on GPU 3 whole), 2 closed-loop clients per model, 30 requests each, 200 ms think time',
      models: [
        { name: 'tp2', gpus: [0, 1], share: null },
        { name: 'g1', gpus: [1], share: 0.4 },
        { name: 's1', gpus: [2], share: 0.45 },
        { name: 's2', gpus: [2], share: 0.45 },
        { name: 's3', gpus: [2], share: 0.45 },
        { name: 'g3', gpus: [3], share: null },
      ],
      clients: ['tp2', 'g1', 's1', 's2', 's3', 'g3'].flatMap((m) => [closedLoop(m, 30, 30, 200), closedLoop(m, 30, 30, 200)]),
    },
  ];
}

function run(w: CoWorkload, costMs: number, plan: 'placed' | 'one', settings: PolicySettings): CoFigures {
  const models: SimModel[] = w.models.map((m) => ({
    name: m.name, sleepMs: SLEEP_SHARE * costMs, wakeMs: (1 - SLEEP_SHARE) * costMs,
    ...(plan === 'placed' ? { gpus: m.gpus, share: m.share } : { gpus: [0], share: null }),
  }));
  const r = simulate(models, w.clients, settings);
  const lat = r.requests.map((q) => q.doneAt - q.sentAt);
  return {
    workload: w.name, costMs, plan, requests: r.requests.length, timeS: r.spanMs / 1000,
    p99LatencyMs: percentile(lat, 99), wakes: r.switches, sleeps: r.sleeps,
  };
}

export function coResidency(costsMs: readonly number[], settings: PolicySettings): { titles: string[]; rows: CoFigures[] } {
  const ws = workloads();
  const rows: CoFigures[] = [];
  for (const w of ws) for (const c of costsMs) for (const plan of ['placed', 'one'] as const) rows.push(run(w, c, plan, settings));
  return { titles: ws.map((w) => `- **${w.name}**: ${w.title}`), rows };
}

/** The markdown table, with the target for the pairs (no switch after both woke). */
export function coTable(rows: readonly CoFigures[]): string {
  const head = '| workload | switch cost | plan | time (s) | p99 latency (s) | wakes | sleeps | target |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n';
  return head + rows.map((f) => {
    const target = f.plan === 'placed' && f.workload.startsWith('pair-')
      ? (f.sleeps === 0 && f.wakes <= 1 ? 'met: no switch after both woke' : `miss: ${f.sleeps} sleeps, ${f.wakes} wakes`)
      : '';
    const label = f.plan === 'placed' ? 'by placement' : 'one per host';
    return `| ${f.workload} | ${f.costMs / 1000} s | ${label} | ${f.timeS.toFixed(1)} | ${(f.p99LatencyMs / 1000).toFixed(2)} | ${f.wakes} | ${f.sleeps} | ${target} |`;
  }).join('\n') + '\n';
}
