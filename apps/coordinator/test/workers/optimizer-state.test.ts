/**
 * Optimiser states over real sockets (protocol 2, issue 13 point 5): announced at begin, a second
 * presigned PUT, checked whole at the commit (size bound by the architecture, sha256, names and
 * shapes, finite, second moments >= 0, naming its checkpoint), stored content-addressed beside the
 * checkpoint, handed to the next protocol-2 worker in its grant and collected with its checkpoint.
 */
import {
  encodeOptimizerState,
  inspectOptimizerState,
  optimizerStateSizeBounds,
} from '@archipelago/models';
import type { CheckpointUrl, LeaseGrant } from '@archipelago/protocol';
import { eq } from 'drizzle-orm';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { checkpoints, runs as runRows } from '../../src/db/schema/index.js';
import { runCheckpointShape } from '../../src/services/checkpoint-objects.js';
import { type Harness, sha, startHarness } from './coordinator-harness.js';
import type { TestClient } from './socket-client.js';

describe('optimiser states beside checkpoints', () => {
  let h: Harness;
  beforeEach(async () => {
    // A lease that outlasts the test on a loaded machine: nothing here is about expiry.
    h = await startHarness({ heartbeatMs: 1000, leaseTtlMs: 600_000 });
  });
  afterEach(async () => {
    await h.close();
  });

  const shapeOf = (grant: LeaseGrant) => {
    const run = h.server.coordinator.db
      .select()
      .from(runRows)
      .where(eq(runRows.id, grant.expert.runId))
      .get()!;
    return runCheckpointShape(run);
  };
  /** A state of the grant's architecture for the checkpoint `of`, every value `fill`. */
  const stateFor = (
    grant: LeaseGrant,
    of: Uint8Array,
    step: number,
    fill = 0.01,
    change?: (name: string, data: Float32Array) => void,
  ) => {
    const group = () =>
      Object.fromEntries(
        Object.entries(shapeOf(grant).paramShapes).map(([name, shape]) => {
          const data = new Float32Array(shape.reduce((n, d) => n * d, 1)).fill(fill);
          change?.(name, data);
          return [name, { shape, data }];
        }),
      );
    return encodeOptimizerState(
      { checkpoint: sha(of), step, adamStep: step },
      { params: group(), expAvg: group(), expAvgSq: group() },
    );
  };
  /** begin (announcing `state`) -> both PUTs -> commit. */
  const upload = async (
    c: TestClient,
    grant: LeaseGrant,
    step: number,
    body: Uint8Array,
    state: Uint8Array | null,
    options: { putState?: boolean; announced?: number } = {},
  ) => {
    const url = (await c.request({
      type: 'checkpoint.begin',
      leaseId: grant.leaseId,
      step,
      bytes: body.length,
      sha256: sha(body),
      final: false,
      ...(state
        ? { optimizer: { bytes: options.announced ?? state.length, sha256: sha(state) } }
        : {}),
    })) as CheckpointUrl;
    if (url.type !== 'checkpoint.url') return { url, reply: url };
    expect((await fetch(url.putUrl, { method: 'PUT', headers: url.headers, body })).status).toBe(
      200,
    );
    if (state) {
      expect(url.optimizer).toBeDefined();
      if (options.putState !== false) {
        const put = await fetch(url.optimizer!.putUrl, {
          method: 'PUT',
          headers: url.optimizer!.headers,
          body: state,
        });
        expect(put.status).toBe(200);
      }
    } else expect(url.optimizer).toBeUndefined();
    const reply = await c.request({
      type: 'checkpoint.commit',
      leaseId: grant.leaseId,
      checkpointId: url.checkpointId,
    });
    return { url, reply };
  };
  const keys = async (prefix: string) => {
    const out: string[] = [];
    for await (const { key } of h.server.coordinator.store.list(prefix)) out.push(key);
    return out;
  };

  it('is uploaded, checked, stored by its sha256 and handed on to protocol-2 workers only', async () => {
    await h.makeRun(1, 'fm', 20, 5);
    const { c, welcome } = await h.connect('fm', { protocols: [1, 2] });
    expect(welcome.protocol).toBe(2);
    const grant = (await c.request({ type: 'lease.request' })) as LeaseGrant;
    const body = await h.checkpoint(grant, 5);
    const state = stateFor(grant, body, 5);
    // Exactly 3x the checkpoint's tensor bytes plus a header.
    const bounds = optimizerStateSizeBounds(shapeOf(grant).paramShapes);
    expect(bounds.tensorBytes).toBe(3 * shapeOf(grant).tensorBytes);
    expect(state.length).toBeLessThanOrEqual(bounds.maxBytes);
    const { url, reply } = await upload(c, grant, 5, body, state);
    expect(reply).toMatchObject({ type: 'checkpoint.accepted', step: 5 });
    const row = h.server.coordinator.db
      .select()
      .from(checkpoints)
      .where(eq(checkpoints.id, url.checkpointId))
      .get()!;
    expect(row.optimizerKey).toMatch(/\/optim-000000005-[0-9a-f]{64}\.safetensors$/);
    expect(row.optimizerKey).toContain(sha(state));
    expect(row).toMatchObject({ optimizerSha256: sha(state), optimizerBytes: state.length });
    expect(sha(await h.server.coordinator.store.getBytes(row.optimizerKey!))).toBe(sha(state));
    expect(await keys('uploads/')).toEqual([]);
    c.send({ type: 'lease.release', leaseId: grant.leaseId, reason: 'test' });
    await c.request({
      type: 'heartbeat',
      leaseId: grant.leaseId,
      step: 5,
      loss: null,
      imagesPerSec: 0,
    });

    // A protocol-2 worker gets the state with the resume point; a protocol-1 worker does not.
    const { c: v1 } = await h.connect('fm');
    const g1 = (await v1.request({ type: 'lease.request' })) as LeaseGrant;
    expect(g1.resumeFrom?.step).toBe(5);
    expect(g1.resumeFrom).not.toHaveProperty('optimizer');
    v1.send({ type: 'lease.release', leaseId: g1.leaseId, reason: 'test' });
    await v1.request({
      type: 'heartbeat',
      leaseId: g1.leaseId,
      step: 5,
      loss: null,
      imagesPerSec: 0,
    });
    const { c: v2 } = await h.connect('fm', { protocols: [1, 2] });
    const g2 = (await v2.request({ type: 'lease.request' })) as LeaseGrant;
    expect(g2.resumeFrom?.optimizer).toMatchObject({ sha256: sha(state), bytes: state.length });
    const got = new Uint8Array(await (await fetch(g2.resumeFrom!.optimizer!.url)).arrayBuffer());
    expect(sha(got)).toBe(sha(state));

    // Collected with its checkpoint: step 15 supersedes 10 (5 stays: it passed its resume check).
    for (const step of [10, 15]) {
      const b = await h.checkpoint(g2, step);
      expect((await upload(v2, g2, step, b, stateFor(g2, b, step))).reply).toMatchObject({
        type: 'checkpoint.accepted',
      });
    }
    const rows = h.server.coordinator.db
      .select()
      .from(checkpoints)
      .where(eq(checkpoints.expertId, grant.expert.id))
      .all()
      .filter((r) => r.status === 'accepted' || r.status === 'superseded');
    expect(rows.map((r) => [r.step, r.status]).sort()).toEqual([
      [10, 'superseded'],
      [15, 'accepted'],
      [5, 'accepted'],
    ]);
    for (const r of rows) {
      const there = (await h.server.coordinator.store.head(r.optimizerKey!)) !== null;
      expect(there, `step ${r.step}`).toBe(r.status === 'accepted');
    }
    for (const x of [c, v1, v2]) x.close();
  });

  it('refuses a state of the wrong size at begin, and rejects a bad one with its checkpoint', async () => {
    await h.makeRun(1, 'fm', 20, 5);
    const { c } = await h.connect('fm', { protocols: [1, 2] });
    const grant = (await c.request({ type: 'lease.request' })) as LeaseGrant;
    const body = await h.checkpoint(grant, 5);
    const good = stateFor(grant, body, 5);
    const bounds = optimizerStateSizeBounds(shapeOf(grant).paramShapes);
    // Sizes no state of this architecture has.
    for (const announced of [bounds.minBytes - 1, bounds.maxBytes + 1]) {
      const { reply } = await upload(c, grant, 5, body, good, { announced });
      expect(reply).toMatchObject({
        type: 'error',
        code: 'invalid_message',
        reason: 'checkpoint_size',
      });
    }
    const other = await h.checkpoint(grant, 5, 0.02);
    /** `good` with the first value of one tensor set to `value` (a writer refuses such files). */
    const patched = (tensor: string, value: number) => {
      const bytes = good.slice();
      const { header } = inspectOptimizerState(bytes, bytes.length, shapeOf(grant).paramShapes);
      const e = header.entries.find((x) => x.name === tensor)!;
      new DataView(bytes.buffer).setFloat32(header.dataStart + e.begin, value, true);
      return bytes;
    };
    const cases: [string, Uint8Array, RegExp, { putState?: boolean }?][] = [
      ['never uploaded', good, /^missing_object: no optimizer state/, { putState: false }],
      [
        "another checkpoint's",
        stateFor(grant, other, 5),
        /^bad_header: .*optimizer state: belongs to/,
      ],
      [
        'of another step',
        stateFor(grant, body, 10),
        /^bad_header: .*optimizer state: is of step 10/,
      ],
      [
        'a NaN moment',
        patched('exp_avg/final_layer.linear.weight', Number.NaN),
        /^bad_header: non_finite: optimizer state/,
      ],
      [
        'an infinite weight',
        patched('param/pos_embed', Number.POSITIVE_INFINITY),
        /^bad_header: non_finite: optimizer state/,
      ],
      [
        'a negative second moment',
        patched('exp_avg_sq/final_layer.linear.weight', -1),
        /^bad_header: invalid_tensor: optimizer state: second moment/,
      ],
    ];
    for (const [what, state, reason, options] of cases) {
      const { reply } = await upload(c, grant, 5, body, state, options ?? {});
      expect(reply, what).toMatchObject({ type: 'checkpoint.rejected' });
      expect((reply as { reason: string }).reason, what).toMatch(reason);
      expect(await keys('uploads/'), what).toEqual([]);
      expect(
        (await keys(`runs/${grant.expert.runId}/`)).filter((k) => k.includes('/experts/')),
        what,
      ).toEqual([]);
    }
    // Nothing was accepted: the expert has no resume point; a good pair is still taken.
    const run = (await h.api('GET', `/api/v1/runs/${grant.expert.runId}`)).body as {
      experts: { checkpointStep: number | null }[];
    };
    expect(run.experts[0]!.checkpointStep).toBeNull();
    expect((await upload(c, grant, 5, body, good)).reply).toMatchObject({
      type: 'checkpoint.accepted',
    });
    c.close();
  });
});
