import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../src/backend.js';
import {
  DiT,
  type DiTConfig,
  ditBlock,
  ditParamShapes,
  lookup,
  patchify,
  sincosPosEmbed2d,
  tBlock,
  timestepEmbedding,
  unpatchify,
} from '../../src/nn/dit.js';
import { DIT_PRESET_NAMES, ditConfigFromPreset } from '../../src/nn/presets.js';
import { createTrainer } from '../../src/nn/train-step.js';

const maxAbs = (t: tf.Tensor) => tf.tidy(() => tf.max(tf.abs(t)).dataSync()[0] as number);
const maxDiff = (a: tf.Tensor, b: tf.Tensor) => tf.tidy(() => maxAbs(tf.sub(a, b)));

const SMALL: DiTConfig = {
  imageSize: 8,
  channels: 2,
  patchSize: 2,
  hidden: 32,
  depth: 2,
  heads: 4,
  mlpRatio: 4,
  numClasses: 5,
  learnSigma: false,
};

/** The parameter names agreed with the checkpoint code, in state_dict order. */
function contractNames(depth: number, withLabels: boolean): string[] {
  const names = [
    'patch_embed.weight',
    'patch_embed.bias',
    'pos_embed',
    't_embedder.mlp.0.weight',
    't_embedder.mlp.0.bias',
    't_embedder.mlp.2.weight',
    't_embedder.mlp.2.bias',
    ...(withLabels ? ['y_embedder.embedding_table'] : []),
    't_block.1.weight',
    't_block.1.bias',
  ];
  for (let i = 0; i < depth; i++) {
    for (const n of [
      'scale_shift_table',
      'attn.qkv.weight',
      'attn.qkv.bias',
      'attn.proj.weight',
      'attn.proj.bias',
      'mlp.fc1.weight',
      'mlp.fc1.bias',
      'mlp.fc2.weight',
      'mlp.fc2.bias',
    ]) {
      names.push(`blocks.${i}.${n}`);
    }
  }
  return [
    ...names,
    'final_layer.scale_shift_table',
    'final_layer.linear.weight',
    'final_layer.linear.bias',
  ];
}

/** A batch for SMALL: images, fractional tau in [0, 999], labels including the null class. */
function batch(B: number, seed: number) {
  const x = tf.randomNormal([B, 8, 8, 2], 0, 1, 'float32', seed);
  const tau = tf.tensor1d(Array.from({ length: B }, (_, i) => (i * 997.3) / Math.max(1, B - 1)));
  const labels = tf.tensor1d(
    Array.from({ length: B }, (_, i) => i % 6),
    'int32',
  );
  return { x, tau, labels };
}

describe('DiT (AdaLN-Single)', () => {
  let model: DiT;
  beforeAll(async () => {
    await initBackend({ backend: 'wasm' });
    model = new DiT(SMALL, 7);
  });
  afterAll(() => model.dispose());

  it('names its parameters as the checkpoint contract says, with the agreed shapes', () => {
    expect([...model.params.keys()]).toEqual(contractNames(2, true));
    const D = 32;
    const shapes = model.paramShapes();
    expect(Object.keys(shapes)).toEqual(contractNames(2, true));
    for (const [name, v] of model.params) expect(v.shape).toEqual(shapes[name]);
    expect(shapes['patch_embed.weight']).toEqual([2 * 2 * 2, D]);
    expect(shapes.pos_embed).toEqual([1, 16, D]);
    expect(shapes['y_embedder.embedding_table']).toEqual([6, D]);
    expect(shapes['t_block.1.weight']).toEqual([D, 6 * D]);
    expect(shapes['blocks.1.scale_shift_table']).toEqual([6, D]);
    expect(shapes['blocks.0.attn.qkv.weight']).toEqual([D, 3 * D]);
    expect(shapes['blocks.0.mlp.fc1.weight']).toEqual([D, 4 * D]);
    expect(shapes['final_layer.scale_shift_table']).toEqual([2, D]);
    expect(shapes['final_layer.linear.weight']).toEqual([D, 2 * 2 * 2]);
    expect(model.params.get('pos_embed')!.trainable).toBe(false);
    expect([...model.params.values()].filter((v) => !v.trainable)).toHaveLength(1);
    const unconditional = ditParamShapes({ ...SMALL, numClasses: 0 });
    expect(Object.keys(unconditional)).toEqual(contractNames(2, false));
  });

  it('keeps a copy of its config equal to the constructor argument (JSON round trip included)', () => {
    expect(model.config).toEqual(SMALL);
    expect(model.config).not.toBe(SMALL);
    const again = new DiT(JSON.parse(JSON.stringify(model.config)), 7);
    for (const [name, v] of model.params) expect(maxDiff(v, again.params.get(name)!)).toBe(0);
    again.dispose();
  });

  it('rejects unknown keys listing the valid ones, and bad values', () => {
    expect(() => new DiT({ ...SMALL, hiden: 3 } as unknown as DiTConfig)).toThrow(
      'DiTConfig: unknown key(s) hiden; valid: imageSize, channels, patchSize, hidden, depth, heads, mlpRatio, numClasses, learnSigma',
    );
    const { depth: _, ...noDepth } = SMALL;
    expect(() => new DiT(noDepth as DiTConfig)).toThrow(/missing key\(s\) depth; valid:/);
    expect(() => new DiT({ ...SMALL, patchSize: 3 })).toThrow(
      'patchSize 3 must divide imageSize 8',
    );
    expect(() => new DiT({ ...SMALL, heads: 5 })).toThrow('heads 5 must divide hidden 32');
    expect(() => new DiT({ ...SMALL, hidden: 30, heads: 3 })).toThrow(/multiple of 4/);
    expect(() => new DiT({ ...SMALL, numClasses: -1 })).toThrow(/numClasses/);
  });

  it('initialises deterministically from the seed (and differently for another seed)', () => {
    const a = new DiT(SMALL, 7);
    const b = new DiT(SMALL, 8);
    for (const [name, v] of model.params) {
      expect(maxDiff(v, a.params.get(name)!)).toBe(0);
      if (maxAbs(v) > 0 && name !== 'pos_embed')
        expect(maxDiff(v, b.params.get(name)!)).toBeGreaterThan(0);
    }
    // A parameter's stream depends on its name only: blocks.0 is the same in a deeper model.
    const deeper = new DiT({ ...SMALL, depth: 3 }, 7);
    expect(
      maxDiff(
        deeper.params.get('blocks.0.attn.qkv.weight')!,
        a.params.get('blocks.0.attn.qkv.weight')!,
      ),
    ).toBe(0);
    for (const m of [a, b, deeper]) m.dispose();
  });

  it('initialises as described: zero gates, t_block and output projection; tables ~ randn/sqrt(D)', () => {
    const p = (n: string) => model.params.get(n)!;
    for (const n of [
      't_block.1.weight',
      't_block.1.bias',
      'final_layer.linear.weight',
      'final_layer.linear.bias',
    ]) {
      expect(maxAbs(p(n))).toBe(0);
    }
    const table = p('blocks.0.scale_shift_table').arraySync() as number[][];
    expect(Math.max(...table[2]!.map(Math.abs), ...table[5]!.map(Math.abs))).toBe(0);
    const shiftRow = table[0]!;
    const std = Math.sqrt(shiftRow.reduce((s, v) => s + v * v, 0) / shiftRow.length);
    expect(std).toBeGreaterThan(0.5 / Math.sqrt(32));
    expect(std).toBeLessThan(2 / Math.sqrt(32));
    // xavier-uniform bound for qkv: sqrt(6 / (D + 3D))
    expect(maxAbs(p('blocks.0.attn.qkv.weight'))).toBeLessThanOrEqual(Math.sqrt(6 / (32 + 96)));
    expect(maxAbs(p('pos_embed'))).toBeLessThanOrEqual(1);
  });

  it('outputs exactly zero at init, and every block is exactly the identity', () => {
    tf.tidy(() => {
      const { x, tau, labels } = batch(3, 1);
      const y = model.apply(x, tau, labels);
      expect(y.shape).toEqual([3, 8, 8, 2]);
      expect(maxAbs(y)).toBe(0);
      const p = lookup(model.params);
      const h = tf.randomNormal([3, 16, 32], 0, 1, 'float32', 2);
      const tmod = tBlock(tf.randomNormal([3, 32], 0, 1, 'float32', 3), p);
      for (let i = 0; i < SMALL.depth; i++)
        expect(maxDiff(ditBlock(h, tmod, p, i, SMALL.heads), h)).toBe(0);
    });
  });

  it('forward shapes for every preset at a small image size', async () => {
    for (const name of DIT_PRESET_NAMES) {
      const config = ditConfigFromPreset(name, { imageSize: 8, channels: 3, numClasses: 10 });
      const m = new DiT(config, 0);
      tf.tidy(() => {
        const y = m.apply(
          tf.zeros([2, 8, 8, 3]),
          tf.tensor1d([0, 999]),
          tf.tensor1d([1, 10], 'int32'),
        );
        expect(y.shape).toEqual([2, 8, 8, 3]);
      });
      m.dispose();
    }
    expect(() => ditConfigFromPreset('huge', { imageSize: 8, channels: 3, numClasses: 0 })).toThrow(
      'unknown DiT preset "huge"; valid: micro, tiny, small, base, large',
    );
  }, 60_000);

  it('learnSigma doubles the output channels', () => {
    const m = new DiT({ ...SMALL, learnSigma: true }, 0);
    tf.tidy(() => {
      const { x, tau, labels } = batch(2, 4);
      expect(m.apply(x, tau, labels).shape).toEqual([2, 8, 8, 4]);
    });
    m.dispose();
  });

  it('checks its inputs', () => {
    tf.tidy(() => {
      const { x, tau, labels } = batch(2, 5);
      expect(() => model.apply(tf.zeros([2, 8, 8, 3]), tau, labels)).toThrow(
        'x must be [B, 8, 8, 2] (NHWC)',
      );
      expect(() => model.apply(x, tf.zeros([3]), labels)).toThrow('tau must be float32 [2]');
      expect(() => model.apply(x, tau, tf.zeros([2]))).toThrow('labels must be int32 [2]');
      const uncond = new DiT({ ...SMALL, numClasses: 0 }, 0);
      expect(() => uncond.apply(x, tau, labels)).toThrow('labels given to an unconditional model');
      uncond.dispose();
    });
  });

  it('gradients reach every trainable parameter at step 1 and are nonzero for all by step 4', () => {
    const m = new DiT(SMALL, 3);
    const { x, tau, labels } = batch(4, 6);
    const eps = tf.randomNormal([4, 8, 8, 2], 0, 1, 'float32', 7);
    const lossFn = () => tf.mean(tf.square(tf.sub(m.apply(x, tau, labels), eps))) as tf.Scalar;
    const trainable = [...m.params.values()].filter((v) => v.trainable);
    const reached = tf.variableGrads(lossFn, trainable);
    expect(Object.keys(reached.grads).sort()).toEqual(trainable.map((v) => v.name).sort());
    // Zero output projection: only it has a nonzero gradient at the first step.
    const nonzero = trainable.filter((v) => maxAbs(reached.grads[v.name]!) > 0);
    expect(nonzero.map((v) => v.name)).toEqual(
      ['final_layer.linear.weight', 'final_layer.linear.bias'].map((n) => m.params.get(n)!.name),
    );
    tf.dispose([reached.value, ...Object.values(reached.grads)]);
    const trainer = createTrainer({ params: m.params, learningRate: 1e-3 });
    for (let i = 0; i < 3; i++) trainer.step(lossFn);
    const { grads } = trainer.computeGradients(lossFn);
    const zero = [...grads].filter(([, g]) => maxAbs(g) === 0).map(([n]) => n);
    expect(zero).toEqual([]);
    tf.dispose([...grads.values(), x, tau, labels, eps]);
    trainer.dispose();
    m.dispose();
  }, 30_000);

  it('conditions on the class: a label differs from the null class; no labels means the null class', () => {
    const m = new DiT(SMALL, 11);
    // Give the network some output (the zero init would hide any conditioning).
    for (const [name, v] of m.params) {
      if (v.trainable)
        v.assign(tf.add(v, tf.randomNormal(v.shape, 0, 0.05, 'float32', name.length)));
    }
    tf.tidy(() => {
      const { x, tau } = batch(2, 8);
      const nul = m.apply(x, tau, tf.tensor1d([5, 5], 'int32'));
      expect(maxDiff(m.apply(x, tau), nul)).toBe(0);
      expect(maxDiff(m.apply(x, tau, tf.tensor1d([2, 2], 'int32')), nul)).toBeGreaterThan(1e-4);
      expect(m.nullClass).toBe(5);
    });
    m.dispose();
  });
});

describe('DiT across backends', () => {
  it('wasm (depthwise-convolution products) and cpu (tf.matMul) agree on outputs and gradients', async () => {
    const run = async (backend: 'wasm' | 'cpu') => {
      await initBackend({ backend });
      const m = new DiT(SMALL, 13);
      for (const [name, v] of m.params) {
        if (v.trainable)
          v.assign(tf.add(v, tf.randomNormal(v.shape, 0, 0.05, 'float32', name.length)));
      }
      const { x, tau, labels } = batch(3, 9);
      const y = m.apply(x, tau, labels);
      const out = Array.from(y.dataSync());
      const trainable = [...m.params.values()].filter((v) => v.trainable);
      const { value, grads } = tf.variableGrads(
        () => tf.mean(tf.square(m.apply(x, tau, labels))),
        trainable,
      );
      const g = Array.from(grads[m.params.get('blocks.0.attn.qkv.weight')!.name]!.dataSync());
      tf.dispose([y, value, x, tau, labels, ...Object.values(grads)]);
      m.dispose();
      return { out, g };
    };
    const a = await run('wasm');
    const b = await run('cpu');
    await initBackend({ backend: 'wasm' });
    const worst = (u: number[], v: number[]) => Math.max(...u.map((ui, i) => Math.abs(ui - v[i]!)));
    expect(worst(a.out, b.out)).toBeLessThan(1e-4);
    expect(worst(a.g, b.g)).toBeLessThan(1e-4 * Math.max(1, ...b.g.map(Math.abs)));
  }, 30_000);
});

describe('DiT embedders', () => {
  beforeAll(async () => {
    await initBackend({ backend: 'wasm' });
  });

  it('timestep embedding is [cos(tau f_i), sin(tau f_i)], f_i = 10000^(-i/128), fractional tau allowed', () => {
    const tau = [0, 1.5, 998.25];
    const e = timestepEmbedding(tf.tensor1d(tau)).arraySync() as number[][];
    expect(e[0]!.length).toBe(256);
    for (const [b, t] of tau.entries()) {
      for (const i of [0, 1, 17, 127]) {
        const f = Math.exp((-Math.log(10000) * i) / 128);
        expect(e[b]![i]).toBeCloseTo(Math.cos(t * f), 3);
        expect(e[b]![128 + i]).toBeCloseTo(Math.sin(t * f), 3);
      }
    }
  });

  it('2-D position embedding: first half encodes the column, second half the row (DiT)', () => {
    const D = 16;
    const pe = sincosPosEmbed2d(D, 3);
    const at = (row: number, col: number, i: number) => pe[(row * 3 + col) * D + i]!;
    const omega = (i: number) => 1 / 10000 ** (i / 4);
    expect(at(1, 2, 1)).toBeCloseTo(Math.sin(2 * omega(1)), 6);
    expect(at(1, 2, 4 + 1)).toBeCloseTo(Math.cos(2 * omega(1)), 6);
    expect(at(1, 2, 8 + 3)).toBeCloseTo(Math.sin(1 * omega(3)), 6);
    expect(at(2, 0, 12 + 0)).toBeCloseTo(Math.cos(2), 6);
  });

  it('patchify is (row, col, channel) per patch, row-major tokens; unpatchify inverts it', () => {
    tf.tidy(() => {
      const x = tf.reshape(tf.range(0, 2 * 4 * 4 * 3), [2, 4, 4, 3]);
      const p = patchify(x, 2);
      expect(p.shape).toEqual([2, 4, 12]);
      // Token 1 of image 0 is the patch at rows 0-1, columns 2-3.
      const token = (p.arraySync() as number[][][])[0]![1]!;
      const pixel = (r: number, c: number, ch: number) => (r * 4 + c) * 3 + ch;
      expect(token.slice(0, 6)).toEqual([
        pixel(0, 2, 0),
        pixel(0, 2, 1),
        pixel(0, 2, 2),
        pixel(0, 3, 0),
        pixel(0, 3, 1),
        pixel(0, 3, 2),
      ]);
      expect(token[6]).toBe(pixel(1, 2, 0));
      expect(maxDiff(unpatchify(p, 2, 3), x)).toBe(0);
    });
  });
});

describe('AdaLN-Single vs adaLN-Zero parameter counts (docs/method.md section 6)', () => {
  it('at D = 1152, depth 28: ~226M per-block modulation vs ~8M shared, about 28x', () => {
    const D = 1152;
    const depth = 28;
    // adaLN-Zero (DiT): every block has SiLU -> Linear(D, 6D); the final layer Linear(D, 2D).
    const adaLNZero = depth * (D * 6 * D + 6 * D) + (D * 2 * D + 2 * D);
    // AdaLN-Single (PixArt): one shared t_block Linear(D, 6D), a [6, D] table per block, a [2, D]
    // table in the final layer.
    const adaLNSingle = D * 6 * D + 6 * D + depth * 6 * D + 2 * D;
    expect(adaLNZero).toBe(225_803_520);
    expect(adaLNSingle).toBe(8_165_376);
    expect(Math.round(adaLNZero / 1e6)).toBe(226);
    expect(Math.round(adaLNSingle / 1e6)).toBe(8);
    expect(adaLNZero / adaLNSingle).toBeCloseTo(27.65, 1);
    // Our model's modulation parameters at that size (shapes only, nothing allocated).
    const shapes = ditParamShapes({
      imageSize: 32,
      channels: 4,
      patchSize: 2,
      hidden: D,
      depth,
      heads: 16,
      mlpRatio: 4,
      numClasses: 1000,
      learnSigma: false,
    });
    const size = (s: number[]) => s.reduce((a, d) => a * d, 1);
    const modulation = Object.entries(shapes)
      .filter(([n]) => n.startsWith('t_block.') || n.endsWith('scale_shift_table'))
      .reduce((a, [, s]) => a + size(s), 0);
    expect(modulation).toBe(adaLNSingle);
  });
});
