import type { Command } from 'commander';
import { DEMO_DEFAULTS, runDemo } from '../demo.js';
import { int } from './options.js';

/** `demo`: the main job end to end on embedded defaults. */
export function registerDemoCommands(program: Command): void {
  program
    .command('demo')
    .description(
      'the main job on embedded defaults: import and cluster the built-in digits, train K mixed-objective experts with local workers, train the router, publish a signed ensemble and sample from it',
    )
    .option('--out <dir>', 'where outputs go', 'out/demo')
    .option('--experts <k>', 'experts (clusters)', int('--experts'), 4)
    .option('--port <port>', 'port for the coordinator (0: any free port)', int('--port'), 0)
    .option('--workers <n>', 'worker processes to spawn', int('--workers'), 2)
    .option('--steps <n>', 'training steps per expert', int('--steps'), DEMO_DEFAULTS.steps)
    .option('--batch-size <n>', 'training batch size', int('--batch-size'), DEMO_DEFAULTS.batchSize)
    .option('--keep-serving', 'keep the coordinator running afterwards')
    .action(async (opts) => runDemo(opts));
}
