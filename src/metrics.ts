// Prometheus metrics (GET /metrics), on a registry of our own. The rest of the code reports
// through the small interfaces below: the proxy per request (RequestMetrics), the scheduler per
// switch, phase and process start (SchedulerObserver). Queue depth, in-flight requests and the
// model state are read from the scheduler when scraped, so they are never stale.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { GpuStatus, ModelDetail, ModelState, SchedulerObserver } from './scheduler.js';

export const METRICS_PREFIX = 'sglangmux_';

/** What the proxy reports about one inference request. */
export interface RequestMetrics {
  /** The request ended: `status` is the HTTP status, or for a stream that had already begun
   * (status 200 sent) when it failed, the status of its final error event; 499 when the client
   * left first. */
  request(e: { model: string; route: string; status: number; ms: number }): void;
  /** The first byte of the model's answer was sent to the client (`ms` since the request came). */
  firstByte(e: { model: string; route: string; ms: number }): void;
  /** A forwarded request failed on the upstream side. */
  upstreamError(e: { model: string; kind: UpstreamErrorKind }): void;
}

export type UpstreamErrorKind = 'unreachable' | 'timeout' | 'invalid_response' | 'stream_broken';

/** Every state a model can be in, so each model has a series for each (0 or 1). */
const STATES: readonly ModelState[] = [
  'stopped', 'starting', 'awake', 'draining', 'sleeping', 'asleep', 'waking', 'failed',
];

/** Request durations span a short completion to a long generation behind a cold start. */
const REQUEST_BUCKETS = [0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];
/** Sleep and wake take tens of milliseconds (simulator) to minutes (cold start of a big model). */
const PHASE_BUCKETS = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600];

/** Arbitrary POST /v1/* paths are routed, so the route label is bounded: past this many
 * distinct routes the rest are counted as `other`. */
const MAX_ROUTES = 32;

export class Metrics implements RequestMetrics, SchedulerObserver {
  readonly registry = new Registry();
  private readonly routes = new Set<string>();
  private readonly startedOnce = new Set<string>();

  private readonly requests: Counter<'model' | 'route' | 'status'>;
  private readonly duration: Histogram<'model' | 'route'>;
  private readonly ttfb: Histogram<'model' | 'route'>;
  private readonly upstreamErrors: Counter<'model' | 'kind'>;
  private readonly switches: Counter<'from' | 'to' | 'result'>;
  private readonly switchDuration: Histogram<'to' | 'result'>;
  private readonly phases: Histogram<'model' | 'phase' | 'result'>;
  private readonly restarts: Counter<'model'>;

  /** `details` and `gpus` are read at every scrape (the scheduler's details() and gpuStatus()). */
  constructor(details: () => readonly ModelDetail[], gpus: () => readonly GpuStatus[]) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: METRICS_PREFIX });
    this.requests = new Counter({
      name: `${METRICS_PREFIX}requests_total`,
      help: 'Inference requests for a configured model, by model, route and final status',
      labelNames: ['model', 'route', 'status'],
      registers,
    });
    this.duration = new Histogram({
      name: `${METRICS_PREFIX}request_duration_seconds`,
      help: 'Inference request duration, from arrival to the end of the answer (waiting for the model included)',
      labelNames: ['model', 'route'],
      buckets: REQUEST_BUCKETS,
      registers,
    });
    this.ttfb = new Histogram({
      name: `${METRICS_PREFIX}time_to_first_byte_seconds`,
      help: 'From arrival to the first byte of the model\'s answer sent to the client (waiting for the model included)',
      labelNames: ['model', 'route'],
      buckets: REQUEST_BUCKETS,
      registers,
    });
    this.upstreamErrors = new Counter({
      name: `${METRICS_PREFIX}upstream_errors_total`,
      help: 'Forwarded requests that failed on the model server side, by kind (unreachable, timeout, invalid_response, stream_broken)',
      labelNames: ['model', 'kind'],
      registers,
    });
    this.switches = new Counter({
      name: `${METRICS_PREFIX}switches_total`,
      help: 'Model switches, by the model put to sleep (from, empty if none was awake), the model woken (to) and result (ok, failed, abandoned, skipped)',
      labelNames: ['from', 'to', 'result'],
      registers,
    });
    this.switchDuration = new Histogram({
      name: `${METRICS_PREFIX}switch_duration_seconds`,
      help: 'Duration of a switch (drain, sleep and wake), by target model and result',
      labelNames: ['to', 'result'],
      buckets: PHASE_BUCKETS,
      registers,
    });
    this.phases = new Histogram({
      name: `${METRICS_PREFIX}phase_duration_seconds`,
      help: 'Duration of a model\'s lifecycle phases (drain, sleep, wake, start), by model, phase and result (ok, failed)',
      labelNames: ['model', 'phase', 'result'],
      buckets: PHASE_BUCKETS,
      registers,
    });
    this.restarts = new Counter({
      name: `${METRICS_PREFIX}model_restarts_total`,
      help: 'Starts of a model\'s process after its first one (crash recovery, restarts, stop-and-start switches without the memory saver)',
      labelNames: ['model'],
      registers,
    });

    // Per-model figures read from the scheduler at scrape time.
    const perModel = (name: string, help: string, value: (m: ModelDetail) => number): void => {
      new Gauge({
        name: `${METRICS_PREFIX}${name}`,
        help,
        labelNames: ['model'],
        registers,
        collect() {
          this.reset();
          for (const m of details()) this.set({ model: m.id }, value(m));
        },
      });
    };
    perModel('queue_depth', 'Requests waiting for the model', (m) => m.waiting);
    perModel('queue_oldest_wait_seconds', 'How long the oldest request waiting for the model has waited (0 when none waits)', (m) => (m.oldest_wait_ms ?? 0) / 1000);
    perModel('in_flight_requests', 'Requests being answered by the model', (m) => m.in_flight);
    new Gauge({
      name: `${METRICS_PREFIX}model_state`,
      help: 'The model\'s state: 1 for the current one, 0 for the others (stopped, starting, awake, draining, sleeping, asleep, waking, failed)',
      labelNames: ['model', 'state'],
      registers,
      collect() {
        this.reset();
        for (const m of details()) {
          for (const state of STATES) this.set({ model: m.id, state }, m.state === state ? 1 : 0);
        }
      },
    });

    // Per-GPU figures: what the scheduler plans there, and what nvidia-smi shows.
    const perGpu = (name: string, help: string, value: (g: GpuStatus) => number | null): void => {
      new Gauge({
        name: `${METRICS_PREFIX}${name}`,
        help,
        labelNames: ['gpu'],
        registers,
        collect() {
          this.reset();
          for (const g of gpus()) {
            const v = value(g);
            if (v !== null) this.set({ gpu: String(g.gpu) }, v);
          }
        },
      });
    };
    const MIB = 1024 * 1024;
    perGpu('gpu_planned_share', 'Sum of the --mem-fraction-static shares of the models holding memory on the GPU (a model without one counts 1)', (g) => g.plannedShare);
    perGpu('gpu_memory_used_bytes', 'GPU memory in use, as nvidia-smi last showed it (absent without nvidia-smi)', (g) => (g.usedMb === null ? null : g.usedMb * MIB));
    perGpu('gpu_memory_total_bytes', 'GPU memory, as nvidia-smi shows it (absent without nvidia-smi)', (g) => (g.totalMb === null ? null : g.totalMb * MIB));
  }

  /** The exposition text and its content type. */
  async render(): Promise<{ contentType: string; text: string }> {
    return { contentType: this.registry.contentType, text: await this.registry.metrics() };
  }

  request(e: { model: string; route: string; status: number; ms: number }): void {
    const route = this.route(e.route);
    this.requests.inc({ model: e.model, route, status: String(e.status) });
    this.duration.observe({ model: e.model, route }, e.ms / 1000);
  }

  firstByte(e: { model: string; route: string; ms: number }): void {
    this.ttfb.observe({ model: e.model, route: this.route(e.route) }, e.ms / 1000);
  }

  upstreamError(e: { model: string; kind: UpstreamErrorKind }): void {
    this.upstreamErrors.inc({ model: e.model, kind: e.kind });
  }

  switched(e: { from: string | null; to: string; result: 'ok' | 'failed' | 'abandoned' | 'skipped'; ms: number }): void {
    this.switches.inc({ from: e.from ?? '', to: e.to, result: e.result });
    this.switchDuration.observe({ to: e.to, result: e.result }, e.ms / 1000);
  }

  phase(e: { model: string; phase: 'drain' | 'sleep' | 'wake' | 'start'; ok: boolean; ms: number }): void {
    this.phases.observe({ model: e.model, phase: e.phase, result: e.ok ? 'ok' : 'failed' }, e.ms / 1000);
  }

  processStarted(model: string): void {
    if (this.startedOnce.has(model)) this.restarts.inc({ model });
    else {
      this.startedOnce.add(model);
      this.restarts.inc({ model }, 0); // the series exists from the first start on
    }
  }

  private route(path: string): string {
    if (this.routes.has(path)) return path;
    if (this.routes.size >= MAX_ROUTES) return 'other';
    this.routes.add(path);
    return path;
  }
}
