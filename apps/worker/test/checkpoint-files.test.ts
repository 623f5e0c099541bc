import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CheckpointFiles } from '../src/checkpoint-files.js';
import { sha256Hex } from '../src/object-cache.js';
import { WorkDir } from '../src/work-dir.js';

describe('CheckpointFiles', () => {
  let root: string;
  let workDir: WorkDir;
  beforeEach(() => {
    root = mkdtempSync(path.join(tmpdir(), 'arch-ckfiles-'));
    workDir = new WorkDir(root);
    workDir.open();
  });
  afterEach(() => {
    workDir.close();
    rmSync(root, { recursive: true, force: true });
  });

  it('writes a lease’s checkpoints by step, reads them back, and removes only its own', () => {
    const files = new CheckpointFiles(workDir, 'ls_000000000001');
    const bytes = new Uint8Array([1, 2, 3]);
    const written = files.write(42, bytes, true);
    expect(written).toEqual({
      ck: {
        file: 'checkpoints/ls_000000000001-000000042.safetensors',
        step: 42,
        sha256: sha256Hex(bytes),
        bytes: 3,
        final: true,
        accepted: false,
      },
      bytes,
    });
    expect(files.read(written.ck.file)).toEqual(bytes);
    files.write(50, bytes, false);
    new CheckpointFiles(workDir, 'ls_000000000002').write(7, bytes, false);
    files.remove(written.ck.file);
    expect(readdirSync(workDir.checkpointDir).sort()).toEqual([
      'ls_000000000001-000000050.safetensors',
      'ls_000000000002-000000007.safetensors',
    ]);
    files.removeAll();
    expect(readdirSync(workDir.checkpointDir)).toEqual(['ls_000000000002-000000007.safetensors']);
  });
});
