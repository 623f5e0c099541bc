import { describe, expect, it } from 'vitest';
import { deriveSeed } from '../src/derive-seed.js';

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

describe('deriveSeed salts', () => {
  it('takes integer and string salts in order; one integer salt is the stream', () => {
    expect(deriveSeed(5)).toBe(deriveSeed(5, 0));
    expect(deriveSeed(5, 'kmeans++')).not.toBe(deriveSeed(5, 'kmeans-sample'));
    expect(deriveSeed(5, 'coarse', 1)).not.toBe(deriveSeed(5, 'coarse', 2));
    expect(deriveSeed(5, 'a', 'b')).not.toBe(deriveSeed(5, 'b', 'a'));
    for (const s of [deriveSeed(5, 'batch', 3), deriveSeed(-7, 'x'), deriveSeed(2 ** 40, 9, 'y')])
      expect(Number.isInteger(s) && s > 0 && s < 2 ** 31).toBe(true);
  });

  it('refuses seeds and salts that are not safe integers (or strings)', () => {
    expect(() => deriveSeed(Number.NaN)).toThrow(RangeError);
    expect(() => deriveSeed(1, 0.5)).toThrow(/salts/);
    expect(() => deriveSeed(1, Number.POSITIVE_INFINITY)).toThrow(/salts/);
  });
});
