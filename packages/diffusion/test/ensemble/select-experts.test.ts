import { describe, expect, it } from 'vitest';
import {
  type CombineStrategy,
  resolveCombineStrategy,
  selectExperts,
} from '../../src/ensemble/select-experts.js';

describe('selectExperts', () => {
  const probs = [0.1, 0.6, 0.3, 0.5, 0.5, 0, 0, 0, 0];

  it('top-k keeps the k largest, ties to the lower index; k > K keeps all', () => {
    const { selected, weights } = selectExperts(probs, 3, 3, { kind: 'top-k', k: 2 });
    expect(Array.from(selected)).toEqual([0, 1, 1, 1, 1, 0, 1, 1, 0]);
    expect(weights[1]).toBeCloseTo(2 / 3, 12);
    expect(weights[2]).toBeCloseTo(1 / 3, 12);
    // An all-zero row weights its kept experts equally.
    expect(Array.from(weights.slice(6))).toEqual([0.5, 0.5, 0]);
    expect(Array.from(selectExperts(probs, 3, 3, { kind: 'top-k', k: 5 }).selected)).toEqual(
      new Array(9).fill(1),
    );
  });

  it('threshold keeps p >= tau plus the argmax; every row sums to 1', () => {
    const { selected, weights } = selectExperts(probs, 3, 3, { kind: 'threshold', tau: 0.5 });
    expect(Array.from(selected)).toEqual([0, 1, 0, 1, 1, 0, 1, 0, 0]);
    for (let b = 0; b < 3; b++) {
      expect(weights[3 * b]! + weights[3 * b + 1]! + weights[3 * b + 2]!).toBeCloseTo(1, 12);
    }
  });

  it('rejects NaN or negative probabilities and a wrong count', () => {
    expect(() => selectExperts([0.5, Number.NaN], 1, 2, { kind: 'full' })).toThrow(/\[0, 1\]/);
    expect(() => selectExperts([1.5, -0.5], 1, 2, { kind: 'full' })).toThrow(/>= 0/);
    expect(() => selectExperts([1], 1, 2, { kind: 'full' })).toThrow(/expected 1 x 2/);
  });

  it('strategies are checked: unknown kinds list the valid ones', () => {
    expect(resolveCombineStrategy({ kind: 'threshold', tau: 0.2 })).toEqual({
      kind: 'threshold',
      tau: 0.2,
    });
    expect(() => resolveCombineStrategy({ kind: 'top1' } as unknown as CombineStrategy)).toThrow(
      /valid: full, threshold, top-k/,
    );
    expect(() => resolveCombineStrategy({ kind: 'threshold', tau: 2 })).toThrow(/tau/);
    expect(() => resolveCombineStrategy({ kind: 'top-k', k: 1.5 })).toThrow(/k/);
  });
});
