/**
 * Every metric of generated images against real ones, in one call, in the features of one
 * classifier.
 */
import type { MlpClassifier } from './classifier.js';
import { intraClassDiversity } from './diversity.js';
import { type FragmentIndex, fragmentIndex } from './fragments.js';
import { fdCls } from './frechet.js';
import { checkImages, type Images } from './images.js';
import { DEFAULT_K, precisionRecall } from './precision-recall.js';

export interface ScoreOptions {
  /** k of the precision/recall manifolds; default 3. */
  k?: number;
  /** Threshold of the fragment index; default 0.5. */
  fragmentThreshold?: number;
}

export interface ImageScores {
  /** Frechet distance in the classifier's penultimate features (not FID). */
  fdCls: number;
  precision: number;
  recall: number;
  k: number;
  /** Mean over classes of generated / real mean pairwise feature distance. */
  intraClassDiversity: number;
  intraClassDiversityPerClass: (number | null)[];
  fragments: { generated: FragmentIndex; real: FragmentIndex };
  /** How many generated samples the classifier assigns to each class. */
  predictedClasses: number[];
  counts: { real: number; generated: number };
}

export function scoreImages(
  classifier: MlpClassifier,
  real: Images,
  generated: Images,
  options: ScoreOptions = {},
): ImageScores {
  checkImages(real, 'real');
  checkImages(generated, 'generated');
  const k = options.k ?? DEFAULT_K;
  const realFeatures = classifier.features(real);
  const generatedFeatures = classifier.features(generated);
  const realClasses = classifier.predict(real);
  const generatedClasses = classifier.predict(generated);
  const classes = classifier.config.classes;
  const diversity = intraClassDiversity(
    realFeatures,
    realClasses,
    generatedFeatures,
    generatedClasses,
    classes,
  );
  const predictedClasses = new Array<number>(classes).fill(0);
  for (const c of generatedClasses) predictedClasses[c]!++;
  return {
    fdCls: fdCls(realFeatures, generatedFeatures),
    ...precisionRecall(realFeatures, generatedFeatures, k),
    k,
    intraClassDiversity: diversity.mean,
    intraClassDiversityPerClass: diversity.perClass,
    fragments: {
      generated: fragmentIndex(generated, options.fragmentThreshold),
      real: fragmentIndex(real, options.fragmentThreshold),
    },
    predictedClasses,
    counts: { real: real.count, generated: generated.count },
  };
}
