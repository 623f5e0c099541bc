/**
 * The optimiser state of a checkpoint: what a trainer needs beyond the checkpoint to continue
 * exactly as if it had never stopped (docs/architecture.md, "Object store layout", exact resume). An F32 safetensors
 * file with, for every parameter `name` of the network:
 *
 * - `param/<name>`: the live weights (a checkpoint of an EMA trainer holds the average instead);
 * - `exp_avg/<name>`, `exp_avg_sq/<name>`: Adam's first and second moments (zeros for a
 *   parameter that is not trained, such as a DiT's fixed positional embedding).
 *
 * Its `__metadata__` key `archipelago.optimizer` is canonical JSON {@link OptimizerStateMeta},
 * naming the checkpoint it belongs to by sha256 and step, and Adam's own step count. The file is
 * exactly 3 times the checkpoint's tensor bytes plus a header: its size is known from the
 * architecture alone ({@link optimizerStateSizeBounds}).
 *
 * The data and noise streams need no state of their own: the batch of step s and its noise are
 * functions of (seed, s) (ShardBatches, deriveSeed), so the step is their position.
 */

import {
  type CheckpointParam,
  type CheckpointSizeBounds,
  canonicalJson,
  checkpointSizeBounds,
} from './checkpoint.js';
import { CheckpointError, clip, fmtShape, q, show } from './errors.js';
import {
  type DecodeSafetensorsOptions,
  encodeSafetensors,
  parseSafetensorsHeader,
  readSafetensorsTensors,
  type SafetensorsHeader,
  type SafetensorsTensorInput,
} from './safetensors.js';

export const OPTIMIZER_STATE_FORMAT = 'archipelago.optimizer-state';
export const OPTIMIZER_STATE_VERSION = 1;
/** The `__metadata__` key holding the JSON-encoded {@link OptimizerStateMeta}. */
export const OPTIMIZER_STATE_METADATA_KEY = 'archipelago.optimizer';

export interface OptimizerStateMeta {
  format: typeof OPTIMIZER_STATE_FORMAT;
  version: typeof OPTIMIZER_STATE_VERSION;
  /** sha256 (hex) of the checkpoint file this state continues. */
  checkpoint: string;
  /** The checkpoint's step (training steps taken). */
  step: number;
  /** Adam's step count t (bias correction); at most `step` (a run resumed without state restarts it). */
  adamStep: number;
}

/** The three groups of tensors, each by parameter name. */
export interface OptimizerStateTensors {
  params: Record<string, CheckpointParam>;
  expAvg: Record<string, CheckpointParam>;
  expAvgSq: Record<string, CheckpointParam>;
}

export interface LoadedOptimizerState extends OptimizerStateTensors {
  meta: OptimizerStateMeta;
}

const GROUPS = [
  ['params', 'param/'],
  ['expAvg', 'exp_avg/'],
  ['expAvgSq', 'exp_avg_sq/'],
] as const;
const SHA256 = /^[0-9a-f]{64}$/;
const META_FIELDS = ['format', 'version', 'checkpoint', 'step', 'adamStep'];
const isCount = (v: unknown): v is number =>
  typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
const badMeta = (why: string) => new CheckpointError('bad_metadata', `optimizer state: ${why}`);

/** The tensor names and shapes of the optimiser state of a network with `paramShapes`. */
export function optimizerStateShapes(
  paramShapes: Record<string, readonly number[]>,
): Record<string, number[]> {
  const out: Record<string, number[]> = Object.create(null);
  for (const [, prefix] of GROUPS)
    for (const [name, shape] of Object.entries(paramShapes)) out[prefix + name] = [...shape];
  return out;
}

/** How big the optimiser state of a network with `paramShapes` can be (3x its tensor bytes + header). */
export function optimizerStateSizeBounds(
  paramShapes: Record<string, readonly number[]>,
): CheckpointSizeBounds {
  return checkpointSizeBounds(optimizerStateShapes(paramShapes));
}

function validateMeta(value: unknown): OptimizerStateMeta {
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw badMeta(`metadata is ${show(value)}, not an object`);
  const v = value as Record<string, unknown>;
  for (const key of Object.keys(v))
    if (!META_FIELDS.includes(key)) throw badMeta(`unknown field ${clip(key)}`);
  if (v.format !== OPTIMIZER_STATE_FORMAT)
    throw badMeta(`format is ${show(v.format)}, expected ${q(OPTIMIZER_STATE_FORMAT)}`);
  if (v.version !== OPTIMIZER_STATE_VERSION)
    throw badMeta(`version is ${show(v.version)}, expected ${OPTIMIZER_STATE_VERSION}`);
  if (typeof v.checkpoint !== 'string' || !SHA256.test(v.checkpoint))
    throw badMeta(`checkpoint is ${show(v.checkpoint)}, expected a sha256 (hex)`);
  if (!isCount(v.step)) throw badMeta(`step is ${show(v.step)}, expected an integer >= 0`);
  if (!isCount(v.adamStep) || v.adamStep > v.step)
    throw badMeta(`adamStep is ${show(v.adamStep)}, expected an integer in [0, step]`);
  return v as unknown as OptimizerStateMeta;
}

/**
 * Writes an optimiser state file. Deterministic; refuses a non-finite value, a negative second
 * moment, or groups whose names differ.
 */
export function encodeOptimizerState(
  meta: Omit<OptimizerStateMeta, 'format' | 'version'>,
  state: OptimizerStateTensors,
): Uint8Array {
  const full = validateMeta({
    format: OPTIMIZER_STATE_FORMAT,
    version: OPTIMIZER_STATE_VERSION,
    ...meta,
  });
  const names = Object.keys(state.params);
  const tensors: Record<string, SafetensorsTensorInput> = Object.create(null);
  for (const [group, prefix] of GROUPS) {
    const values = state[group];
    if (Object.keys(values).join() !== names.join())
      throw new CheckpointError(
        'invalid_tensor',
        `optimizer state: ${group} names other parameters than params`,
      );
    for (const name of names) {
      const p = values[name]!;
      checkValues(prefix + name, p.shape, p.data, group === 'expAvgSq');
      tensors[prefix + name] = { dtype: 'F32', shape: [...p.shape], data: p.data };
    }
  }
  return encodeSafetensors(tensors, {
    [OPTIMIZER_STATE_METADATA_KEY]: canonicalJson(full, 'optimizer state'),
  });
}

/**
 * Checks an optimiser state file's header (from its first bytes and its size, no tensor data
 * read): safetensors, the metadata, every tensor F32 with exactly the names and shapes of
 * {@link optimizerStateShapes}. Throws {@link CheckpointError}.
 */
export function inspectOptimizerState(
  prefix: Uint8Array,
  fileBytes: number,
  paramShapes: Record<string, readonly number[]>,
  options: DecodeSafetensorsOptions = {},
): { meta: OptimizerStateMeta; header: SafetensorsHeader } {
  let header: SafetensorsHeader;
  try {
    header = parseSafetensorsHeader(prefix, fileBytes, options);
  } catch (cause) {
    if (!(cause instanceof CheckpointError)) throw cause;
    throw new CheckpointError('not_safetensors', `optimizer state: ${cause.message}`, { cause });
  }
  const raw = header.metadata[OPTIMIZER_STATE_METADATA_KEY];
  if (raw === undefined) throw badMeta(`no ${q(OPTIMIZER_STATE_METADATA_KEY)} metadata`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    throw badMeta('the metadata is not valid JSON');
  }
  const meta = validateMeta(parsed);
  const wanted = optimizerStateShapes(paramShapes);
  const seen = new Set<string>();
  for (const e of header.entries) {
    const shape = wanted[e.name];
    if (!shape)
      throw new CheckpointError(
        'unexpected_tensor',
        `optimizer state: the network has no ${q(e.name)}`,
        { tensor: e.name },
      );
    if (e.dtype !== 'F32')
      throw new CheckpointError('wrong_dtype', `optimizer state: ${q(e.name)} is ${e.dtype}`, {
        tensor: e.name,
      });
    if (shape.join() !== e.shape.join())
      throw new CheckpointError(
        'shape_mismatch',
        `optimizer state: ${q(e.name)} has shape ${fmtShape(e.shape)}, expected ${fmtShape(shape)}`,
        { tensor: e.name },
      );
    seen.add(e.name);
  }
  const missing = Object.keys(wanted).find((n) => !seen.has(n));
  if (missing !== undefined)
    throw new CheckpointError('missing_tensor', `optimizer state lacks ${q(missing)}`, {
      tensor: missing,
    });
  return { meta, header };
}

/**
 * Reads and checks an optimiser state file ({@link inspectOptimizerState}, then every value
 * finite and every second moment >= 0); with `expect`, it must name that checkpoint and step
 * ('config_mismatch' otherwise).
 */
export function loadOptimizerState(
  bytes: Uint8Array,
  paramShapes: Record<string, readonly number[]>,
  expect: { checkpoint?: string; step?: number } = {},
): LoadedOptimizerState {
  const { meta, header } = inspectOptimizerState(bytes, bytes.length, paramShapes);
  if (expect.checkpoint !== undefined && meta.checkpoint !== expect.checkpoint)
    throw new CheckpointError(
      'config_mismatch',
      `optimizer state: belongs to checkpoint ${meta.checkpoint.slice(0, 12)}, not ${expect.checkpoint.slice(0, 12)}`,
    );
  if (expect.step !== undefined && meta.step !== expect.step)
    throw new CheckpointError(
      'config_mismatch',
      `optimizer state: is of step ${meta.step}, the checkpoint of step ${expect.step}`,
    );
  const tensors = readSafetensorsTensors(bytes, header);
  const out: LoadedOptimizerState = {
    meta,
    params: Object.create(null),
    expAvg: Object.create(null),
    expAvgSq: Object.create(null),
  };
  for (const [group, prefix] of GROUPS) {
    for (const name of Object.keys(paramShapes)) {
      const t = tensors[prefix + name]!;
      const data = t.data as Float32Array;
      checkValues(prefix + name, t.shape, data, group === 'expAvgSq');
      out[group][name] = { shape: t.shape, data };
    }
  }
  return out;
}

function checkValues(
  name: string,
  shape: readonly number[],
  data: Float32Array,
  nonNegative: boolean,
): void {
  for (let i = 0; i < data.length; i++) {
    const x = data[i]!;
    if (x - x !== 0)
      throw new CheckpointError(
        'non_finite',
        `optimizer state: ${q(name)} ${fmtShape(shape)} has ${x} at element ${i}`,
        { tensor: name },
      );
    if (nonNegative && x < 0)
      throw new CheckpointError(
        'invalid_tensor',
        `optimizer state: second moment ${q(name)} has ${x} < 0 at element ${i}`,
        { tensor: name },
      );
  }
}
