import {
  buildNetwork,
  type CheckpointExpectation,
  type CheckpointMeta,
  loadCheckpoint,
  type NetworkSpec,
  paramShapesOf,
  type TrainableNetwork,
} from '@archipelago/models';
import * as tf from '@tensorflow/tfjs-core';

/**
 * The network a checkpoint describes (its `architecture` = `{ kind, ...config }`), with the
 * checkpoint's parameters. Validation of the file (names, shapes, finite values, `expect`) is
 * `loadCheckpoint`'s: it throws a CheckpointError naming the problem. With an expected
 * architecture, its parameter names and shapes are checked in the header, before any tensor is
 * copied. The caller disposes the network.
 */
export function networkFromCheckpoint(
  bytes: Uint8Array,
  expect: CheckpointExpectation,
): { meta: CheckpointMeta; net: TrainableNetwork } {
  const { meta, params } = loadCheckpoint(bytes, withParamShapes(expect));
  const { kind, ...config } = meta.architecture as { kind: string } & Record<string, unknown>;
  const net = buildNetwork({ kind, config } as unknown as NetworkSpec, 0);
  try {
    const missing = [...net.params.keys()].filter((name) => !(name in params));
    if (missing.length > 0) throw new Error(`the checkpoint lacks tensor ${missing[0]}`);
    for (const [name, p] of Object.entries(params)) {
      const v = net.params.get(name);
      if (!v) throw new Error(`the checkpoint has a tensor ${name} the network lacks`);
      v.assign(tf.tensor(p.data, p.shape));
    }
  } catch (err) {
    net.dispose();
    throw err;
  }
  return { meta, net };
}

/** `expect` with the parameter shapes of its architecture, when it names one. */
function withParamShapes(expect: CheckpointExpectation): CheckpointExpectation {
  if (!expect.architecture || expect.paramShapes) return expect;
  const { kind, ...config } = expect.architecture as { kind: string } & Record<string, unknown>;
  let paramShapes: Record<string, number[]>;
  try {
    paramShapes = paramShapesOf({ kind, config } as unknown as NetworkSpec);
  } catch {
    return expect; // not a network this build knows: loadCheckpoint's own checks decide
  }
  return { ...expect, paramShapes };
}
