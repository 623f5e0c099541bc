/**
 * A compute thread (a `worker_threads` Worker started by compute-pool.ts): it loads the main
 * thread's TensorFlow.js backend, opens the coordinator's object store (to read ensembles,
 * checkpoints and shards; it writes nothing, and never opens the database) and runs the tasks it
 * is sent: sampling from a published ensemble (its last ensembles stay loaded, as in the main
 * thread's SamplingService), judging a checkpoint (services/validation.ts judgeCheckpoint),
 * fitting a router (services/router-training.ts fitRouter) and scoring a published ensemble
 * (services/ensemble-scores.ts scoreStoredEnsemble).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { initBackend } from '@archipelago/models';
import { pino } from 'pino';
import { openStore } from '../coordinator.js';
import { scoreStoredEnsemble } from '../services/ensemble-scores.js';
import { fitRouter } from '../services/router-training.js';
import { SamplingService } from '../services/sampling.js';
import { judgeCheckpoint } from '../services/validation.js';
import {
  type ComputeTasks,
  type ComputeThreadData,
  type FromThread,
  type ToThread,
  toWireError,
} from './messages.js';

if (!parentPort) throw new Error('compute-thread.js must run as a worker thread');
const port = parentPort;
const { config, backend } = workerData as ComputeThreadData;
const log = pino({ level: config.logLevel }).child({ thread: 'compute' });
const store = openStore(config);
// The main thread's backend; should it not load in a thread, the first that does (logged).
const ready = initBackend({ backend }).catch((err: unknown) => {
  log.warn({ err, backend }, 'compute thread: the main thread backend did not load; falling back');
  return initBackend();
});
const sampling = new SamplingService({ store, log, local: false, maxQueued: 0 });
const running = new Map<number, AbortController>();

const send = (msg: FromThread, transfer: ArrayBuffer[] = []) => port.postMessage(msg, transfer);

async function run(
  msg: Extract<ToThread, { type: 'task' }>,
  signal: AbortSignal,
): Promise<[unknown, ArrayBuffer[]]> {
  await ready;
  const progress = (stage: string, done: number, total: number) =>
    send({ type: 'progress', id: msg.id, stage, done, total });
  switch (msg.kind) {
    case 'sample': {
      const { ensembleId, settings } = msg.input as ComputeTasks['sample']['input'];
      const out = await (await sampling.ensemble(ensembleId)).sample(settings, signal);
      return [out, [out.pixels.buffer as ArrayBuffer]];
    }
    case 'judge': {
      const input = msg.input as ComputeTasks['judge']['input'];
      return [await judgeCheckpoint(store, input, progress), []];
    }
    case 'fit-router': {
      const input = msg.input as ComputeTasks['fit-router']['input'];
      const fit = await fitRouter(store, log, input, progress);
      const bytes = fit.bytes.slice(); // its own buffer, to transfer
      return [{ ...fit, bytes }, [bytes.buffer as ArrayBuffer]];
    }
    case 'score': {
      const input = msg.input as ComputeTasks['score']['input'];
      const out = await scoreStoredEnsemble(store, input, progress);
      const png = out.png.slice(); // its own buffer, to transfer
      return [{ ...out, png }, [png.buffer as ArrayBuffer]];
    }
  }
}

port.on('message', (msg: ToThread) => {
  if (msg.type === 'cancel') {
    running.get(msg.id)?.abort(new Error('cancelled by the caller'));
    return;
  }
  const abort = new AbortController();
  running.set(msg.id, abort);
  run(msg, abort.signal)
    .then(
      ([result, transfer]) =>
        send(
          { type: 'done', id: msg.id, result: result as ComputeTasks['sample']['result'] },
          transfer,
        ),
      (err: unknown) => send({ type: 'failed', id: msg.id, error: toWireError(err) }),
    )
    .finally(() => running.delete(msg.id));
});

ready.then(
  () => send({ type: 'ready' }),
  (err: unknown) => log.error({ err }, 'compute thread: the backend did not load'),
);
