/**
 * The objective spec: what an expert is, as one serialisable value (docs/method.md §3, §10, §11).
 * It has exactly the shape of `packages/diffusion`'s `ObjectiveConfig`, whose registry is the one
 * interpreter (defaults, validation, training, conversion to velocity); a test checks that the
 * two describe the same set. It is stored verbatim on the expert row, in the lease grant, in
 * checkpoint metadata and in the manifest (v2).
 *
 * Canonical form (as stored): defaults filled in, except that a DDPM spec leaves out the neutral
 * `prediction: 'eps'` and `lossWeighting: { kind: 'none' }`, so specs written before those options
 * existed are already canonical.
 */
import { type Static, Type } from 'typebox';

const closed = <T extends Parameters<typeof Type.Object>[0]>(properties: T) =>
  Type.Object(properties, { additionalProperties: false });

/** DDPM noise schedules (docs/method.md §3): cosine (the default) or linear (DiT/ImageNet). */
export const DdpmScheduleSpec = Type.Union([
  closed({
    kind: Type.Literal('cosine'),
    T: Type.Optional(Type.Integer({ minimum: 2, maximum: 1_000_000 })),
    s: Type.Optional(Type.Number({ minimum: 0, maximum: 1 })),
  }),
  closed({
    kind: Type.Literal('linear'),
    T: Type.Optional(Type.Integer({ minimum: 2, maximum: 1_000_000 })),
    betaStart: Type.Optional(Type.Number({ minimum: 1e-12, maximum: 0.999 })),
    betaEnd: Type.Optional(Type.Number({ minimum: 1e-12, maximum: 0.999 })),
  }),
]);
export type DdpmScheduleSpec = Static<typeof DdpmScheduleSpec>;

/** What a DDPM-schedule network predicts: epsilon, or v = sqrt(abar) e - sqrt(1 - abar) x0 (§10). */
export const DDPM_PREDICTIONS = ['eps', 'v'] as const;

/** Per-sample weights of the epsilon loss (docs/method.md §11). */
export const LossWeightingSpec = Type.Union([
  closed({ kind: Type.Literal('none') }),
  closed({
    kind: Type.Literal('min-snr'),
    gamma: Type.Optional(Type.Number({ minimum: 1e-3, maximum: 1e6 })),
  }),
  closed({
    kind: Type.Literal('velocity'),
    max: Type.Optional(Type.Number({ minimum: 1, maximum: 1e9 })),
  }),
]);
export type LossWeightingSpec = Static<typeof LossWeightingSpec>;

/** How flow-matching experts draw training times (docs/method.md §3). */
export const FmTimeSamplingSpec = Type.Union([
  closed({ kind: Type.Literal('uniform') }),
  closed({
    kind: Type.Literal('logit-normal'),
    mean: Type.Optional(Type.Number({ minimum: -10, maximum: 10 })),
    std: Type.Optional(Type.Number({ minimum: 0, maximum: 10 })),
  }),
]);
export type FmTimeSamplingSpec = Static<typeof FmTimeSamplingSpec>;

const families = {
  ddpm: closed({
    name: Type.Literal('ddpm'),
    schedule: Type.Optional(DdpmScheduleSpec),
    prediction: Type.Optional(Type.Enum(DDPM_PREDICTIONS)),
    lossWeighting: Type.Optional(LossWeightingSpec),
  }),
  fm: closed({
    name: Type.Literal('fm'),
    timeSampling: Type.Optional(FmTimeSamplingSpec),
  }),
};

/** An expert's objective with all its parameters (the `name` is its family). */
export const ObjectiveSpec = Type.Union([families.ddpm, families.fm], {
  title: 'ObjectiveSpec',
  description:
    'e.g. {"name":"fm","timeSampling":{"kind":"logit-normal"}} or {"name":"ddpm","prediction":"v"}',
});
export type ObjectiveSpec = Static<typeof ObjectiveSpec>;

/** The objective families, by `name` (what a worker's `--objective` chooses among). */
export const OBJECTIVE_FAMILIES = Object.keys(families).sort() as (keyof typeof families)[];

/** The family an `any` expert takes when a worker that trains `any` family leases it. */
export const ANY_WORKER_FAMILY: ObjectiveSpec['name'] = 'fm';

/**
 * The short names of the objective mix (`ddpm:2,v:2,fm:4`) and the specs they stand for; a run's
 * `schedule` and `fmTimeSampling` fill what they leave out.
 */
export const OBJECTIVE_ALIASES: Readonly<Record<string, ObjectiveSpec>> = {
  ddpm: { name: 'ddpm' },
  fm: { name: 'fm' },
  v: { name: 'ddpm', prediction: 'v' },
};

/**
 * The one-word summary fields older messages carry beside a spec: its family, the DDPM schedule's
 * kind, the FM time sampling's kind (absent where the spec has none).
 */
export function specSummary(spec: ObjectiveSpec): {
  objective: ObjectiveSpec['name'];
  schedule?: DdpmScheduleSpec['kind'];
  timeSampling?: FmTimeSamplingSpec['kind'];
} {
  const s = spec as { schedule?: DdpmScheduleSpec; timeSampling?: FmTimeSamplingSpec };
  return {
    objective: spec.name,
    ...(s.schedule ? { schedule: s.schedule.kind } : {}),
    ...(s.timeSampling ? { timeSampling: s.timeSampling.kind } : {}),
  };
}
