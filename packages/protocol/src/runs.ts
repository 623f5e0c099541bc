import { type Static, type TSchema, Type } from 'typebox';
import { Id, Timestamp } from './common.js';
import { ClusterAssignment } from './datasets.js';
import {
  DEFAULT_FM_TIME_SAMPLING,
  ExpertObjective,
  FM_TIME_SAMPLINGS,
  FmTimeSampling,
  ModelPreset,
  Schedule,
} from './models.js';
import { ObjectiveSpec } from './objective-spec.js';

/** Run lifecycle (docs/architecture.md): draft -> clustering -> training -> routing -> published. */
export const RUN_STATUSES = [
  'draft',
  'clustering',
  'training',
  'routing',
  'published',
  'failed',
  'cancelled',
] as const;
export const RunStatus = Type.Enum(RUN_STATUSES);
export type RunStatus = Static<typeof RunStatus>;

/** Expert lifecycle: pending -> leased -> (training <-> leased) -> validating -> done. */
export const EXPERT_STATUSES = [
  'pending',
  'leased',
  'training',
  'validating',
  'done',
  'failed',
] as const;
export const ExpertStatus = Type.Enum(EXPERT_STATUSES);
export type ExpertStatus = Static<typeof ExpertStatus>;

/**
 * A run's bar for accepting an expert (docs/method.md §12), against the closed-form linear
 * reference of each shard; absent fields take the coordinator's defaults (the honest rule).
 */
export const AcceptancePolicy = Type.Object(
  {
    maxMidRatio: Type.Optional(
      Type.Number({
        exclusiveMinimum: 0,
        description:
          "Largest accepted ratio of the expert's x0 error to its shard's linear reference's at mid noise, t 0.05-0.2 (default 0.95).",
      }),
    ),
    maxHighRatio: Type.Optional(
      Type.Number({
        exclusiveMinimum: 0,
        description: 'The same at high noise, t 0.8-0.9 (default 2).',
      }),
    ),
    minSpecificity: Type.Optional(
      Type.Number({
        minimum: 0,
        description:
          "The expert's lowest reference-normalised error on another shard over the one on its own must exceed this (default 1: lowest on its own).",
      }),
    ),
  },
  { additionalProperties: false, title: 'AcceptancePolicy' },
);
export type AcceptancePolicy = Static<typeof AcceptancePolicy>;

/**
 * The organiser's initialisation of a run's FM experts (docs/method.md §7): the final checkpoint
 * of expert `cluster` of another, published run, a DDPM-family expert of the same architecture
 * (a K = 1 DDPM run on the whole dataset is the natural donor), converted by the worker. Every FM
 * expert starts from it instead of from a sibling trained on another cluster.
 */
export const InitFrom = Type.Object(
  {
    runId: Id,
    cluster: Type.Integer({ minimum: 0, maximum: 4095 }),
  },
  { additionalProperties: false, title: 'InitFrom' },
);
export type InitFrom = Static<typeof InitFrom>;

export const CreateRunBody = Type.Object(
  {
    name: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })),
    datasetId: Id,
    experts: Type.Integer({ minimum: 1, maximum: 256, description: 'K: one expert per cluster.' }),
    objectives: Type.Optional(
      Type.Union(
        [
          Type.String({
            maxLength: 20_000,
            description:
              'Objective mix, e.g. `ddpm:2,v:2,fm:4`, a single name, `any`, or the JSON text of the array form.',
          }),
          Type.Array(Type.Union([ObjectiveSpec, Type.Literal('any')]), {
            maxItems: 256,
            description: 'One objective spec (or `any`) per expert, in cluster order.',
          }),
        ],
        { default: 'any' },
      ),
    ),
    schedule: Type.Optional(Schedule),
    fmTimeSampling: Type.Optional(
      Type.Enum(FM_TIME_SAMPLINGS, {
        default: DEFAULT_FM_TIME_SAMPLING,
        description:
          'Training times of the flow-matching experts (docs/method.md §3; the default, logit-normal, follows docs/results.md §1 and §6).',
      }),
    ),
    resolution: Type.Optional(
      Type.Integer({ minimum: 8, maximum: 512, description: "Default: the dataset's." }),
    ),
    model: Type.Optional(ModelPreset),
    patchSize: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: 64,
        description:
          "Overrides the preset's patch size; must divide the resolution (e.g. 7 for 28 px: 16 tokens).",
      }),
    ),
    stepsPerExpert: Type.Integer({ minimum: 1, maximum: 10_000_000 }),
    checkpointInterval: Type.Optional(
      Type.Integer({ minimum: 1, maximum: 10_000_000, description: 'Default: steps / 10.' }),
    ),
    batchSize: Type.Optional(Type.Integer({ minimum: 1, maximum: 4096, default: 64 })),
    learningRate: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 1, default: 0.0003 })),
    seed: Type.Optional(Type.Integer({ minimum: 0, maximum: 2 ** 31 - 1, default: 0 })),
    clusteringId: Type.Optional(Id),
    assignment: Type.Optional(ClusterAssignment),
    fineK: Type.Optional(Type.Integer({ minimum: 1, maximum: 4096 })),
    valFraction: Type.Optional(Type.Number({ minimum: 0, maximum: 0.5 })),
    initFmFromDdpm: Type.Optional(
      Type.Boolean({
        default: false,
        description: "Initialise FM experts from a finished DDPM expert's checkpoint (§7).",
      }),
    ),
    initFrom: Type.Optional(InitFrom),
    acceptance: Type.Optional(AcceptancePolicy),
  },
  { additionalProperties: false, title: 'CreateRunBody' },
);
export type CreateRunBody = Static<typeof CreateRunBody>;

/** Everything a worker needs to train an expert the same way every time; stored with the run. */
export const RunConfig = Type.Object(
  {
    resolution: Type.Integer(),
    channels: Type.Integer(),
    model: ModelPreset,
    /** Patch size when it differs from the preset's. */
    patchSize: Type.Optional(Type.Integer()),
    schedule: Schedule,
    /** Training times of the FM experts; absent (runs made before the option) = uniform. */
    fmTimeSampling: Type.Optional(FmTimeSampling),
    stepsPerExpert: Type.Integer(),
    checkpointInterval: Type.Integer(),
    batchSize: Type.Integer(),
    learningRate: Type.Number(),
    seed: Type.Integer(),
    numClasses: Type.Integer(),
    initFmFromDdpm: Type.Boolean(),
    /** The organiser's donor of every FM expert's initialisation, resolved to its expert id. */
    initFrom: Type.Optional(
      Type.Object({ runId: Id, cluster: Type.Integer(), expertId: Id }, { title: 'RunInitFrom' }),
    ),
    /** The acceptance bar, defaults filled in; absent (runs made before the option) = defaults. */
    acceptance: Type.Optional(AcceptancePolicy),
  },
  { title: 'RunConfig' },
);
export type RunConfig = Static<typeof RunConfig>;

/** A run's FM training-time distribution (uniform for runs stored before the option existed). */
export function fmTimeSamplingOf(config: RunConfig): FmTimeSampling {
  return config.fmTimeSampling ?? 'uniform';
}

/**
 * What a run's own fields say about each objective family, keyed by family name: the parts of a
 * spec that a mix alias (or an `any` expert's family) leaves out are taken from here.
 */
export function runSpecDefaults(config: RunConfig): Readonly<Record<string, object>> {
  return {
    ddpm: { schedule: { kind: config.schedule } },
    fm: { timeSampling: { kind: fmTimeSamplingOf(config) } },
  };
}

const Nullable = <T extends TSchema>(t: T) => Type.Union([t, Type.Null()]);

/**
 * The acceptance test's measurements of an expert (docs/method.md §12): its x0 error over its
 * shard's linear MMSE reference at mid and at high noise (below 1: better than the reference), and
 * its specificity (the lowest reference-normalised error on another shard over the one on its own;
 * above 1: best on its own shard; null when there is no other shard).
 */
export const ExpertAcceptance = Type.Object(
  {
    midRatio: Type.Number(),
    highRatio: Type.Number(),
    specificity: Nullable(Type.Number()),
  },
  { additionalProperties: false, title: 'ExpertAcceptance' },
);
export type ExpertAcceptance = Static<typeof ExpertAcceptance>;

export const Expert = Type.Object(
  {
    id: Id,
    cluster: Type.Integer(),
    objective: ExpertObjective,
    schedule: Nullable(Schedule),
    /** The expert's objective in full; null until an `any` expert is first leased. */
    spec: Nullable(ObjectiveSpec),
    status: ExpertStatus,
    size: Nullable(Type.Integer({ description: 'Training images in its shard.' })),
    valSize: Nullable(Type.Integer()),
    step: Type.Integer(),
    targetSteps: Type.Integer(),
    loss: Nullable(Type.Number()),
    imagesPerSec: Nullable(Type.Number()),
    workerId: Nullable(Id),
    lastHeartbeatAt: Nullable(Timestamp),
    checkpointStep: Nullable(Type.Integer()),
    validationLoss: Nullable(
      Type.Number({ description: 'Held-out denoising loss of the validated final checkpoint.' }),
    ),
    validationBaseline: Nullable(
      Type.Number({ description: 'The same loss for an untrained (zero-output) network.' }),
    ),
    validationError: Nullable(
      Type.String({ description: 'Why validation last rejected a final checkpoint.' }),
    ),
    /** What the acceptance test measured on the last validated final checkpoint (method §12). */
    acceptance: Nullable(ExpertAcceptance),
    updatedAt: Timestamp,
  },
  { title: 'Expert' },
);
export type Expert = Static<typeof Expert>;

export const Run = Type.Object(
  {
    id: Id,
    name: Type.String(),
    datasetId: Id,
    clusteringId: Nullable(Id),
    /**
     * How the run's shards were made: `semantic` clusters or `random` shards of the same sizes
     * (the baseline); null until the run is bound to a clustering. A K = 1 run is a monolith.
     */
    assignment: Nullable(ClusterAssignment),
    status: RunStatus,
    k: Type.Integer(),
    objectives: Type.String(),
    config: RunConfig,
    error: Nullable(Type.String()),
    createdAt: Timestamp,
    updatedAt: Timestamp,
    experts: Type.Array(Expert),
  },
  { title: 'Run' },
);
export type Run = Static<typeof Run>;

export const RunList = Type.Object({ runs: Type.Array(Run) }, { title: 'RunList' });
export type RunList = Static<typeof RunList>;
