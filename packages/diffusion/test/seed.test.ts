import { describe, expect, it } from 'vitest';
import { deriveSeed } from '../src/seed.js';

describe('deriveSeed', () => {
  it('is deterministic, positive, and separates seeds and streams', () => {
    const seen = new Set<number>();
    for (let seed = -50; seed < 50; seed++) {
      for (let stream = 0; stream < 4; stream++) {
        const s = deriveSeed(seed, stream);
        expect(s).toBe(deriveSeed(seed, stream));
        expect(Number.isInteger(s) && s > 0 && s < 2 ** 31).toBe(true);
        seen.add(s);
      }
    }
    expect(seen.size).toBe(400);
    expect(deriveSeed(2 ** 40)).not.toBe(deriveSeed(0));
    expect(() => deriveSeed(0.5)).toThrow(RangeError);
  });
});
