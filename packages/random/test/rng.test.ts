import { describe, expect, it } from 'vitest';
import { deriveSeed } from '../src/derive-seed.js';
import { createRng, sampleIndices, shuffleInPlace } from '../src/rng.js';

describe('createRng', () => {
  it('is deterministic for a seed and differs across seeds', () => {
    const a = createRng(7);
    const b = createRng(7);
    const c = createRng(8);
    const xs = Array.from({ length: 5 }, () => a.next());
    expect(Array.from({ length: 5 }, () => b.next())).toEqual(xs);
    expect(Array.from({ length: 5 }, () => c.next())).not.toEqual(xs);
  });

  it('draws uniform integers in range and roughly standard normals', () => {
    const rng = createRng(1);
    const counts = new Array(4).fill(0);
    for (let i = 0; i < 4000; i++) counts[rng.int(4)]++;
    for (const c of counts) expect(c).toBeGreaterThan(900);
    let s = 0;
    let s2 = 0;
    for (let i = 0; i < 20000; i++) {
      const z = rng.normal();
      s += z;
      s2 += z * z;
    }
    expect(Math.abs(s / 20000)).toBeLessThan(0.05);
    expect(Math.abs(s2 / 20000 - 1)).toBeLessThan(0.05);
  });
});

describe('deriveSeed', () => {
  it('separates salts and is stable', () => {
    expect(deriveSeed(1, 'a', 2)).toBe(deriveSeed(1, 'a', 2));
    expect(deriveSeed(1, 'a')).not.toBe(deriveSeed(1, 'b'));
    expect(deriveSeed(1, 0)).not.toBe(deriveSeed(1, 1));
    expect(deriveSeed(1)).not.toBe(deriveSeed(2 ** 32 + 1));
  });
});

describe('sampleIndices / shuffleInPlace', () => {
  it('samples distinct sorted indices', () => {
    const s = sampleIndices(1000, 100, createRng(3));
    expect(s.length).toBe(100);
    expect(new Set(s).size).toBe(100);
    for (let i = 1; i < s.length; i++) expect(s[i]).toBeGreaterThan(s[i - 1]);
    expect(s[s.length - 1]).toBeLessThan(1000);
    expect([...sampleIndices(5, 9, createRng(3))]).toEqual([0, 1, 2, 3, 4]);
  });

  it('shuffles into a permutation', () => {
    const v = Array.from({ length: 50 }, (_, i) => i);
    shuffleInPlace(v, createRng(4));
    expect([...v].sort((a, b) => a - b)).toEqual(Array.from({ length: 50 }, (_, i) => i));
    expect(v).not.toEqual(Array.from({ length: 50 }, (_, i) => i));
  });
});
