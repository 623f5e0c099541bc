import { describe, expect, it } from 'vitest';
import { Backoff } from '../src/backoff.js';

describe('Backoff', () => {
  it('doubles its ceiling up to the cap, with full jitter, and resets', () => {
    const top = new Backoff(250, 15_000, () => 0.999999);
    const ceilings = Array.from({ length: 10 }, () => top.next());
    expect(ceilings.slice(0, 7)).toEqual([249, 499, 999, 1999, 3999, 7999, 14_999]);
    expect(ceilings.slice(7).every((d) => d === 14_999)).toBe(true);
    top.reset();
    expect(top.next()).toBe(249);

    const bottom = new Backoff(250, 15_000, () => 0);
    expect([bottom.next(), bottom.next()]).toEqual([0, 0]);

    const random = new Backoff();
    for (let i = 0; i < 200; i++) {
      const d = random.next();
      expect(d).toBeGreaterThanOrEqual(0);
      expect(d).toBeLessThan(15_000);
    }
  });
});
