import { describe, expect, it } from 'vitest';
import { isCheckpointStep } from '../../src/worker/checkpoint.js';
import {
  MAX_FRAME_BYTES,
  negotiateProtocol,
  OPTIMIZER_STATE_PROTOCOL,
  PROTOCOL_VERSIONS,
  parseFrame,
} from '../../src/worker/messages.js';

const hello = {
  type: 'hello',
  protocols: [1],
  token: 'wt_0123456789abcdef',
  name: 'gpu-box-0',
  objective: 'ddpm',
  backend: 'tensorflow-gpu',
  hardware: { cpus: 16, memoryBytes: 64e9, gpu: { index: 0, name: 'RTX 4090' }, threads: 1 },
  version: '0.1.0',
};

describe('parseFrame', () => {
  it('accepts a valid frame from the right side and types it by its type', () => {
    const r = parseFrame(JSON.stringify(hello), 'worker');
    expect(r).toEqual({ ok: true, message: hello });
    const bytes = new TextEncoder().encode(
      JSON.stringify({ type: 'lease.none', retryAfterMs: 500, reason: 'no pending experts' }),
    );
    expect(parseFrame(bytes, 'coordinator').ok).toBe(true);
  });

  it('refuses malformed JSON, non-objects and invalid UTF-8', () => {
    expect(parseFrame('{"type":', 'worker')).toMatchObject({ ok: false, code: 'bad_json' });
    expect(parseFrame('[1,2]', 'worker')).toMatchObject({ ok: false, code: 'invalid_message' });
    expect(parseFrame(new Uint8Array([0x7b, 0xff, 0x7d]), 'worker')).toMatchObject({
      ok: false,
      code: 'bad_json',
    });
  });

  it('refuses unknown types, and types of the other side, listing the valid ones', () => {
    const r = parseFrame('{"type":"lease.steal"}', 'worker');
    expect(r).toMatchObject({ ok: false, code: 'unknown_type' });
    expect(!r.ok && r.message).toMatch(
      /unknown message type "lease.steal"; valid: hello, lease.request, heartbeat/,
    );
    expect(
      parseFrame(
        JSON.stringify({
          type: 'welcome',
          protocol: 1,
          workerId: 'wk_abcdefabcdef',
          heartbeatMs: 1000,
          leaseTtlMs: 3000,
          maxFrameBytes: 65536,
        }),
        'worker',
      ),
    ).toMatchObject({
      ok: false,
      code: 'unknown_type',
    });
  });

  it('names the offending field of a schema violation', () => {
    const r = parseFrame(
      JSON.stringify({
        type: 'heartbeat',
        leaseId: 'ls_abcdefabcdef',
        step: -1,
        loss: 0.1,
        imagesPerSec: 10,
      }),
      'worker',
    );
    expect(r).toMatchObject({ ok: false, code: 'invalid_message', inReplyTo: 'heartbeat' });
    expect(!r.ok && r.message).toMatch(/^heartbeat: \/step must be >= 0/);
    const extra = parseFrame(JSON.stringify({ ...hello, admin: true }), 'worker');
    expect(!extra.ok && extra.message).toBe('hello: /admin is not an allowed property');
    const badHash = parseFrame(
      JSON.stringify({
        type: 'checkpoint.begin',
        leaseId: 'ls_abcdefabcdef',
        step: 10,
        bytes: 100,
        sha256: 'XYZ',
        final: false,
      }),
      'worker',
    );
    expect(!badHash.ok && badHash.message).toMatch(/\/sha256/);
  });

  it('a heartbeat may say it is paused, with a boolean and nothing else', () => {
    const hb = {
      type: 'heartbeat',
      leaseId: 'ls_abcdefabcdef',
      step: 3,
      loss: 0.2,
      imagesPerSec: 0,
    };
    expect(parseFrame(JSON.stringify(hb), 'worker')).toEqual({ ok: true, message: hb });
    for (const paused of [true, false]) {
      expect(parseFrame(JSON.stringify({ ...hb, paused }), 'worker')).toEqual({
        ok: true,
        message: { ...hb, paused },
      });
    }
    for (const paused of ['yes', 1, null, {}, [true]]) {
      const r = parseFrame(JSON.stringify({ ...hb, paused }), 'worker');
      expect(r).toMatchObject({ ok: false, code: 'invalid_message', inReplyTo: 'heartbeat' });
      expect(!r.ok && r.message).toMatch(/^heartbeat: \/paused /);
    }
    // Only a heartbeat has it: a pause is not a separate message.
    const other = parseFrame(
      JSON.stringify({
        type: 'lease.release',
        leaseId: 'ls_abcdefabcdef',
        reason: 'x',
        paused: true,
      }),
      'worker',
    );
    expect(!other.ok && other.message).toBe('lease.release: /paused is not an allowed property');
  });

  it('a lease grant carries no held-out data: a grant with a validation split is refused', () => {
    const ref = {
      url: 'http://coordinator/store/x?sig=1',
      sha256: 'a'.repeat(64),
      bytes: 10,
      expiresAt: '2026-01-01T00:00:00.000Z',
    };
    const grant = {
      type: 'lease.grant',
      leaseId: 'ls_abcdefabcdef',
      expert: { id: 'ex_abcdefabcdef', runId: 'run_abcdefabcdef', cluster: 0 },
      spec: { name: 'fm', timeSampling: { kind: 'uniform' } },
      objective: 'fm',
      timeSampling: 'uniform',
      shard: { train: ref, count: 10, valCount: 2 },
      model: { preset: 'micro', imageSize: 16, channels: 1, numClasses: 0 },
      training: {
        targetSteps: 100,
        checkpointInterval: 10,
        batchSize: 8,
        learningRate: 0.001,
        seed: 1,
      },
    };
    expect(parseFrame(JSON.stringify(grant), 'coordinator').ok).toBe(true);
    const leaky = { ...grant, shard: { ...grant.shard, val: ref } };
    expect(parseFrame(JSON.stringify(leaky), 'coordinator')).toMatchObject({
      ok: false,
      code: 'invalid_message',
    });
  });

  it('refuses frames over the size limit before parsing them', () => {
    const big = JSON.stringify({ ...hello, name: 'x'.repeat(MAX_FRAME_BYTES) });
    expect(parseFrame(big, 'worker')).toMatchObject({ ok: false, code: 'frame_too_large' });
    expect(parseFrame(JSON.stringify(hello), 'worker', 100)).toMatchObject({
      ok: false,
      code: 'frame_too_large',
    });
  });
});

describe('optimiser states (protocol 2)', () => {
  const sha = 'b'.repeat(64);
  const ref = {
    url: 'http://coordinator/store/x?sig=1',
    sha256: 'a'.repeat(64),
    bytes: 10,
    expiresAt: '2026-01-01T00:00:00.000Z',
  };
  const begin = {
    type: 'checkpoint.begin',
    leaseId: 'ls_abcdefabcdef',
    step: 10,
    bytes: 100,
    sha256: 'a'.repeat(64),
    final: false,
  };
  const url = {
    type: 'checkpoint.url',
    leaseId: 'ls_abcdefabcdef',
    checkpointId: 'ck_abcdefabcdef',
    putUrl: 'http://store/put?sig=1',
    headers: { 'content-length': '100' },
    expiresAt: '2026-01-01T00:00:00.000Z',
  };
  const parse = (v: unknown, side: 'worker' | 'coordinator') => parseFrame(JSON.stringify(v), side);

  it('a begin may announce one, a url may carry its PUT; both stay optional', () => {
    expect(parse(begin, 'worker').ok).toBe(true);
    expect(parse({ ...begin, optimizer: { bytes: 300, sha256: sha } }, 'worker').ok).toBe(true);
    expect(parse(url, 'coordinator').ok).toBe(true);
    const withPut = { ...url, optimizer: { putUrl: 'http://store/put2', headers: {} } };
    expect(parse(withPut, 'coordinator').ok).toBe(true);
  });

  it('refuses a malformed announcement or PUT', () => {
    for (const optimizer of [
      { bytes: 0, sha256: sha },
      { bytes: 300, sha256: 'XYZ' },
      { bytes: 300 },
      { bytes: 300, sha256: sha, url: 'x' },
      'state',
    ]) {
      const r = parse({ ...begin, optimizer }, 'worker');
      expect(r, JSON.stringify(optimizer)).toMatchObject({ ok: false, code: 'invalid_message' });
      expect(!r.ok && r.message).toMatch(/^checkpoint\.begin: \/optimizer/);
    }
    expect(parse({ ...url, optimizer: { putUrl: '', headers: {} } }, 'coordinator')).toMatchObject({
      ok: false,
      code: 'invalid_message',
    });
    expect(parse({ ...url, optimizer: { headers: {} } }, 'coordinator').ok).toBe(false);
  });

  it("a grant's resume point may name its optimiser state, as an object reference", () => {
    const grant = {
      type: 'lease.grant',
      leaseId: 'ls_abcdefabcdef',
      expert: { id: 'ex_abcdefabcdef', runId: 'run_abcdefabcdef', cluster: 0 },
      spec: { name: 'fm', timeSampling: { kind: 'uniform' } },
      objective: 'fm',
      timeSampling: 'uniform',
      shard: { train: ref, count: 10, valCount: 2 },
      model: { preset: 'micro', imageSize: 16, channels: 1, numClasses: 0 },
      training: {
        targetSteps: 100,
        checkpointInterval: 10,
        batchSize: 8,
        learningRate: 0.001,
        seed: 1,
      },
      resumeFrom: { checkpoint: ref, step: 10 },
    };
    expect(parse(grant, 'coordinator').ok).toBe(true);
    const exact = { ...grant, resumeFrom: { ...grant.resumeFrom, optimizer: ref } };
    expect(parse(exact, 'coordinator').ok).toBe(true);
    const bad = { ...grant, resumeFrom: { ...grant.resumeFrom, optimizer: { url: 'x' } } };
    expect(parse(bad, 'coordinator')).toMatchObject({ ok: false, code: 'invalid_message' });
  });
});

describe('negotiateProtocol', () => {
  it('picks the highest common version, or null', () => {
    expect(PROTOCOL_VERSIONS).toEqual([1, 2]);
    expect(negotiateProtocol([1, 2, 3])).toBe(2);
    expect(negotiateProtocol([1])).toBe(1);
    expect(negotiateProtocol([2])).toBe(OPTIMIZER_STATE_PROTOCOL);
    expect(negotiateProtocol([3])).toBeNull();
  });
});

describe('isCheckpointStep', () => {
  it('allows the multiples of the interval before the target, and the target', () => {
    const allowed = Array.from({ length: 30 }, (_, step) => step).filter((step) =>
      isCheckpointStep(step, 5, 23),
    );
    expect(allowed).toEqual([5, 10, 15, 20, 23]);
    expect(isCheckpointStep(23, 5, 23)).toBe(true);
    expect(isCheckpointStep(25, 5, 23)).toBe(false);
    expect(isCheckpointStep(20, 5, 20)).toBe(true);
    expect(isCheckpointStep(0, 5, 20)).toBe(false);
  });
});
