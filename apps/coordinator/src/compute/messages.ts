/**
 * What the coordinator's main thread and its compute threads (compute-pool.ts, compute-thread.ts)
 * say to each other. Everything here is structured-cloneable; sample pixels are transferred.
 */
import type { BackendName } from '@archipelago/models';
import type { CoordinatorConfig } from '../config.js';
import type { SampleOutput, SampleSettings } from '../ensembles/loaded-ensemble.js';
import { DomainError, type ErrorCode, PermanentJobError } from '../errors.js';
import type { ScoreInput } from '../services/ensemble-scores.js';
import type { RouterFit, RouterFitInput } from '../services/router-training.js';
import type { ValidationInput, ValidationOutcome } from '../services/validation.js';

/** What a thread is started with (workerData). */
export interface ComputeThreadData {
  /** The coordinator's configuration: the thread opens the same object store (reads only). */
  config: CoordinatorConfig;
  /** The main thread's backend, loaded in the thread too. */
  backend: BackendName;
}

/** The tasks a thread runs, by kind: their input and their result. */
export interface ComputeTasks {
  sample: { input: { ensembleId: string; settings: SampleSettings }; result: SampleOutput };
  /** The verdict on a checkpoint (services/validation.ts judgeCheckpoint); the main thread records it. */
  judge: { input: ValidationInput; result: ValidationOutcome };
  /** A trained router (services/router-training.ts fitRouter); the main thread stores and records it. */
  'fit-router': { input: RouterFitInput; result: RouterFit };
  /** An ensemble's score (services/ensemble-scores.ts scoreStoredEnsemble); the main thread stores it. */
  score: {
    input: ScoreInput;
    result: { json: string; png: Uint8Array; summary: Record<string, number | null> };
  };
}
export type ComputeKind = keyof ComputeTasks;

export type ToThread =
  | { type: 'task'; id: number; kind: ComputeKind; input: ComputeTasks[ComputeKind]['input'] }
  /** The caller went away: abort the task's signal (sampling stops at its next step). */
  | { type: 'cancel'; id: number };

export type FromThread =
  | { type: 'ready' }
  | { type: 'progress'; id: number; stage: string; done: number; total: number }
  | { type: 'done'; id: number; result: ComputeTasks[ComputeKind]['result'] }
  | { type: 'failed'; id: number; error: WireError };

export interface WireError {
  name: string;
  message: string;
  code?: string;
  details?: Record<string, unknown>;
}

export function toWireError(err: unknown): WireError {
  if (!(err instanceof Error)) return { name: 'Error', message: String(err) };
  const e = err as Error & { code?: unknown; details?: unknown };
  return {
    name: e.name,
    message: e.message,
    ...(typeof e.code === 'string' ? { code: e.code } : {}),
    ...(e.details && typeof e.details === 'object'
      ? { details: e.details as Record<string, unknown> }
      : {}),
  };
}

/** The error again on this side: a DomainError keeps its class (the error plugin maps its code). */
export function fromWireError(w: WireError): Error {
  if (w.name === 'DomainError' && w.code)
    return new DomainError(w.code as ErrorCode, w.message, w.details);
  // A job's error that retrying cannot fix stays one.
  if (w.name === 'PermanentJobError') return new PermanentJobError(w.message, w.code);
  const err = new Error(w.message) as Error & { code?: string };
  err.name = w.name;
  if (w.code) err.code = w.code;
  return err;
}
