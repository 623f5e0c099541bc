/**
 * Batches as plain typed arrays, the form in which they cross thread boundaries: split into
 * contiguous row shards, sent as transferables, rebuilt as tensors on the other side.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { StepBatch } from '../losses.js';

/** One tensor as row-major data. */
export interface HostTensor {
  dtype: 'float32' | 'int32';
  shape: number[];
  data: Float32Array | Int32Array;
}

/** A {@link StepBatch} as host data. */
export interface HostBatch {
  x: HostTensor;
  tau: HostTensor;
  target?: HostTensor;
  weight?: HostTensor;
  labels?: HostTensor;
  classes?: HostTensor;
}

const KEYS = ['x', 'tau', 'target', 'weight', 'labels', 'classes'] as const;

/** Reads a batch back to the host (copies). */
export function toHost(batch: StepBatch): HostBatch {
  const out: Partial<Record<keyof StepBatch, HostTensor>> = {};
  for (const key of KEYS) {
    const t = batch[key];
    if (!t) continue;
    if (t.dtype !== 'float32' && t.dtype !== 'int32') {
      throw new Error(`batch.${key} must be float32 or int32, got ${t.dtype}`);
    }
    const data = t.dataSync() as Float32Array | Int32Array;
    out[key] = { dtype: t.dtype, shape: [...t.shape], data };
  }
  return out as HostBatch;
}

/** Host data as tensors; the caller disposes them. */
export function fromHost(batch: HostBatch): StepBatch {
  const out: Partial<StepBatch> = {};
  for (const key of KEYS) {
    const h = batch[key];
    if (h) out[key] = tf.tensor(h.data, h.shape, h.dtype);
  }
  return out as StepBatch;
}

/** Disposes every tensor of a batch. */
export function disposeBatch(batch: StepBatch): void {
  for (const key of KEYS) batch[key]?.dispose();
}

/** Rows per shard when `rows` are split into `parts` contiguous shards, the first ones larger. */
export function shardSizes(rows: number, parts: number): number[] {
  const base = Math.floor(rows / parts);
  return Array.from({ length: parts }, (_, i) => base + (i < rows % parts ? 1 : 0));
}

/**
 * Splits a batch into contiguous row shards of the given sizes (copies, so each shard's buffers
 * can be transferred).
 */
export function splitRows(batch: HostBatch, sizes: number[]): HostBatch[] {
  const rows = batch.x.shape[0] as number;
  if (sizes.reduce((a, b) => a + b, 0) !== rows) {
    throw new Error(`shard sizes ${sizes.join('+')} do not add up to ${rows} rows`);
  }
  const shards: HostBatch[] = [];
  let start = 0;
  for (const n of sizes) {
    const shard: Partial<Record<keyof StepBatch, HostTensor>> = {};
    for (const key of KEYS) {
      const h = batch[key];
      if (!h) continue;
      if (h.shape[0] !== rows) {
        throw new Error(`batch.${key} has ${h.shape[0]} rows, batch.x has ${rows}`);
      }
      const width = h.data.length / rows;
      shard[key] = {
        dtype: h.dtype,
        shape: [n, ...h.shape.slice(1)],
        data: h.data.slice(start * width, (start + n) * width),
      };
    }
    shards.push(shard as HostBatch);
    start += n;
  }
  return shards;
}

/** The buffers of a batch, for `postMessage`'s transfer list. */
export function buffersOf(batch: HostBatch): ArrayBuffer[] {
  const out: ArrayBuffer[] = [];
  for (const key of KEYS) {
    const h = batch[key];
    if (h) out.push(h.data.buffer as ArrayBuffer);
  }
  return out;
}
