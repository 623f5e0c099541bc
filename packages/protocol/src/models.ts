import { type Static, Type } from 'typebox';
import { OBJECTIVE_FAMILIES } from './objective-spec.js';

/**
 * The objective families an expert can belong to (docs/method.md §3), from the objective spec.
 * `any`: the worker's choice at lease time.
 */
export const OBJECTIVES = OBJECTIVE_FAMILIES;
export const Objective = Type.Enum(OBJECTIVES);
export type Objective = Static<typeof Objective>;

export const ExpertObjective = Type.Union([Objective, Type.Literal('any')]);
export type ExpertObjective = Static<typeof ExpertObjective>;

/** DDPM noise schedules (docs/method.md §3): cosine is the default, linear matches DiT/ImageNet checkpoints. */
export const SCHEDULES = ['cosine', 'linear'] as const;
export const Schedule = Type.Enum(SCHEDULES);
export type Schedule = Static<typeof Schedule>;

/**
 * How flow-matching experts draw training times t (docs/method.md §3): uniform on [0, 1], or
 * logit-normal (t = sigmoid(z), z ~ N(0, 1)), which spends more steps at mid noise levels.
 */
export const FM_TIME_SAMPLINGS = ['uniform', 'logit-normal'] as const;
export const FmTimeSampling = Type.Enum(FM_TIME_SAMPLINGS);
/**
 * FM training times of a new run that names none: logit-normal, 0.76x uniform's FD-cls on one
 * cluster and better on the ensemble too (docs/results.md §1, §6). Runs stored before the option
 * existed trained with uniform times and keep them ({@link fmTimeSamplingOf} in runs.ts).
 */
export const DEFAULT_FM_TIME_SAMPLING = 'logit-normal' satisfies (typeof FM_TIME_SAMPLINGS)[number];
export type FmTimeSampling = Static<typeof FmTimeSampling>;

/**
 * Named DiT/AdaLN-Single size presets, smallest first. `packages/models` maps each name to its
 * architecture; the names live here because runs, leases and manifests all carry them.
 */
export const MODEL_PRESETS = ['micro', 'tiny', 'small', 'base', 'large'] as const;
export const ModelPreset = Type.Enum(MODEL_PRESETS);
export type ModelPreset = Static<typeof ModelPreset>;
