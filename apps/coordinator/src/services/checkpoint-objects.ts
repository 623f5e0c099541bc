/**
 * Checkpoint objects in the store (docs/architecture.md "Object store layout"): where a worker
 * uploads one, how big it may be, how an upload becomes an accepted, content-addressed object,
 * and when an object may be deleted.
 *
 * - Every upload has a key of its own (`uploads/{checkpointId}.safetensors`), presigned once, for
 *   a create-only PUT. The local store refuses the PUT once the upload is no longer open (its lease
 *   ended, it was committed, rejected or superseded); S3 cannot revoke a URL, so there the commit
 *   is refused and an object a replayed URL leaves behind is collected (checkpoint-gc.ts).
 * - An accepted checkpoint is copied by the coordinator to `ckpt-{step}-{sha256}.safetensors`,
 *   hash-checked on the way, create-only: a key no worker ever holds a URL for, named by its
 *   content, which the manifest names and downloads check against.
 * - Sizes and headers are checked against the run's architecture before anything is hashed or
 *   copied.
 * - A checkpoint's optimiser state (models' optimizer-state.ts: Adam's moments and step, the live
 *   weights), when the worker announced one, travels the same way as an object of its own:
 *   `uploads/{checkpointId}.optimizer.safetensors`, then `optim-{step}-{sha256}.safetensors`
 *   beside its checkpoint; exactly 3x the checkpoint's tensor bytes plus a header, read whole at
 *   the commit (names, shapes, finite, second moments >= 0, naming its checkpoint's sha256 and
 *   step), and deleted with its checkpoint.
 */
import {
  CheckpointError,
  type CheckpointSizeBounds,
  checkpointSizeBounds,
  inspectCheckpoint,
  loadOptimizerState,
  type NetworkSpec,
  optimizerStateSizeBounds,
  paramShapesOf,
  safetensorsHeaderLength,
} from '@archipelago/models';
import type { CheckpointRejectCode } from '@archipelago/protocol';
import {
  IntegrityError,
  ObjectExistsError,
  type ObjectStore,
  sha256Hex,
} from '@archipelago/storage';
import { and, eq, inArray, ne } from 'drizzle-orm';
import type { Db } from '../db/database.js';
import {
  type CheckpointRow,
  checkpoints,
  type ExpertRow,
  leases,
  type RunRow,
} from '../db/schema/index.js';
import { expectedArchitecture } from './validation.js';

/** Where the upload of checkpoint `checkpointId` goes: a key of its own. */
export const uploadKey = (checkpointId: string) => `uploads/${checkpointId}.safetensors`;

/** Where the upload of checkpoint `checkpointId`'s optimiser state goes. */
export const optimizerUploadKey = (checkpointId: string) =>
  `uploads/${checkpointId}.optimizer.safetensors`;

const UPLOAD_KEY = /^uploads\/(ck_[0-9a-z]{12})(?:\.optimizer)?\.safetensors$/;

/** The checkpoint id of an upload key (the checkpoint's or its optimiser state's), or null. */
export const uploadCheckpointId = (key: string): string | null => UPLOAD_KEY.exec(key)?.[1] ?? null;

/** Where an accepted checkpoint lives: named by its step and the sha256 of its bytes. */
export const checkpointKey = (runId: string, cluster: number, step: number, sha256: string) =>
  `runs/${runId}/experts/${cluster}/ckpt-${String(step).padStart(9, '0')}-${sha256}.safetensors`;

/** Where an accepted checkpoint's optimiser state lives, beside it, named by its own sha256. */
export const optimizerKey = (runId: string, cluster: number, step: number, sha256: string) =>
  `runs/${runId}/experts/${cluster}/optim-${String(step).padStart(9, '0')}-${sha256}.safetensors`;

export interface RunCheckpointShape extends CheckpointSizeBounds {
  architecture: Record<string, unknown>;
  paramShapes: Record<string, number[]>;
  /** The sizes its optimiser state may have. */
  optimizer: CheckpointSizeBounds;
}

const shapes = new Map<string, RunCheckpointShape>();

/** What every expert checkpoint of `run` is: its architecture, parameter shapes and sizes. */
export function runCheckpointShape(run: RunRow): RunCheckpointShape {
  const hit = shapes.get(run.id);
  if (hit) return hit;
  const architecture = expectedArchitecture(run);
  const { kind, ...config } = architecture;
  const paramShapes = paramShapesOf({ kind, config } as unknown as NetworkSpec);
  const shape = {
    architecture,
    paramShapes,
    ...checkpointSizeBounds(paramShapes),
    optimizer: optimizerStateSizeBounds(paramShapes),
  };
  if (shapes.size > 256) shapes.clear();
  shapes.set(run.id, shape);
  return shape;
}

/** Why no checkpoint of `run` can have `bytes` bytes, or null when one can. */
export function sizeRefusal(run: RunRow, bytes: number): string | null {
  const { minBytes, maxBytes, tensorBytes } = runCheckpointShape(run);
  if (bytes >= minBytes && bytes <= maxBytes) return null;
  return `a checkpoint of this run's ${run.config.model} DiT has ${tensorBytes} bytes of tensors and is ${minBytes} to ${maxBytes} bytes long, not ${bytes}`;
}

/** Why no optimiser state of `run`'s checkpoints can have `bytes` bytes, or null when one can. */
export function optimizerSizeRefusal(run: RunRow, bytes: number): string | null {
  const { minBytes, maxBytes, tensorBytes } = runCheckpointShape(run).optimizer;
  if (bytes >= minBytes && bytes <= maxBytes) return null;
  return `an optimizer state of this run's ${run.config.model} DiT has ${tensorBytes} bytes of tensors (3x the checkpoint's) and is ${minBytes} to ${maxBytes} bytes long, not ${bytes}`;
}

/** Why a PUT to `key` is refused now (the upload is not open), or null to let it through. */
export function uploadRefusal(db: Db, key: string, now = new Date()): string | null {
  const id = uploadCheckpointId(key);
  if (!id) return `${key} is not an upload`;
  const row = db
    .select({ status: checkpoints.status, lease: leases })
    .from(checkpoints)
    .innerJoin(leases, eq(leases.id, checkpoints.leaseId))
    .where(eq(checkpoints.id, id))
    .get();
  if (!row) return `no upload ${id}`;
  if (row.status !== 'uploading') return `upload ${id} is closed: the checkpoint was ${row.status}`;
  if (row.lease.status !== 'active' || row.lease.expiresAt < now)
    return `upload ${id} is closed: its lease ${row.lease.id} ended`;
  return null;
}

export type StoreOutcome = { ok: true; key: string } | { ok: false; reason: string };

const refuse = (code: CheckpointRejectCode, message: string): StoreOutcome => ({
  ok: false,
  reason: `${code}: ${message}`,
});

/**
 * Why the stored object `ckpt.key` is not a checkpoint of the run's architecture, judged from its
 * size and its header alone (no tensor data is read), or null: present with the announced size
 * (which fits the architecture); a header of at most the architecture's header size that
 * describes exactly its tensors, the expert's objective and the announced step. Reasons start
 * with a CHECKPOINT_REJECT_CODES code. Commits and validation both ask this first.
 */
export async function checkStoredCheckpoint(
  store: ObjectStore,
  run: RunRow,
  expert: ExpertRow,
  ckpt: CheckpointRow,
): Promise<string | null> {
  const reason = (code: CheckpointRejectCode, message: string) => `${code}: ${message}`;
  const info = await store.head(ckpt.key);
  if (!info) return reason('missing_object', `no object was uploaded to ${ckpt.key}`);
  if (info.bytes !== ckpt.bytes)
    return reason('size_mismatch', `uploaded ${info.bytes} bytes, announced ${ckpt.bytes}`);
  const tooBig = sizeRefusal(run, info.bytes);
  if (tooBig) return reason('size_mismatch', tooBig);
  const shape = runCheckpointShape(run);
  try {
    const limit = { maxHeaderBytes: shape.maxHeaderBytes };
    const first = await store.getBytes(ckpt.key, { start: 0, end: 7 });
    const headerLength = safetensorsHeaderLength(first, info.bytes, limit);
    const prefix = await store.getBytes(ckpt.key, { start: 0, end: 8 + headerLength - 1 });
    const { meta } = inspectCheckpoint(
      prefix,
      info.bytes,
      {
        kind: 'expert',
        architecture: shape.architecture,
        paramShapes: shape.paramShapes,
        ...(expert.objective !== 'any' ? { objective: expert.objective } : {}),
      },
      limit,
    );
    if (meta.step !== ckpt.step)
      return reason('bad_header', `the checkpoint says step ${meta.step}, announced ${ckpt.step}`);
  } catch (err) {
    if (!(err instanceof CheckpointError)) throw err;
    return reason('bad_header', err.message);
  }
  return null;
}

/**
 * Check an uploaded checkpoint ({@link checkStoredCheckpoint}: size and header, before any more
 * of it is read) and copy it to its content key, every byte hashed on the way (create-only), so
 * only bytes of the announced sha256 land there. The upload's own object is left for the caller
 * to delete.
 */
export async function storeUpload(
  store: ObjectStore,
  run: RunRow,
  expert: ExpertRow,
  ckpt: CheckpointRow,
): Promise<StoreOutcome> {
  const refused = await checkStoredCheckpoint(store, run, expert, ckpt);
  if (refused) return { ok: false, reason: refused };
  const key = checkpointKey(run.id, expert.cluster, ckpt.step, ckpt.sha256);
  try {
    await store.put(key, await store.getStream(ckpt.key), {
      sha256: ckpt.sha256,
      createOnly: true,
    });
  } catch (err) {
    if (err instanceof IntegrityError)
      return refuse(
        'sha256_mismatch',
        `sha256 of the upload is ${err.actual}, announced ${err.expected}`,
      );
    if (!(err instanceof ObjectExistsError)) throw err;
    // The same step and content was stored before (a commit whose answer was lost, a crash
    // before the database said so): fine when what is there is those bytes.
    const there = sha256Hex(await store.getBytes(key));
    if (there !== ckpt.sha256)
      return refuse('sha256_mismatch', `${key} holds other bytes (${there}); not replaced`);
  }
  return { ok: true, key };
}

/**
 * Check an uploaded optimiser state (`ckpt.optimizerKey`, announced at begin) and store it at its
 * content key: present with the announced size, which fits the architecture; the announced
 * sha256; a state of exactly the run's parameters, finite, second moments >= 0, naming `ckpt`'s
 * sha256 and step. It is read whole (3x a checkpoint's tensors). Reasons start with a
 * CHECKPOINT_REJECT_CODES code and say "optimizer state". The upload's own object is left for the
 * caller to delete.
 */
export async function storeOptimizerUpload(
  store: ObjectStore,
  run: RunRow,
  expert: ExpertRow,
  ckpt: CheckpointRow,
): Promise<StoreOutcome> {
  const key = ckpt.optimizerKey!;
  const info = await store.head(key);
  if (!info) return refuse('missing_object', `no optimizer state was uploaded to ${key}`);
  if (info.bytes !== ckpt.optimizerBytes)
    return refuse(
      'size_mismatch',
      `optimizer state: uploaded ${info.bytes} bytes, announced ${ckpt.optimizerBytes}`,
    );
  const tooBig = optimizerSizeRefusal(run, info.bytes);
  if (tooBig) return refuse('size_mismatch', tooBig);
  const bytes = await store.getBytes(key);
  const sha256 = sha256Hex(bytes);
  if (sha256 !== ckpt.optimizerSha256)
    return refuse(
      'sha256_mismatch',
      `sha256 of the optimizer state is ${sha256}, announced ${ckpt.optimizerSha256}`,
    );
  try {
    loadOptimizerState(
      new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length),
      runCheckpointShape(run).paramShapes,
      {
        checkpoint: ckpt.sha256,
        step: ckpt.step,
      },
    );
  } catch (err) {
    if (!(err instanceof CheckpointError)) throw err;
    return refuse('bad_header', err.message);
  }
  const content = optimizerKey(run.id, expert.cluster, ckpt.step, sha256);
  try {
    await store.put(content, bytes, { sha256, createOnly: true });
  } catch (err) {
    if (!(err instanceof ObjectExistsError)) throw err;
    const there = sha256Hex(await store.getBytes(content));
    if (there !== sha256)
      return refuse('sha256_mismatch', `${content} holds other bytes (${there}); not replaced`);
  }
  return { ok: true, key: content };
}

/**
 * Delete `row`'s object unless another checkpoint that is accepted or still uploading names the
 * same key: a rejected or superseded checkpoint deletes only what is its own.
 */
export async function deleteCheckpointObject(
  db: Db,
  store: ObjectStore,
  row: Pick<CheckpointRow, 'id' | 'key'> & { optimizerKey?: string | null },
): Promise<void> {
  const shared = (column: typeof checkpoints.key | typeof checkpoints.optimizerKey, key: string) =>
    db
      .select({ id: checkpoints.id })
      .from(checkpoints)
      .where(
        and(
          eq(column, key),
          ne(checkpoints.id, row.id),
          inArray(checkpoints.status, ['accepted', 'uploading']),
        ),
      )
      .get();
  if (!shared(checkpoints.key, row.key)) await store.delete(row.key);
  // Its optimiser state goes with it.
  if (row.optimizerKey && !shared(checkpoints.optimizerKey, row.optimizerKey))
    await store.delete(row.optimizerKey);
}
