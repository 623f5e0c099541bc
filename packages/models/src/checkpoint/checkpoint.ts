/**
 * Archipelago checkpoints: safetensors files of F32 tensors whose `__metadata__` holds the
 * key `archipelago`, a JSON string describing the network (see CheckpointMeta), plus any
 * other string keys. Loading is strict: experts and routers come from volunteers, and the
 * coordinator must refuse a broken or hostile file before it enters an ensemble.
 */

import { createHash } from 'node:crypto';
import { OBJECTIVE_NAMES, type ObjectiveConfig } from '@archipelago/diffusion';
import type { Tensor } from '@tensorflow/tfjs-core';
import { CheckpointError, clip, fmtShape, q, show } from './errors.js';
import {
  type DecodeSafetensorsOptions,
  encodeSafetensors,
  parseSafetensorsHeader,
  readSafetensorsTensors,
  type SafetensorsHeader,
  type SafetensorsTensorInput,
} from './safetensors.js';

export const CHECKPOINT_FORMAT = 'archipelago.checkpoint';
export const CHECKPOINT_VERSION = 1;
/** The `__metadata__` key holding the JSON-encoded CheckpointMeta. */
export const CHECKPOINT_METADATA_KEY = 'archipelago';

export type CheckpointKind = 'expert' | 'router';
/** An objective family (the diffusion registry's names). */
export type CheckpointObjective = ObjectiveConfig['name'];

/** Where a converted checkpoint came from. */
export interface CheckpointParent {
  /** sha256 (hex) of the parent checkpoint file. */
  sha256: string;
  objective: CheckpointObjective;
  step: number;
}

export interface CheckpointMeta {
  format: typeof CHECKPOINT_FORMAT;
  version: typeof CHECKPOINT_VERSION;
  kind: CheckpointKind;
  /** The network config, e.g. { preset, imageSize, channels, patchSize, hidden, depth, ... }. */
  architecture: Record<string, unknown>;
  objective?: CheckpointObjective;
  /** The noise schedule, e.g. { kind: 'cosine', T: 1000 } (DDPM only). */
  schedule?: Record<string, unknown>;
  /**
   * The objective spec in canonical form (docs/method.md §3): family, schedule, prediction, loss
   * weighting or time sampling. Its `name` is `objective`. Checkpoints written before it carry
   * only `objective` and `schedule`.
   */
  spec?: Record<string, unknown>;
  /** Training steps taken. */
  step: number;
  /** sha256 (hex) of the training shard. */
  dataFingerprint?: string;
  /** Set by conversion (convertDdpmToFm). */
  parent?: CheckpointParent;
  /** ISO 8601 time stamp. */
  createdAt: string;
}

/** CheckpointMeta as given to saveCheckpoint: format and version are implied, createdAt defaults to now. */
export type CheckpointMetaInput = Omit<CheckpointMeta, 'format' | 'version' | 'createdAt'> &
  Partial<Pick<CheckpointMeta, 'format' | 'version' | 'createdAt'>>;

/** One parameter as plain data (row-major). */
export interface CheckpointParam {
  shape: number[];
  data: Float32Array;
}

export type CheckpointParams =
  | Map<string, Tensor>
  | Record<string, Tensor | { shape: readonly number[]; data: Float32Array }>;

export interface SaveCheckpointOptions {
  params: CheckpointParams;
  meta: CheckpointMetaInput;
  /** Other `__metadata__` string keys to store beside `archipelago`. */
  extraMetadata?: Record<string, string>;
}

/** What the loader must find; anything left out is not checked. */
export interface CheckpointExpectation {
  kind?: CheckpointKind;
  /** Must deep-equal the checkpoint's architecture (same keys, same values). */
  architecture?: Record<string, unknown>;
  objective?: CheckpointObjective;
  /** The exact set of parameter names the network has, with their shapes. */
  paramShapes?: Record<string, readonly number[]>;
}

export interface LoadedCheckpoint {
  meta: CheckpointMeta;
  /** Null-prototype record in file order. */
  params: Record<string, CheckpointParam>;
  /** The `__metadata__` keys other than `archipelago`. */
  extraMetadata: Record<string, string>;
}

const META_FIELDS = new Set([
  'format',
  'version',
  'kind',
  'architecture',
  'objective',
  'schedule',
  'spec',
  'step',
  'dataFingerprint',
  'parent',
  'createdAt',
]);
const PARENT_FIELDS = new Set(['sha256', 'objective', 'step']);
const KINDS: readonly string[] = ['expert', 'router'];
const OBJECTIVES: readonly string[] = OBJECTIVE_NAMES;
const OBJECTIVES_TEXT = OBJECTIVE_NAMES.map((n) => `"${n}"`).join(' or ');
const SHA256 = /^[0-9a-f]{64}$/;
const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/;

const dict = <T>(): Record<string, T> => Object.create(null) as Record<string, T>;

const isPlainObject = (value: unknown): value is Record<string, unknown> => {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
};

const badMeta = (why: string, cause?: unknown) =>
  new CheckpointError('bad_metadata', why, cause === undefined ? {} : { cause });

/**
 * JSON with object keys sorted at every level, so equal metadata gives equal bytes.
 * Refuses anything JSON would silently change: non-finite numbers, undefined in arrays,
 * functions, bigints, class instances, cycles.
 */
export function canonicalJson(value: unknown, path = 'value', seen = new Set<object>()): string {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return JSON.stringify(value);
    case 'number':
      if (!Number.isFinite(value)) throw badMeta(`${path} is ${value}, which JSON cannot hold`);
      return JSON.stringify(value);
    case 'object': {
      if (value === null) return 'null';
      if (seen.has(value)) throw badMeta(`${path} refers to itself`);
      seen.add(value);
      let out: string;
      if (Array.isArray(value)) {
        out = `[${value.map((v, i) => canonicalJson(v, `${path}[${i}]`, seen)).join(',')}]`;
      } else if (isPlainObject(value)) {
        const keys = Object.keys(value)
          .filter((k) => value[k] !== undefined)
          .sort();
        out = `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(value[k], `${path}.${k}`, seen)}`).join(',')}}`;
      } else {
        throw badMeta(
          `${path} is a ${value.constructor?.name ?? 'non-plain object'}, not plain JSON`,
        );
      }
      seen.delete(value);
      return out;
    }
    default:
      throw badMeta(`${path} is a ${typeof value}, which JSON cannot hold`);
  }
}

const isStep = (value: unknown): value is number =>
  typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;

/** Checks a parsed `archipelago` metadata object field by field. */
export function validateCheckpointMeta(value: unknown): CheckpointMeta {
  if (!isPlainObject(value)) throw badMeta(`archipelago metadata is ${show(value)}, not an object`);
  for (const key of Object.keys(value))
    if (!META_FIELDS.has(key)) throw badMeta(`unknown field meta.${clip(key)}`);
  const field = (name: string, ok: boolean, wanted: string) => {
    if (!ok) throw badMeta(`meta.${name} is ${show(value[name])}, expected ${wanted}`);
  };
  const v = value;
  field('format', v.format === CHECKPOINT_FORMAT, q(CHECKPOINT_FORMAT));
  field('version', v.version === CHECKPOINT_VERSION, `${CHECKPOINT_VERSION} (unsupported version)`);
  field('kind', KINDS.includes(v.kind as string), '"expert" or "router"');
  field('architecture', isPlainObject(v.architecture), 'an object');
  field(
    'objective',
    v.objective === undefined || OBJECTIVES.includes(v.objective as string),
    OBJECTIVES_TEXT,
  );
  field('schedule', v.schedule === undefined || isPlainObject(v.schedule), 'an object');
  field(
    'spec',
    v.spec === undefined ||
      (isPlainObject(v.spec) && v.objective !== undefined && v.spec.name === v.objective),
    'an object whose name is meta.objective',
  );
  field('step', isStep(v.step), 'a non-negative integer');
  field(
    'dataFingerprint',
    v.dataFingerprint === undefined ||
      (typeof v.dataFingerprint === 'string' && SHA256.test(v.dataFingerprint)),
    'a lowercase hex sha256',
  );
  field(
    'createdAt',
    typeof v.createdAt === 'string' &&
      ISO_TIME.test(v.createdAt) &&
      Number.isFinite(Date.parse(v.createdAt)),
    'an ISO 8601 time',
  );
  if (v.parent !== undefined) {
    const p = v.parent;
    field('parent', isPlainObject(p), 'an object');
    const parent = p as Record<string, unknown>;
    for (const key of Object.keys(parent))
      if (!PARENT_FIELDS.has(key)) throw badMeta(`unknown field meta.parent.${clip(key)}`);
    const sub = (name: string, ok: boolean, wanted: string) => {
      if (!ok) throw badMeta(`meta.parent.${name} is ${show(parent[name])}, expected ${wanted}`);
    };
    sub(
      'sha256',
      typeof parent.sha256 === 'string' && SHA256.test(parent.sha256),
      'a lowercase hex sha256',
    );
    sub('objective', OBJECTIVES.includes(parent.objective as string), OBJECTIVES_TEXT);
    sub('step', isStep(parent.step), 'a non-negative integer');
  }
  return value as unknown as CheckpointMeta;
}

/** The first place where `actual` differs from `expected`, as a message; undefined if equal. */
function firstDifference(expected: unknown, actual: unknown, path: string): string | undefined {
  if (Array.isArray(expected) || Array.isArray(actual)) {
    if (!Array.isArray(expected) || !Array.isArray(actual) || expected.length !== actual.length)
      return `${path}: checkpoint has ${show(actual)}, expected ${show(expected)}`;
    for (let i = 0; i < expected.length; i++) {
      const d = firstDifference(expected[i], actual[i], `${path}[${i}]`);
      if (d) return d;
    }
    return undefined;
  }
  if (isPlainObject(expected) && isPlainObject(actual)) {
    // A key whose value is undefined counts as absent, as in JSON.
    const has = (o: Record<string, unknown>, k: string) =>
      Object.hasOwn(o, k) && o[k] !== undefined;
    const keys = new Set([...Object.keys(expected), ...Object.keys(actual)]);
    for (const k of [...keys].sort()) {
      const at = `${path}.${clip(k)}`;
      if (!has(expected, k) && !has(actual, k)) continue;
      if (!has(actual, k))
        return `${at}: missing from the checkpoint, expected ${show(expected[k])}`;
      if (!has(expected, k)) return `${at}: checkpoint has ${show(actual[k])}, not expected`;
      const d = firstDifference(expected[k], actual[k], at);
      if (d) return d;
    }
    return undefined;
  }
  return expected === actual
    ? undefined
    : `${path}: checkpoint has ${show(actual)}, expected ${show(expected)}`;
}

const sameShape = (a: readonly number[], b: readonly number[]) =>
  a.length === b.length && a.every((d, i) => d === b[i]);

const listNames = (names: string[]) =>
  names.length <= 5
    ? names.map(q).join(', ')
    : `${names.slice(0, 5).map(q).join(', ')} and ${names.length - 5} more`;

/** Throws 'non_finite' at the first NaN or infinity, naming the tensor and the element. */
function checkFinite(name: string, shape: readonly number[], data: Float32Array): void {
  for (let i = 0; i < data.length; i++) {
    const x = data[i]!;
    if (x - x !== 0) {
      // x - x is NaN exactly when x is NaN or infinite; cheaper than Number.isFinite here.
      const index: number[] = [];
      let rest = i;
      for (let d = shape.length - 1; d >= 0; d--) {
        index.unshift(rest % shape[d]!);
        rest = Math.floor(rest / shape[d]!);
      }
      throw new CheckpointError(
        'non_finite',
        `tensor ${q(name)}: element ${i} (index ${fmtShape(index)}) is ${x}`,
        { tensor: name },
      );
    }
  }
}

const isTensor = (value: unknown): value is Tensor =>
  typeof value === 'object' &&
  value !== null &&
  typeof (value as Tensor).data === 'function' &&
  typeof (value as Tensor).dtype === 'string';

async function toParam(
  name: string,
  value: Tensor | { shape: readonly number[]; data: Float32Array },
): Promise<SafetensorsTensorInput> {
  let shape: readonly number[];
  let data: Float32Array;
  if (isTensor(value)) {
    if (value.dtype !== 'float32')
      throw new CheckpointError(
        'wrong_dtype',
        `tensor ${q(name)} is ${value.dtype}, checkpoints hold float32`,
        {
          tensor: name,
        },
      );
    shape = value.shape;
    data = (await value.data()) as Float32Array;
  } else {
    if (Object.prototype.toString.call(value?.data) !== '[object Float32Array]')
      throw new CheckpointError('wrong_dtype', `tensor ${q(name)}: data is not a Float32Array`, {
        tensor: name,
      });
    shape = value.shape;
    data = value.data;
  }
  if (
    !Array.isArray(shape) ||
    !shape.every((d) => Number.isSafeInteger(d) && d >= 0) ||
    shape.reduce((n, d) => n * d, 1) !== data.length
  )
    throw new CheckpointError(
      'shape_mismatch',
      `tensor ${q(name)}: shape ${show(shape)} does not fit its ${data.length} values`,
      { tensor: name },
    );
  checkFinite(name, shape, data);
  return { dtype: 'F32', shape: [...shape], data };
}

/**
 * Writes an Archipelago checkpoint (F32 safetensors). Deterministic: equal params and meta
 * (including createdAt) give identical bytes. Refuses non-float32 or non-finite params and
 * metadata that would not load back.
 */
export async function saveCheckpoint(options: SaveCheckpointOptions): Promise<Uint8Array> {
  const { params, meta, extraMetadata = {} } = options;
  const full = {
    ...meta,
    format: meta.format ?? CHECKPOINT_FORMAT,
    version: meta.version ?? CHECKPOINT_VERSION,
    createdAt: meta.createdAt ?? new Date().toISOString(),
  };
  const json = canonicalJson(full, 'meta');
  validateCheckpointMeta(JSON.parse(json));

  const metadata: Record<string, string> = { [CHECKPOINT_METADATA_KEY]: json };
  for (const key of Object.keys(extraMetadata)) {
    if (key === CHECKPOINT_METADATA_KEY)
      throw badMeta(`extraMetadata may not use the key ${q(key)}`);
    const value = extraMetadata[key];
    if (typeof value !== 'string') throw badMeta(`extraMetadata ${q(key)} is not a string`);
    metadata[key] = value;
  }

  const tensors = dict<SafetensorsTensorInput>();
  const entries = params instanceof Map ? [...params.entries()] : Object.entries(params);
  for (const [name, value] of entries) tensors[name] = await toParam(name, value);
  return encodeSafetensors(tensors, metadata);
}

/** What {@link inspectCheckpoint} found in a checkpoint's header. */
export interface CheckpointHeader {
  meta: CheckpointMeta;
  /** The `__metadata__` keys other than `archipelago`. */
  extraMetadata: Record<string, string>;
  /** The safetensors header: where each tensor's bytes are. */
  header: SafetensorsHeader;
}

/**
 * Reads and checks an Archipelago checkpoint's header against `expect`, from the first bytes of
 * the file (`prefix`: at least 8 + its header length) and its size, before any tensor data is
 * read: the container's structure, the metadata, kind, objective and architecture, every tensor
 * F32, and with `expect.paramShapes` exactly the expected names and shapes. Throws
 * CheckpointError with the codes of {@link loadCheckpoint} (all but 'non_finite').
 */
export function inspectCheckpoint(
  prefix: Uint8Array,
  fileBytes: number,
  expect: CheckpointExpectation = {},
  options: DecodeSafetensorsOptions = {},
): CheckpointHeader {
  let header: SafetensorsHeader;
  try {
    header = parseSafetensorsHeader(prefix, fileBytes, options);
  } catch (cause) {
    if (!(cause instanceof CheckpointError)) throw cause;
    throw new CheckpointError(
      'not_safetensors',
      `not a valid safetensors file (${cause.message})`,
      {
        ...(cause.tensor === undefined ? {} : { tensor: cause.tensor }),
        cause,
      },
    );
  }

  const raw = header.metadata[CHECKPOINT_METADATA_KEY];
  if (raw === undefined)
    throw badMeta(
      `no ${q(CHECKPOINT_METADATA_KEY)} key in __metadata__: not an Archipelago checkpoint`,
    );
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch (cause) {
    throw badMeta(`the ${q(CHECKPOINT_METADATA_KEY)} metadata is not valid JSON`, cause);
  }
  const meta = validateCheckpointMeta(parsed);
  const extraMetadata = dict<string>();
  for (const [key, value] of Object.entries(header.metadata))
    if (key !== CHECKPOINT_METADATA_KEY) extraMetadata[key] = value;

  if (expect.kind !== undefined && meta.kind !== expect.kind)
    throw new CheckpointError(
      'config_mismatch',
      `kind: checkpoint is ${q(meta.kind)}, expected ${q(expect.kind)}`,
    );
  if (expect.objective !== undefined && meta.objective !== expect.objective)
    throw new CheckpointError(
      'config_mismatch',
      `objective: checkpoint has ${show(meta.objective)}, expected ${q(expect.objective)}`,
    );
  if (expect.architecture !== undefined) {
    const diff = firstDifference(expect.architecture, meta.architecture, 'architecture');
    if (diff) throw new CheckpointError('config_mismatch', diff);
  }

  const shapes = dict<number[]>();
  for (const e of header.entries) {
    if (e.dtype !== 'F32')
      throw new CheckpointError(
        'wrong_dtype',
        `tensor ${q(e.name)} is ${e.dtype}, checkpoints hold F32`,
        {
          tensor: e.name,
        },
      );
    shapes[e.name] = e.shape;
  }
  if (expect.paramShapes !== undefined) {
    const wanted = expect.paramShapes;
    const names = Object.keys(shapes);
    const missing = Object.keys(wanted).filter((n) => !Object.hasOwn(shapes, n));
    if (missing.length > 0)
      throw new CheckpointError('missing_tensor', `checkpoint lacks ${listNames(missing)}`, {
        tensor: missing[0]!,
      });
    const unexpected = names.filter((n) => !Object.hasOwn(wanted, n));
    if (unexpected.length > 0)
      throw new CheckpointError(
        'unexpected_tensor',
        `the network has no ${listNames(unexpected)}`,
        {
          tensor: unexpected[0]!,
        },
      );
    for (const name of names) {
      const got = shapes[name]!;
      const want = wanted[name]!;
      if (!sameShape(got, want))
        throw new CheckpointError(
          'shape_mismatch',
          `tensor ${q(name)}: checkpoint has shape ${fmtShape(got)}, expected ${fmtShape(want)}`,
          { tensor: name },
        );
    }
  }
  return { meta, extraMetadata, header };
}

/**
 * Reads and validates an Archipelago checkpoint. Throws CheckpointError when the file is
 * not valid safetensors ('not_safetensors', wrapping the container error as `cause`), the
 * metadata is missing or malformed ('bad_metadata'), it does not match `expect`
 * ('config_mismatch', 'missing_tensor', 'unexpected_tensor', 'shape_mismatch'), a tensor is
 * not F32 ('wrong_dtype'), or a value is NaN or infinite ('non_finite'). The header is checked
 * ({@link inspectCheckpoint}) before any tensor is copied. Params are copies.
 */
export function loadCheckpoint(
  bytes: Uint8Array,
  expect: CheckpointExpectation = {},
  options: DecodeSafetensorsOptions = {},
): LoadedCheckpoint {
  if (!(bytes instanceof Uint8Array)) throw new TypeError('loadCheckpoint expects a Uint8Array');
  const { meta, extraMetadata, header } = inspectCheckpoint(bytes, bytes.length, expect, options);
  const tensors = readSafetensorsTensors(bytes, header);
  const params = dict<CheckpointParam>();
  for (const name of Object.keys(tensors)) {
    const t = tensors[name]!;
    if (t.dtype !== 'F32') continue; // unreachable: inspectCheckpoint checked it
    checkFinite(name, t.shape, t.data);
    params[name] = { shape: t.shape, data: t.data };
  }
  return { meta, params, extraMetadata };
}

/** Room for `__metadata__` (architecture, objective spec, training settings) in a header. */
export const CHECKPOINT_METADATA_ALLOWANCE = 64 * 1024;

/** The sizes a checkpoint of a network with these parameters may have. */
export interface CheckpointSizeBounds {
  /** The data region: every parameter as F32. */
  tensorBytes: number;
  /**
   * The largest header: the tensor entries as the writer lays them out (offsets at their widest)
   * plus {@link CHECKPOINT_METADATA_ALLOWANCE}, a multiple of 8.
   */
  maxHeaderBytes: number;
  /** Smallest and largest file: 8 + header + tensor bytes. */
  minBytes: number;
  maxBytes: number;
}

/**
 * How big a checkpoint of a network with `paramShapes` can be: exactly its tensor bytes, plus a
 * header of its tensor entries and a small allowance for metadata. Anything larger is not such a
 * checkpoint, whatever its header says.
 */
export function checkpointSizeBounds(
  paramShapes: Record<string, readonly number[]>,
): CheckpointSizeBounds {
  let tensorBytes = 0;
  for (const shape of Object.values(paramShapes))
    tensorBytes += shape.reduce((n, d) => n * d, 1) * 4;
  const offsetDigits = String(tensorBytes).length;
  let entries = 2; // the braces
  for (const [name, shape] of Object.entries(paramShapes)) {
    // "name":{"dtype":"F32","shape":[..],"data_offsets":[begin,end]},
    entries +=
      JSON.stringify(name).length +
      `:{"dtype":"F32","shape":[${shape.join(',')}],"data_offsets":[,]},`.length +
      2 * offsetDigits;
  }
  const maxHeaderBytes = Math.ceil((entries + CHECKPOINT_METADATA_ALLOWANCE) / 8) * 8;
  return {
    tensorBytes,
    maxHeaderBytes,
    minBytes: 8 + tensorBytes + 2,
    maxBytes: 8 + tensorBytes + maxHeaderBytes,
  };
}

/** sha256 of a checkpoint file, lowercase hex. */
export function checkpointSha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}
