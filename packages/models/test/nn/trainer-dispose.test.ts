import * as tf from '@tensorflow/tfjs-core';
import { expect, it } from 'vitest';
import { initBackend } from '../../src/backend.js';
import { createTrainer } from '../../src/nn/train-step.js';

it('createTrainer frees all it allocates on dispose', async () => {
  await initBackend({ backend: 'wasm' });
  const params = new Map([['w', tf.variable(tf.ones([3, 3]))]]);
  const before = tf.memory().numTensors;
  const t = createTrainer({ params, learningRate: 0.1 });
  t.step(() => tf.sum(tf.square(params.get('w')!)));
  t.dispose();
  expect(tf.memory().numTensors).toBe(before);
  expect(Array.from(params.get('w')!.dataSync()).every((v) => v < 1)).toBe(true);
});
