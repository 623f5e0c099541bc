/**
 * The score of a published ensemble (issue 14 point 1; docs/architecture.md "Scoring a published
 * ensemble"): what `score.json` holds beside the manifest (`ensembles/{id}/score.json`), what
 * `GET /api/v1/ensembles/:id/score` returns and what the `score --manifest` command writes.
 * FD-cls is a Frechet distance in the features of a classifier trained on the dataset itself,
 * not FID; {@link FD_CLS_NAME} is how every figure names it.
 */
import { type Static, Type } from 'typebox';
import { Timestamp } from './common.js';
import { ConversionMode, RoutingStrategy, SamplerName } from './ensembles.js';

/** The metric's full name, wherever a score is shown. */
export const FD_CLS_NAME =
  'FD-cls (Frechet distance in the features of a classifier trained on the dataset, not FID)';

export const FragmentIndex = Type.Object({
  /** Mean number of connected components per thresholded image. */
  meanComponents: Type.Number(),
  /** Fraction of images with more than one component. */
  fragmented: Type.Number(),
  /** Fraction of images with no pixel above the threshold. */
  empty: Type.Number(),
  threshold: Type.Number(),
});
export type FragmentIndex = Static<typeof FragmentIndex>;

/** Non-finite values (a metric undefined for these images) are written as null in JSON. */
const Score = Type.Union([Type.Number(), Type.Null()]);

export const EnsembleScore = Type.Object(
  {
    /** Always "FD-cls": a Frechet distance in the classifier's features, not FID. */
    metric: Type.Literal('FD-cls'),
    ensembleId: Type.String(),
    run: Type.Object({ id: Type.String(), name: Type.String(), objectives: Type.String() }),
    /** The built-in dataset scored against, at the ensemble's resolution; held-out images used. */
    dataset: Type.Object({
      name: Type.String(),
      resolution: Type.Integer(),
      heldOut: Type.Integer(),
    }),
    classifier: Type.Object({
      file: Type.String(),
      sha256: Type.String(),
      heldOutAccuracy: Type.Number(),
      seed: Type.Integer(),
    }),
    /** What was sampled: the manifest's inference defaults unless told otherwise. */
    settings: Type.Object({
      samples: Type.Integer(),
      seed: Type.Integer(),
      steps: Type.Integer(),
      sampler: SamplerName,
      routing: RoutingStrategy,
      k: Type.Integer(),
      tau: Type.Number(),
      conversion: ConversionMode,
      guidance: Type.Number(),
      classes: Type.Enum(['balanced', 'unconditional'] as const),
    }),
    scores: Type.Object({
      fdCls: Score,
      precision: Score,
      recall: Score,
      /** Neighbours of the k-NN manifolds of precision and recall. */
      k: Type.Integer(),
      /** Mean over classes of generated / real mean pairwise feature distance. */
      intraClassDiversity: Score,
      intraClassDiversityPerClass: Type.Array(Score),
      fragments: Type.Object({ generated: FragmentIndex, real: FragmentIndex }),
      /** Generated samples the classifier assigns to each class. */
      predictedClasses: Type.Array(Type.Integer()),
      counts: Type.Object({ real: Type.Integer(), generated: Type.Integer() }),
    }),
    /** The same scores of as many real training images: what a perfect ensemble reaches. */
    reference: Type.Object({
      fdCls: Score,
      precision: Score,
      recall: Score,
      intraClassDiversity: Score,
      fragments: FragmentIndex,
    }),
    seconds: Type.Object({ sampling: Type.Number(), scoring: Type.Number() }),
  },
  { title: 'EnsembleScore' },
);
export type EnsembleScore = Static<typeof EnsembleScore>;

/** `GET /api/v1/ensembles/:id/score`: the stored score and where its figure is. */
export const EnsembleScoreReply = Type.Object(
  {
    ...EnsembleScore.properties,
    /** Always {@link FD_CLS_NAME}. */
    metricName: Type.String(),
    figureUrl: Type.String(),
    scoredAt: Timestamp,
  },
  { title: 'EnsembleScoreReply' },
);
export type EnsembleScoreReply = Static<typeof EnsembleScoreReply>;
