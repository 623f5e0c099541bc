/**
 * `sample`: draw images from a published ensemble with no coordinator. The manifest (a URL or a
 * file) is verified first — content id, Ed25519 signature against a pinned key (`--public-key`,
 * `--public-key-file`; the manifest's own key only with `--insecure`), and the size and sha256 of
 * every checkpoint — and only then loaded. What it fetches is bounded (manifest-source.ts):
 * files on the manifest's origin or an `--allow-origin`, redirects within one origin, capped
 * sizes.
 */
import { writeFile } from 'node:fs/promises';
import { type BackendName, initBackend, SYNC_READ_BACKENDS } from '@archipelago/models';
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
import {
  MAX_DOWNLOAD_BYTES,
  MAX_MANIFEST_BYTES,
  openManifest,
  parseOrigin,
  verifyEnsemble,
} from './ensembles/manifest-source.js';
import { checkPublicKey, readKeyFile } from './ensembles/trusted-keys.js';
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
  publicKeyFile?: string[];
  insecure?: boolean;
  allowOrigin?: string[];
  maxDownloadBytes: number;
  maxManifestBytes: number;
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
      'trust these Ed25519 public keys (raw 32 bytes, base64url, as GET /api/v1/keys lists them)',
    )
    .option(
      '--public-key-file <file>',
      'trust the keys in this file: the JSON of GET /api/v1/keys, PEM public keys, or one base64url key a line (repeatable)',
      collect,
    )
    .option(
      '--insecure',
      'with no key given, trust the key the manifest carries (proves integrity, not who signed it)',
    )
    .option(
      '--allow-origin <origin>',
      "also fetch files from this origin (e.g. https://cdn.example.org), besides the manifest's own (repeatable)",
      (value: string, previous: string[] | undefined) => {
        try {
          return [...(previous ?? []), parseOrigin(value)];
        } catch (err) {
          throw new InvalidArgumentError((err as Error).message);
        }
      },
    )
    .addOption(
      new Option('--max-download-bytes <n>', 'refuse any file the manifest names larger than this')
        .argParser(nonNegativeInt('--max-download-bytes'))
        .default(MAX_DOWNLOAD_BYTES),
    )
    .addOption(
      new Option('--max-manifest-bytes <n>', 'refuse a manifest larger than this')
        .argParser(nonNegativeInt('--max-manifest-bytes'))
        .default(MAX_MANIFEST_BYTES),
    )
    .addOption(
      new Option('--backend <name>', 'TensorFlow.js backend').choices([...SYNC_READ_BACKENDS]),
    )
    .option('--quiet', 'no progress on stderr')
    .addHelpText('after', HELP_AFTER)
    .action(async (opts: SampleOpts) => {
      const say = (line: string) => {
        if (!opts.quiet) process.stderr.write(`${line}\n`);
      };
      const trustedKeys = await pinnedKeys(opts);
      const source = await openManifest(opts.manifest, {
        allowOrigins: opts.allowOrigin ?? [],
        maxDownloadBytes: opts.maxDownloadBytes,
        maxManifestBytes: opts.maxManifestBytes,
      });
      const { manifest } = source;
      say(
        `manifest ${manifest.id}: run ${manifest.run.name}, ${manifest.experts.length} experts (${manifest.run.objectives}), key ${manifest.signature.keyId}`,
      );
      if (!trustedKeys)
        process.stderr.write(
          `sample: warning: --insecure: trusting the key the manifest carries (${manifest.signature.keyId}); anyone who can change the manifest can replace it. Pin the publisher's key with --public-key or --public-key-file.\n`,
        );
      const files = await verifyEnsemble(
        source,
        trustedKeys ? { trustedKeys } : {},
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

const HELP_AFTER = `
Trust: the manifest's signature must verify against a pinned key (--public-key, --public-key-file);
without one the command refuses (public_key_required) unless --insecure, which trusts the key the
manifest carries and says so on stderr.

Fetching: a manifest from a URL may name files on that URL's origin only, a manifest from a file
only files in its directory; files on any other http(s) origin need --allow-origin <origin>
(origin_not_allowed). Redirects are followed only within the origin of the URL asked for, at most
5 (redirect_refused). The manifest may have --max-manifest-bytes (1 MiB); each file at most the
size the manifest declares, which must fit --max-download-bytes (1 GiB) and the checkpoint size of
the manifest's architecture; Content-Length and the bytes received are both checked
(download_too_large).

Exit codes: 0 written; 2 bad usage or request (public_key_required, bad_public_key, bad_request);
3 the manifest or a file it names was refused or unavailable (invalid_manifest, id_mismatch,
bad_signature, untrusted_key, checkpoint_mismatch, checkpoint_unavailable, origin_not_allowed,
redirect_refused, download_too_large). Errors print as "sample: <code>: <message>".
`;

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/**
 * The keys to verify against: every `--public-key` and every key in each `--public-key-file`;
 * undefined (trust the manifest's own key) only with `--insecure` and no key given.
 * @throws {ManifestError} `public_key_required`, `bad_public_key`
 */
export async function pinnedKeys(
  opts: Pick<SampleOpts, 'publicKey' | 'publicKeyFile' | 'insecure'>,
): Promise<string[] | undefined> {
  const keys = (opts.publicKey ?? []).map((k) => checkPublicKey(k, '--public-key'));
  for (const file of opts.publicKeyFile ?? []) keys.push(...(await readKeyFile(file)));
  if (keys.length > 0) return keys;
  if (opts.insecure) return undefined;
  throw new ManifestError(
    'public_key_required',
    "no key to verify the manifest against: pass the publisher's key with --public-key <key> or --public-key-file <file> (GET /api/v1/keys of the coordinator you trust lists it), or --insecure to trust the key the manifest carries",
  );
}

/** Exit 2: the command line cannot work; exit 3: the manifest or its files were refused. */
const USAGE_CODES: ReadonlySet<string> = new Set(['public_key_required', 'bad_public_key']);

export async function mainSample(argv = process.argv): Promise<void> {
  try {
    await buildSampleCli().parseAsync(argv);
  } catch (err) {
    if (err instanceof ManifestError || err instanceof DomainError) {
      process.stderr.write(`sample: ${err.code}: ${err.message}\n`);
      process.exitCode = err instanceof ManifestError && !USAGE_CODES.has(err.code) ? 3 : 2;
      return;
    }
    if (err instanceof RangeError) {
      process.stderr.write(`sample: ${err.message}\n`);
      process.exitCode = 2;
      return;
    }
    throw err;
  }
}
