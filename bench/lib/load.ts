// The load generator: plain node:http with a keep-alive Agent sized for the concurrency (one
// socket per concurrent request, reused), callbacks rather than promise chains on the hot path,
// and no parsing beyond counting SSE event terminators. Timestamps are performance.now() (µs).
import { Agent, request } from 'node:http';
import { performance } from 'node:perf_hooks';

/** A request (or, for a stream, a gap between bytes) that takes longer than this fails: the run
 * stays bounded in time even if something hangs. */
const REQUEST_TIMEOUT_MS = 30_000;

export function keepAliveAgent(concurrency: number): Agent {
  return new Agent({ keepAlive: true, maxSockets: concurrency, maxFreeSockets: concurrency, scheduling: 'lifo' });
}

export interface Reply {
  readonly status: number;
  readonly bytes: number;
}

/** One POST with a JSON body; resolves when the whole answer has arrived. */
export function post(agent: Agent, port: number, path: string, body: Buffer): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request({
      agent, host: '127.0.0.1', port, path, method: 'POST',
      headers: { 'content-type': 'application/json', 'content-length': body.length },
    }, (res) => {
      let bytes = 0;
      res.on('data', (c: Buffer) => {
        bytes += c.length;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, bytes }));
      res.on('error', reject);
    });
    req.setTimeout(REQUEST_TIMEOUT_MS, () => req.destroy(new Error(`no answer within ${REQUEST_TIMEOUT_MS / 1000} s`)));
    req.on('error', reject);
    req.end(body);
  });
}

export interface ClosedLoopResult {
  /** Latency of each request that ended inside the measured window, ms. */
  readonly latencies: number[];
  /** Requests ended inside the window per second. */
  readonly throughput: number;
  readonly errors: number;
  readonly firstError: string | null;
}

/** `concurrency` clients, each sending its next request as soon as the previous answer ended,
 * for warmupMs (not measured: connections are opened then) plus durationMs (measured). */
export async function closedLoop(opts: {
  port: number;
  path: string;
  body: Buffer;
  concurrency: number;
  warmupMs: number;
  durationMs: number;
}): Promise<ClosedLoopResult> {
  const agent = keepAliveAgent(opts.concurrency);
  const t0 = performance.now();
  const from = t0 + opts.warmupMs;
  const until = from + opts.durationMs;
  const latencies: number[] = [];
  let errors = 0;
  let firstError: string | null = null;
  const client = async (): Promise<void> => {
    while (performance.now() < until) {
      const start = performance.now();
      try {
        const reply = await post(agent, opts.port, opts.path, opts.body);
        const end = performance.now();
        if (reply.status !== 200) {
          errors++;
          firstError ??= `status ${reply.status}`;
        } else if (end >= from && end <= until) {
          latencies.push(end - start);
        }
      } catch (err) {
        errors++;
        firstError ??= (err as Error).message;
      }
    }
  };
  await Promise.all(Array.from({ length: opts.concurrency }, client));
  agent.destroy();
  return { latencies, throughput: latencies.length / (opts.durationMs / 1000), errors, firstError };
}

export interface StreamPlan {
  readonly port: number;
  readonly path: string;
  readonly body: Buffer;
  /** Concurrent clients; client i starts at i * staggerMs and runs its streams back to back. */
  readonly users: number;
  readonly streamsPerUser: number;
  readonly staggerMs: number;
  /** Token events per stream (the chat role chunk precedes them; finish and [DONE] follow). */
  readonly tokens: number;
  /** Measured window, ms after the plan starts: TTFB of streams started in it, gaps of events
   * that arrived in it. */
  readonly windowFromMs: number;
  readonly windowToMs: number;
  /** Called at the window's start and end (for CPU sampling, loop-delay monitoring). */
  readonly onWindow?: (phase: 'start' | 'end') => void;
}

export interface StreamResult {
  /** Request sent → first body byte (the first SSE event), ms, of streams started in the window. */
  readonly ttfb: number[];
  /** Request sent → response headers, ms, same streams. */
  readonly headers: number[];
  /** Time between consecutive events from the role chunk to the last token (one per token),
   * ms, for events that arrived in the window. */
  readonly gaps: number[];
  /** Of those events, how many arrived in the same read as the event before them. */
  readonly sharedReads: number;
  readonly streams: number;
  readonly streamsOk: number;
  /** SSE events received / events the simulator sends for that many streams. */
  readonly eventsOut: number;
  readonly eventsExpected: number;
  readonly firstError: string | null;
}

const LF = 10;

/** Runs the stream plan. Every stream must be 200 text/event-stream and end with `data: [DONE]`. */
export async function streams(plan: StreamPlan): Promise<StreamResult> {
  const agent = keepAliveAgent(plan.users);
  // chat: role chunk, one chunk per token, finish chunk, [DONE]
  const perStream = plan.tokens + 3;
  const ttfb: number[] = [];
  const headers: number[] = [];
  const gaps: number[] = [];
  let sharedReads = 0;
  let streamsOk = 0;
  let eventsOut = 0;
  let firstError: string | null = null;
  const t0 = performance.now();
  const from = t0 + plan.windowFromMs;
  const to = t0 + plan.windowToMs;
  let windowPhase: 'before' | 'start' | 'end' = 'before';
  const phase = (p: 'start' | 'end'): void => {
    if (windowPhase === 'end' || windowPhase === p) return;
    if (p === 'end' && windowPhase === 'before') plan.onWindow?.('start');
    windowPhase = p;
    plan.onWindow?.(p);
  };
  const timers = [setTimeout(() => phase('start'), plan.windowFromMs), setTimeout(() => phase('end'), plan.windowToMs)];

  const one = (): Promise<void> => new Promise((resolve) => {
    const times = new Float64Array(perStream + 8);
    let events = 0;
    let lastWasLf = false;
    let tail: Buffer = Buffer.alloc(0);
    let firstByte = 0;
    let failed: string | null = null;
    let finished = false;
    const start = performance.now();
    const finish = (): void => {
      if (finished) return;
      finished = true;
      eventsOut += events;
      const done = tail.toString('latin1').endsWith('data: [DONE]\n\n');
      if (failed === null && !done) failed = `stream ended without [DONE] after ${events} events`;
      if (failed === null && events !== perStream) failed = `${events} events, expected ${perStream}`;
      if (failed !== null) {
        firstError ??= failed;
      } else {
        streamsOk++;
      }
      if (start >= from && start <= to && firstByte > 0) ttfb.push(firstByte - start);
      const last = Math.min(events, plan.tokens + 1);
      for (let k = 1; k < last; k++) {
        const t = times[k]!;
        if (t < from || t > to) continue;
        const gap = t - times[k - 1]!;
        gaps.push(gap);
        if (gap === 0) sharedReads++;
      }
      resolve();
    };
    const req = request({
      agent, host: '127.0.0.1', port: plan.port, path: plan.path, method: 'POST',
      headers: { 'content-type': 'application/json', 'content-length': plan.body.length },
    }, (res) => {
      const at = performance.now();
      if (start >= from && start <= to) headers.push(at - start);
      if (res.statusCode !== 200 || !String(res.headers['content-type'] ?? '').startsWith('text/event-stream')) {
        failed = `status ${res.statusCode}, ${String(res.headers['content-type'])}`;
      }
      res.on('data', (chunk: Buffer) => {
        const now = performance.now();
        if (firstByte === 0) firstByte = now;
        // Count "\n\n" event terminators, one across the chunk boundary included.
        if (lastWasLf && chunk[0] === LF) {
          if (events < times.length) times[events] = now;
          events++;
        }
        let i = chunk.indexOf('\n\n');
        while (i >= 0) {
          if (events < times.length) times[events] = now;
          events++;
          i = chunk.indexOf('\n\n', i + 2);
        }
        lastWasLf = chunk[chunk.length - 1] === LF;
        tail = chunk.length >= 16 ? chunk.subarray(chunk.length - 16) : Buffer.concat([tail, chunk]).subarray(-16);
      });
      res.on('end', finish);
      res.on('error', (err) => {
        failed ??= err.message;
      });
      res.on('close', () => {
        if (!res.complete) {
          failed ??= 'connection closed mid-stream';
          finish();
        }
      });
    });
    req.setTimeout(REQUEST_TIMEOUT_MS, () => req.destroy(new Error(`no byte for ${REQUEST_TIMEOUT_MS / 1000} s`)));
    req.on('error', (err) => {
      failed ??= err.message;
      finish();
    });
    req.end(plan.body);
  });

  const user = async (i: number): Promise<void> => {
    await new Promise((r) => setTimeout(r, i * plan.staggerMs));
    for (let s = 0; s < plan.streamsPerUser; s++) await one();
  };
  await Promise.all(Array.from({ length: plan.users }, (_, i) => user(i)));
  for (const t of timers) clearTimeout(t);
  phase('end');
  agent.destroy();
  const streamsTotal = plan.users * plan.streamsPerUser;
  return {
    ttfb, headers, gaps, sharedReads, streams: streamsTotal, streamsOk, eventsOut,
    eventsExpected: streamsTotal * perStream, firstError,
  };
}
