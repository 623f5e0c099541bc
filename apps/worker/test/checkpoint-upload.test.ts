import type {
  CoordinatorMessage,
  WorkerErrorCode,
  WorkerErrorReason,
  WorkerMessage,
} from '@archipelago/protocol';
import { describe, expect, it } from 'vitest';
import { Backoff } from '../src/backoff.js';
import type { CheckpointBytes } from '../src/checkpoint-files.js';
import { CheckpointUpload, type CheckpointUploadOptions } from '../src/checkpoint-upload.js';
import { DisconnectedError, RequestError } from '../src/connection.js';

const LEASE = 'ls_000000000001';

const checkpoint = (step: number, final = false): CheckpointBytes => ({
  ck: {
    file: `checkpoints/${LEASE}-${step}.safetensors`,
    step,
    sha256: String(step % 10).repeat(64),
    bytes: 4,
    final,
    accepted: false,
  },
  bytes: new Uint8Array([1, 2, 3, 4]),
});

const refused = (code: WorkerErrorCode, message: string = code, reason?: WorkerErrorReason) =>
  new RequestError({
    type: 'error',
    code,
    message,
    fatal: false,
    inReplyTo: 'checkpoint.begin',
    ...(reason ? { reason } : {}),
  });

type Answer = CoordinatorMessage | Error;

/**
 * An upload against a scripted coordinator: `begin` and `commit` answer checkpoint.begin and
 * checkpoint.commit (a frame, or an error to reject with); `put` is the PUT's HTTP status.
 */
function setup(
  script: {
    begin?: Answer;
    commit?: Answer;
    put?: number;
    ready?: boolean;
    /** The protocol of the welcome (2: optimiser states), and a second PUT URL in the answer. */
    protocol?: number;
    statePut?: boolean;
  } = {},
  accepted: CheckpointUploadOptions['accepted'] = { step: 10, sha256: 'a'.repeat(64) },
) {
  const sent: WorkerMessage[] = [];
  const removed: string[] = [];
  const lost: string[] = [];
  const logs: string[] = [];
  let persisted = 0;
  let waited = 0;
  const puts: { url: string; bytes: number }[] = [];
  const conn = {
    ready: script.ready ?? true,
    welcomed: { protocol: script.protocol ?? 1 },
    async request(message: WorkerMessage) {
      sent.push(message);
      const answer =
        message.type === 'checkpoint.begin'
          ? (script.begin ?? {
              type: 'checkpoint.url',
              leaseId: LEASE,
              checkpointId: 'ck_000000000001',
              putUrl: 'http://store/put',
              headers: {},
              expiresAt: '2030-01-01T00:00:00.000Z',
              ...(script.statePut
                ? { optimizer: { putUrl: 'http://store/put-state', headers: {} } }
                : {}),
            })
          : (script.commit ?? {
              type: 'checkpoint.accepted',
              leaseId: LEASE,
              checkpointId: 'ck_000000000001',
              step: (sent[0] as { step: number }).step,
            });
      if (answer instanceof Error) throw answer;
      return answer;
    },
    async waitReady() {
      waited++;
    },
  };
  const upload = new CheckpointUpload({
    leaseId: LEASE,
    targetSteps: 20,
    conn: conn as unknown as CheckpointUploadOptions['conn'],
    log: { info: (m) => logs.push(m), warn: (m) => logs.push(`warning: ${m}`) },
    accepted,
    remove: (file) => removed.push(file),
    persist: () => persisted++,
    lose: (reason) => lost.push(reason),
    // A fixed half of the ceiling: the first retry waits 500 ms.
    backoff: new Backoff(1000, 30_000, () => 0.5),
    // A failing PUT is tried twice, back to back (put-with-retries.test.ts tests the retries).
    putRetry: { maxAttempts: 2, backoff: new Backoff(0, 0) },
    fetch: (async (url: string, init: { body: Uint8Array }) => {
      puts.push({ url, bytes: init.body.byteLength });
      return new Response('nope', { status: script.put ?? 200 });
    }) as unknown as typeof fetch,
  });
  return {
    upload,
    conn,
    sent,
    puts,
    removed,
    lost,
    logs,
    persisted: () => persisted,
    waited: () => waited,
  };
}

/** A checkpoint with its optimiser state (7 bytes). */
const withState = (step: number): CheckpointBytes => {
  const c = checkpoint(step);
  return {
    ck: { ...c.ck, optimizer: { file: 'x.optimizer', sha256: 'e'.repeat(64), bytes: 7 } },
    bytes: c.bytes,
    optimizer: new Uint8Array(7),
  };
};

describe('CheckpointUpload', () => {
  it('with protocol 2, announces the optimiser state and PUTs it to its own URL', async () => {
    const t = setup({ protocol: 2, statePut: true });
    t.upload.offer(withState(15));
    expect(await t.upload.flush()).toBe('accepted');
    expect(t.sent[0]).toMatchObject({ optimizer: { bytes: 7, sha256: 'e'.repeat(64) } });
    expect(t.puts).toEqual([
      { url: 'http://store/put', bytes: 4 },
      { url: 'http://store/put-state', bytes: 7 },
    ]);
    // A failed state PUT is retried like the checkpoint's.
    const failing = setup({ protocol: 2, statePut: true, put: 503 });
    failing.upload.offer(withState(15));
    expect(await failing.upload.flush()).toBe('retry');
  });

  it('with protocol 1, the optimiser state stays home: the begin and the PUTs are those of before', async () => {
    const t = setup({ protocol: 1 });
    t.upload.offer(withState(15));
    expect(await t.upload.flush()).toBe('accepted');
    expect(t.sent[0]).not.toHaveProperty('optimizer');
    expect(t.puts).toEqual([{ url: 'http://store/put', bytes: 4 }]);
  });

  it('begins, PUTs and commits; accepted, the checkpoint is the new resume point', async () => {
    const t = setup();
    const old = checkpoint(10);
    old.ck.accepted = true;
    t.upload.restore(old);
    expect(t.upload.localCheckpoint).toBe(old.ck);
    const next = checkpoint(15);
    t.upload.offer(next);
    expect(t.upload.pending).toBe(next);
    expect(t.upload.due).toBe(true);
    expect(t.upload.coveredStep).toBe(15);

    expect(await t.upload.flush()).toBe('accepted');
    expect(t.sent.map((m) => m.type)).toEqual(['checkpoint.begin', 'checkpoint.commit']);
    expect(t.sent[0]).toMatchObject({ step: 15, sha256: next.ck.sha256, final: false });
    expect(t.upload.pending).toBeNull();
    expect(t.upload.acceptedStep).toBe(15);
    expect(t.upload.acceptedSha256).toBe(next.ck.sha256);
    expect(t.upload.localCheckpoint).toEqual({ ...next.ck, accepted: true });
    expect(t.upload.finalCheckpointId).toBeNull();
    expect(t.removed).toEqual([old.ck.file]); // the previous resume point's file
    expect(t.persisted()).toBe(2); // offer, accepted
    expect(await t.upload.flush()).toBeNull(); // nothing waits
  });

  it('completes with the final checkpoint’s id', async () => {
    const t = setup();
    t.upload.offer(checkpoint(20, true));
    expect(await t.upload.flush()).toBe('accepted');
    expect(t.upload.finalCheckpointId).toBe('ck_000000000001');
    expect(t.logs.at(-1)).toMatch(/^checkpoint of step 20\/20 \(final\) accepted/);
  });

  it('drops a rejected checkpoint and keeps the previous resume point', async () => {
    const t = setup({
      commit: {
        type: 'checkpoint.rejected',
        leaseId: LEASE,
        checkpointId: 'ck_000000000001',
        reason: 'sha256 mismatch',
      },
    });
    const ck = checkpoint(15);
    t.upload.offer(ck);
    expect(await t.upload.flush()).toBe('rejected');
    expect(t.upload.pending).toBeNull();
    expect(t.upload.acceptedStep).toBe(10);
    expect(t.removed).toEqual([ck.ck.file]);
    expect(t.persisted()).toBe(2);
  });

  it('counts reason stale_checkpoint_step as already accepted, but not as completion', async () => {
    const t = setup({
      begin: refused('invalid_message', 'step 20 is not after …', 'stale_checkpoint_step'),
    });
    t.upload.offer(checkpoint(20, true));
    expect(await t.upload.flush()).toBe('superseded');
    expect(t.upload.pending).toBeNull();
    expect(t.upload.acceptedStep).toBe(20);
    expect(t.upload.finalCheckpointId).toBeNull();
    expect(t.logs).toContain('checkpoint of step 20 had already been accepted');
  });

  it('drops a checkpoint the coordinator refuses for another reason', async () => {
    const t = setup({ begin: refused('invalid_message', 'step 30 is past the target') });
    t.upload.offer(checkpoint(15));
    expect(await t.upload.flush()).toBe('rejected');
    expect(t.upload.pending).toBeNull();
    expect(t.logs.at(-1)).toBe(
      'warning: checkpoint of step 15 was refused: step 30 is past the target (invalid_message)',
    );
  });

  it('loses the lease when it expired or is unknown, keeping the checkpoint', async () => {
    for (const code of ['lease_expired', 'unknown_lease'] as const) {
      const t = setup({ begin: refused(code, 'the lease expired') });
      const ck = checkpoint(15);
      t.upload.offer(ck);
      expect(await t.upload.flush()).toBe('lost');
      expect(t.lost).toEqual(['the lease expired']);
      expect(t.upload.pending).toBe(ck);
      expect(t.removed).toEqual([]);
    }
  });

  it('retries after a backoff when the PUT fails or the connection drops', async () => {
    const t = setup({ put: 500 });
    const ck = checkpoint(15);
    t.upload.offer(ck);
    expect(await t.upload.flush()).toBe('retry');
    expect(t.upload.pending).toBe(ck);
    expect(t.upload.due).toBe(false); // 500 ms of backoff
    expect(t.logs.at(-1)).toBe(
      'warning: upload of checkpoint step 15 failed: HTTP 500 nope; will retry',
    );
    // A newer checkpoint is due at once and replaces the one never uploaded.
    const newer = checkpoint(16);
    t.upload.offer(newer);
    expect(t.upload.due).toBe(true);
    expect(t.removed).toEqual([ck.ck.file]);
    expect(t.logs.at(-1)).toBe(
      'checkpoint of step 15 was not uploaded (offline); step 16 replaces it',
    );

    const d = setup({ begin: new DisconnectedError() });
    d.upload.offer(checkpoint(15));
    expect(await d.upload.flush()).toBe('retry');
    expect(d.logs).toEqual([]); // a drop is expected: no warning
  });

  it('advances by waiting for the connection, then for the backoff, then uploading', async () => {
    const t = setup({ ready: false });
    const signal = new AbortController().signal;
    let offline = 0;
    t.upload.offer(checkpoint(15));
    expect(t.upload.due).toBe(false);
    await t.upload.advance(signal, { onOffline: () => offline++ });
    expect([offline, t.waited(), t.sent.length]).toEqual([1, 1, 0]);

    t.conn.ready = true;
    await t.upload.advance(signal);
    expect(t.upload.pending).toBeNull();
    expect(t.sent.map((m) => m.type)).toEqual(['checkpoint.begin', 'checkpoint.commit']);

    const r = setup({ put: 503 });
    r.upload.offer(checkpoint(15));
    await r.upload.advance(signal); // fails: 500 ms of backoff
    const start = Date.now();
    await r.upload.advance(signal, { maxWaitMs: 20 });
    expect(Date.now() - start).toBeLessThan(400);
    expect(r.sent).toHaveLength(1); // waited, did not try again
  });

  it('restores a checkpoint found at the start: an unaccepted one waits to be uploaded', () => {
    const t = setup({}, { step: null, sha256: null });
    const found = checkpoint(5);
    t.upload.restore(found);
    expect(t.upload.pending).toBe(found);
    expect(t.upload.localCheckpoint).toBe(found.ck);
    expect(t.upload.coveredStep).toBe(5);
    expect(t.persisted()).toBe(0); // the session records it when it next persists
  });
});
