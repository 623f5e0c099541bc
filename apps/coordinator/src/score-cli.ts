/**
 * `score`: how good is a published ensemble? Verifies the manifest as `sample` does, draws
 * `--samples` images (classes balanced for a class-conditional ensemble), scores them with
 * `@archipelago/metrics` against the held-out split of the manifest's dataset at its resolution
 * (FD-cls, precision/recall, intra-class diversity, fragment index) and writes `score.json` and
 * `score.png` to `--out`.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { type BackendName, initBackend, SYNC_READ_BACKENDS } from '@archipelago/models';
import { ROUTING_STRATEGIES, SAMPLERS, type SampleRequest } from '@archipelago/protocol';
import { Command, InvalidArgumentError, Option } from 'commander';
import { nonNegativeInt, num } from './cli/options.js';
import { LoadedEnsemble } from './ensembles/loaded-ensemble.js';
import { ManifestError } from './ensembles/manifest.js';
import { openManifest, parseOrigin, verifyEnsemble } from './ensembles/manifest-source.js';
import { metricDataset, scoreEnsemble } from './ensembles/score-ensemble.js';
import { DomainError } from './errors.js';
import { pinnedKeys } from './sample-cli.js';
import { VERSION } from './version.js';

interface ScoreOpts {
  manifest: string;
  out: string;
  samples: number;
  seed: number;
  dataset?: string;
  steps?: number;
  sampler?: string;
  routing?: string;
  k?: number;
  tau?: number;
  guidance?: number;
  unconditional?: boolean;
  publicKey?: string[];
  publicKeyFile?: string[];
  insecure?: boolean;
  allowOrigin?: string[];
  backend?: string;
  quiet?: boolean;
}

export function buildScoreCli(): Command {
  return new Command('score')
    .description(
      "score a published ensemble against its dataset's held-out images: FD-cls (a Frechet distance in the features of a classifier trained on the dataset, not FID), precision/recall, intra-class diversity, fragment index",
    )
    .version(VERSION)
    .requiredOption('--manifest <url|file>', 'the ensemble manifest (http(s) URL or path)')
    .option('--out <dir>', 'where to write score.json and score.png', 'out/score')
    .addOption(
      new Option('--samples <n>', 'images to sample and score (at least 10)')
        .argParser(nonNegativeInt('--samples'))
        .default(1000),
    )
    .addOption(
      new Option('--seed <n>', 'noise seed').argParser(nonNegativeInt('--seed')).default(0),
    )
    .option(
      '--dataset <name>',
      "the built-in dataset to score against (default: the one the manifest's dataset name starts with)",
    )
    .addOption(
      new Option('--steps <n>', 'sampler steps (default: the manifest)').argParser(
        nonNegativeInt('--steps'),
      ),
    )
    .addOption(new Option('--sampler <name>', 'default: the manifest').choices(SAMPLERS))
    .addOption(
      new Option('--routing <strategy>', 'default: the manifest').choices(ROUTING_STRATEGIES),
    )
    .addOption(new Option('--k <n>', 'experts for top-k').argParser(nonNegativeInt('--k')))
    .addOption(new Option('--tau <p>', 'threshold routing').argParser(num('--tau')))
    .addOption(
      new Option('--guidance <w>', 'classifier-free guidance scale').argParser(num('--guidance')),
    )
    .option('--unconditional', 'sample a class-conditional ensemble without classes')
    .option('--public-key <key...>', 'trust these Ed25519 public keys (base64url)')
    .option(
      '--public-key-file <file>',
      'trust the keys in this file (repeatable)',
      (v: string, prev: string[] = []) => [...prev, v],
    )
    .option('--insecure', 'with no key given, trust the key the manifest carries')
    .option(
      '--allow-origin <origin>',
      "also fetch files from this origin, besides the manifest's own (repeatable)",
      (value: string, previous: string[] | undefined) => {
        try {
          return [...(previous ?? []), parseOrigin(value)];
        } catch (err) {
          throw new InvalidArgumentError((err as Error).message);
        }
      },
    )
    .addOption(
      new Option('--backend <name>', 'TensorFlow.js backend').choices([...SYNC_READ_BACKENDS]),
    )
    .option('--quiet', 'no progress on stderr')
    .action(async (opts: ScoreOpts) => {
      const say = (line: string) => {
        if (!opts.quiet) process.stderr.write(`${line}\n`);
      };
      if (opts.samples < 10)
        throw new DomainError('bad_request', `--samples must be at least 10, got ${opts.samples}`);
      const trustedKeys = await pinnedKeys(opts);
      const source = await openManifest(opts.manifest, { allowOrigins: opts.allowOrigin ?? [] });
      const { manifest } = source;
      // Before downloading anything: an ensemble of a dataset with no metric is refused at once.
      const { dataset } = metricDataset(manifest, opts.dataset);
      const files = await verifyEnsemble(source, trustedKeys ? { trustedKeys } : {});
      say(`manifest ${manifest.id} (run ${manifest.run.name}) verified`);
      await initBackend(opts.backend ? { backend: opts.backend as BackendName } : {});
      const ensemble = await LoadedEnsemble.load(manifest, async (file) => files.get(file.uri)!);
      try {
        const request = {
          ...(opts.steps !== undefined ? { steps: opts.steps } : {}),
          ...(opts.sampler ? { sampler: opts.sampler } : {}),
          ...(opts.routing ? { routing: opts.routing } : {}),
          ...(opts.k !== undefined ? { k: opts.k } : {}),
          ...(opts.tau !== undefined ? { tau: opts.tau } : {}),
          ...(opts.guidance !== undefined ? { guidance: opts.guidance } : {}),
        } as Partial<SampleRequest>;
        const unconditional = opts.unconditional === true || ensemble.numClasses === 0;
        say(
          `sampling ${opts.samples} images (${unconditional ? 'unconditional' : 'classes balanced'}), seed ${opts.seed}`,
        );
        const { score, figure } = await scoreEnsemble(ensemble, manifest, {
          samples: opts.samples,
          seed: opts.seed,
          dataset,
          request,
          unconditional,
          progress: (stage, done, total) => {
            if (stage === 'sampling' && done > 0) say(`  ${done}/${total}`);
          },
        });
        const { scores, reference } = score;
        await mkdir(opts.out, { recursive: true });
        await writeFile(path.join(opts.out, 'score.json'), `${JSON.stringify(score, null, 2)}\n`);
        await writeFile(path.join(opts.out, 'score.png'), figure);
        say(
          `FD-cls ${scores.fdCls.toFixed(2)} (real train: ${reference.fdCls.toFixed(2)}), precision ${scores.precision.toFixed(3)}, recall ${scores.recall.toFixed(3)}, diversity ${scores.intraClassDiversity.toFixed(3)}, components ${scores.fragments.generated.meanComponents.toFixed(2)}; wrote ${path.join(opts.out, 'score.json')} and score.png`,
        );
      } finally {
        ensemble.dispose();
      }
    });
}

export async function mainScore(argv = process.argv): Promise<void> {
  try {
    await buildScoreCli().parseAsync(argv);
  } catch (err) {
    if (err instanceof ManifestError || err instanceof DomainError || err instanceof RangeError) {
      const code = 'code' in err ? `${err.code}: ` : '';
      process.stderr.write(`score: ${code}${err.message}\n`);
      process.exitCode = err instanceof ManifestError ? 3 : 2;
      return;
    }
    throw err;
  }
}
