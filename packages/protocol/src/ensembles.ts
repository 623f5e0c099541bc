/**
 * Ensemble manifest v1 (docs/architecture.md "Ensemble manifest"), the router summary and the
 * sampling API. The manifest is immutable and content-addressed:
 *
 * - `body` = the manifest without `id` and `signature`;
 * - `id` = `ens_` + the first 32 hex digits of sha256(canonicalJson(body));
 * - `signature.value` = Ed25519 over canonicalJson(body + id), base64; `signature.publicKey` is
 *   the coordinator's key (raw 32 bytes, base64url) also served at `GET /api/v1/keys`.
 *
 * canonicalJson: JSON with object keys sorted recursively, no whitespace; numbers as
 * `JSON.stringify` writes them. A verifier recomputes the id and checks the signature, then the
 * sha256 and size of every checkpoint it downloads.
 */
import { type Static, type TSchema, Type } from 'typebox';
import { Timestamp } from './common.js';
import { CLUSTER_ASSIGNMENTS } from './datasets.js';
import { FmTimeSampling, ModelPreset, Objective, Schedule } from './models.js';
import { type ObjectiveSpec, ObjectiveSpec as ObjectiveSpecSchema } from './objective-spec.js';
import { AcceptancePolicy } from './runs.js';

const Nullable = <T extends TSchema>(t: T) => Type.Union([t, Type.Null()]);

export const MANIFEST_V1_SCHEMA_ID = 'archipelago.ensemble-manifest/v1';
/** Manifest v2: each expert carries its objective spec (docs/manifest-format.md). */
export const MANIFEST_V2_SCHEMA_ID = 'archipelago.ensemble-manifest/v2';
/** The schema new manifests are published with. */
export const MANIFEST_SCHEMA_ID = MANIFEST_V2_SCHEMA_ID;

export const ROUTING_STRATEGIES = ['top-1', 'top-k', 'full', 'threshold'] as const;
export const RoutingStrategy = Type.Enum(ROUTING_STRATEGIES);
export type RoutingStrategy = Static<typeof RoutingStrategy>;

export const SAMPLERS = ['euler', 'heun', 'ddim'] as const;
export const SamplerName = Type.Enum(SAMPLERS);
export type SamplerName = Static<typeof SamplerName>;

export const CONVERSION_MODES = ['snr', 'naive'] as const;
export const ConversionMode = Type.Enum(CONVERSION_MODES);
export type ConversionMode = Static<typeof ConversionMode>;

/** One stored file of the ensemble: where to get it and what it must hash to. */
export const ManifestFile = Type.Object(
  {
    uri: Type.String({
      description:
        'Relative to the manifest URL (e.g. `checkpoints/expert-0.safetensors`), or absolute.',
    }),
    key: Type.String({ description: "Object-store key on the publishing coordinator's store." }),
    sha256: Type.String({ pattern: '^[0-9a-f]{64}$' }),
    bytes: Type.Integer({ minimum: 1 }),
  },
  { additionalProperties: false },
);
export type ManifestFile = Static<typeof ManifestFile>;

const expertResults = {
  checkpoint: ManifestFile,
  steps: Type.Integer(),
  trainImages: Type.Integer(),
  validationLoss: Type.Number(),
  /** The loss an untrained (zero-output) network has on the same held-out batch. */
  baselineLoss: Type.Number(),
};

export const ManifestExpertV1 = Type.Object(
  {
    cluster: Type.Integer({ minimum: 0 }),
    objective: Type.Enum(['ddpm', 'fm'] as const),
    schedule: Nullable(Schedule),
    /** How an FM expert drew its training times; absent for DDPM experts. */
    timeSampling: Type.Optional(FmTimeSampling),
    ...expertResults,
  },
  { additionalProperties: false },
);
export type ManifestExpertV1 = Static<typeof ManifestExpertV1>;

/**
 * How the coordinator accepted an expert (docs/method.md §12): its x0 error over its shard's linear
 * MMSE reference at the mid and high noise levels scored, its cluster specificity, and the bar it
 * passed (the run's acceptance policy, defaults filled in).
 */
export const ManifestAcceptance = Type.Object(
  {
    midRatio: Type.Number(),
    highRatio: Type.Number(),
    /** Null when the run has no other shard to compare with. */
    specificity: Nullable(Type.Number()),
    /** FM times of the two bands. */
    midTimes: Type.Array(Type.Number()),
    highTimes: Type.Array(Type.Number()),
    /** The reference: `full` covariance, or `diagonal` (per pixel) at large resolutions. */
    reference: Type.Enum(['full', 'diagonal'] as const),
    bar: Type.Required(AcceptancePolicy),
  },
  { additionalProperties: false },
);
export type ManifestAcceptance = Static<typeof ManifestAcceptance>;

export const ManifestExpertV2 = Type.Object(
  {
    cluster: Type.Integer({ minimum: 0 }),
    /** The objective family, `spec.name` (as v1 has it). */
    objective: Objective,
    /** The expert's objective spec, verbatim as it was trained (docs/method.md §3). */
    spec: ObjectiveSpecSchema,
    ...expertResults,
    /** Absent in manifests published before the acceptance test existed. */
    acceptance: Type.Optional(ManifestAcceptance),
  },
  { additionalProperties: false },
);
export type ManifestExpertV2 = Static<typeof ManifestExpertV2>;
export type ManifestExpert = ManifestExpertV1 | ManifestExpertV2;

/**
 * An expert entry's objective spec, whichever the manifest's version: v2 stores it; a v1 entry's
 * family, schedule and time sampling are read as the spec they stand for.
 */
export function manifestExpertSpec(expert: ManifestExpert): ObjectiveSpec {
  if ('spec' in expert) return expert.spec;
  const v1 = expert as ManifestExpertV1;
  return v1.objective === 'ddpm'
    ? { name: 'ddpm', schedule: { kind: v1.schedule ?? 'cosine' } }
    : { name: 'fm', timeSampling: { kind: v1.timeSampling ?? 'uniform' } };
}

export const RouterAccuracy = Type.Object(
  {
    /** Bin edges in flow-matching time t (0 = data, 1 = noise); bins[i] = [edges[i], edges[i+1]). */
    edges: Type.Array(Type.Number()),
    accuracy: Type.Array(Type.Number()),
    /** Accuracy of always answering the largest cluster. */
    chance: Type.Number(),
    /** Held-out samples per bin. */
    counts: Type.Array(Type.Integer()),
  },
  { additionalProperties: false },
);
export type RouterAccuracy = Static<typeof RouterAccuracy>;

export const InferenceDefaults = Type.Object(
  {
    routing: RoutingStrategy,
    topK: Type.Integer({ minimum: 1 }),
    threshold: Type.Number({ minimum: 0, maximum: 1 }),
    conversion: ConversionMode,
    /** Floor of (1 - t) and clamp of x0 in the DDPM -> velocity conversion (docs/method.md §4). */
    alphaMin: Type.Number(),
    x0Clamp: Type.Number(),
    sampler: SamplerName,
    steps: Type.Integer({ minimum: 1 }),
    guidance: Type.Number({ minimum: 0 }),
    /** Why these: the evaluation that chose the routing strategy, if one ran. */
    rationale: Type.String(),
  },
  { additionalProperties: false },
);
export type InferenceDefaults = Static<typeof InferenceDefaults>;

const manifestBody = (schema: string, experts: TSchema, title: string) =>
  Type.Object(
    {
      schema: Type.Literal(schema),
      run: Type.Object(
        { id: Type.String(), name: Type.String(), objectives: Type.String() },
        { additionalProperties: false },
      ),
      dataset: Type.Object(
        {
          id: Type.String(),
          name: Type.String(),
          count: Type.Integer(),
          width: Type.Integer(),
          height: Type.Integer(),
          channels: Type.Integer(),
          classNames: Type.Array(Type.String()),
          clusteringId: Type.String(),
          /** How images were assigned to shards; absent: `semantic` (docs/manifest-format.md). */
          assignment: Type.Optional(Type.Enum(CLUSTER_ASSIGNMENTS)),
          sizes: Type.Array(Type.Integer()),
          /**
           * `[K][numClasses]` training images of each class in each cluster: p(c | k), which
           * class-conditional sampling multiplies into the router's p(k | x_t).
           */
          classCounts: Type.Array(Type.Array(Type.Integer())),
        },
        { additionalProperties: false },
      ),
      model: Type.Object(
        {
          preset: ModelPreset,
          /** The DiT config every expert shares (as stored in its checkpoint). */
          architecture: Type.Record(Type.String(), Type.Unknown()),
        },
        { additionalProperties: false },
      ),
      experts: Type.Array(experts),
      router: Type.Object(
        {
          checkpoint: ManifestFile,
          architecture: Type.Record(Type.String(), Type.Unknown()),
          steps: Type.Integer(),
          accuracy: RouterAccuracy,
        },
        { additionalProperties: false },
      ),
      inference: InferenceDefaults,
      createdAt: Timestamp,
    },
    { additionalProperties: false, title },
  );
export const ManifestBodyV1 = manifestBody(MANIFEST_V1_SCHEMA_ID, ManifestExpertV1, 'ManifestBody');
export const ManifestBodyV2 = manifestBody(
  MANIFEST_V2_SCHEMA_ID,
  ManifestExpertV2,
  'ManifestBodyV2',
);
export type ManifestBodyV1 = Omit<Static<typeof ManifestBodyV1>, 'schema' | 'experts'> & {
  schema: typeof MANIFEST_V1_SCHEMA_ID;
  experts: ManifestExpertV1[];
};
export type ManifestBodyV2 = Omit<ManifestBodyV1, 'schema' | 'experts'> & {
  schema: typeof MANIFEST_V2_SCHEMA_ID;
  experts: ManifestExpertV2[];
};
/** A manifest body of either version. */
export type ManifestBody = ManifestBodyV1 | ManifestBodyV2;

export const ManifestSignature = Type.Object(
  {
    alg: Type.Literal('ed25519'),
    keyId: Type.String(),
    publicKey: Type.String({ description: 'Raw 32-byte Ed25519 public key, base64url.' }),
    value: Type.String({ description: 'Signature over canonicalJson(body + id), base64url.' }),
  },
  { additionalProperties: false },
);
export type ManifestSignature = Static<typeof ManifestSignature>;

const signed = (body: typeof ManifestBodyV1 | typeof ManifestBodyV2, title: string) =>
  Type.Object(
    {
      ...body.properties,
      id: Type.String({ pattern: '^ens_[0-9a-f]{32}$' }),
      signature: ManifestSignature,
    },
    { additionalProperties: false, title },
  );

/** A signed manifest v1 (still loaded and verified). */
export const EnsembleManifestV1 = signed(ManifestBodyV1, 'EnsembleManifest');
/** A signed manifest v2. */
export const EnsembleManifestV2 = signed(ManifestBodyV2, 'EnsembleManifestV2');
/** A signed manifest of either version, as loaders accept it. */
export const EnsembleManifest = Type.Union([EnsembleManifestV1, EnsembleManifestV2], {
  title: 'AnyEnsembleManifest',
});
type Signed<B> = B & { id: string; signature: ManifestSignature };
export type EnsembleManifestV1 = Signed<ManifestBodyV1>;
export type EnsembleManifestV2 = Signed<ManifestBodyV2>;
export type EnsembleManifest = EnsembleManifestV1 | EnsembleManifestV2;

/** A published ensemble as the REST API lists it. */
export const Ensemble = Type.Object(
  {
    id: Type.String(),
    runId: Type.String(),
    createdAt: Timestamp,
    experts: Type.Integer(),
    routerAccuracy: RouterAccuracy,
    inference: InferenceDefaults,
    manifestUrl: Type.String(),
    manifestSha256: Type.String(),
    keyId: Type.String(),
  },
  { title: 'Ensemble' },
);
export type Ensemble = Static<typeof Ensemble>;

export const EnsembleList = Type.Object(
  { ensembles: Type.Array(Ensemble) },
  { title: 'EnsembleList' },
);
export type EnsembleList = Static<typeof EnsembleList>;

export const PublicKey = Type.Object(
  {
    keyId: Type.String(),
    alg: Type.Literal('ed25519'),
    publicKey: Type.String(),
    /** The same key as a PEM SubjectPublicKeyInfo. */
    pem: Type.String(),
  },
  { additionalProperties: false },
);
export const KeyList = Type.Object({ keys: Type.Array(PublicKey) }, { title: 'KeyList' });
export type KeyList = Static<typeof KeyList>;

/** Limits of one sampling request (also enforced by the offline `sample` command). */
export const SAMPLE_LIMITS = {
  maxCount: 64,
  maxSteps: 200,
  /** count x steps x experts evaluated per row (x2 with guidance, x2 for Heun). */
  maxCost: 64 * 50 * 4 * 2,
} as const;

export const SampleRequest = Type.Object(
  {
    count: Type.Integer({ minimum: 1, maximum: SAMPLE_LIMITS.maxCount, default: 16 }),
    steps: Type.Optional(Type.Integer({ minimum: 1, maximum: SAMPLE_LIMITS.maxSteps })),
    seed: Type.Integer({ minimum: 0, maximum: 2 ** 31 - 1, default: 0 }),
    sampler: Type.Optional(SamplerName),
    routing: Type.Optional(RoutingStrategy),
    /** top-k only. */
    k: Type.Optional(Type.Integer({ minimum: 1, maximum: 64 })),
    /** threshold only: keep experts with p >= tau (always the argmax). */
    tau: Type.Optional(Type.Number({ minimum: 0, maximum: 1 })),
    conversion: Type.Optional(ConversionMode),
    /** Class label of every sample (class-conditional ensembles); omitted = unconditional. */
    class: Type.Optional(Type.Integer({ minimum: 0 })),
    /** One class label per sample (instead of `class`), e.g. a row of each digit. */
    classes: Type.Optional(
      Type.Array(Type.Integer({ minimum: 0 }), { minItems: 1, maxItems: SAMPLE_LIMITS.maxCount }),
    ),
    guidance: Type.Optional(Type.Number({ minimum: 0, maximum: 20 })),
    /** Columns of the PNG grid (default: a near-square grid). */
    columns: Type.Optional(Type.Integer({ minimum: 1, maximum: 64 })),
  },
  { additionalProperties: false, title: 'SampleRequest' },
);
export type SampleRequest = Static<typeof SampleRequest>;

export const RoutingStep = Type.Object(
  {
    t: Type.Number(),
    /** Rows (samples) each expert was evaluated on at this step, by cluster. */
    rows: Type.Array(Type.Integer()),
  },
  { additionalProperties: false },
);

export const SampleResponse = Type.Object(
  {
    ensembleId: Type.String(),
    settings: Type.Object({
      count: Type.Integer(),
      steps: Type.Integer(),
      seed: Type.Integer(),
      sampler: SamplerName,
      routing: RoutingStrategy,
      k: Type.Integer(),
      tau: Type.Number(),
      conversion: ConversionMode,
      class: Nullable(Type.Integer()),
      classes: Nullable(Type.Array(Type.Integer())),
      guidance: Type.Number(),
    }),
    /** One PNG per sample, base64. */
    images: Type.Array(Type.String()),
    /** Per sample: the expert with the largest routing weight at the final step, and how many evaluations each expert contributed. */
    perSample: Type.Array(
      Type.Object({ dominant: Type.Integer(), evaluations: Type.Array(Type.Integer()) }),
    ),
    routing: Type.Object({
      steps: Type.Array(RoutingStep),
      /** Expert evaluations summed over steps, by cluster. */
      totals: Type.Array(Type.Integer()),
      /** Mean experts evaluated per sample per step. */
      meanExpertsPerSample: Type.Number(),
    }),
    seconds: Type.Number(),
  },
  { title: 'SampleResponse' },
);
export type SampleResponse = Static<typeof SampleResponse>;
