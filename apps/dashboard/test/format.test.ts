import type { Expert, Run } from '@archipelago/protocol';
import { describe, expect, it } from 'vitest';
import {
  acceptanceText,
  binCentres,
  expertEta,
  formatDuration,
  formatNumber,
  relativeTime,
  runEta,
  runProgress,
} from '../src/format.js';
import { describeEvent, eventCategory } from '../src/ui.js';

const expert = (over: Partial<Expert>): Expert =>
  ({
    id: 'ex_aaaaaaaa',
    cluster: 0,
    objective: 'ddpm',
    schedule: 'cosine',
    status: 'pending',
    size: 100,
    valSize: 2,
    step: 0,
    targetSteps: 1000,
    loss: null,
    imagesPerSec: null,
    workerId: null,
    lastHeartbeatAt: null,
    checkpointStep: null,
    updatedAt: '2026-01-01T00:00:00.000Z',
    ...over,
  }) as Expert;

const run = (experts: Expert[], status: Run['status'] = 'training'): Run =>
  ({
    id: 'run_aaaaaaaa',
    name: 'r',
    datasetId: 'ds_aaaaaaaa',
    clusteringId: null,
    status,
    k: experts.length,
    objectives: 'any',
    config: { batchSize: 64 } as Run['config'],
    error: null,
    createdAt: '2026-01-01T00:00:00.000Z',
    updatedAt: '2026-01-01T00:00:00.000Z',
    experts,
  }) as Run;

describe('estimates', () => {
  it('an expert in training finishes at images/s / batch size steps per second', () => {
    // 600 steps left at 128 img/s with batch 64 = 2 steps/s -> 300 s.
    const e = expert({ status: 'training', step: 400, imagesPerSec: 128 });
    expect(expertEta(e, 64)).toBe(300);
    expect(expertEta(expert({ status: 'done', step: 1000 }), 64)).toBe(0);
    expect(expertEta(expert({ status: 'pending' }), 64)).toBeNull();
    expect(expertEta(expert({ status: 'training', imagesPerSec: 0 }), 64)).toBeNull();
  });

  it('a run ends with its slowest expert; unknown while one waits for a worker', () => {
    const fast = expert({ status: 'training', step: 900, imagesPerSec: 64 });
    const slow = expert({ status: 'training', step: 500, imagesPerSec: 64 });
    expect(runEta(run([fast, slow]))).toBe(500);
    expect(runEta(run([fast, expert({})]))).toBeNull();
    expect(runEta(run([expert({})], 'cancelled'))).toBe(0);
  });

  it('progress counts finished experts as complete', () => {
    expect(runProgress(run([expert({ step: 250 }), expert({ status: 'done', step: 0 })]))).toBe(
      0.625,
    );
    expect(runProgress(run([]))).toBe(0);
  });
});

describe('formatting', () => {
  it('durations, relative times and numbers read naturally', () => {
    expect(formatDuration(5)).toBe('5 s');
    expect(formatDuration(245)).toBe('4 min 05 s');
    expect(formatDuration(2 * 3600 + 7 * 60)).toBe('2 h 07 min');
    expect(formatDuration(3 * 86_400 + 4 * 3600)).toBe('3 d 4 h');
    expect(formatDuration(Number.NaN)).toBe('—');
    const now = Date.parse('2026-01-01T00:10:00Z');
    expect(relativeTime('2026-01-01T00:09:48Z', now)).toBe('12 s ago');
    expect(relativeTime('2026-01-01T00:05:00Z', now)).toBe('5 min ago');
    expect(relativeTime('2026-01-01T00:10:00Z', now)).toBe('just now');
    expect(relativeTime(null, now)).toBe('—');
    expect(formatNumber(0.123456)).toBe('0.123');
    expect(formatNumber(12345.6)).toBe('12,346');
    expect(formatNumber(null)).toBe('—');
    expect(binCentres([0, 0.5, 1])).toEqual([0.25, 0.75]);
  });

  it('events are grouped and described from their data', () => {
    expect(eventCategory('lease.granted')).toBe('lease');
    expect(eventCategory('lease.expired')).toBe('expiry');
    expect(eventCategory('checkpoint.accepted')).toBe('checkpoint');
    expect(eventCategory('checkpoint.rejected')).toBe('rejected');
    expect(eventCategory('expert.validated')).toBe('validation');
    expect(eventCategory('ensemble.published')).toBe('run');
    const base = { id: 1, at: '', runId: null, expertId: null, workerId: null };
    expect(
      describeEvent({
        ...base,
        type: 'lease.expired',
        data: { reason: 'no heartbeat', resumeStep: 40 },
      }),
    ).toBe('no heartbeat · resumes at step 40');
    expect(
      describeEvent({
        ...base,
        type: 'router.trained',
        data: { accuracy: [0.5, 0.7], chance: 0.25, steps: 40 },
      }),
    ).toBe('mean accuracy 0.6 · chance 0.25 · steps 40');
  });
});

describe('acceptanceText', () => {
  it("shows an expert's acceptance margins against its shard's linear reference", () => {
    expect(acceptanceText({ midRatio: 0.684, highRatio: 1.052, specificity: 1.4501 })).toBe(
      'x0 error 0.68× the linear reference at mid noise, 1.05× at high noise; specificity 1.45',
    );
    expect(acceptanceText({ midRatio: 0.5, highRatio: 1, specificity: null })).toBe(
      'x0 error 0.50× the linear reference at mid noise, 1.00× at high noise',
    );
  });
});
