/**
 * The messages between a {@link ReplicaPool} (main thread) and its replica workers. Every request
 * carries an id; the worker answers each, in order, with a result or an error.
 */
import type { BackendName } from '../../backend.js';
import type { TrainerOptions, TrainerState } from '../../nn/index.js';
import type { TaskSpec } from '../losses.js';
import type { NetworkSpec } from '../networks.js';
import type { HostBatch } from './host-batch.js';

/** Adam(W) settings: the nn trainer's options without the parameters. */
export type OptimizerOptions = Omit<TrainerOptions, 'params'>;

/** Parameter values by name, row-major. */
export type ParamValues = Record<string, { shape: number[]; data: Float32Array }>;

export type ReplicaRequest =
  | {
      type: 'init';
      id: number;
      /** The main thread's backend (`currentBackend()`), loaded with `initBackend` in the worker. */
      backend: BackendName;
      gpu?: number;
      network: NetworkSpec;
      task: TaskSpec;
      optimizer: OptimizerOptions;
      seed: number;
      /** Every parameter (trainable or not), so the replica starts identical to the main one. */
      params: ParamValues;
      /** Adam's state to continue from (an exact resume); default zero moments at step 0. */
      optimizerState?: TrainerState;
    }
  /** Gradients of the shard's mean loss, one Float32Array per trainable parameter. */
  | { type: 'gradients'; id: number; batch: HostBatch }
  /** Apply an (averaged) gradient with Adam, at this learning rate. */
  | { type: 'apply'; id: number; learningRate: number; grads: Float32Array[] }
  /** The replica's current parameters (to check that replicas agree). */
  | { type: 'params'; id: number };

export interface ReplicaResults {
  init: { trainable: string[] };
  gradients: { loss: number; grads: Float32Array[] };
  apply: Record<string, never>;
  params: { params: Record<string, Float32Array> };
}

export type ReplicaResponse =
  | { type: 'result'; id: number; result: ReplicaResults[keyof ReplicaResults] }
  | { type: 'error'; id: number; message: string; stack?: string };
