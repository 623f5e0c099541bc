import {
  BUILTIN_DATASET_NAMES,
  CLUSTER_ASSIGNMENTS,
  ClusterBody,
  ImportDatasetBody,
} from '@archipelago/protocol';
import { type Command, Option } from 'commander';
import { newId } from '../ids.js';
import { progressPrinter } from '../progress.js';
import {
  clusterStoredDataset,
  getDataset,
  importDataset,
  listDatasets,
  precheckImport,
} from '../services/datasets.js';
import { checkBody, dataDirOption, int, num, print } from './options.js';
import { UsageError } from './usage-error.js';
import { withCoordinator } from './with-coordinator.js';

/** `--assignment`, of `dataset import` and `dataset cluster`. */
const assignmentOption = () =>
  new Option(
    '--assignment <kind>',
    'how images go to shards: semantic (k-means) or random (shards of the semantic sizes, a baseline)',
  ).choices(CLUSTER_ASSIGNMENTS);

function clusterSummary(c: {
  k: number;
  assignment: string;
  sizes: number[];
  inertia: number;
  fineK: number;
  durationMs: number;
  id: string;
}) {
  const total = c.sizes.reduce((a, b) => a + b, 0);
  const rows = c.sizes.map(
    (s, i) =>
      `    cluster ${String(i).padStart(2)}  ${String(s).padStart(7)} images  ${((100 * s) / total).toFixed(1).padStart(5)} %`,
  );
  return [
    `  clustering ${c.id}: K=${c.k}${c.assignment === 'random' ? ' random shards' : ''} (from ${c.fineK} fine centroids) in ${(c.durationMs / 1000).toFixed(1)} s, inertia ${c.inertia.toFixed(1)}`,
    ...rows,
  ].join('\n');
}

/** `dataset import|cluster|list|show`. */
export function registerDatasetCommands(program: Command): void {
  const dataset = program.command('dataset').description('import, cluster and inspect datasets');
  dataset
    .command('import')
    .description(
      'import a folder of PNG/JPEG images or a built-in dataset, optionally clustering it into K shards',
    )
    .requiredOption('--name <name>', 'dataset name')
    .addOption(
      new Option('--builtin <name>', 'a dataset shipped with Archipelago')
        .choices(BUILTIN_DATASET_NAMES)
        .conflicts('folder'),
    )
    .option('--folder <dir>', 'folder of PNG/JPEG images (labels from sub-folder names)')
    .option('--no-labels', 'do not take labels from sub-folder names')
    .option('--resolution <px>', 'square side in pixels', int('--resolution'))
    .addOption(new Option('--channels <n>', '1 (grayscale) or 3 (RGB)').choices(['1', '3']))
    .option(
      '--embeddings <file.npy>',
      'precomputed float32 features, one row per image in import order',
    )
    .option(
      '--pca-components <n>',
      'PCA features when no embeddings are given',
      int('--pca-components'),
    )
    .option('--clusters <k>', 'cluster into K shards right away', int('--clusters'))
    .addOption(assignmentOption())
    .option('--fine-k <n>', 'fine centroids of the two-level k-means', int('--fine-k'))
    .option('--seed <n>', 'clustering seed', int('--seed'))
    .option('--val-fraction <f>', 'held-out validation fraction per shard', num('--val-fraction'))
    .option('--json', 'print JSON')
    .addOption(dataDirOption())
    .action(async (opts) => {
      if (!opts.builtin && !opts.folder)
        throw new UsageError('give --builtin <name> or --folder <dir>');
      const body = checkBody<ImportDatasetBody>(
        ImportDatasetBody,
        {
          name: opts.name,
          source: opts.builtin
            ? { kind: 'builtin', name: opts.builtin }
            : {
                kind: 'folder',
                path: opts.folder,
                ...(opts.labels === false ? { labelsFromSubfolders: false } : {}),
              },
          ...(opts.resolution !== undefined ? { resolution: opts.resolution } : {}),
          ...(opts.channels !== undefined ? { channels: Number(opts.channels) } : {}),
          ...(opts.embeddings ? { embeddingsPath: opts.embeddings } : {}),
          ...(opts.pcaComponents !== undefined ? { pcaComponents: opts.pcaComponents } : {}),
          ...(opts.clusters !== undefined
            ? {
                cluster: {
                  k: opts.clusters,
                  ...(opts.assignment !== undefined ? { assignment: opts.assignment } : {}),
                  ...(opts.fineK !== undefined ? { fineK: opts.fineK } : {}),
                  ...(opts.seed !== undefined ? { seed: opts.seed } : {}),
                  ...(opts.valFraction !== undefined ? { valFraction: opts.valFraction } : {}),
                },
              }
            : {}),
        },
        'import options',
      );
      await precheckImport(body);
      await withCoordinator(opts, async (c) => {
        const bar = progressPrinter();
        const result = await importDataset(
          c,
          body,
          { datasetId: newId('dataset') },
          bar.update,
        ).finally(bar.done);
        const ds = getDataset(c.db, result.datasetId);
        print(ds, opts.json, () =>
          [
            `imported dataset ${ds.id} "${ds.name}": ${ds.count} images ${ds.width}x${ds.height}x${ds.channels}, ${ds.classNames.length} classes, features ${ds.featureKind}(${ds.featureDim}) in ${(ds.importMs / 1000).toFixed(1)} s`,
            ...ds.clusterings.map(clusterSummary),
          ].join('\n'),
        );
      });
    });

  dataset
    .command('cluster <datasetId>')
    .description('cluster an imported dataset into K shards')
    .requiredOption('--k <k>', 'clusters (experts)', int('--k'))
    .addOption(assignmentOption())
    .option('--fine-k <n>', 'fine centroids', int('--fine-k'))
    .option('--seed <n>', 'seed', int('--seed'))
    .option('--val-fraction <f>', 'held-out validation fraction per shard', num('--val-fraction'))
    .option('--json', 'print JSON')
    .addOption(dataDirOption())
    .action(async (datasetId: string, opts) => {
      const body = checkBody<ClusterBody>(
        ClusterBody,
        {
          k: opts.k,
          ...(opts.assignment !== undefined ? { assignment: opts.assignment } : {}),
          ...(opts.fineK !== undefined ? { fineK: opts.fineK } : {}),
          ...(opts.seed !== undefined ? { seed: opts.seed } : {}),
          ...(opts.valFraction !== undefined ? { valFraction: opts.valFraction } : {}),
        },
        'cluster options',
      );
      await withCoordinator(opts, async (c) => {
        getDataset(c.db, datasetId);
        const bar = progressPrinter();
        const { clusteringId } = await clusterStoredDataset(
          c,
          { ...body, datasetId, clusteringId: newId('clustering') },
          bar.update,
        ).finally(bar.done);
        const ds = getDataset(c.db, datasetId);
        const cl = ds.clusterings.find((x) => x.id === clusteringId)!;
        print(cl, opts.json, () => clusterSummary(cl));
      });
    });

  dataset
    .command('list')
    .description('list datasets')
    .option('--json', 'print JSON')
    .addOption(dataDirOption())
    .action(async (opts) =>
      withCoordinator(opts, async (c) => {
        const all = listDatasets(c.db);
        print(all, opts.json, () =>
          all.length === 0
            ? 'no datasets'
            : all
                .map(
                  (d) =>
                    `${d.id}  ${d.name.padEnd(20)} ${String(d.count).padStart(7)} images  ${d.width}x${d.height}x${d.channels}  clusterings: ${d.clusterings.map((x) => `${x.id}(K=${x.k})`).join(', ') || '-'}`,
                )
                .join('\n'),
        );
      }),
    );

  dataset
    .command('show <datasetId>')
    .description('show a dataset with its clusterings')
    .option('--json', 'print JSON')
    .addOption(dataDirOption())
    .action(async (id: string, opts) =>
      withCoordinator(opts, async (c) => {
        const ds = getDataset(c.db, id);
        print(ds, opts.json, () =>
          [
            `${ds.id} "${ds.name}": ${ds.count} images ${ds.width}x${ds.height}x${ds.channels}`,
            ...ds.clusterings.map(clusterSummary),
          ].join('\n'),
        );
      }),
    );
}
