import {
  CLUSTER_ASSIGNMENTS,
  CreateRunBody,
  FM_TIME_SAMPLINGS,
  MODEL_PRESETS,
  SCHEDULES,
} from '@archipelago/protocol';
import { type Command, InvalidArgumentError, Option } from 'commander';
import { progressPrinter } from '../progress.js';
import { createRun, getRun, listRuns } from '../services/runs.js';
import { checkBody, dataDirOption, int, num, print } from './options.js';
import { withCoordinator } from './with-coordinator.js';

/** `--init-from run_x:0` as the body's `{ runId, cluster }`. */
export function initFromRef(value: string): { runId: string; cluster: number } {
  const m = /^([^:]+):(\d+)$/.exec(value);
  if (!m) throw new InvalidArgumentError(`--init-from must be <run id>:<cluster>, got "${value}"`);
  return { runId: m[1]!, cluster: Number(m[2]) };
}

/** `run create|list|show`. */
export function registerRunCommands(program: Command): void {
  const run = program.command('run').description('create and inspect training runs');
  run
    .command('create')
    .description('create a run: K experts over a clustering of a dataset')
    .requiredOption('--dataset <id>', 'dataset id')
    .requiredOption(
      '--experts <k>',
      'number of experts (clusters; 1: a monolith)',
      int('--experts'),
    )
    .addOption(
      new Option(
        '--assignment <kind>',
        'how images go to shards: semantic (k-means) or random (shards of the semantic sizes, a baseline)',
      ).choices(CLUSTER_ASSIGNMENTS),
    )
    .option('--objectives <mix>', 'objective mix: ddpm:2,fm:6 | fm | ddpm | any', 'any')
    .addOption(new Option('--schedule <name>', 'DDPM noise schedule').choices(SCHEDULES))
    .addOption(
      new Option(
        '--fm-time-sampling <kind>',
        'training times of FM experts (default logit-normal: docs/results.md §1)',
      ).choices(FM_TIME_SAMPLINGS),
    )
    .addOption(new Option('--model <preset>', 'model size preset').choices(MODEL_PRESETS))
    .requiredOption('--steps <n>', 'training steps per expert', int('--steps'))
    .option('--checkpoint-interval <n>', 'steps between checkpoints', int('--checkpoint-interval'))
    .option('--batch-size <n>', 'batch size', int('--batch-size'))
    .option('--learning-rate <lr>', 'learning rate', num('--learning-rate'))
    .option('--resolution <px>', "resolution (must match the dataset's)", int('--resolution'))
    .option('--seed <n>', 'seed', int('--seed'))
    .option('--name <name>', 'run name')
    .option('--init-fm-from-ddpm', 'initialise FM experts from a finished DDPM checkpoint')
    .option(
      '--init-from <run:cluster>',
      'initialise every FM expert from the final checkpoint of expert <cluster> of published run <run> (a DDPM expert of the same architecture)',
      initFromRef,
    )
    .option('--json', 'print JSON')
    .addOption(dataDirOption())
    .action(async (opts) => {
      const body = checkBody<CreateRunBody>(
        CreateRunBody,
        Object.fromEntries(
          Object.entries({
            name: opts.name,
            datasetId: opts.dataset,
            experts: opts.experts,
            assignment: opts.assignment,
            objectives: opts.objectives,
            schedule: opts.schedule,
            fmTimeSampling: opts.fmTimeSampling,
            model: opts.model,
            stepsPerExpert: opts.steps,
            checkpointInterval: opts.checkpointInterval,
            batchSize: opts.batchSize,
            learningRate: opts.learningRate,
            resolution: opts.resolution,
            seed: opts.seed,
            initFmFromDdpm: opts.initFmFromDdpm,
            initFrom: opts.initFrom,
          }).filter(([, v]) => v !== undefined),
        ),
        'run options',
      );
      await withCoordinator(opts, async (c) => {
        const created = createRun(c, body);
        const bar = progressPrinter();
        // Clustering, when the run needs one, runs here and now (only that job: a server
        // sharing this data dir keeps its own).
        const pending = c.db.query.jobs
          .findFirst({
            where: (j, { eq, and }) => and(eq(j.runId, created.id), eq(j.status, 'queued')),
          })
          .sync();
        if (pending) {
          const timer = setInterval(() => {
            const p = c.jobs.get(pending.id)?.progress;
            if (p) bar.update(p.stage, p.done, p.total);
          }, 200);
          await c.jobs.processJob(pending.id).finally(() => {
            clearInterval(timer);
            bar.done();
          });
        }
        const shown = getRun(c.db, created.id);
        print(shown, opts.json, () => runSummary(shown));
      });
    });

  run
    .command('list')
    .description('list runs')
    .option('--json', 'print JSON')
    .addOption(dataDirOption())
    .action(async (opts) =>
      withCoordinator(opts, async (c) => {
        const all = listRuns(c.db);
        print(all, opts.json, () =>
          all.length === 0
            ? 'no runs'
            : all
                .map(
                  (r) =>
                    `${r.id}  ${r.name.padEnd(24)} ${r.status.padEnd(10)} K=${r.k}  ${r.objectives}`,
                )
                .join('\n'),
        );
      }),
    );

  run
    .command('show <runId>')
    .description("show a run with each expert's cluster, size, objective and status")
    .option('--json', 'print JSON')
    .addOption(dataDirOption())
    .action(async (id: string, opts) =>
      withCoordinator(opts, async (c) => {
        const shown = getRun(c.db, id);
        print(shown, opts.json, () => runSummary(shown));
      }),
    );
}

function runSummary(r: ReturnType<typeof getRun>): string {
  const head = `run ${r.id} "${r.name}": ${r.status}, K=${r.k}, objectives ${r.objectives}, ${r.config.stepsPerExpert} steps/expert, model ${r.config.model}${r.error ? `\n  error: ${r.error}` : ''}`;
  const rows = r.experts.map(
    (e) =>
      `  expert ${e.id}  cluster ${String(e.cluster).padStart(2)}  ${e.objective.padEnd(4)} ${(e.schedule ?? '').padEnd(6)} ${e.status.padEnd(9)} size ${String(e.size ?? '-').padStart(6)}  step ${e.step}/${e.targetSteps}`,
  );
  return [head, ...rows].join('\n');
}
