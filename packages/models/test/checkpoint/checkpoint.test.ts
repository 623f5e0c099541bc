import '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  CHECKPOINT_METADATA_ALLOWANCE,
  CHECKPOINT_METADATA_KEY,
  type CheckpointMetaInput,
  checkpointSha256,
  checkpointSizeBounds,
  decodeSafetensors,
  encodeSafetensors,
  inspectCheckpoint,
  loadCheckpoint,
  safetensorsHeaderLength,
  saveCheckpoint,
} from '../../src/checkpoint/index.js';
import {
  bytesOf,
  catchCheckpointErrorAsync,
  expectRejected,
  randomParams,
  TINY_DIT,
  tinyDiTShapes,
} from './helpers.js';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

const architecture = { preset: 'tiny', ...TINY_DIT, nested: { list: [1, 2, { a: true }] } };
const meta: CheckpointMetaInput = {
  kind: 'expert',
  architecture,
  objective: 'ddpm',
  schedule: { kind: 'cosine', T: 1000 },
  step: 1234,
  dataFingerprint: 'ab'.repeat(32),
  createdAt: '2025-01-02T03:04:05.678Z',
};
const shapes = tinyDiTShapes();

/**
 * A file with arbitrary tensors and archipelago metadata (null: none), bypassing
 * saveCheckpoint's checks.
 */
const craft = (
  tensors: Parameters<typeof encodeSafetensors>[0],
  archipelago: unknown = { format: 'archipelago.checkpoint', version: 1, ...meta },
  extra: Record<string, string> = {},
) =>
  encodeSafetensors(tensors, {
    ...extra,
    ...(archipelago === null
      ? {}
      : {
          [CHECKPOINT_METADATA_KEY]:
            typeof archipelago === 'string' ? archipelago : JSON.stringify(archipelago),
        }),
  });

describe('saveCheckpoint / loadCheckpoint', () => {
  it('round-trips params bit-exactly with metadata (plain params)', async () => {
    const params = randomParams(shapes, 7);
    // Awkward values that must survive: -0, subnormals, extremes.
    const w = params['blocks.0.attn.qkv.weight']!.data;
    w.set([-0, 1e-45, -3.4028234663852886e38, 1.1754942106924411e-38]);
    const bytes = await saveCheckpoint({ params, meta, extraMetadata: { note: 'hello', z: '' } });
    const loaded = loadCheckpoint(bytes, {
      kind: 'expert',
      architecture,
      objective: 'ddpm',
      paramShapes: shapes,
    });
    expect(loaded.meta).toEqual({ format: 'archipelago.checkpoint', version: 1, ...meta });
    expect({ ...loaded.extraMetadata }).toEqual({ note: 'hello', z: '' });
    expect(Object.keys(loaded.params).sort()).toEqual(Object.keys(shapes).sort());
    for (const [name, p] of Object.entries(params)) {
      expect(loaded.params[name]!.shape, name).toEqual(p.shape);
      expect(loaded.params[name]!.data).toBeInstanceOf(Float32Array);
      expect(bytesOf(loaded.params[name]!.data), name).toEqual(bytesOf(p.data));
    }
    expect(Object.is(loaded.params['blocks.0.attn.qkv.weight']!.data[0], -0)).toBe(true);
  });

  it('accepts tf tensors (Map or record) and writes the same bytes as plain params', async () => {
    const params = randomParams(shapes, 3);
    const plain = await saveCheckpoint({ params, meta });
    const tensors = new Map(
      Object.entries(params).map(([n, p]) => [n, tf.tensor(p.data, p.shape)]),
    );
    expect(await saveCheckpoint({ params: tensors, meta })).toEqual(plain);
    expect(await saveCheckpoint({ params: Object.fromEntries(tensors), meta })).toEqual(plain);
    tf.dispose([...tensors.values()]);
  });

  it('is deterministic: same bytes for the same params and meta in any key order', async () => {
    const params = randomParams(shapes, 5);
    const a = await saveCheckpoint({ params, meta });
    const reordered = Object.fromEntries(Object.entries(params).reverse());
    const metaReordered = Object.fromEntries(Object.entries(meta).reverse()) as CheckpointMetaInput;
    expect(await saveCheckpoint({ params: reordered, meta: metaReordered })).toEqual(a);
    // Keys of the metadata JSON are sorted at every level.
    const json = decodeSafetensors(a).metadata[CHECKPOINT_METADATA_KEY]!;
    expect(json.startsWith('{"architecture":{"channels":3,')).toBe(true);
  });

  it('fills in format, version and createdAt', async () => {
    const { createdAt: _drop, ...rest } = meta;
    const before = Date.now();
    const loaded = loadCheckpoint(
      await saveCheckpoint({ params: randomParams({ w: [2] }), meta: rest }),
    );
    expect(loaded.meta.format).toBe('archipelago.checkpoint');
    expect(loaded.meta.version).toBe(1);
    expect(Date.parse(loaded.meta.createdAt)).toBeGreaterThanOrEqual(before - 1000);
  });

  it('computes sha256', () => {
    expect(checkpointSha256(new TextEncoder().encode('abc'))).toBe(
      'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad',
    );
  });
});

describe('loadCheckpoint rejects', () => {
  const good = () => randomParams(shapes, 11);
  let bytes: Uint8Array;
  beforeAll(async () => {
    bytes = await saveCheckpoint({ params: good(), meta });
  });

  it('a file that is not safetensors, keeping the cause', () => {
    const e = expectRejected(
      () => loadCheckpoint(new TextEncoder().encode('PK\u0003\u0004 zip file')),
      'not_safetensors',
      /header length/,
    );
    expect((e.cause as { code: string }).code).toBe('header_too_large');
    expectRejected(
      () => loadCheckpoint(bytes.subarray(0, bytes.length - 1)),
      'not_safetensors',
      /offset_out_of_bounds/,
    );
    expectRejected(() => loadCheckpoint(new Uint8Array(3)), 'not_safetensors', /file_too_short/);
  });

  it('missing or malformed metadata', () => {
    const w = { w: { dtype: 'F32' as const, shape: [1], data: Float32Array.of(1) } };
    expectRejected(() => loadCheckpoint(craft(w, null)), 'bad_metadata', /no "archipelago" key/);
    expectRejected(() => loadCheckpoint(craft(w, '{not json')), 'bad_metadata', /not valid JSON/);
    expectRejected(() => loadCheckpoint(craft(w, '[]')), 'bad_metadata', /not an object/);
    const base = { format: 'archipelago.checkpoint', version: 1, ...meta };
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ ...base, format: 'other' }, /meta\.format/],
      [{ ...base, version: 2 }, /meta\.version is 2.*unsupported/],
      [{ ...base, kind: 'vae' }, /meta\.kind is "vae"/],
      [{ ...base, architecture: 'dit' }, /meta\.architecture/],
      [{ ...base, objective: 'v' }, /meta\.objective/],
      [{ ...base, schedule: [] }, /meta\.schedule/],
      [{ ...base, step: -1 }, /meta\.step is -1/],
      [{ ...base, step: 1.5 }, /meta\.step/],
      [{ ...base, dataFingerprint: 'xyz' }, /meta\.dataFingerprint/],
      [{ ...base, createdAt: 'yesterday' }, /meta\.createdAt/],
      [{ ...base, createdAt: undefined }, /meta\.createdAt is missing/],
      [
        { ...base, parent: { sha256: 'ab'.repeat(32), objective: 'ddpm' } },
        /meta\.parent\.step is missing/,
      ],
      [{ ...base, parent: { sha256: 'AB', objective: 'ddpm', step: 1 } }, /meta\.parent\.sha256/],
      [
        { ...base, parent: { sha256: 'ab'.repeat(32), objective: 'ddpm', step: 1, x: 1 } },
        /unknown field meta\.parent\.x/,
      ],
      [{ ...base, secret: 1 }, /unknown field meta\.secret/],
    ];
    for (const [m, pattern] of cases)
      expectRejected(() => loadCheckpoint(craft(w, m)), 'bad_metadata', pattern);
  });

  it('a kind, objective or architecture that differs from the expected one', () => {
    expectRejected(
      () => loadCheckpoint(bytes, { kind: 'router' }),
      'config_mismatch',
      /kind: checkpoint is "expert", expected "router"/,
    );
    expectRejected(
      () => loadCheckpoint(bytes, { objective: 'fm' }),
      'config_mismatch',
      /objective/,
    );
    expectRejected(
      () => loadCheckpoint(bytes, { architecture: { ...architecture, depth: 4 } }),
      'config_mismatch',
      /architecture\.depth: checkpoint has 2, expected 4/,
    );
    expectRejected(
      () => loadCheckpoint(bytes, { architecture: { ...architecture, extra: 1 } }),
      'config_mismatch',
      /architecture\.extra: missing/,
    );
    const { preset: _p, ...lacking } = architecture;
    expectRejected(
      () => loadCheckpoint(bytes, { architecture: lacking }),
      'config_mismatch',
      /architecture\.preset: checkpoint has "tiny", not expected/,
    );
    expectRejected(
      () =>
        loadCheckpoint(bytes, {
          architecture: { ...architecture, nested: { list: [1, 2, { a: false }] } },
        }),
      'config_mismatch',
      /architecture\.nested\.list\[2\]\.a/,
    );
    expect(() =>
      loadCheckpoint(bytes, { architecture: JSON.parse(JSON.stringify(architecture)) }),
    ).not.toThrow();
  });

  it('missing, extra or wrongly shaped tensors', () => {
    const { 'blocks.1.mlp.fc2.bias': _gone, ...fewer } = shapes;
    const e = expectRejected(
      () =>
        loadCheckpoint(bytes, { paramShapes: { ...shapes, 'blocks.2.attn.qkv.weight': [24, 8] } }),
      'missing_tensor',
      /"blocks\.2\.attn\.qkv\.weight"/,
    );
    expect(e.tensor).toBe('blocks.2.attn.qkv.weight');
    expectRejected(
      () => loadCheckpoint(bytes, { paramShapes: fewer }),
      'unexpected_tensor',
      /"blocks\.1\.mlp\.fc2\.bias"/,
    );
    expectRejected(
      () => loadCheckpoint(bytes, { paramShapes: { ...shapes, pos_embed: [1, 16, 9] } }),
      'shape_mismatch',
      /"pos_embed": checkpoint has shape \[1, 16, 8\], expected \[1, 16, 9\]/,
    );
    expectRejected(
      () => loadCheckpoint(bytes, { paramShapes: { ...shapes, 'patch_embed.bias': [8, 1] } }),
      'shape_mismatch',
      /patch_embed\.bias/,
    );
  });

  it('NaN or infinity anywhere, naming the tensor and the first bad element', () => {
    const arch = { format: 'archipelago.checkpoint', version: 1, ...meta };
    const data = new Float32Array(6);
    data[4] = Number.NaN;
    data[5] = Number.POSITIVE_INFINITY;
    const e = expectRejected(
      () =>
        loadCheckpoint(
          craft(
            {
              ok: { dtype: 'F32', shape: [1], data: Float32Array.of(1) },
              'blocks.0.attn.proj.weight': { dtype: 'F32', shape: [2, 3], data },
            },
            arch,
          ),
        ),
      'non_finite',
      /"blocks\.0\.attn\.proj\.weight": element 4 \(index \[1, 1\]\) is NaN/,
    );
    expect(e.tensor).toBe('blocks.0.attn.proj.weight');
    expectRejected(
      () =>
        loadCheckpoint(
          craft({ w: { dtype: 'F32', shape: [3], data: Float32Array.of(0, -Infinity, 0) } }, arch),
        ),
      'non_finite',
      /"w": element 1 \(index \[1\]\) is -Infinity/,
    );
    // A NaN with a payload (not the canonical bit pattern) is caught too.
    const payload = new Float32Array(Uint32Array.of(0, 0xffc12345).buffer);
    expectRejected(
      () => loadCheckpoint(craft({ w: { dtype: 'F32', shape: [2], data: payload } }, arch)),
      'non_finite',
      /element 1/,
    );
  });

  it('tensors that are not F32', () => {
    const arch = { format: 'archipelago.checkpoint', version: 1, ...meta };
    expectRejected(
      () =>
        loadCheckpoint(
          craft({ w: { dtype: 'F16', shape: [1], data: Uint16Array.of(0x3c00) } }, arch),
        ),
      'wrong_dtype',
      /"w" is F16/,
    );
  });
});

describe('inspectCheckpoint: the header alone, before any tensor data', () => {
  let bytes: Uint8Array;
  let headerEnd: number;
  beforeAll(async () => {
    bytes = await saveCheckpoint({ params: randomParams(shapes, 5), meta });
    headerEnd = 8 + safetensorsHeaderLength(bytes, bytes.length);
  });

  it('checks metadata, names and shapes from the first bytes and the file size', () => {
    // Only the header is at hand: the tensor data could not have been read.
    const prefix = bytes.slice(0, headerEnd);
    const { meta: read, header } = inspectCheckpoint(prefix, bytes.length, {
      kind: 'expert',
      architecture,
      paramShapes: shapes,
    });
    expect(read).toMatchObject({ kind: 'expert', step: 1234 });
    expect(header.dataStart).toBe(headerEnd);
    expect(header.entries.map((e) => e.name).sort()).toEqual(Object.keys(shapes).sort());
    const { 'blocks.1.mlp.fc2.bias': _gone, ...fewer } = shapes;
    expectRejected(
      () => inspectCheckpoint(prefix, bytes.length, { paramShapes: fewer }),
      'unexpected_tensor',
      /blocks\.1\.mlp\.fc2\.bias/,
    );
    expectRejected(
      () => inspectCheckpoint(prefix, bytes.length, { paramShapes: { ...shapes, x: [1] } }),
      'missing_tensor',
    );
    expectRejected(
      () => inspectCheckpoint(prefix, bytes.length, { kind: 'router' }),
      'config_mismatch',
    );
    // A file size that does not fit the header's offsets.
    expectRejected(
      () => inspectCheckpoint(prefix, bytes.length + 4),
      'not_safetensors',
      /trailing/,
    );
  });

  it('refuses a header over the limit from its first 8 bytes', () => {
    const e = expectRejected(
      () =>
        inspectCheckpoint(bytes.slice(0, 8), bytes.length, {}, { maxHeaderBytes: headerEnd - 9 }),
      'not_safetensors',
      /header length \d+ exceeds the limit/,
    );
    expect((e.cause as { code: string }).code).toBe('header_too_large');
  });
});

describe('checkpointSizeBounds', () => {
  it('bounds a real checkpoint: exact tensor bytes, a header within the allowance', async () => {
    const bounds = checkpointSizeBounds(shapes);
    const tensorBytes =
      Object.values(shapes).reduce((n, s) => n + s.reduce((a, d) => a * d, 1), 0) * 4;
    expect(bounds.tensorBytes).toBe(tensorBytes);
    expect(bounds.maxHeaderBytes % 8).toBe(0);
    expect(bounds.maxHeaderBytes).toBeLessThan(CHECKPOINT_METADATA_ALLOWANCE + 16 * 1024);
    const bytes = await saveCheckpoint({ params: randomParams(shapes, 3), meta });
    const headerLength = safetensorsHeaderLength(bytes, bytes.length);
    expect(bytes.length - 8 - headerLength).toBe(tensorBytes);
    expect(headerLength).toBeLessThanOrEqual(bounds.maxHeaderBytes);
    expect(bytes.length).toBeGreaterThanOrEqual(bounds.minBytes);
    expect(bytes.length).toBeLessThanOrEqual(bounds.maxBytes);
    // The tensor entries alone fit in what the bound leaves beside the metadata allowance.
    const entriesOnly = encodeSafetensors(
      Object.fromEntries(
        Object.entries(shapes).map(([n, s]) => [
          n,
          { dtype: 'F32' as const, shape: s, data: new Float32Array(s.reduce((a, d) => a * d, 1)) },
        ]),
      ),
    );
    expect(safetensorsHeaderLength(entriesOnly, entriesOnly.length)).toBeLessThanOrEqual(
      bounds.maxHeaderBytes - CHECKPOINT_METADATA_ALLOWANCE + 8,
    );
  });
});

describe('saveCheckpoint rejects', () => {
  it('non-float32 tensors, bad shapes, non-finite values and bad metadata', async () => {
    const int = tf.tensor([1, 2], [2], 'int32');
    expect(
      (await catchCheckpointErrorAsync(() => saveCheckpoint({ params: { w: int }, meta }))).code,
    ).toBe('wrong_dtype');
    int.dispose();
    const wrongArray = {
      w: { shape: [2], data: Float64Array.of(1, 2) as unknown as Float32Array },
    };
    expect(
      (await catchCheckpointErrorAsync(() => saveCheckpoint({ params: wrongArray, meta }))).code,
    ).toBe('wrong_dtype');
    const badShape = { w: { shape: [3], data: Float32Array.of(1, 2) } };
    expect(
      (await catchCheckpointErrorAsync(() => saveCheckpoint({ params: badShape, meta }))).message,
    ).toMatch(/"w": shape \[3\] does not fit its 2 values/);
    const nan = { w: { shape: [2], data: Float32Array.of(1, Number.NaN) } };
    const e = await catchCheckpointErrorAsync(() => saveCheckpoint({ params: nan, meta }));
    expect(e.code).toBe('non_finite');
    expect(e.message).toMatch(/"w": element 1/);
    const ok = { w: { shape: [1], data: Float32Array.of(1) } };
    const badMeta = async (m: unknown) =>
      (
        await catchCheckpointErrorAsync(() =>
          saveCheckpoint({ params: ok, meta: m as CheckpointMetaInput }),
        )
      ).message;
    expect(await badMeta({ ...meta, step: -3 })).toMatch(/meta\.step/);
    expect(await badMeta({ ...meta, architecture: { lr: Number.NaN } })).toMatch(
      /meta\.architecture\.lr is NaN/,
    );
    expect(await badMeta({ ...meta, architecture: { when: new Date(0) } })).toMatch(
      /meta\.architecture\.when is a Date/,
    );
    expect(await badMeta({ ...meta, architecture: { n: 10n } })).toMatch(/bigint/);
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(await badMeta({ ...meta, architecture: cyclic })).toMatch(/refers to itself/);
    const reserved = await catchCheckpointErrorAsync(() =>
      saveCheckpoint({ params: ok, meta, extraMetadata: { archipelago: 'x' } }),
    );
    expect(reserved.code).toBe('bad_metadata');
  });
});
