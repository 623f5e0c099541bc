import type { LeaseGrant, ObjectRef } from '@archipelago/protocol';
import { describe, expect, it } from 'vitest';
import type { CheckpointBytes } from '../src/checkpoint-files.js';
import { sha256Hex } from '../src/object-cache.js';
import {
  chooseResume,
  describeResume,
  type Orphan,
  orphanMatches,
  readLocalCheckpoint,
} from '../src/resume.js';
import type { LocalCheckpoint, SavedLease } from '../src/work-dir.js';

const ref = (sha: string): ObjectRef => ({
  url: 'http://store/x',
  sha256: sha.repeat(64),
  bytes: 10,
  expiresAt: '2030-01-01T00:00:00.000Z',
});

/** The fields of a grant that the resume choice reads. */
const grant = (over: Partial<LeaseGrant> = {}): LeaseGrant =>
  ({
    type: 'lease.grant',
    leaseId: 'ls_000000000001',
    expert: { id: 'ex_000000000001', runId: 'rn_000000000001', cluster: 0 },
    objective: 'fm',
    ...over,
  }) as LeaseGrant;

const resumed = (step: number, sha = 'a') => grant({ resumeFrom: { step, checkpoint: ref(sha) } });

const localCk = (step: number, bytes: Uint8Array, accepted = false): LocalCheckpoint => ({
  file: `checkpoints/ls_000000000001-${String(step).padStart(9, '0')}.safetensors`,
  step,
  sha256: sha256Hex(bytes),
  bytes: bytes.byteLength,
  final: false,
  accepted,
});

const savedLease = (
  g: LeaseGrant,
  acceptedStep: number | null,
  checkpoint: LocalCheckpoint | null,
) =>
  ({
    coordinator: 'http://c',
    leaseId: g.leaseId,
    expertId: g.expert.id,
    grant: g,
    step: checkpoint?.step ?? 0,
    acceptedStep,
    checkpoint,
  }) satisfies SavedLease;

const orphan = (over: Partial<Orphan> = {}): Orphan => ({
  expertId: 'ex_000000000001',
  baseStep: 10,
  baseSha256: 'a'.repeat(64),
  step: 14,
  final: false,
  bytes: new Uint8Array([1, 2, 3]),
  ...over,
});

describe('chooseResume', () => {
  it('prefers the re-attached lease’s local checkpoint', () => {
    const bytes = new Uint8Array([9]);
    const local: CheckpointBytes = { ck: localCk(14, bytes), bytes };
    const g = resumed(10);
    const point = chooseResume(g, savedLease(g, 10, local.ck), orphan(), local);
    expect(point).toEqual({ kind: 'local', step: 14, checkpoint: local });
    expect(describeResume(point)).toBe('its local checkpoint of step 14');
  });

  it('continues a lost lease’s leftover when the expert is granted again from the same checkpoint', () => {
    const o = orphan();
    expect(chooseResume(resumed(10), undefined, o, null)).toEqual({
      kind: 'orphan',
      step: 14,
      orphan: o,
    });
    // From scratch, with no known base hash.
    const fresh = orphan({ baseStep: 0, baseSha256: null });
    expect(chooseResume(grant(), undefined, fresh, null)).toMatchObject({ kind: 'orphan' });
  });

  it('ignores a leftover of another expert, another base step or hash, or one that trained nothing', () => {
    const g = resumed(10);
    expect(orphanMatches(orphan({ expertId: 'ex_000000000002' }), g, undefined)).toBe(false);
    expect(orphanMatches(orphan({ baseStep: 8 }), g, undefined)).toBe(false);
    expect(orphanMatches(orphan({ baseSha256: 'b'.repeat(64) }), g, undefined)).toBe(false);
    expect(orphanMatches(orphan({ step: 10 }), g, undefined)).toBe(false);
    expect(orphanMatches(orphan({ baseSha256: null }), g, undefined)).toBe(true);
    // A re-attached lease never takes a leftover.
    expect(orphanMatches(orphan(), g, savedLease(g, 10, null))).toBe(false);
    expect(chooseResume(g, undefined, orphan({ baseStep: 8 }), null)).toMatchObject({
      kind: 'accepted',
      step: 10,
    });
  });

  it('resumes from the accepted checkpoint, converts a DDPM init, or starts from scratch', () => {
    const point = chooseResume(resumed(10), undefined, null, null);
    expect(point).toEqual({ kind: 'accepted', step: 10, checkpoint: ref('a') });
    expect(describeResume(point)).toBe(
      `the accepted checkpoint of step 10 (sha256 ${'a'.repeat(12)})`,
    );
    const init = grant({ initFrom: { checkpoint: ref('c'), objective: 'ddpm' } });
    expect(chooseResume(init, undefined, null, null)).toEqual({
      kind: 'converted',
      step: 0,
      checkpoint: ref('c'),
    });
    expect(chooseResume(grant(), undefined, null, null)).toEqual({ kind: 'scratch', step: 0 });
    expect(describeResume({ kind: 'scratch', step: 0 })).toBe('random initialisation');
  });

  it('refuses a re-attached lease whose local checkpoint is gone when the grant is older than the accepted step', () => {
    const g = resumed(10);
    expect(() => chooseResume(g, savedLease(g, 20, null), null, null)).toThrow(
      /older than the accepted step 20/,
    );
    // Not older: resume from the grant.
    expect(chooseResume(g, savedLease(g, 10, null), null, null)).toMatchObject({
      kind: 'accepted',
    });
  });
});

describe('readLocalCheckpoint', () => {
  const bytes = new Uint8Array([4, 5, 6]);
  const g = resumed(10);

  it('returns an intact checkpoint with its bytes', () => {
    const ck = localCk(12, bytes, true);
    const warnings: string[] = [];
    const got = readLocalCheckpoint(
      savedLease(g, 12, ck),
      g,
      () => bytes,
      (m) => warnings.push(m),
    );
    expect(got).toEqual({ ck, bytes });
    expect(got!.ck).not.toBe(ck); // a copy: the upload marks it accepted
    expect(warnings).toEqual([]);
  });

  it('ignores a missing, corrupt or outdated file, with a warning', () => {
    const warnings: string[] = [];
    const warn = (m: string) => warnings.push(m);
    const ck = localCk(12, bytes);
    const missing = () => {
      throw new Error('ENOENT');
    };
    expect(readLocalCheckpoint(savedLease(g, 10, ck), g, missing, warn)).toBeNull();
    expect(
      readLocalCheckpoint(savedLease(g, 10, ck), g, () => new Uint8Array([7]), warn),
    ).toBeNull();
    const old = localCk(8, bytes);
    expect(readLocalCheckpoint(savedLease(g, 8, old), g, () => bytes, warn)).toBeNull();
    expect(warnings).toEqual([
      'ignoring the local checkpoint of step 12 (ENOENT)',
      'ignoring the local checkpoint of step 12 (sha256 mismatch)',
      'ignoring the local checkpoint of step 8 (older than the lease)',
    ]);
    // Nothing recorded: nothing to read, no warning.
    expect(readLocalCheckpoint(undefined, g, missing, warn)).toBeNull();
    expect(readLocalCheckpoint(savedLease(g, 10, null), g, missing, warn)).toBeNull();
    expect(warnings).toHaveLength(3);
  });
});
