import { describe, expect, it } from 'vitest';
import { COSINE_MAX_BETA, cosineAlphaBar } from '../../src/schedules/ddpm-cosine.js';
import {
  createDdpmSchedule,
  DdpmSchedule,
  type DdpmScheduleConfig,
} from '../../src/schedules/ddpm-schedule.js';

const configs: DdpmScheduleConfig[] = [{ kind: 'cosine' }, { kind: 'linear' }];

describe('DdpmSchedule invariants', () => {
  for (const config of configs) {
    const schedule = createDdpmSchedule(config);
    it(`${config.kind}: abar is strictly decreasing in (0, 1), betas in (0, 0.999]`, () => {
      const { alphasCumprod: abar, betas } = schedule;
      expect(abar).toBeInstanceOf(Float64Array);
      expect(abar.length).toBe(1000);
      expect(betas.length).toBe(1000);
      for (let n = 0; n < 1000; n++) {
        expect(abar[n]).toBeGreaterThan(0);
        expect(abar[n]).toBeLessThan(1);
        expect(betas[n]).toBeGreaterThan(0);
        expect(betas[n]).toBeLessThanOrEqual(COSINE_MAX_BETA);
        if (n > 0) expect(abar[n]).toBeLessThan(abar[n - 1]!);
      }
    });

    it(`${config.kind}: log SNR is strictly decreasing, also at fractional steps`, () => {
      let previous = Infinity;
      for (let n = 0; n <= 999; n += 0.25) {
        const l = schedule.logSnr(n);
        expect(l).toBeLessThan(previous);
        previous = l;
      }
      expect(schedule.logSnr(10)).toBeCloseTo(
        Math.log(schedule.alphasCumprod[10]! / (1 - schedule.alphasCumprod[10]!)),
        12,
      );
    });

    it(`${config.kind}: fractional log SNR interpolates linearly; alphaBar is its sigmoid`, () => {
      const l10 = schedule.logSnr(10);
      const l11 = schedule.logSnr(11);
      expect(schedule.logSnr(10.25)).toBeCloseTo(0.75 * l10 + 0.25 * l11, 12);
      expect(schedule.alphaBar(10.25)).toBeCloseTo(1 / (1 + Math.exp(-schedule.logSnr(10.25))), 14);
      expect(schedule.alphaBar(10)).toBe(schedule.alphasCumprod[10]);
      expect(() => schedule.logSnr(-0.5)).toThrow(RangeError);
      expect(() => schedule.logSnr(999.5)).toThrow(RangeError);
    });

    it(`${config.kind}: stepForLogSnr inverts logSnr at integer and fractional steps`, () => {
      for (let n = 0; n < 1000; n++) {
        expect(Math.abs(schedule.stepForLogSnr(schedule.logSnr(n)) - n)).toBeLessThan(1e-9);
      }
      for (const n of [0.5, 3.3, 17.77, 250.125, 498.9, 998.01]) {
        expect(Math.abs(schedule.stepForLogSnr(schedule.logSnr(n)) - n)).toBeLessThan(1e-9);
      }
    });

    it(`${config.kind}: stepForLogSnr clamps to [0, T - 1]`, () => {
      expect(schedule.stepForLogSnr(schedule.logSnr(0) + 5)).toBe(0);
      expect(schedule.stepForLogSnr(Infinity)).toBe(0);
      expect(schedule.stepForLogSnr(schedule.logSnr(999) - 5)).toBe(999);
      expect(schedule.stepForLogSnr(-Infinity)).toBe(999);
      expect(() => schedule.stepForLogSnr(Number.NaN)).toThrow(RangeError);
    });

    it(`${config.kind}: the resolved config is serialisable and rebuilds the schedule`, () => {
      const rebuilt = new DdpmSchedule(JSON.parse(JSON.stringify(schedule.config)));
      expect(rebuilt.alphasCumprod).toEqual(schedule.alphasCumprod);
      expect(rebuilt.config).toEqual(schedule.config);
    });
  }
});

describe('cosine schedule', () => {
  const schedule = createDdpmSchedule({ kind: 'cosine' });

  it('fills defaults T = 1000, s = 0.008', () => {
    expect(schedule.config).toEqual({ kind: 'cosine', T: 1000, s: 0.008 });
  });

  it('matches the closed form abar(n + 1) = f(n + 1) / f(0) (improved-DDPM indexing)', () => {
    for (let n = 0; n < 999; n++) {
      const closed = cosineAlphaBar(n + 1, 1000, 0.008);
      expect(Math.abs(schedule.alphasCumprod[n]! / closed - 1)).toBeLessThan(1e-11);
    }
    // The last beta (1 - f(T)/f(T-1) = 1) is clipped to 0.999.
    expect(schedule.betas[999]).toBe(0.999);
    expect(schedule.alphasCumprod[999]! / (cosineAlphaBar(999, 1000, 0.008) * 0.001)).toBeCloseTo(
      1,
      10,
    );
  });

  it('matches numpy (improved-DDPM betas, np.cumprod) at n = 0, 499, 999', () => {
    // python3: f = lambda u: np.cos(((u/T+s)/(1+s))*np.pi/2)**2;
    // betas = np.minimum(1 - f(np.arange(1,T+1))/f(np.arange(T)), 0.999); np.cumprod(1 - betas)
    expect(schedule.alphasCumprod[0]).toBeCloseTo(0.999958715775178, 13);
    expect(schedule.alphasCumprod[499]! / 0.4938435904406382).toBeCloseTo(1, 12);
    expect(schedule.alphasCumprod[999]! / 2.4287669070348567e-9).toBeCloseTo(1, 10);
  });
});

describe('linear schedule', () => {
  const schedule = createDdpmSchedule({ kind: 'linear' });

  it('fills defaults T = 1000, betas from 1e-4 to 0.02', () => {
    expect(schedule.config).toEqual({ kind: 'linear', T: 1000, betaStart: 1e-4, betaEnd: 0.02 });
    expect(schedule.betas[0]).toBe(1e-4);
    expect(schedule.betas[999]).toBeCloseTo(0.02, 15);
  });

  it('abar_499 equals a plain running product and numpy (0.07858724288177824)', () => {
    let product = 1;
    for (let n = 0; n <= 499; n++) product *= 1 - (1e-4 + ((0.02 - 1e-4) * n) / 999);
    expect(schedule.alphasCumprod[499]! / product).toBeCloseTo(1, 12);
    // python3: np.cumprod(1 - np.linspace(1e-4, 0.02, 1000))[499]
    expect(schedule.alphasCumprod[499]! / 0.07858724288177824).toBeCloseTo(1, 12);
    expect(schedule.alphasCumprod[999]! / 4.035829765375676e-5).toBeCloseTo(1, 10);
  });
});

describe('createDdpmSchedule config checks', () => {
  it('an unknown kind throws listing the valid kinds', () => {
    expect(() => createDdpmSchedule({ kind: 'sigmoid' } as unknown as DdpmScheduleConfig)).toThrow(
      /valid: cosine, linear/,
    );
  });

  it('unknown keys and out-of-range values throw', () => {
    expect(() =>
      createDdpmSchedule({ kind: 'cosine', betaEnd: 0.02 } as unknown as DdpmScheduleConfig),
    ).toThrow(/valid: kind, T, s/);
    expect(() => createDdpmSchedule({ kind: 'linear', T: 10.5 })).toThrow(/integer/);
    expect(() => createDdpmSchedule({ kind: 'linear', betaStart: 0.1, betaEnd: 0.01 })).toThrow(
      /betaEnd/,
    );
  });

  it('other T and betas work', () => {
    const s = createDdpmSchedule({ kind: 'linear', T: 50, betaStart: 1e-3, betaEnd: 0.2 });
    expect(s.alphasCumprod.length).toBe(50);
    expect(s.stepForLogSnr(s.logSnr(21.5))).toBeCloseTo(21.5, 9);
  });
});
