import type { Logger } from 'pino';
import type { Tx } from '../db/database.js';
import type { JobRow } from '../db/schema/index.js';

/**
 * A job in three phases (docs/architecture.md "The job pipeline"): `prepare` and `apply` run on the
 * coordinator, the only process that opens its database; `compute` touches only the object store
 * and runs wherever a job processor is, the coordinator itself or a `coordinator jobs` process on
 * another machine. Inputs and outputs are plain JSON: they travel through Redis.
 */

export interface JobContext {
  jobId: string;
  /** 1 for the first try. */
  attempt: number;
  log: Logger;
  /** Report progress; written to the job row at most a few times a second. */
  progress(stage: string, done: number, total: number): void;
}

/**
 * The compute of a job: a plain async function of its input (what `prepare` made of the payload)
 * that reads and writes only the object store (content-addressed or job-owned keys); what it
 * returns is the job's output, applied by the coordinator.
 */
export type JobCompute = (
  ctx: JobContext,
  input: Record<string, unknown>,
) => Promise<Record<string, unknown>>;

/** What `prepare` decided: compute this input, or the job is already done with this result. */
export type Prepared =
  | { input: Record<string, unknown> }
  /** Nothing to compute (a re-run of a finished job, a stale one): `write`, if any, is committed with the job's success. */
  | { result: Record<string, unknown>; write?: (tx: Tx) => void };

export interface ApplyContext {
  jobId: string;
  attempt: number;
  log: Logger;
  row: JobRow;
  /**
   * Write the job's result: `fn`'s writes and the job's success in one transaction, which also
   * checks that this attempt is still the job's current one (else {@link StaleJobResult} is thrown
   * and nothing is written). Returns the job's result (what `fn` returns).
   */
  commit(fn: (tx: Tx) => Record<string, unknown>): Record<string, unknown>;
}

export interface JobPhases {
  /**
   * On the coordinator: the job's input from its payload and the database (default: the payload).
   * `remote`: the input goes to a processor that may be on another machine (Redis mode), so
   * nothing in it may name a file on this one.
   */
  prepare?(
    ctx: JobContext & { row: JobRow; remote: boolean },
    payload: Record<string, unknown>,
  ): Promise<Prepared> | Prepared;
  compute: JobCompute;
  /**
   * On the coordinator: record the output; must call `ctx.commit` once (default: commit the output
   * as the job's result). Work after the commit (deleting an object) may follow.
   */
  apply?(ctx: ApplyContext, output: Record<string, unknown>): Promise<void> | void;
}

/** A processor: three phases, or just a compute (its input is the payload, its output the result). */
export type JobHandler = JobCompute | JobPhases;

export function phasesOf(handler: JobHandler | undefined): JobPhases | undefined {
  if (!handler) return undefined;
  return typeof handler === 'function' ? { compute: handler } : handler;
}

/** A result for an attempt that is no longer the job's current one: it is ignored. */
export class StaleJobResult extends Error {
  constructor(jobId: string, attempt: number, why: string) {
    super(`result of job ${jobId} attempt ${attempt} ignored: ${why}`);
    this.name = 'StaleJobResult';
  }
}

/** What the coordinator puts on the jobs queue: everything compute needs. */
export interface JobMessage {
  id: string;
  attempt: number;
  name: string;
  input: Record<string, unknown>;
}

/** What a processor puts on the results queue, which only coordinators consume. */
export type JobResultMessage = {
  id: string;
  attempt: number;
  name: string;
  /** `host:pid` of the process that computed it. */
  processor: string;
  /** Its last progress report (events are live only; this one is kept with the job). */
  progress?: { stage: string; done: number; total: number };
} & (
  | { ok: true; output: Record<string, unknown> }
  | { ok: false; error: string; code?: string; permanent: boolean }
);

/** A progress report of a processor (BullMQ job progress). */
export interface JobProgressMessage {
  id: string;
  attempt: number;
  processor: string;
  stage: string;
  done: number;
  total: number;
}
