import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { initBackend } from '../../src/backend.js';
import { isOutputProjection } from '../../src/checkpoint/index.js';
import {
  buildNetwork,
  MlpClassifier,
  MlpNet,
  mlpClassifierParamShapes,
  mlpParamShapes,
} from '../../src/training/index.js';
import { snapshot } from './helpers.js';

await initBackend({ backend: 'wasm' });

const CONFIG = { dim: 3, hidden: 16, depth: 2 };

describe('MlpNet and MlpClassifier', () => {
  it('have dotted parameter names, the output projection named as the DiT names it', () => {
    expect(mlpParamShapes(CONFIG)).toEqual({
      't_embedder.mlp.0.weight': [64, 16],
      't_embedder.mlp.0.bias': [16],
      't_embedder.mlp.2.weight': [16, 16],
      't_embedder.mlp.2.bias': [16],
      'input_proj.weight': [3, 16],
      'input_proj.bias': [16],
      'blocks.0.linear.weight': [16, 16],
      'blocks.0.linear.bias': [16],
      'blocks.1.linear.weight': [16, 16],
      'blocks.1.linear.bias': [16],
      'final_layer.linear.weight': [16, 3],
      'final_layer.linear.bias': [3],
    });
    expect(Object.keys(mlpParamShapes(CONFIG)).filter(isOutputProjection)).toEqual([
      'final_layer.linear.weight',
      'final_layer.linear.bias',
    ]);
    const heads = mlpClassifierParamShapes({ ...CONFIG, numClusters: 4 });
    expect(heads['head.weight']).toEqual([16, 4]);
    expect(heads['final_layer.linear.weight']).toBeUndefined();
  });

  it('start at zero output (uniform logits), map [B, D] to [B, D] / [B, K], and are seeded', () => {
    const net = new MlpNet(CONFIG, 7);
    const classifier = new MlpClassifier({ ...CONFIG, numClusters: 4 }, 7);
    const x = tf.randomNormal([5, 3], 0, 1, 'float32', 1);
    const tau = tf.tensor1d([0, 1.5, 250, 998.2, 999]);
    const y = net.apply(x, tau);
    const logits = classifier.apply(x, tau);
    expect(y.shape).toEqual([5, 3]);
    expect(logits.shape).toEqual([5, 4]);
    expect(Array.from(y.dataSync()).every((v) => v === 0)).toBe(true);
    expect(Array.from(logits.dataSync()).every((v) => v === 0)).toBe(true);

    const again = new MlpNet(CONFIG, 7);
    const other = new MlpNet(CONFIG, 8);
    expect(snapshot(again.params)).toEqual(snapshot(net.params));
    expect(snapshot(other.params)['input_proj.weight']).not.toEqual(
      snapshot(net.params)['input_proj.weight'],
    );
    // Each parameter has its own stream: a deeper network shares the shallower one's values.
    const deeper = new MlpNet({ ...CONFIG, depth: 3 }, 7);
    expect(snapshot(deeper.params)['blocks.1.linear.weight']).toEqual(
      snapshot(net.params)['blocks.1.linear.weight'],
    );
    tf.dispose([x, tau, y, logits]);
    for (const n of [net, classifier, again, other, deeper]) n.dispose();
  });

  it('refuse unknown config keys and bad values, naming the valid ones', () => {
    expect(() => new MlpNet({ ...CONFIG, width: 3 } as never)).toThrow(
      'unknown MLP config key "width"; valid: dim, hidden, depth, frequencyDim',
    );
    expect(() => new MlpNet({ ...CONFIG, frequencyDim: 5 })).toThrow('frequencyDim must be even');
    expect(() => new MlpClassifier({ ...CONFIG, numClusters: 1 })).toThrow('numClusters');
    expect(() => buildNetwork({ kind: 'unet' } as never, 0)).toThrow(
      'unknown network kind "unet"; valid: dit, mlp, mlp-classifier, router',
    );
    const net = new MlpNet(CONFIG);
    expect(() => net.apply(tf.zeros([2, 2]), tf.zeros([2]))).toThrow(
      'MlpNet: x must be float32 [B, 3], got float32 [2,2]',
    );
    net.dispose();
  });
});
