import {
  type FmObjectiveConfig,
  OBJECTIVE_NAMES,
  type ObjectiveConfig,
  PREDICTION_NAMES,
  resolveObjective,
} from '@archipelago/diffusion';
import {
  type Dataset,
  DDPM_PREDICTIONS,
  OBJECTIVE_ALIASES,
  OBJECTIVE_FAMILIES,
  ObjectiveSpec,
  type Run,
} from '@archipelago/protocol';
import { Value } from 'typebox/value';
import { afterAll, beforeAll, describe, expect, expectTypeOf, it } from 'vitest';
import { auth, importFolderDataset, makeApp, type TestApp } from '../helpers.js';

/** Every kind of every part, with and without its optional fields. */
const EVERY_KIND: ObjectiveConfig[] = [
  { name: 'ddpm' },
  { name: 'ddpm', schedule: { kind: 'cosine' } },
  { name: 'ddpm', schedule: { kind: 'cosine', T: 500, s: 0.01 } },
  { name: 'ddpm', schedule: { kind: 'linear' } },
  { name: 'ddpm', schedule: { kind: 'linear', T: 1000, betaStart: 2e-4, betaEnd: 0.03 } },
  { name: 'ddpm', prediction: 'eps' },
  { name: 'ddpm', prediction: 'v' },
  { name: 'ddpm', prediction: 'v', schedule: { kind: 'linear' } },
  { name: 'ddpm', lossWeighting: { kind: 'none' } },
  { name: 'ddpm', lossWeighting: { kind: 'min-snr' } },
  { name: 'ddpm', lossWeighting: { kind: 'min-snr', gamma: 1 } },
  { name: 'ddpm', lossWeighting: { kind: 'velocity' } },
  { name: 'ddpm', lossWeighting: { kind: 'velocity', max: 1000 } },
  { name: 'fm' },
  { name: 'fm', timeSampling: { kind: 'uniform' } },
  { name: 'fm', timeSampling: { kind: 'logit-normal' } },
  { name: 'fm', timeSampling: { kind: 'logit-normal', mean: -0.5, std: 0.8 } },
];

describe('one objective spec: the protocol schema and the diffusion registry describe the same set', () => {
  it('the same type', () => {
    expectTypeOf<ObjectiveSpec>().toEqualTypeOf<ObjectiveConfig>();
    expect([...OBJECTIVE_FAMILIES]).toEqual([...OBJECTIVE_NAMES]);
    expect([...DDPM_PREDICTIONS].sort()).toEqual([...PREDICTION_NAMES]);
  });

  it('round trip of every kind and default: valid in both, canonical form valid and stable', () => {
    for (const spec of EVERY_KIND) {
      expect(Value.Check(ObjectiveSpec, spec), JSON.stringify(spec)).toBe(true);
      const canonical = resolveObjective(spec);
      expect(Value.Check(ObjectiveSpec, canonical), JSON.stringify(canonical)).toBe(true);
      expect(resolveObjective(JSON.parse(JSON.stringify(canonical)))).toEqual(canonical);
    }
    for (const alias of Object.values(OBJECTIVE_ALIASES)) {
      expect(Value.Check(ObjectiveSpec, resolveObjective(alias as ObjectiveConfig))).toBe(true);
    }
  });

  it('what one refuses the other refuses too', () => {
    const invalid: unknown[] = [
      { name: 'edm' },
      { name: 'ddpm', prediction: 'x0' },
      { name: 'ddpm', schedule: { kind: 'sqrt' } },
      { name: 'ddpm', schedule: { kind: 'cosine', betaEnd: 0.02 } },
      { name: 'ddpm', lossWeighting: { kind: 'p2' } },
      { name: 'ddpm', timeSampling: { kind: 'uniform' } },
      { name: 'fm', schedule: { kind: 'cosine' } },
      { name: 'fm', timeSampling: { kind: 'beta' } },
      { name: 'fm', timeSampling: { kind: 'logit-normal', std: -1 } },
      { name: 'fm', timeSampling: { kind: 'logit-normal', mean: 11 } },
    ];
    for (const spec of invalid) {
      expect(Value.Check(ObjectiveSpec, spec), JSON.stringify(spec)).toBe(false);
      expect(() => resolveObjective(spec as ObjectiveConfig), JSON.stringify(spec)).toThrow();
    }
  });
});

describe('runs store one spec per expert', () => {
  let t: TestApp;
  let dataset: Dataset;
  beforeAll(async () => {
    t = await makeApp();
    dataset = await importFolderDataset(t, {
      name: 'p',
      classes: 3,
      perClass: 8,
      resolution: 16,
      k: 3,
    });
  });
  afterAll(async () => t.close());

  const create = (payload: Record<string, unknown>) =>
    t.app.inject({
      method: 'POST',
      url: '/api/v1/runs',
      headers: auth,
      payload: { datasetId: dataset.id, experts: 3, stepsPerExpert: 100, ...payload },
    });

  it('the short mix: aliases completed with the run fields, in canonical form', async () => {
    const res = await create({
      objectives: 'ddpm:1,v:1,fm:1',
      schedule: 'linear',
      fmTimeSampling: 'logit-normal',
    });
    expect(res.statusCode, res.body).toBe(201);
    const run = res.json() as Run;
    const linear = { kind: 'linear', T: 1000, betaStart: 1e-4, betaEnd: 0.02 };
    expect(run.experts.map((e) => e.spec)).toEqual([
      { name: 'ddpm', schedule: linear },
      { name: 'ddpm', prediction: 'v', schedule: linear },
      { name: 'fm', timeSampling: { kind: 'logit-normal', mean: 0, std: 1 } },
    ]);
    expect(run.experts.map((e) => [e.objective, e.schedule])).toEqual([
      ['ddpm', 'linear'],
      ['ddpm', 'linear'],
      ['fm', null],
    ]);
  });

  it('full specs as JSON (an array, or its text): parameters the short form cannot say', async () => {
    const specs = [
      { name: 'fm', timeSampling: { kind: 'logit-normal', mean: -0.5 } },
      { name: 'ddpm', lossWeighting: { kind: 'min-snr', gamma: 5 } },
      'any',
    ];
    for (const objectives of [specs, JSON.stringify(specs)]) {
      const res = await create({ objectives });
      expect(res.statusCode, res.body).toBe(201);
      const run = res.json() as Run;
      expect(run.experts.map((e) => e.spec)).toEqual([
        {
          name: 'fm',
          timeSampling: { kind: 'logit-normal', mean: -0.5, std: 1 },
        } satisfies FmObjectiveConfig,
        {
          name: 'ddpm',
          schedule: { kind: 'cosine', T: 1000, s: 0.008 },
          lossWeighting: { kind: 'min-snr', gamma: 5 },
        },
        null,
      ]);
      expect(run.experts[2]!.objective).toBe('any');
    }
  });

  it('refuses a bad spec with invalid_objective_mix, naming what is valid, and creates nothing', async () => {
    const before = (
      (await t.app.inject({ method: 'GET', url: '/api/v1/runs' })).json() as { runs: Run[] }
    ).runs.length;
    for (const [objectives, pattern] of [
      ['ddpm:1,eps:2', /valid: ddpm, fm, any, v/],
      [
        JSON.stringify([
          { name: 'ddpm', prediction: 'v', lossWeighting: { kind: 'min-snr' } },
          'any',
          'any',
        ]),
        /epsilon prediction/,
      ],
      [JSON.stringify([{ name: 'edm' }, 'any', 'any']), /name is one of ddpm, fm/],
      ['[{"name":', /invalid JSON/],
    ] as const) {
      const res = await create({ objectives });
      expect(res.statusCode, res.body).toBe(400);
      expect(res.json().error.code).toBe('invalid_objective_mix');
      expect(res.json().error.message).toMatch(pattern);
    }
    const after = (
      (await t.app.inject({ method: 'GET', url: '/api/v1/runs' })).json() as { runs: Run[] }
    ).runs.length;
    expect(after).toBe(before);
  });
});
