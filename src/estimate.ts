// A moving estimate of a duration (a switch phase, a gap between requests): the policy's view
// of what things cost on this host, kept per model by the scheduler.

/** Weight of each new measurement: the last few switches dominate, one outlier does not. */
const ALPHA = 0.3;

export class MovingEstimate {
  private current: number | null = null;
  /** The value is a seed (e.g. a cold start standing in for a resume): the first real
   * measurement replaces it instead of being averaged with it. */
  private seeded = false;

  constructor(private readonly ceiling = Infinity) {}

  get value(): number | null {
    return this.current;
  }

  /** A first guess, used only until something is measured. */
  seed(ms: number): void {
    if (this.current !== null) return;
    this.current = Math.min(ms, this.ceiling);
    this.seeded = true;
  }

  add(ms: number): void {
    const v = Math.min(ms, this.ceiling);
    this.current = this.current === null || this.seeded ? v : this.current + ALPHA * (v - this.current);
    this.seeded = false;
  }
}
