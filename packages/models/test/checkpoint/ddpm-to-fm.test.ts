import { describe, expect, it } from 'vitest';
import {
  type CheckpointMetaInput,
  checkpointSha256,
  convertDdpmToFm,
  isOutputProjection,
  loadCheckpoint,
  OUTPUT_PROJECTION_PREFIX,
  saveCheckpoint,
} from '../../src/checkpoint/index.js';
import {
  bytesOf,
  catchCheckpointErrorAsync,
  randomParams,
  TINY_DIT,
  tinyDiTShapes,
} from './helpers.js';

const architecture = { preset: 'tiny', ...TINY_DIT };
const ddpmMeta: CheckpointMetaInput = {
  kind: 'expert',
  architecture,
  objective: 'ddpm',
  schedule: { kind: 'cosine', T: 1000 },
  step: 50_000,
  dataFingerprint: 'cd'.repeat(32),
  createdAt: '2025-03-01T00:00:00.000Z',
};
const shapes = tinyDiTShapes();
const params = randomParams(shapes, 42);
const createdAt = '2025-03-02T00:00:00.000Z';

describe('convertDdpmToFm', () => {
  it('keeps every tensor but the output projection bit-exactly, and zeros the projection', async () => {
    const input = await saveCheckpoint({ params, meta: ddpmMeta, extraMetadata: { note: 'kept' } });
    const output = await convertDdpmToFm(input, { createdAt });
    const fm = loadCheckpoint(output, {
      kind: 'expert',
      architecture,
      objective: 'fm',
      paramShapes: shapes,
    });

    const reset = Object.keys(shapes).filter(isOutputProjection).sort();
    expect(reset).toEqual(['final_layer.linear.bias', 'final_layer.linear.weight']);
    for (const [name, p] of Object.entries(params)) {
      const got = fm.params[name]!;
      expect(got.shape, name).toEqual(p.shape);
      if (name.startsWith(OUTPUT_PROJECTION_PREFIX)) {
        expect(
          got.data.every((x) => Object.is(x, 0)),
          name,
        ).toBe(true);
        expect(
          p.data.some((x) => x !== 0),
          name,
        ).toBe(true); // it really was trained
      } else {
        expect(bytesOf(got.data), name).toEqual(bytesOf(p.data));
      }
    }
    // The final layer's modulation table and t_block are kept.
    expect(fm.params['final_layer.scale_shift_table']!.data).toEqual(
      params['final_layer.scale_shift_table']!.data,
    );
    expect(fm.params['t_block.1.weight']!.data).toEqual(params['t_block.1.weight']!.data);

    expect(fm.meta).toEqual({
      format: 'archipelago.checkpoint',
      version: 1,
      kind: 'expert',
      architecture,
      objective: 'fm',
      step: 0,
      dataFingerprint: 'cd'.repeat(32),
      parent: { sha256: checkpointSha256(input), objective: 'ddpm', step: 50_000 },
      createdAt,
    });
    expect(fm.meta.schedule).toBeUndefined();
    expect({ ...fm.extraMetadata }).toEqual({ note: 'kept' });
    // Deterministic for a fixed createdAt.
    expect(await convertDdpmToFm(input, { createdAt })).toEqual(output);
  });

  it('honours a custom reinit', async () => {
    const input = await saveCheckpoint({ params, meta: ddpmMeta });
    const reinit = (name: string) =>
      isOutputProjection(name) || name === 'final_layer.scale_shift_table';
    const fm = loadCheckpoint(await convertDdpmToFm(input, { reinit, createdAt }));
    expect(fm.params['final_layer.scale_shift_table']!.data.every((x) => x === 0)).toBe(true);
    expect(fm.params['blocks.1.mlp.fc2.weight']!.data).toEqual(
      params['blocks.1.mlp.fc2.weight']!.data,
    );
  });

  it('rejects an FM checkpoint, a router and a checkpoint without objective', async () => {
    const cases: CheckpointMetaInput[] = [
      { ...ddpmMeta, objective: 'fm', schedule: undefined },
      { kind: 'router', architecture: { kind: 'mlp', experts: 8 }, step: 10, createdAt },
      { ...ddpmMeta, objective: undefined },
    ];
    for (const meta of cases) {
      const input = await saveCheckpoint({ params, meta });
      const e = await catchCheckpointErrorAsync(() => convertDdpmToFm(input));
      expect(e.code).toBe('not_ddpm');
      expect(e.message).toMatch(
        /expected an expert checkpoint with objective "ddpm", got kind "(expert|router)"/,
      );
    }
  });

  it('rejects a checkpoint with no output projection, and a broken file', async () => {
    const { 'final_layer.linear.weight': _w, 'final_layer.linear.bias': _b, ...headless } = params;
    const input = await saveCheckpoint({ params: headless, meta: ddpmMeta });
    const e = await catchCheckpointErrorAsync(() => convertDdpmToFm(input));
    expect(e.code).toBe('missing_tensor');
    expect(e.message).toMatch(/final_layer\.linear\./);
    const full = await saveCheckpoint({ params, meta: ddpmMeta });
    expect(
      (await catchCheckpointErrorAsync(() => convertDdpmToFm(full.subarray(0, 100)))).code,
    ).toBe('not_safetensors');
  });
});
