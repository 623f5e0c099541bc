/**
 * Exponential backoff with full jitter (a uniform delay in [0, min(cap, base * 2^attempt))), so
 * hundreds of workers that lost the same coordinator do not reconnect in lockstep.
 */
export class Backoff {
  private attempt = 0;

  constructor(
    readonly baseMs = 250,
    readonly capMs = 15_000,
    private readonly random: () => number = Math.random,
  ) {}

  /** The delay before the next attempt; each call doubles the ceiling up to the cap. */
  next(): number {
    const ceiling = Math.min(this.capMs, this.baseMs * 2 ** this.attempt);
    if (ceiling < this.capMs) this.attempt++;
    return Math.floor(this.random() * ceiling);
  }

  /** After a success: start again from the base delay. */
  reset(): void {
    this.attempt = 0;
  }

  get attempts(): number {
    return this.attempt;
  }
}
