// The dashboard's feed of what happened: state changes, switches, their phases and finished
// requests, as the scheduler and the proxy report them. Keeps a bounded history, so a freshly opened page shows
// the recent past, and hands every new event to its subscribers (the SSE route /admin/events).
import type { RequestMetrics } from './metrics.js';
import type { SchedulerObserver } from './scheduler.js';

type Switched = Parameters<SchedulerObserver['switched']>[0];
type Phase = Parameters<SchedulerObserver['phase']>[0];
type StateChanged = Parameters<NonNullable<SchedulerObserver['stateChanged']>>[0];
type RequestEnded = Parameters<RequestMetrics['request']>[0];

/** One event as sent to the page: `seq` counts from 1 in this daemon's life, `t` is when it was
 * reported (ms since the epoch), which for a phase, a switch or a request is when it ended
 * (`ms` earlier it began). */
export type FeedEvent = { readonly seq: number; readonly t: number } & Reported;

type Reported =
  | ({ readonly kind: 'switch' } & Switched)
  | ({ readonly kind: 'phase' } & Phase)
  | ({ readonly kind: 'state' } & StateChanged)
  | ({ readonly kind: 'request' } & RequestEnded);

/** How many of each sort the history keeps: requests are many, and must not push the switches
 * out of a freshly opened page's view. */
const KEEP_LIFECYCLE = 1000;
const KEEP_REQUESTS = 2000;

export class EventFeed {
  private seq = 0;
  private readonly lifecycle: FeedEvent[] = [];
  private readonly requests: FeedEvent[] = [];
  private readonly subscribers = new Set<(e: FeedEvent) => void>();

  switched(e: Switched): void {
    this.add({ kind: 'switch', ...e }, this.lifecycle, KEEP_LIFECYCLE);
  }

  phase(e: Phase): void {
    this.add({ kind: 'phase', ...e }, this.lifecycle, KEEP_LIFECYCLE);
  }

  stateChanged(e: StateChanged): void {
    this.add({ kind: 'state', ...e }, this.lifecycle, KEEP_LIFECYCLE);
  }

  request(e: RequestEnded): void {
    this.add({ kind: 'request', ...e }, this.requests, KEEP_REQUESTS);
  }

  /** The kept events, oldest first. */
  history(): FeedEvent[] {
    return [...this.lifecycle.slice(-KEEP_LIFECYCLE), ...this.requests.slice(-KEEP_REQUESTS)].sort((a, b) => a.seq - b.seq);
  }

  /** Calls `listener` with every event from now on; returns the unsubscribe function. */
  subscribe(listener: (e: FeedEvent) => void): () => void {
    this.subscribers.add(listener);
    return () => this.subscribers.delete(listener);
  }

  private add(e: Reported, kept: FeedEvent[], keep: number): void {
    const event: FeedEvent = { seq: ++this.seq, t: Date.now(), ...e };
    kept.push(event);
    // Trimmed in batches: trimmed per event, the whole history would move on every request.
    if (kept.length >= 2 * keep) kept.splice(0, kept.length - keep);
    for (const listener of this.subscribers) listener(event);
  }
}

/** The scheduler's reports to the metrics, also given to the feed. */
export function schedulerReports(metrics: SchedulerObserver, feed: EventFeed): SchedulerObserver {
  return {
    switched: (e) => {
      metrics.switched(e);
      feed.switched(e);
    },
    phase: (e) => {
      metrics.phase(e);
      feed.phase(e);
    },
    processStarted: (model) => metrics.processStarted(model),
    stateChanged: (e) => feed.stateChanged(e),
  };
}

/** The proxy's reports to the metrics, with each finished request also given to the feed. */
export function requestReports(metrics: RequestMetrics, feed: EventFeed): RequestMetrics {
  return {
    request: (e) => {
      metrics.request(e);
      feed.request(e);
    },
    firstByte: (e) => metrics.firstByte(e),
    upstreamError: (e) => metrics.upstreamError(e),
  };
}
