/**
 * Scoring a published ensemble: sample it in batches (classes balanced for a class-conditional
 * ensemble), score the samples with `@archipelago/metrics` against the held-out split of the
 * manifest's dataset at its resolution, and draw the figure (a grid of samples beside the
 * numbers). FD-cls is a Frechet distance in the features of a classifier trained on the dataset
 * itself, not FID; every figure says so.
 */
import {
  BUILTIN_DATASETS,
  type BuiltinDatasetName,
  deriveSeed,
  type ImageSet,
  renderGrid,
  subsetImageSet,
  upscaleFor,
} from '@archipelago/data';
import {
  type ImageScores,
  type Images,
  loadMetricSplit,
  loadShippedClassifier,
  type ShippedClassifier,
  scoreImages,
} from '@archipelago/metrics';
import type { EnsembleManifest, SampleRequest } from '@archipelago/protocol';
import sharp from 'sharp';
import { DomainError } from '../errors.js';
import { resolveSettings } from '../services/sampling.js';
import type { LoadedEnsemble, SampleSettings } from './loaded-ensemble.js';

/** Images per sampling call (the REST endpoint's limit, so the memory of one call is known). */
export const SCORE_BATCH = 64;

/**
 * The built-in dataset and resolution to score a manifest against: `dataset` when given, else
 * the built-in dataset the manifest's dataset name starts with (case-insensitive, e.g. "MNIST
 * digits"); square images only.
 * @throws {DomainError} `bad_request` naming the built-in datasets
 */
export function metricDataset(
  manifest: Pick<EnsembleManifest, 'dataset'>,
  dataset?: string,
): { dataset: BuiltinDatasetName; resolution: number } {
  const names = BUILTIN_DATASETS.map((d) => d.name);
  const name =
    dataset ?? names.find((n) => manifest.dataset.name.toLowerCase().startsWith(n.toLowerCase()));
  if (!name || !names.includes(name as BuiltinDatasetName))
    throw new DomainError(
      'bad_request',
      `no metric for dataset "${dataset ?? manifest.dataset.name}": the metric's classifiers are trained on the built-in datasets (${names.join(', ')}); pass --dataset <name> if the ensemble was trained on one of them`,
    );
  const { height, width } = manifest.dataset;
  if (height !== width)
    throw new DomainError('bad_request', `the metric needs square images, got ${height}x${width}`);
  return { dataset: name as BuiltinDatasetName, resolution: height };
}

/**
 * `count` samples of `ensemble` with `settings` (its count, seed and classes are replaced):
 * batches of {@link SCORE_BATCH}, batch `b` seeded with `deriveSeed(seed, 'score', b)`; sample
 * `i` of a class-conditional ensemble gets class `i mod numClasses` unless `unconditional`.
 */
export async function sampleForScore(
  ensemble: LoadedEnsemble,
  settings: SampleSettings,
  count: number,
  options: { unconditional?: boolean; onBatch?: (done: number) => void } = {},
): Promise<Images & { seconds: number }> {
  const numClasses = options.unconditional ? 0 : ensemble.numClasses;
  const parts: Uint8Array[] = [];
  let shape = { height: 0, width: 0, channels: 1 as 1 | 3 };
  let seconds = 0;
  for (let done = 0, b = 0; done < count; b++) {
    const n = Math.min(SCORE_BATCH, count - done);
    const classes =
      numClasses > 0 ? Array.from({ length: n }, (_, i) => (done + i) % numClasses) : null;
    const out = await ensemble.sample({
      ...settings,
      count: n,
      seed: deriveSeed(settings.seed, 'score', b),
      class: null,
      classes,
    });
    parts.push(out.pixels);
    shape = { height: out.height, width: out.width, channels: out.channels };
    seconds += out.seconds;
    done += n;
    options.onBatch?.(done);
  }
  const pixels = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let offset = 0;
  for (const p of parts) {
    pixels.set(p, offset);
    offset += p.length;
  }
  return { ...shape, count, pixels, seconds };
}

/** What `score.json` holds. */
export interface EnsembleScore {
  /** Always "FD-cls": a Frechet distance in the classifier's features, not FID. */
  metric: 'FD-cls';
  ensembleId: string;
  run: EnsembleManifest['run'];
  dataset: { name: BuiltinDatasetName; resolution: number; heldOut: number };
  classifier: Pick<ShippedClassifier, 'file' | 'sha256' | 'heldOutAccuracy' | 'seed'>;
  settings: Omit<SampleSettings, 'count' | 'class' | 'classes'> & {
    samples: number;
    classes: 'balanced' | 'unconditional';
  };
  scores: ImageScores;
  /** The same scores of as many real training images (the floor a perfect ensemble reaches). */
  reference: Pick<ImageScores, 'fdCls' | 'precision' | 'recall' | 'intraClassDiversity'> & {
    fragments: ImageScores['fragments']['generated'];
  };
  seconds: { sampling: number; scoring: number };
}

/**
 * Score `samples` against the held-out split of `dataset` at `resolution`, and the same number
 * of real training images as the reference.
 */
export async function scoreSamples(
  samples: Images,
  dataset: BuiltinDatasetName,
  resolution: number,
): Promise<{
  scores: ImageScores;
  reference: EnsembleScore['reference'];
  entry: ShippedClassifier;
  heldOut: number;
}> {
  const { classifier, entry } = await loadShippedClassifier(dataset, resolution);
  try {
    const { train, heldOut } = await loadMetricSplit(dataset, resolution);
    const scores = scoreImages(classifier, heldOut, samples);
    // Evenly spaced training images: every class, as many as the samples.
    const n = Math.min(samples.count, train.count);
    const step = train.count / n;
    const indices = Array.from({ length: n }, (_, i) => Math.floor(i * step));
    const ref = scoreImages(classifier, heldOut, subsetImageSet(train, indices));
    return {
      scores,
      reference: {
        fdCls: ref.fdCls,
        precision: ref.precision,
        recall: ref.recall,
        intraClassDiversity: ref.intraClassDiversity,
        fragments: ref.fragments.generated,
      },
      entry,
      heldOut: heldOut.count,
    };
  } finally {
    classifier.dispose();
  }
}

const escapeXml = (s: string) => s.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);

/** The figure: up to 100 samples in a grid, and beside it the scores and the reference. */
export async function scoreFigure(samples: Images, score: EnsembleScore): Promise<Buffer> {
  const shown = Math.min(samples.count, 100);
  const cols = Math.min(10, shown);
  const set: ImageSet = {
    ...samples,
    count: shown,
    pixels: samples.pixels.subarray(0, shown * samples.height * samples.width * samples.channels),
    labels: new Int32Array(shown).fill(-1),
    classNames: [],
  };
  const rows: number[][] = [];
  for (let i = 0; i < shown; i += cols)
    rows.push(Array.from({ length: Math.min(cols, shown - i) }, (_, j) => i + j));
  const grid = await renderGrid(set, rows, { scale: upscaleFor(samples.height, 32, 4) });
  const meta = await sharp(grid).metadata();
  const s = score.scores;
  const r = score.reference;
  const f = (v: number, d = 3) => (Number.isFinite(v) ? v.toFixed(d) : 'n/a');
  const lines: [string, string, string][] = [
    ['', 'samples', 'real train'],
    ['FD-cls (lower is better)', f(s.fdCls, 2), f(r.fdCls, 2)],
    ['precision', f(s.precision), f(r.precision)],
    ['recall', f(s.recall), f(r.recall)],
    ['intra-class diversity', f(s.intraClassDiversity), f(r.intraClassDiversity)],
    [
      'components per image',
      f(s.fragments.generated.meanComponents, 2),
      f(r.fragments.meanComponents, 2),
    ],
    ['fragmented (> 1 component)', f(s.fragments.generated.fragmented), f(r.fragments.fragmented)],
  ];
  const textWidth = 520;
  const lineHeight = 24;
  const width = (meta.width ?? 0) + textWidth;
  const height = Math.max(meta.height ?? 0, 60 + lineHeight * (lines.length + 5));
  const x0 = (meta.width ?? 0) + 20;
  const text = [
    `<text x="${x0}" y="28" font-size="17" font-weight="bold">${escapeXml(`${score.run.name}: ${score.dataset.name} ${score.dataset.resolution}x${score.dataset.resolution}`)}</text>`,
    ...lines.map(
      ([label, a, b], i) =>
        `<text x="${x0}" y="${60 + i * lineHeight}" font-size="15"${i === 0 ? ' font-weight="bold"' : ''}>${escapeXml(label)}</text>` +
        `<text x="${x0 + 370}" y="${60 + i * lineHeight}" font-size="15" text-anchor="end">${a}</text>` +
        `<text x="${x0 + 480}" y="${60 + i * lineHeight}" font-size="15" text-anchor="end">${b}</text>`,
    ),
    ...[
      `${s.counts.generated} samples vs ${s.counts.real} held-out real images; k = ${s.k}`,
      `${score.settings.sampler} ${score.settings.steps} steps, routing ${score.settings.routing}, seed ${score.settings.seed}`,
      'FD-cls: Frechet distance in the features of an MLP',
      `classifier trained on ${score.dataset.name} (held-out accuracy ${(100 * score.classifier.heldOutAccuracy).toFixed(1)} %); not FID`,
    ].map(
      (line, i) =>
        `<text x="${x0}" y="${60 + (lines.length + 0.5 + i) * lineHeight}" font-size="13" fill="#444">${escapeXml(line)}</text>`,
    ),
  ].join('');
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="DejaVu Sans, sans-serif"><rect width="100%" height="100%" fill="white"/>${text}</svg>`;
  return sharp(Buffer.from(svg))
    .composite([{ input: grid, left: 0, top: 0 }])
    .flatten({ background: '#ffffff' })
    .png()
    .toBuffer();
}

export interface ScoreOptions {
  samples: number;
  seed: number;
  /** The built-in dataset to score against (default: from the manifest's dataset name). */
  dataset?: string | undefined;
  /** Sampler settings other than the manifest's defaults (count, seed and classes are ignored). */
  request?: Partial<SampleRequest>;
  /** Sample a class-conditional ensemble without classes. */
  unconditional?: boolean;
  /** After each batch of samples, and once more (`stage` 'scoring') before scoring them. */
  progress?: (stage: string, done: number, total: number) => void;
}

/**
 * Sample `ensemble` (whose manifest is `manifest`) and score the samples: `score.json`'s content
 * and the figure. The `score --manifest` command and the coordinator's `score-ensemble` job both
 * come here.
 */
export async function scoreEnsemble(
  ensemble: LoadedEnsemble,
  manifest: EnsembleManifest,
  options: ScoreOptions,
): Promise<{ score: EnsembleScore; figure: Buffer }> {
  if (options.samples < 10)
    throw new DomainError('bad_request', `score at least 10 samples, got ${options.samples}`);
  const { dataset, resolution } = metricDataset(manifest, options.dataset);
  const settings = resolveSettings(
    { ...options.request, count: 1, seed: options.seed } as SampleRequest,
    {
      experts: manifest.experts.length,
      numClasses: ensemble.numClasses,
      inference: manifest.inference,
    },
  );
  const unconditional = options.unconditional === true || ensemble.numClasses === 0;
  const progress = options.progress ?? (() => {});
  progress('sampling', 0, options.samples);
  const samples = await sampleForScore(ensemble, settings, options.samples, {
    unconditional,
    onBatch: (done) => progress('sampling', done, options.samples),
  });
  progress('scoring', 0, 1);
  const started = performance.now();
  const { scores, reference, entry, heldOut } = await scoreSamples(samples, dataset, resolution);
  const { count: _c, class: _k, classes: _l, ...kept } = settings;
  const score: EnsembleScore = {
    metric: 'FD-cls',
    ensembleId: manifest.id,
    run: manifest.run,
    dataset: { name: dataset, resolution, heldOut },
    classifier: {
      file: entry.file,
      sha256: entry.sha256,
      heldOutAccuracy: entry.heldOutAccuracy,
      seed: entry.seed,
    },
    settings: {
      ...kept,
      samples: options.samples,
      classes: unconditional ? 'unconditional' : 'balanced',
    },
    scores,
    reference,
    seconds: { sampling: samples.seconds, scoring: (performance.now() - started) / 1000 },
  };
  const figure = await scoreFigure(samples, score);
  progress('scoring', 1, 1);
  return { score, figure };
}
