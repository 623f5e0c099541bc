import { describe, expect, it } from 'vitest';
import {
  maxExpertsPerSample,
  ROUTING_NAMES,
  routingStrategy,
  selectExperts,
} from '../../src/ensemble/select-experts.js';

describe('routing strategies through one registry', () => {
  const params = { k: 2, tau: 0.3 };

  it('every routing name of the protocol maps to a strategy', () => {
    expect([...ROUTING_NAMES].sort()).toEqual(['full', 'threshold', 'top-1', 'top-k']);
    expect(routingStrategy('top-1', params)).toEqual({ kind: 'top-k', k: 1 });
    expect(routingStrategy('top-k', params)).toEqual({ kind: 'top-k', k: 2 });
    expect(routingStrategy('full', params)).toEqual({ kind: 'full' });
    expect(routingStrategy('threshold', params)).toEqual({ kind: 'threshold', tau: 0.3 });
  });

  it('charges the most experts a sample can evaluate', () => {
    expect(maxExpertsPerSample(routingStrategy('top-1', params), 4)).toBe(1);
    expect(maxExpertsPerSample(routingStrategy('top-k', { k: 9, tau: 0 }), 4)).toBe(4);
    expect(maxExpertsPerSample(routingStrategy('full', params), 4)).toBe(4);
    expect(maxExpertsPerSample(routingStrategy('threshold', params), 4)).toBe(4);
    // The charge is an upper bound of what selection keeps.
    const probs = [0.4, 0.3, 0.2, 0.1, 0.25, 0.25, 0.25, 0.25];
    for (const name of ROUTING_NAMES) {
      const s = routingStrategy(name, params);
      const { selected } = selectExperts(probs, 2, 4, s);
      for (let b = 0; b < 2; b++) {
        const kept = selected.slice(b * 4, b * 4 + 4).reduce((a, v) => a + v, 0);
        expect(kept).toBeLessThanOrEqual(maxExpertsPerSample(s, 4));
        expect(kept).toBeGreaterThan(0);
      }
    }
  });

  it('unknown names and bad parameters throw, listing the valid ones', () => {
    expect(() => routingStrategy('top-2', params)).toThrow(/valid: full, threshold, top-1, top-k/);
    expect(() => routingStrategy('top-k', { k: 0, tau: 0 })).toThrow(/top-k k/);
    expect(() => routingStrategy('threshold', { k: 1, tau: 2 })).toThrow(/tau/);
  });
});
