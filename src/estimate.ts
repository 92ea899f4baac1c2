// A moving estimate of a duration (a switch phase, a gap between requests): the policy's view
// of what things cost on this host, kept per model by the scheduler.

/** Weight of each new measurement: the last few switches dominate, one outlier does not. */
const ALPHA = 0.3;

export class MovingEstimate {
  private current: number | null = null;

  constructor(private readonly ceiling = Infinity) {}

  get value(): number | null {
    return this.current;
  }

  add(ms: number): void {
    const v = Math.min(ms, this.ceiling);
    this.current = this.current === null ? v : this.current + ALPHA * (v - this.current);
  }
}
