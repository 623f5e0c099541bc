import type { Static, TSchema } from 'typebox';
import { Compile } from 'typebox/compile';
import {
  CheckpointAccepted,
  CheckpointBegin,
  CheckpointCommit,
  CheckpointRejected,
  CheckpointUrl,
} from './checkpoint.js';
import { ErrorFrame, type WorkerErrorCode } from './error-frame.js';
import { Heartbeat, HeartbeatAck } from './heartbeat.js';
import { Hello, Welcome } from './hello.js';
import {
  LeaseComplete,
  LeaseGrant,
  LeaseNone,
  LeaseRelease,
  LeaseRequest,
  LeaseRevoke,
} from './lease.js';

/**
 * Protocol versions this build speaks, oldest first. 2 adds optimiser states: an optional
 * `optimizer` in `checkpoint.begin`, `checkpoint.url` and a grant's `resumeFrom`; a coordinator
 * sends them only to a worker that negotiated 2.
 */
export const PROTOCOL_VERSIONS = [1, 2] as const;
export const PROTOCOL_VERSION = 2;
/** The first protocol version with optimiser states. */
export const OPTIMIZER_STATE_PROTOCOL = 2;
/** Frames larger than this are refused (a lease grant with presigned URLs is a few KiB). */
export const MAX_FRAME_BYTES = 64 * 1024;

/** Every frame a worker sends, by `type`. */
export const WORKER_MESSAGES = {
  hello: Hello,
  'lease.request': LeaseRequest,
  heartbeat: Heartbeat,
  'checkpoint.begin': CheckpointBegin,
  'checkpoint.commit': CheckpointCommit,
  'lease.complete': LeaseComplete,
  'lease.release': LeaseRelease,
  error: ErrorFrame,
} as const;

/** Every frame the coordinator sends, by `type`. */
export const COORDINATOR_MESSAGES = {
  welcome: Welcome,
  'lease.grant': LeaseGrant,
  'lease.none': LeaseNone,
  'heartbeat.ack': HeartbeatAck,
  'checkpoint.url': CheckpointUrl,
  'checkpoint.accepted': CheckpointAccepted,
  'checkpoint.rejected': CheckpointRejected,
  'lease.revoke': LeaseRevoke,
  error: ErrorFrame,
} as const;

type MessageOf<M extends Record<string, TSchema>> = { [K in keyof M]: Static<M[K]> }[keyof M];
export type WorkerMessage = MessageOf<typeof WORKER_MESSAGES>;
export type CoordinatorMessage = MessageOf<typeof COORDINATOR_MESSAGES>;

export type ParseResult<T> =
  | { ok: true; message: T }
  | { ok: false; code: WorkerErrorCode; message: string; inReplyTo?: string };

function compileAll<M extends Record<string, TSchema>>(messages: M) {
  return new Map(Object.entries(messages).map(([type, schema]) => [type, Compile(schema)]));
}

const validators = {
  worker: compileAll(WORKER_MESSAGES),
  coordinator: compileAll(COORDINATOR_MESSAGES),
};

/**
 * Decode and validate one frame. Never throws: a bad frame becomes a result with a stable code
 * and a message naming the problem (`bad_json`, `frame_too_large`, `unknown_type` listing the
 * valid types, `invalid_message` naming the field).
 *
 * @param from - who sent the frame: `worker` frames are checked against {@link WORKER_MESSAGES}.
 */
export function parseFrame<F extends 'worker' | 'coordinator'>(
  raw: string | Uint8Array,
  from: F,
  maxBytes = MAX_FRAME_BYTES,
): ParseResult<F extends 'worker' ? WorkerMessage : CoordinatorMessage> {
  // TextEncoder/TextDecoder rather than Buffer: browsers (the dashboard) parse frames too.
  const bytes = typeof raw === 'string' ? new TextEncoder().encode(raw) : raw;
  const size = bytes.byteLength;
  if (size > maxBytes)
    return {
      ok: false,
      code: 'frame_too_large',
      message: `frame of ${size} bytes exceeds the limit of ${maxBytes}`,
    };
  let value: unknown;
  try {
    value = JSON.parse(
      typeof raw === 'string' ? raw : new TextDecoder('utf-8', { fatal: true }).decode(bytes),
    );
  } catch (err) {
    return { ok: false, code: 'bad_json', message: `frame is not JSON: ${(err as Error).message}` };
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return {
      ok: false,
      code: 'invalid_message',
      message: 'frame must be a JSON object with a "type"',
    };
  }
  const type = (value as { type?: unknown }).type;
  const table = validators[from];
  if (typeof type !== 'string' || !table.has(type)) {
    return {
      ok: false,
      code: 'unknown_type',
      message: `unknown message type ${JSON.stringify(type)}; valid: ${[...table.keys()].join(', ')}`,
    };
  }
  const validator = table.get(type)!;
  if (!validator.Check(value)) {
    const first = [...validator.Errors(value)][0];
    // TypeBox reports an unknown property as "<path> schema is false": say what it means.
    const detail =
      first?.message === 'schema is false'
        ? `${first.instancePath} is not an allowed property`
        : `${first?.instancePath || '(frame)'} ${first?.message ?? 'is invalid'}`;
    return { ok: false, code: 'invalid_message', message: `${type}: ${detail}`, inReplyTo: type };
  }
  return { ok: true, message: value as F extends 'worker' ? WorkerMessage : CoordinatorMessage };
}

/** The highest version both sides speak, or null. */
export function negotiateProtocol(offered: readonly number[]): number | null {
  const common = PROTOCOL_VERSIONS.filter((v) => offered.includes(v));
  return common.length > 0 ? Math.max(...common) : null;
}
