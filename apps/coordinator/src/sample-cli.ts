/**
 * `sample`: draw images from a published ensemble with no coordinator. The manifest (a URL or a
 * file) is verified first — content id, Ed25519 signature (against `--public-key` when given),
 * and the size and sha256 of every checkpoint — and only then loaded.
 */
import { writeFile } from 'node:fs/promises';
import { BACKENDS, type BackendName, initBackend } from '@archipelago/models';
import {
  CONVERSION_MODES,
  ROUTING_STRATEGIES,
  SAMPLE_LIMITS,
  SAMPLERS,
  SampleRequest,
} from '@archipelago/protocol';
import { Command, InvalidArgumentError, Option } from 'commander';
import { Value } from 'typebox/value';
import { nonNegativeInt, num } from './cli/options.js';
import { LoadedEnsemble } from './ensembles/loaded-ensemble.js';
import { ManifestError } from './ensembles/manifest.js';
import { openManifest, verifyEnsemble } from './ensembles/manifest-source.js';
import { DomainError } from './errors.js';
import { gridPng, resolveSettings, samplePngs } from './services/sampling.js';
import { VERSION } from './version.js';

interface SampleOpts {
  manifest: string;
  out: string;
  json?: string;
  count: number;
  steps?: number;
  seed: number;
  sampler?: string;
  routing?: string;
  k?: number;
  tau?: number;
  conversion?: string;
  class?: number;
  classes?: number[];
  guidance?: number;
  columns?: number;
  publicKey?: string[];
  backend?: string;
  quiet?: boolean;
}

export function buildSampleCli(): Command {
  return new Command('sample')
    .description('sample a grid from a published ensemble manifest, offline, after verifying it')
    .version(VERSION)
    .requiredOption('--manifest <url|file>', 'the ensemble manifest (http(s) URL or path)')
    .requiredOption('--out <file.png>', 'where to write the PNG grid')
    .option('--json <file>', 'also write the per-sample routing statistics as JSON')
    .addOption(
      new Option('--count <n>', `images (1-${SAMPLE_LIMITS.maxCount})`)
        .argParser(nonNegativeInt('--count'))
        .default(16),
    )
    .addOption(
      new Option('--steps <n>', 'sampler steps (default: the manifest)').argParser(
        nonNegativeInt('--steps'),
      ),
    )
    .addOption(
      new Option('--seed <n>', 'noise seed: same seed, same images')
        .argParser(nonNegativeInt('--seed'))
        .default(0),
    )
    .addOption(new Option('--sampler <name>', 'default: the manifest').choices(SAMPLERS))
    .addOption(
      new Option('--routing <strategy>', 'default: the manifest').choices(ROUTING_STRATEGIES),
    )
    .addOption(
      new Option('--k <n>', 'experts per sample for top-k').argParser(nonNegativeInt('--k')),
    )
    .addOption(
      new Option('--tau <p>', 'threshold routing: keep experts with p >= tau').argParser(
        num('--tau'),
      ),
    )
    .addOption(
      new Option('--conversion <mode>', 'DDPM -> velocity conversion').choices(CONVERSION_MODES),
    )
    .addOption(
      new Option('--class <n>', 'class label (class-conditional ensembles)').argParser(
        nonNegativeInt('--class'),
      ),
    )
    .addOption(
      new Option(
        '--classes <list>',
        'one class per sample, comma-separated, repeated up to --count (e.g. 0,1,2,3,4,5,6,7,8,9)',
      ).argParser((v: string) => {
        const list = v.split(',').map((x) => x.trim());
        if (!list.every((x) => /^\d+$/.test(x)))
          throw new InvalidArgumentError(
            `--classes must be comma-separated class numbers, got "${v}"`,
          );
        return list.map(Number);
      }),
    )
    .addOption(
      new Option('--guidance <w>', 'classifier-free guidance scale').argParser(num('--guidance')),
    )
    .addOption(new Option('--columns <n>', 'grid columns').argParser(nonNegativeInt('--columns')))
    .option(
      '--public-key <key...>',
      "trust only these Ed25519 public keys (base64url, as GET /api/v1/keys lists them); default: the manifest's own key",
    )
    .addOption(new Option('--backend <name>', 'TensorFlow.js backend').choices(BACKENDS))
    .option('--quiet', 'no progress on stderr')
    .action(async (opts: SampleOpts) => {
      const say = (line: string) => {
        if (!opts.quiet) process.stderr.write(`${line}\n`);
      };
      const source = await openManifest(opts.manifest);
      const { manifest } = source;
      say(
        `manifest ${manifest.id}: run ${manifest.run.name}, ${manifest.experts.length} experts (${manifest.run.objectives}), key ${manifest.signature.keyId}`,
      );
      const files = await verifyEnsemble(
        source,
        opts.publicKey ? { trustedKeys: opts.publicKey } : {},
        (name, bytes) => say(`  ${name}: ${(bytes / 1e6).toFixed(1)} MB, sha256 ok`),
      );
      say('signature and every checkpoint verified');
      const request = {
        count: opts.count,
        seed: opts.seed,
        ...(opts.steps !== undefined ? { steps: opts.steps } : {}),
        ...(opts.sampler ? { sampler: opts.sampler } : {}),
        ...(opts.routing ? { routing: opts.routing } : {}),
        ...(opts.k !== undefined ? { k: opts.k } : {}),
        ...(opts.tau !== undefined ? { tau: opts.tau } : {}),
        ...(opts.conversion ? { conversion: opts.conversion } : {}),
        ...(opts.class !== undefined ? { class: opts.class } : {}),
        ...(opts.classes
          ? {
              classes: Array.from(
                { length: opts.count },
                (_, i) => opts.classes![i % opts.classes!.length]!,
              ),
            }
          : {}),
        ...(opts.guidance !== undefined ? { guidance: opts.guidance } : {}),
      };
      if (!Value.Check(SampleRequest, request)) {
        const e = Value.Errors(SampleRequest, request)[0];
        throw new DomainError(
          'bad_request',
          `invalid request: ${e?.instancePath.slice(1) ?? ''} ${e?.message ?? ''}`,
        );
      }
      await initBackend(opts.backend ? { backend: opts.backend as BackendName } : {});
      const ensemble = await LoadedEnsemble.load(manifest, async (file) => files.get(file.uri)!);
      try {
        const arch = manifest.model.architecture as { numClasses?: number };
        const settings = resolveSettings(request as SampleRequest, {
          experts: manifest.experts.length,
          numClasses: Number(arch.numClasses ?? 0),
          inference: manifest.inference,
        });
        say(
          `sampling ${settings.count} images: ${settings.sampler} ${settings.steps} steps, routing ${settings.routing}${settings.routing === 'top-k' ? ` (k=${settings.k})` : ''}, seed ${settings.seed}`,
        );
        const out = await ensemble.sample(settings);
        await writeFile(opts.out, await gridPng(out, opts.columns));
        say(
          `wrote ${opts.out} in ${out.seconds.toFixed(1)} s; expert evaluations ${out.routing.totals.join(' / ')}`,
        );
        if (opts.json) {
          const body = {
            ensembleId: manifest.id,
            settings,
            images: await samplePngs(out),
            perSample: out.perSample,
            routing: out.routing,
            seconds: out.seconds,
          };
          await writeFile(opts.json, `${JSON.stringify(body, null, 2)}\n`);
        }
      } finally {
        ensemble.dispose();
      }
    });
}

export async function mainSample(argv = process.argv): Promise<void> {
  try {
    await buildSampleCli().parseAsync(argv);
  } catch (err) {
    if (err instanceof ManifestError || err instanceof DomainError || err instanceof RangeError) {
      process.stderr.write(`sample: ${err.message}\n`);
      process.exitCode = err instanceof ManifestError ? 3 : 2;
      return;
    }
    throw err;
  }
}
