/**
 * A data-parallel replica (runs as a `worker_threads` Worker; started by {@link ReplicaPool}).
 *
 * It loads the main thread's backend with `initBackend`, builds the same network and an Adam
 * trainer, takes its parameters from the main thread, and then, per step, computes the gradient
 * of its shard's mean loss and applies the averaged gradient the main thread sends back, so every
 * replica keeps identical parameters. Requests are handled one at a time, in arrival order.
 */
import { parentPort } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../../backend.js';
import { createTrainer, type Trainer } from '../../nn/index.js';
import { createLoss, type LossFn } from '../losses.js';
import { buildNetwork, type TrainableNetwork } from '../networks.js';
import { disposeBatch, fromHost } from './host-batch.js';
import type { ReplicaRequest, ReplicaResponse, ReplicaResults } from './messages.js';

interface Replica {
  network: TrainableNetwork;
  trainer: Trainer;
  loss: LossFn;
  trainable: string[];
}

if (!parentPort) throw new Error('replica-worker.js must run as a worker thread');
const port = parentPort;
let replica: Replica | null = null;

function ready(): Replica {
  if (!replica) throw new Error('replica not initialised');
  return replica;
}

async function run(
  msg: ReplicaRequest,
): Promise<[ReplicaResults[keyof ReplicaResults], ArrayBuffer[]]> {
  switch (msg.type) {
    case 'init': {
      if (replica) throw new Error('replica already initialised');
      await initBackend({
        backend: msg.backend,
        ...(msg.gpu === undefined ? {} : { gpu: msg.gpu }),
      });
      const network = buildNetwork(msg.network, msg.seed);
      for (const [name, v] of network.params) {
        const value = msg.params[name];
        if (!value) throw new Error(`init: no value for parameter "${name}"`);
        const t = tf.tensor(value.data, value.shape, 'float32');
        v.assign(t);
        t.dispose();
      }
      const trainer = createTrainer(
        { params: network.params, ...msg.optimizer },
        msg.optimizerState,
      );
      const trainable = [...network.params].filter(([, v]) => v.trainable).map(([n]) => n);
      replica = { network, trainer, loss: createLoss(msg.task, network), trainable };
      return [{ trainable }, []];
    }
    case 'gradients': {
      const r = ready();
      const batch = fromHost(msg.batch);
      try {
        const { loss, grads } = r.trainer.computeGradients(() => r.loss(batch));
        // Copies: on the cpu backend dataSync() returns the tensor's own storage.
        const out = r.trainable.map((name) =>
          (grads.get(name)!.dataSync() as Float32Array).slice(),
        );
        for (const g of grads.values()) g.dispose();
        return [{ loss, grads: out }, out.map((g) => g.buffer as ArrayBuffer)];
      } finally {
        disposeBatch(batch);
      }
    }
    case 'apply': {
      const r = ready();
      if (msg.grads.length !== r.trainable.length) {
        throw new Error(
          `apply: ${msg.grads.length} gradients for ${r.trainable.length} parameters`,
        );
      }
      const grads = new Map<string, tf.Tensor>();
      r.trainable.forEach((name, i) => {
        grads.set(name, tf.tensor(msg.grads[i]!, r.network.params.get(name)!.shape, 'float32'));
      });
      try {
        r.trainer.learningRate = msg.learningRate;
        r.trainer.applyGradients(grads);
      } finally {
        for (const g of grads.values()) g.dispose();
      }
      return [{}, []];
    }
    case 'params': {
      const r = ready();
      const params: Record<string, Float32Array> = {};
      for (const [name, v] of r.network.params)
        params[name] = (v.dataSync() as Float32Array).slice();
      return [{ params }, Object.values(params).map((p) => p.buffer as ArrayBuffer)];
    }
  }
}

let queue: Promise<void> = Promise.resolve();
port.on('message', (msg: ReplicaRequest) => {
  queue = queue.then(async () => {
    let response: ReplicaResponse;
    let transfer: ArrayBuffer[] = [];
    try {
      const [result, buffers] = await run(msg);
      response = { type: 'result', id: msg.id, result };
      transfer = buffers;
    } catch (err) {
      const e = err instanceof Error ? err : new Error(String(err));
      response = {
        type: 'error',
        id: msg.id,
        message: e.message,
        ...(e.stack ? { stack: e.stack } : {}),
      };
    }
    port.postMessage(response, transfer);
  });
});
