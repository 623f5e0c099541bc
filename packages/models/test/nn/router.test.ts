import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../src/backend.js';
import { type RouterConfig, RouterNet } from '../../src/nn/router.js';
import { createTrainer } from '../../src/nn/train-step.js';

const CONFIG: RouterConfig = {
  imageSize: 8,
  channels: 1,
  patchSize: 2,
  hidden: 32,
  depth: 2,
  heads: 2,
  mlpRatio: 2,
  numClusters: 3,
};

describe('RouterNet', () => {
  beforeAll(async () => {
    await initBackend({ backend: 'wasm' });
  });

  it('names its parameters like the DiT trunk plus cls_token and head', () => {
    const r = new RouterNet(CONFIG, 0);
    const names = [...r.params.keys()];
    expect(names.slice(0, 2)).toEqual(['cls_token', 'patch_embed.weight']);
    expect(names).toContain('t_block.1.weight');
    expect(names).toContain('blocks.1.scale_shift_table');
    expect(names.slice(-2)).toEqual(['head.weight', 'head.bias']);
    expect(names.some((n) => n.startsWith('final_layer') || n.startsWith('y_embedder'))).toBe(
      false,
    );
    expect(r.params.get('cls_token')!.shape).toEqual([1, 1, 32]);
    expect(r.params.get('head.weight')!.shape).toEqual([32, 3]);
    expect(r.config).toEqual(CONFIG);
    expect(() => new RouterNet({ ...CONFIG, numClusters: 0 })).toThrow(
      /numClusters must be an integer >= 1/,
    );
    expect(() => new RouterNet({ ...CONFIG, numClass: 3 } as unknown as RouterConfig)).toThrow(
      /unknown key\(s\) numClass; valid: imageSize, .*numClusters/,
    );
    expect(() => new RouterNet({ ...CONFIG, numClasses: -1 })).toThrow(
      /numClasses must be an integer >= 0/,
    );
    // numClasses 0 is the unconditional router, its config as before the option.
    const zero = new RouterNet({ ...CONFIG, numClasses: 0 }, 0);
    expect(zero.config).toEqual(CONFIG);
    expect(zero.numClasses).toBe(0);
    zero.dispose();
    r.dispose();
  });

  it('conditioned on the class: a label table with a null row; labels move the logits; none = null', () => {
    const r = new RouterNet({ ...CONFIG, numClasses: 4 }, 2);
    expect(r.config).toEqual({ ...CONFIG, numClasses: 4 });
    expect(r.nullClass).toBe(4);
    expect(r.params.get('y_embedder.embedding_table')!.shape).toEqual([5, 32]);
    // At init the head is zero and every block is the identity (adaLN-Zero): the output ignores
    // the conditioning. Give the head and the conditioning's modulation weights.
    r.params.get('head.weight')!.assign(tf.randomNormal([32, 3], 0, 1, 'float32', 5));
    const tb = r.params.get('t_block.1.weight')!;
    tb.assign(tf.randomNormal(tb.shape, 0, 1, 'float32', 6));
    tf.tidy(() => {
      const x = tf.randomNormal([2, 8, 8, 1], 0, 1, 'float32', 1);
      const tau = tf.tensor1d([999, 999]);
      const byLabel = [0, 1, 4].map((c) =>
        Array.from(r.apply(x, tau, tf.tensor1d([c, c], 'int32')).dataSync()),
      );
      expect(byLabel[0]).not.toEqual(byLabel[1]);
      // Omitted labels are the null class.
      expect(Array.from(r.apply(x, tau).dataSync())).toEqual(byLabel[2]);
      expect(() => r.apply(x, tau, tf.tensor1d([0, 1], 'float32'))).toThrow(/labels must be int32/);
    });
    const plain = new RouterNet(CONFIG, 2);
    expect(() =>
      tf.tidy(() =>
        plain.apply(tf.zeros([1, 8, 8, 1]), tf.tensor1d([0]), tf.tensor1d([0], 'int32')),
      ),
    ).toThrow(/labels given to an unconditional router/);
    plain.dispose();
    r.dispose();
  });

  it('with one cluster (a monolith) answers it with probability 1 for any input', () => {
    const r = new RouterNet({ ...CONFIG, numClusters: 1 }, 3);
    tf.tidy(() => {
      const x = tf.randomNormal([3, 8, 8, 1], 0, 1, 'float32', 2);
      const p = tf.softmax(r.apply(x, tf.tensor1d([0, 500, 999])));
      expect(p.shape).toEqual([3, 1]);
      expect(Array.from(p.dataSync())).toEqual([1, 1, 1]);
    });
    r.dispose();
  });

  it('gives [B, K] logits; softmax sums to 1; uniform at init (zero head)', () => {
    const r = new RouterNet(CONFIG, 0);
    tf.tidy(() => {
      const x = tf.randomNormal([4, 8, 8, 1], 0, 1, 'float32', 1);
      const tau = tf.tensor1d([0, 250.5, 500, 999]);
      expect(r.apply(x, tau).shape).toEqual([4, 3]);
      const p = r.probabilities(x, tau).arraySync();
      for (const row of p) {
        expect(row.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 6);
        for (const v of row) expect(v).toBeCloseTo(1 / 3, 6);
      }
    });
    r.dispose();
  });

  it('learns: cross-entropy falls on a separable toy problem and every parameter gets a gradient', () => {
    const r = new RouterNet(CONFIG, 1);
    const B = 12;
    // Cluster k: images of constant brightness k - 1 plus noise.
    const labels = Array.from({ length: B }, (_, i) => i % 3);
    const x = tf.tidy(() =>
      tf.add(
        tf.reshape(tf.tensor1d(labels.map((k) => k - 1)), [B, 1, 1, 1]),
        tf.randomNormal([B, 8, 8, 1], 0, 0.3, 'float32', 2),
      ),
    );
    const tau = tf.tensor1d(Array.from({ length: B }, (_, i) => i * 80));
    const onehot = tf.oneHot(tf.tensor1d(labels, 'int32'), 3);
    const lossFn = () => tf.losses.softmaxCrossEntropy(onehot, r.apply(x, tau)) as tf.Scalar;
    const trainer = createTrainer({ params: r.params, learningRate: 3e-3 });
    const first = trainer.step(lossFn);
    expect(first).toBeCloseTo(Math.log(3), 4);
    let last = first;
    for (let i = 0; i < 30; i++) last = trainer.step(lossFn);
    expect(last).toBeLessThan(0.5 * first);
    const { grads } = trainer.computeGradients(lossFn);
    const zero = [...grads].filter(([, g]) => tf.tidy(() => tf.max(tf.abs(g)).dataSync()[0]) === 0);
    expect(zero.map(([n]) => n)).toEqual([]);
    tf.dispose([...grads.values(), x, tau, onehot]);
    trainer.dispose();
    r.dispose();
  }, 30_000);
});
