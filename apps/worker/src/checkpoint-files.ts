/**
 * The checkpoint files of one lease in the work dir, `checkpoints/<leaseId>-<step>.safetensors`
 * and beside a non-final one its optimiser state, `<...>.optimizer.safetensors`: each is kept
 * until a newer one is accepted, so a restart can upload or resume from it (exactly).
 */
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { sha256Hex } from './object-cache.js';
import type { LocalCheckpoint, WorkDir } from './work-dir.js';

/** A local checkpoint with its bytes, kept in memory for the upload. */
export interface CheckpointBytes {
  ck: LocalCheckpoint;
  bytes: Uint8Array;
  /** Its optimiser state (`ck.optimizer`'s bytes), when it has one. */
  optimizer?: Uint8Array;
}

/** Where a checkpoint file's optimiser state goes. */
export const optimizerFileOf = (file: string): string =>
  file.replace(/\.safetensors$/, '.optimizer.safetensors');

export class CheckpointFiles {
  constructor(
    private readonly workDir: WorkDir,
    private readonly leaseId: string,
  ) {}

  /** Write the checkpoint of `step` and its optimiser state (atomically); it is not accepted yet. */
  write(step: number, bytes: Uint8Array, final: boolean, optimizer?: Uint8Array): CheckpointBytes {
    const file = `checkpoints/${this.leaseId}-${String(step).padStart(9, '0')}.safetensors`;
    let state: LocalCheckpoint['optimizer'];
    if (optimizer) {
      // The state first: a checkpoint file on disk always has its state written beside it.
      const stateFile = optimizerFileOf(file);
      this.workDir.writeAtomic(this.workDir.resolve(stateFile), optimizer);
      state = { file: stateFile, sha256: sha256Hex(optimizer), bytes: optimizer.byteLength };
    }
    this.workDir.writeAtomic(this.workDir.resolve(file), bytes);
    const sha256 = sha256Hex(bytes);
    return {
      ck: {
        file,
        step,
        sha256,
        bytes: bytes.byteLength,
        final,
        accepted: false,
        ...(state ? { optimizer: state } : {}),
      },
      bytes,
      ...(optimizer ? { optimizer } : {}),
    };
  }

  /** The bytes of a file relative to the work dir. */
  read(relative: string): Uint8Array {
    return new Uint8Array(readFileSync(this.workDir.resolve(relative)));
  }

  /** Remove a checkpoint file and its optimiser state. */
  remove(relative: string): void {
    rmSync(this.workDir.resolve(relative), { force: true });
    rmSync(this.workDir.resolve(optimizerFileOf(relative)), { force: true });
  }

  /** Every checkpoint file of this lease. */
  removeAll(): void {
    for (const name of readdirSync(this.workDir.checkpointDir)) {
      if (name.startsWith(`${this.leaseId}-`))
        rmSync(path.join(this.workDir.checkpointDir, name), { force: true });
    }
  }
}
