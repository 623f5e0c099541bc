/**
 * Where a lease's training starts, in order of preference: the checkpoint a re-attached lease left
 * in the work dir; what the previous, lost lease of the same expert trained past the same accepted
 * checkpoint; the grant's accepted checkpoint (its step count continues); a DDPM checkpoint
 * converted into an FM expert's initialisation; random initialisation.
 */
import { convertDdpmToFm } from '@archipelago/models';
import type { LeaseGrant, ObjectRef } from '@archipelago/protocol';
import type { CheckpointBytes } from './checkpoint-files.js';
import { type ObjectCache, sha256Hex } from './object-cache.js';
import type { SavedLease } from './work-dir.js';

/**
 * What a lost lease had trained beyond its last accepted checkpoint (a coordinator outage longer
 * than the lease TTL, say). When the same expert is granted again from the same checkpoint, the
 * next session starts from here instead of redoing the steps.
 */
export interface Orphan {
  expertId: string;
  /** The accepted checkpoint the lost lease started from: a new grant must resume from it too. */
  baseStep: number;
  baseSha256: string | null;
  step: number;
  final: boolean;
  bytes: Uint8Array;
  /** Its optimiser state, when it has one. */
  optimizer?: Uint8Array;
}

/** Where training starts, with the step count it starts at. */
export type ResumePoint =
  | { kind: 'local'; step: number; checkpoint: CheckpointBytes }
  | { kind: 'orphan'; step: number; orphan: Orphan }
  | { kind: 'accepted'; step: number; checkpoint: ObjectRef; optimizer?: ObjectRef }
  | { kind: 'converted'; step: 0; checkpoint: ObjectRef }
  | { kind: 'scratch'; step: 0 };

/**
 * Choose where a grant's training starts. `local` is the re-attached lease's own checkpoint, read
 * and verified by {@link readLocalCheckpoint} (null when there is none or it is unusable).
 * @throws when a re-attached lease lost its local checkpoint and the grant resumes from an older
 *   step than the one accepted meanwhile: releasing the lease gets it granted afresh
 */
export function chooseResume(
  grant: LeaseGrant,
  saved: SavedLease | undefined,
  orphan: Orphan | null | undefined,
  local: CheckpointBytes | null,
): ResumePoint {
  if (local) return { kind: 'local', step: local.ck.step, checkpoint: local };
  if (orphan && orphanMatches(orphan, grant, saved))
    return { kind: 'orphan', step: orphan.step, orphan };
  const resumeStep = grant.resumeFrom?.step ?? 0;
  if (saved && (saved.acceptedStep ?? 0) > resumeStep) {
    throw new Error(
      `the local checkpoint of the re-attached lease is gone and the grant's resume point (step ${resumeStep}) is older than the accepted step ${saved.acceptedStep}; releasing the lease so that it is granted afresh`,
    );
  }
  if (grant.resumeFrom)
    return {
      kind: 'accepted',
      step: grant.resumeFrom.step,
      checkpoint: grant.resumeFrom.checkpoint,
      ...(grant.resumeFrom.optimizer ? { optimizer: grant.resumeFrom.optimizer } : {}),
    };
  if (grant.initFrom) return { kind: 'converted', step: 0, checkpoint: grant.initFrom.checkpoint };
  return { kind: 'scratch', step: 0 };
}

/** The previous lease's leftover continues this grant: same expert, same starting checkpoint. */
export function orphanMatches(
  orphan: Orphan,
  grant: LeaseGrant,
  saved: SavedLease | undefined,
): boolean {
  if (orphan.expertId !== grant.expert.id || saved) return false;
  if ((grant.resumeFrom?.step ?? 0) !== orphan.baseStep || orphan.step <= orphan.baseStep)
    return false;
  return (
    !grant.resumeFrom ||
    orphan.baseSha256 === null ||
    orphan.baseSha256 === grant.resumeFrom.checkpoint.sha256
  );
}

/**
 * The checkpoint a re-attached lease left in the work dir, if it is intact (its sha256) and not
 * older than the grant's resume point; otherwise a warning and null.
 */
export function readLocalCheckpoint(
  saved: SavedLease | undefined,
  grant: LeaseGrant,
  read: (relative: string) => Uint8Array,
  warn: (message: string) => void,
): CheckpointBytes | null {
  const ck = saved?.checkpoint;
  if (!ck) return null;
  let found: CheckpointBytes;
  try {
    const bytes = read(ck.file);
    if (sha256Hex(bytes) !== ck.sha256) throw new Error('sha256 mismatch');
    if (ck.step < (grant.resumeFrom?.step ?? 0)) throw new Error('older than the lease');
    found = { ck: { ...ck }, bytes };
  } catch (err) {
    warn(`ignoring the local checkpoint of step ${ck.step} (${(err as Error).message})`);
    return null;
  }
  if (!ck.optimizer) return found;
  try {
    const optimizer = read(ck.optimizer.file);
    if (sha256Hex(optimizer) !== ck.optimizer.sha256) throw new Error('sha256 mismatch');
    return { ...found, optimizer };
  } catch (err) {
    warn(
      `ignoring the optimizer state of the local checkpoint of step ${ck.step} (${(err as Error).message}): fresh Adam moments`,
    );
    const { optimizer: _gone, ...rest } = found.ck;
    return { ck: rest, bytes: found.bytes };
  }
}

/** What the operator is told training starts from. */
export function describeResume(point: ResumePoint): string {
  switch (point.kind) {
    case 'local':
      return `its local checkpoint of step ${point.step}`;
    case 'orphan':
      return `the checkpoint of step ${point.step} it trained from step ${point.orphan.baseStep} before its previous lease of this expert was lost`;
    case 'accepted':
      return `the accepted checkpoint of step ${point.step} (sha256 ${point.checkpoint.sha256.slice(0, 12)})${point.optimizer ? ' and its optimizer state' : ''}`;
    case 'converted':
      return `DDPM checkpoint ${point.checkpoint.sha256.slice(0, 12)} converted to flow matching`;
    case 'scratch':
      return 'random initialisation';
  }
}

/** What the trainer starts from: a checkpoint and, for an exact resume, its optimiser state. */
export interface ResumeInit {
  init?: Uint8Array;
  optimizerState?: Uint8Array;
}

/**
 * The checkpoint bytes to initialise the trainer with (downloaded or converted; none from
 * scratch) and its optimiser state when there is one. A state that cannot be downloaded is
 * `warn`ed about and left out: training continues from the checkpoint with fresh moments.
 */
export async function resumeInit(
  point: ResumePoint,
  cache: ObjectCache,
  warn: (message: string) => void = () => {},
): Promise<ResumeInit> {
  const withState = (init: Uint8Array, optimizerState: Uint8Array | undefined): ResumeInit =>
    optimizerState ? { init, optimizerState } : { init };
  switch (point.kind) {
    case 'local':
      return withState(point.checkpoint.bytes, point.checkpoint.optimizer);
    case 'orphan':
      return withState(point.orphan.bytes, point.orphan.optimizer);
    case 'accepted': {
      const init = await cache.get(point.checkpoint, `the checkpoint of step ${point.step}`, false);
      if (!point.optimizer) return { init };
      const state = await cache
        .get(point.optimizer, `the optimizer state of step ${point.step}`, false)
        .catch((err: unknown) => {
          warn(
            `cannot download the optimizer state of step ${point.step} (${(err as Error).message}): fresh Adam moments`,
          );
          return undefined;
        });
      return withState(init, state);
    }
    case 'converted':
      return {
        init: await convertDdpmToFm(
          await cache.get(point.checkpoint, 'the DDPM checkpoint to convert', false),
        ),
      };
    case 'scratch':
      return {};
  }
}
