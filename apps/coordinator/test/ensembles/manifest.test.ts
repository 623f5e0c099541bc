import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  canonicalJson,
  MANIFEST_V1_SCHEMA_ID as MANIFEST_SCHEMA_ID,
  type ManifestBody,
} from '@archipelago/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  checkFile,
  ManifestError,
  manifestId,
  parseManifest,
  signManifest,
  verifyManifest,
} from '../../src/ensembles/manifest.js';
import { loadOrCreateSigningKey, type SigningKey } from '../../src/ensembles/signing-key.js';

const sha = (c: string) => c.repeat(64);

function body(): ManifestBody {
  return {
    schema: MANIFEST_SCHEMA_ID,
    run: { id: 'run_abc123', name: 'r', objectives: 'ddpm:1,fm:1' },
    dataset: {
      id: 'ds_abc123',
      name: 'd',
      count: 10,
      width: 8,
      height: 8,
      channels: 1,
      classNames: ['a', 'b'],
      clusteringId: 'cl_abc123',
      sizes: [6, 4],
      classCounts: [
        [5, 1],
        [0, 4],
      ],
    },
    model: { preset: 'tiny', architecture: { kind: 'dit', imageSize: 8 } },
    experts: [0, 1].map((k) => ({
      cluster: k,
      objective: k === 0 ? ('ddpm' as const) : ('fm' as const),
      schedule: k === 0 ? ('cosine' as const) : null,
      checkpoint: {
        uri: `checkpoints/expert-${k}.safetensors`,
        key: `runs/r/experts/${k}/ckpt-40.safetensors`,
        sha256: sha(String(k)),
        bytes: 100 + k,
      },
      steps: 40,
      trainImages: 5,
      validationLoss: 0.2,
      baselineLoss: 1,
    })),
    router: {
      checkpoint: {
        uri: 'checkpoints/router.safetensors',
        key: 'runs/r/router/x.safetensors',
        sha256: sha('f'),
        bytes: 50,
      },
      architecture: { kind: 'router' },
      steps: 10,
      accuracy: { edges: [0, 0.5, 1], accuracy: [1, 0.5], chance: 0.6, counts: [4, 4] },
    },
    inference: {
      routing: 'top-1',
      topK: 2,
      threshold: 0.1,
      conversion: 'snr',
      alphaMin: 0.01,
      x0Clamp: 20,
      sampler: 'heun',
      steps: 16,
      guidance: 3,
      rationale: 'test',
    },
    createdAt: '2026-11-26T00:00:00.000Z',
  };
}

let dir: string;
let key: SigningKey;
let other: SigningKey;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'arch-manifest-'));
  key = loadOrCreateSigningKey(path.join(dir, 'a'));
  other = loadOrCreateSigningKey(path.join(dir, 'b'));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

describe('ensemble manifest signing', () => {
  it('keeps the key across loads and names it by its public key', () => {
    const again = loadOrCreateSigningKey(path.join(dir, 'a'));
    expect(again.publicKeyRaw).toBe(key.publicKeyRaw);
    expect(again.keyId).toMatch(/^[0-9a-f]{16}$/);
    expect(other.keyId).not.toBe(key.keyId);
  });

  it('is content-addressed: the id is the hash of the canonical body, whatever the key order', () => {
    const b = body();
    const reordered = Object.fromEntries(Object.entries(b).reverse()) as unknown as ManifestBody;
    expect(Object.keys(reordered)[0]).toBe('createdAt');
    expect(manifestId(reordered)).toBe(manifestId(b));
    expect(manifestId({ ...b, createdAt: '2026-11-27T00:00:00.000Z' })).not.toBe(manifestId(b));
    expect(canonicalJson({ b: 1, a: [1, { d: 2, c: 3 }] })).toBe('{"a":[1,{"c":3,"d":2}],"b":1}');
  });

  it('round-trips through JSON text and verifies', () => {
    const m = signManifest(body(), key);
    const parsed = parseManifest(JSON.stringify(m, null, 2));
    expect(() => verifyManifest(parsed)).not.toThrow();
    expect(() => verifyManifest(parsed, { trustedKeys: [key.publicKeyRaw] })).not.toThrow();
  });

  it('rejects a tampered body, a re-addressed tampered body, a foreign key and a bad signature', () => {
    const m = signManifest(body(), key);
    const tampered = structuredClone(m);
    tampered.experts[0]!.checkpoint.sha256 = sha('9');
    expect(() => verifyManifest(tampered)).toThrow(/does not match its content/);
    // Recomputing the id does not help: the signature covers the id.
    const { id: _i, signature: _s, ...rest } = tampered;
    tampered.id = manifestId(rest);
    expect(() => verifyManifest(tampered)).toThrow(/signature .* does not verify/);
    // Re-signing with another key verifies only if that key is trusted.
    const forged = signManifest(rest, other);
    expect(() => verifyManifest(forged)).not.toThrow();
    expect(() => verifyManifest(forged, { trustedKeys: [key.publicKeyRaw] })).toThrow(
      /not among the trusted keys/,
    );
    const badSig = structuredClone(m);
    badSig.signature.value = `${badSig.signature.value.slice(0, -4)}AAAA`;
    expect(() => verifyManifest(badSig)).toThrow(ManifestError);
  });

  it('rejects JSON that is not a manifest, naming the problem', () => {
    expect(() => parseManifest('{nope')).toThrow(/not JSON/);
    const m = signManifest(body(), key) as unknown as Record<string, unknown>;
    delete m.router;
    expect(() => parseManifest(JSON.stringify(m))).toThrow(/not an ensemble manifest v1/);
  });

  it('checks a file against its size and sha256', () => {
    const bytes = new TextEncoder().encode('hello');
    const good = {
      uri: 'x',
      key: 'k',
      sha256: '2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824',
      bytes: 5,
    };
    expect(() => checkFile('expert 0', good, bytes)).not.toThrow();
    expect(() => checkFile('expert 0', { ...good, bytes: 6 }, bytes)).toThrow(
      /5 bytes, the manifest says 6/,
    );
    expect(() => checkFile('expert 0', { ...good, sha256: sha('0') }, bytes)).toThrow(/sha256/);
  });
});
