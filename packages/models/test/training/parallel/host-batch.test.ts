import { describe, expect, it } from 'vitest';
import {
  type HostBatch,
  shardSizes,
  splitRows,
} from '../../../src/training/parallel/host-batch.js';

describe('host batches', () => {
  it('split rows into contiguous shards, the first ones larger, empty ones when rows < parts', () => {
    expect(shardSizes(255, 2)).toEqual([128, 127]);
    expect(shardSizes(7, 3)).toEqual([3, 2, 2]);
    expect(shardSizes(1, 2)).toEqual([1, 0]);
  });

  it('cut every tensor of a batch at the same rows, as copies', () => {
    const batch: HostBatch = {
      x: { dtype: 'float32', shape: [3, 2], data: Float32Array.from([0, 1, 2, 3, 4, 5]) },
      tau: { dtype: 'float32', shape: [3], data: Float32Array.from([10, 11, 12]) },
      classes: { dtype: 'int32', shape: [3], data: Int32Array.from([7, 8, 9]) },
    };
    const [a, b] = splitRows(batch, [2, 1]);
    expect(a).toEqual({
      x: { dtype: 'float32', shape: [2, 2], data: Float32Array.from([0, 1, 2, 3]) },
      tau: { dtype: 'float32', shape: [2], data: Float32Array.from([10, 11]) },
      classes: { dtype: 'int32', shape: [2], data: Int32Array.from([7, 8]) },
    });
    expect(b!.x.data).toEqual(Float32Array.from([4, 5]));
    expect(b!.classes!.data).toEqual(Int32Array.from([9]));
    expect(a!.x.data.buffer).not.toBe(batch.x.data.buffer);
    expect(() => splitRows(batch, [2, 2])).toThrow('shard sizes 2+2 do not add up to 3 rows');
  });
});
