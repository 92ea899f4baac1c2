// The scheduling benchmark's workloads (bench/sched.ts), as clients of the discrete-event
// simulation; the end-to-end runs send the same requests to the daemon, time-scaled.
import { readFileSync } from 'node:fs';
import type { Client, SimModel, Step } from './sched-sim.js';

/** Simulated decode time per token (the SGLang simulator's pacing in the end-to-end runs, scaled). */
export const TOKEN_MS = 10;
/** A switch's cost split as measured by llmux: the wake takes most of it. */
export const SLEEP_SHARE = 0.4;

export interface Workload {
  readonly name: string;
  readonly title: string;
  readonly models: readonly string[];
  readonly clients: readonly Client[];
  /** Also run end to end against the simulator (the trace is too long for that). */
  readonly endToEnd: boolean;
}

export function simModels(w: Workload, costMs: number): SimModel[] {
  return w.models.map((name) => ({ name, sleepMs: SLEEP_SHARE * costMs, wakeMs: (1 - SLEEP_SHARE) * costMs }));
}

const step = (model: string, tokens: number, thinkMs = 0): Step => ({ model, serviceMs: tokens * TOKEN_MS, thinkMs });

/** The last model of the list is the one the bootstrap leaves awake: workloads start elsewhere. */
export function shortWorkloads(): Workload[] {
  return [
    {
      name: 'interactive', title: 'one user alternating 2 models, 300 ms think time, 20 requests', models: ['a', 'b'], endToEnd: true,
      clients: [{ startAt: 0, steps: Array.from({ length: 20 }, (_, i) => step(i % 2 ? 'b' : 'a', 20, 300)) }],
    },
    {
      name: 'closed16', title: '16 closed-loop clients over 3 models, 240 requests', models: ['a', 'b', 'c'], endToEnd: true,
      clients: Array.from({ length: 16 }, (_, i) => ({ startAt: 0, steps: Array.from({ length: 15 }, () => step(['a', 'b', 'c'][i % 3]!, 10)) })),
    },
    {
      name: 'pingpong', title: 'two clients ping-ponging, each on its own model, 2 x 20 requests', models: ['a', 'b'], endToEnd: true,
      clients: ['a', 'b'].map((m) => ({ startAt: 0, steps: Array.from({ length: 20 }, () => step(m, 10)) })),
    },
    {
      name: 'longgen', title: 'a 30 s generation on one model, 20 short requests for another (1 s think)', models: ['a', 'b'], endToEnd: true,
      clients: [
        { startAt: 0, steps: [step('a', 3000)] },
        { startAt: 0, steps: Array.from({ length: 20 }, () => step('b', 10, 1000)) },
      ],
    },
  ];
}

const stamp = (s: string): number => {
  // `YYYY-MM-DD HH:MM:SS.fffffff` (UTC): milliseconds since the epoch.
  const [date, time] = s.split(' ');
  return Date.parse(`${date}T${time!.slice(0, 12)}Z`);
};

function readTrace(path: string): { at: number; tokens: number }[] {
  return readFileSync(path, 'utf8').trim().split('\n').slice(1).map((line) => {
    const [ts, , generated] = line.split(',');
    return { at: stamp(ts!), tokens: Math.max(1, Number(generated)) };
  });
}

/** Both Azure 2023 traces as a code model and a chat model on one GPU, over the hour they
 * overlap, at real speed (no compression); GeneratedTokens as max_tokens. Each request is its own
 * client (open loop: arrivals do not wait for answers). */
export function traceWorkload(dir: string): Workload {
  const code = readTrace(`${dir}/azure-llm-2023-code.csv`);
  const chat = readTrace(`${dir}/azure-llm-2023-conv.csv`);
  const start = Math.max(code[0]!.at, chat[0]!.at);
  const end = Math.min(code.at(-1)!.at, chat.at(-1)!.at);
  const clients: Client[] = [];
  for (const [model, rows] of [['code', code], ['chat', chat]] as const) {
    for (const r of rows) if (r.at >= start && r.at <= end) clients.push({ startAt: r.at - start, steps: [step(model, r.tokens)] });
  }
  const minutes = Math.round((end - start) / 60_000);
  return {
    name: 'trace', title: `Azure LLM 2023 code + conversation traces, ${minutes} min overlap at real speed, ${clients.length} requests`,
    models: ['code', 'chat'], clients, endToEnd: false,
  };
}
