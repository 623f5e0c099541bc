import { describe, expect, it } from 'vitest';
import { fmLogSnr, fmTimeForLogSnr, fmVpScale } from '../../src/schedules/fm-log-snr.js';

describe('FM log SNR', () => {
  it('is 2 log((1 - t) / t): 0 at t = 1/2, infinite at the ends, decreasing', () => {
    expect(fmLogSnr(0.5)).toBe(0);
    expect(fmLogSnr(0.2)).toBeCloseTo(2 * Math.log(4), 14);
    expect(fmLogSnr(0)).toBe(Infinity);
    expect(fmLogSnr(1)).toBe(-Infinity);
    for (let t = 0.01; t < 0.99; t += 0.01) expect(fmLogSnr(t + 0.01)).toBeLessThan(fmLogSnr(t));
    expect(() => fmLogSnr(1.5)).toThrow(RangeError);
  });

  it('fmTimeForLogSnr inverts it', () => {
    for (const t of [1e-4, 0.02, 0.3, 0.5, 0.77, 0.98, 0.9999]) {
      expect(fmTimeForLogSnr(fmLogSnr(t))).toBeCloseTo(t, 14);
    }
    expect(fmTimeForLogSnr(Infinity)).toBe(0);
    expect(fmTimeForLogSnr(-Infinity)).toBe(1);
  });

  it('the VP rescaling gives abar / (1 - abar) = SNR_FM', () => {
    for (const t of [0.1, 0.5, 0.9]) {
      const c = fmVpScale(t);
      const abar = ((1 - t) / c) ** 2;
      const noise = (t / c) ** 2;
      expect(abar + noise).toBeCloseTo(1, 14);
      expect(Math.log(abar / noise)).toBeCloseTo(fmLogSnr(t), 12);
    }
  });
});
