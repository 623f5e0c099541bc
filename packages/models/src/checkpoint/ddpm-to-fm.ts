/**
 * DDPM -> flow-matching checkpoint conversion (docs/method.md §7): start an FM expert from a
 * trained DDPM expert. Every tensor is kept (patch and position embeddings, time and label
 * embedders, t_block, all blocks, the final layer's modulation table) except the output
 * projection, which is re-initialised to zeros as DiT and PixArt initialise it: the
 * network's target changes from the noise e to the velocity e - x0. The FM sampler feeds
 * tau = 999 t as the timestep, so the time embedder's learned range is reused.
 */

import {
  type CheckpointMeta,
  type CheckpointParam,
  checkpointSha256,
  loadCheckpoint,
  saveCheckpoint,
} from './checkpoint.js';
import { CheckpointError } from './errors.js';

/** Parameter names of the output projection (`final_layer.linear.weight` and `.bias`). */
export const OUTPUT_PROJECTION_PREFIX = 'final_layer.linear.';

/** The default `reinit`: true for the output projection's parameters. */
export const isOutputProjection = (name: string): boolean =>
  name.startsWith(OUTPUT_PROJECTION_PREFIX);

export interface ConvertDdpmToFmOptions {
  /** Which parameters to re-initialise to zeros. Default: isOutputProjection. */
  reinit?: (name: string) => boolean;
  /** createdAt of the new checkpoint. Default: now. */
  createdAt?: string;
}

/**
 * Converts a DDPM expert checkpoint into the initial checkpoint of an FM expert: objective
 * 'fm', no schedule, step 0, parent = { sha256 of the input, objective 'ddpm', its step };
 * architecture, dataFingerprint and extra metadata are kept. Throws CheckpointError
 * 'not_ddpm' unless the input is an expert with objective 'ddpm', 'missing_tensor' if
 * `reinit` selects no tensor, and whatever loadCheckpoint throws for a bad file.
 */
export async function convertDdpmToFm(
  bytes: Uint8Array,
  options: ConvertDdpmToFmOptions = {},
): Promise<Uint8Array> {
  const { meta, params, extraMetadata } = loadCheckpoint(bytes);
  if (meta.kind !== 'expert' || meta.objective !== 'ddpm')
    throw new CheckpointError(
      'not_ddpm',
      `expected an expert checkpoint with objective "ddpm", got kind ${JSON.stringify(meta.kind)} with objective ${JSON.stringify(meta.objective ?? null)}`,
    );

  const reinit = options.reinit ?? isOutputProjection;
  const converted: Record<string, CheckpointParam> = Object.create(null);
  let reset = 0;
  for (const [name, param] of Object.entries(params)) {
    if (reinit(name)) {
      converted[name] = { shape: param.shape, data: new Float32Array(param.data.length) };
      reset++;
    } else {
      converted[name] = param;
    }
  }
  if (reset === 0)
    throw new CheckpointError(
      'missing_tensor',
      `no tensor to re-initialise: the checkpoint has no output projection (${OUTPUT_PROJECTION_PREFIX}*)`,
    );

  const next: CheckpointMeta = {
    ...meta,
    objective: 'fm',
    step: 0,
    parent: { sha256: checkpointSha256(bytes), objective: 'ddpm', step: meta.step },
    createdAt: options.createdAt ?? new Date().toISOString(),
  };
  // The DDPM spec no longer describes the network; the FM trainer records its own on first save.
  delete next.schedule;
  delete next.spec;
  return saveCheckpoint({ params: converted, meta: next, extraMetadata });
}
