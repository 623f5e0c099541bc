import { describe, expect, it } from 'vitest';
import {
  heldOutObjective,
  initialisingFamilies,
  objectiveFamily,
  resolveObjective,
} from '../../src/objectives/registry.js';

describe('objective registry (the one interpreter of objective specs)', () => {
  it('fills defaults: cosine schedule, uniform FM times; neutral DDPM options stay out', () => {
    expect(resolveObjective({ name: 'ddpm' })).toEqual({
      name: 'ddpm',
      schedule: { kind: 'cosine', T: 1000, s: 0.008 },
    });
    expect(
      resolveObjective({ name: 'ddpm', prediction: 'eps', lossWeighting: { kind: 'none' } }),
    ).toEqual(resolveObjective({ name: 'ddpm' }));
    expect(resolveObjective({ name: 'fm' })).toEqual({
      name: 'fm',
      timeSampling: { kind: 'uniform' },
    });
    expect(
      resolveObjective({ name: 'fm', timeSampling: { kind: 'logit-normal', mean: -0.5 } }),
    ).toEqual({
      name: 'fm',
      timeSampling: { kind: 'logit-normal', mean: -0.5, std: 1 },
    });
  });

  it('is idempotent on every kind (canonical form)', () => {
    for (const spec of [
      { name: 'ddpm', schedule: { kind: 'linear' } },
      { name: 'ddpm', prediction: 'v' },
      { name: 'ddpm', lossWeighting: { kind: 'velocity', max: 100 } },
      { name: 'fm', timeSampling: { kind: 'logit-normal' } },
    ] as const) {
      const once = resolveObjective(spec);
      expect(resolveObjective(JSON.parse(JSON.stringify(once)))).toEqual(once);
    }
  });

  it('held-out losses drop training-time choices', () => {
    expect(
      heldOutObjective({ name: 'ddpm', lossWeighting: { kind: 'min-snr', gamma: 5 } }),
    ).toEqual({ name: 'ddpm', schedule: { kind: 'cosine', T: 1000, s: 0.008 } });
    expect(heldOutObjective({ name: 'fm', timeSampling: { kind: 'logit-normal' } })).toEqual({
      name: 'fm',
      timeSampling: { kind: 'uniform' },
    });
    expect(heldOutObjective({ name: 'ddpm', prediction: 'v' })).toMatchObject({ prediction: 'v' });
  });

  it('knows which families initialise which (DDPM-schedule checkpoints start FM experts)', () => {
    expect(initialisingFamilies({ name: 'fm' })).toEqual(['ddpm']);
    expect(initialisingFamilies({ name: 'ddpm' })).toEqual([]);
  });

  it('unknown names, keys and values throw listing the valid ones', () => {
    expect(() => objectiveFamily({ name: 'edm' } as never)).toThrow(/valid: ddpm, fm/);
    expect(() => resolveObjective({ name: 'ddpm', sigma: 1 } as never)).toThrow(
      /valid: name, schedule, prediction, lossWeighting/,
    );
    expect(() => resolveObjective({ name: 'ddpm', schedule: { kind: 'sqrt' } } as never)).toThrow(
      /valid: cosine, linear/,
    );
    expect(() => resolveObjective({ name: 'fm', timeSampling: { kind: 'beta' } } as never)).toThrow(
      /valid: logit-normal, uniform/,
    );
  });
});
