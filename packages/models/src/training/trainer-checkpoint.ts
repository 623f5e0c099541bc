/**
 * How trainers start from and write checkpoints (checkpoint/ holds the format itself).
 *
 * A trainer's checkpoint holds every network parameter under its own name (the file an ensemble
 * loads with the network's `paramShapes`), and its metadata: kind, `architecture` =
 * `{ kind, ...config }` of the network, objective and DDPM schedule, the step count, the data
 * fingerprint, the DDPM parent of a converted expert. The `archipelago.training` metadata key
 * records the objective config (FM time sampling included), the optimizer settings and the seed.
 *
 * Adam's moments, its step count and the live weights (an EMA trainer's checkpoint holds the
 * average) are not in the checkpoint but in its optimiser state, a file of its own
 * (checkpoint/optimizer-state.ts, `ExpertTrainer.saveResumable`): with both a resumed run continues
 * exactly; from the checkpoint alone it restarts Adam from zero moments (a warm restart) while its
 * parameters, step count and noise stream continue.
 */
import { heldOutObjective, type ObjectiveConfig, resolveObjective } from '@archipelago/diffusion';
import type * as tf from '@tensorflow/tfjs-core';
import {
  CheckpointError,
  type CheckpointKind,
  type CheckpointMeta,
  type CheckpointParam,
  canonicalJson,
  loadCheckpoint,
  saveCheckpoint,
} from '../checkpoint/index.js';
import { architectureOf, type NetworkSpec, paramShapesOf } from './networks.js';
import type { OptimizerOptions } from './parallel/messages.js';

/** The `__metadata__` key of a trainer's own settings. */
export const TRAINING_METADATA_KEY = 'archipelago.training';

/** What a trainer takes from an `init` checkpoint. */
export interface InitState {
  meta: CheckpointMeta;
  params: Record<string, CheckpointParam>;
}

/**
 * Loads a checkpoint to start from, refusing (with {@link CheckpointError}) one of another kind,
 * architecture, objective, DDPM schedule, or parameter set.
 */
export function loadInit(
  bytes: Uint8Array,
  kind: CheckpointKind,
  spec: NetworkSpec,
  objective?: ObjectiveConfig,
): InitState {
  const { meta, params } = loadCheckpoint(bytes, {
    kind,
    architecture: architectureOf(spec),
    paramShapes: paramShapesOf(spec),
    ...(objective ? { objective: objective.name } : {}),
  });
  if (objective) {
    // The same network output: family, schedule and prediction (docs/method.md §3). Training-time
    // choices (FM time sampling, loss weighting) may differ; defaults are filled on both sides.
    const want = canonicalJson(heldOutObjective(objective));
    let got: string;
    try {
      got = canonicalJson(heldOutObjective(specOfMeta(meta)));
    } catch (cause) {
      throw new CheckpointError(
        'config_mismatch',
        `objective: ${canonicalJson(meta.spec ?? { objective: meta.objective, schedule: meta.schedule })} is not a valid objective (schedule, prediction)`,
        { cause },
      );
    }
    if (want !== got) {
      throw new CheckpointError(
        'config_mismatch',
        `objective (schedule, prediction): checkpoint has ${got}, expected ${want}`,
      );
    }
  }
  return { meta, params };
}

/**
 * The objective spec a checkpoint was trained with: `meta.spec`, or for a checkpoint written
 * before specs, the one its family and schedule stand for.
 */
export function specOfMeta(meta: CheckpointMeta): ObjectiveConfig {
  if (meta.spec) return meta.spec as ObjectiveConfig;
  if (meta.objective === undefined) throw new RangeError('the checkpoint names no objective');
  return resolveObjective({
    name: meta.objective,
    ...(meta.schedule ? { schedule: meta.schedule } : {}),
  } as ObjectiveConfig);
}

export interface SaveTrainedOptions {
  kind: CheckpointKind;
  spec: NetworkSpec;
  params: Map<string, tf.Variable>;
  step: number;
  objective?: ObjectiveConfig;
  optimizer: OptimizerOptions;
  seed: number;
  /** The checkpoint training started from (its parent is kept: a converted expert's DDPM origin). */
  init?: CheckpointMeta;
  /** sha256 (hex) of the training data. */
  dataFingerprint?: string;
  /** Default: now. */
  createdAt?: string;
}

export function saveTrained(o: SaveTrainedOptions): Promise<Uint8Array> {
  const training = {
    optimizer: o.optimizer,
    seed: o.seed,
    ...(o.objective ? { objective: o.objective } : {}),
  };
  return saveCheckpoint({
    params: o.params,
    meta: {
      kind: o.kind,
      architecture: architectureOf(o.spec),
      step: o.step,
      ...(o.objective ? objectiveMeta(o.objective) : {}),
      ...(o.init?.parent ? { parent: o.init.parent } : {}),
      ...(o.dataFingerprint === undefined ? {} : { dataFingerprint: o.dataFingerprint }),
      ...(o.createdAt === undefined ? {} : { createdAt: o.createdAt }),
    },
    extraMetadata: { [TRAINING_METADATA_KEY]: canonicalJson(training, 'training') },
  });
}

/**
 * The metadata fields of an objective: its family, the DDPM schedule (for readers of checkpoints
 * written before specs) and the spec itself, all in canonical form.
 */
function objectiveMeta(
  objective: ObjectiveConfig,
): Pick<CheckpointMeta, 'objective' | 'schedule' | 'spec'> {
  const spec = resolveObjective(objective);
  const { schedule } = spec as { schedule?: Record<string, unknown> };
  return {
    objective: spec.name,
    ...(schedule ? { schedule: { ...schedule } } : {}),
    spec: { ...spec },
  };
}
