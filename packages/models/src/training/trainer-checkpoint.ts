/**
 * How trainers start from and write checkpoints (checkpoint/ holds the format itself).
 *
 * A trainer's checkpoint holds every network parameter under its own name (the file an ensemble
 * loads with the network's `paramShapes`), and its metadata: kind, `architecture` =
 * `{ kind, ...config }` of the network, objective and DDPM schedule, the step count, the data
 * fingerprint, the DDPM parent of a converted expert. The `archipelago.training` metadata key
 * records the objective config (FM time sampling included), the optimizer settings and the seed.
 *
 * Adam's moments are not saved: nn's `createTrainer` always starts at Adam step 0, and moments
 * restored without their step would be bias-corrected as if fresh (a much larger first update).
 * A resumed run therefore restarts Adam from zero moments (a warm restart) while its parameters,
 * step count and noise stream continue exactly.
 */
import {
  type DdpmScheduleConfig,
  type ObjectiveConfig,
  resolveDdpmScheduleConfig,
} from '@archipelago/diffusion';
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
  if (objective?.name === 'ddpm' && meta.schedule !== undefined) {
    // Compared with defaults filled in: { kind: 'cosine' } is { kind: 'cosine', T: 1000, s: 0.008 }.
    const want = canonicalJson(resolveDdpmScheduleConfig(objective.schedule));
    let got: string;
    try {
      got = canonicalJson(resolveDdpmScheduleConfig(meta.schedule as DdpmScheduleConfig));
    } catch (cause) {
      throw new CheckpointError(
        'config_mismatch',
        `schedule: ${canonicalJson(meta.schedule)} is not a valid DDPM schedule`,
        { cause },
      );
    }
    if (want !== got) {
      throw new CheckpointError(
        'config_mismatch',
        `schedule: checkpoint has ${got}, expected ${want}`,
      );
    }
  }
  return { meta, params };
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
      ...(o.objective ? { objective: o.objective.name } : {}),
      ...(o.objective?.name === 'ddpm'
        ? { schedule: { ...resolveDdpmScheduleConfig(o.objective.schedule) } }
        : {}),
      ...(o.init?.parent ? { parent: o.init.parent } : {}),
      ...(o.dataFingerprint === undefined ? {} : { dataFingerprint: o.dataFingerprint }),
      ...(o.createdAt === undefined ? {} : { createdAt: o.createdAt }),
    },
    extraMetadata: { [TRAINING_METADATA_KEY]: canonicalJson(training, 'training') },
  });
}
