import {
  buildNetwork,
  type CheckpointExpectation,
  type CheckpointMeta,
  loadCheckpoint,
  type NetworkSpec,
  type TrainableNetwork,
} from '@archipelago/models';
import * as tf from '@tensorflow/tfjs-core';

/**
 * The network a checkpoint describes (its `architecture` = `{ kind, ...config }`), with the
 * checkpoint's parameters. Validation of the file (names, shapes, finite values, `expect`) is
 * `loadCheckpoint`'s: it throws a CheckpointError naming the problem. The caller disposes the
 * network.
 */
export function networkFromCheckpoint(
  bytes: Uint8Array,
  expect: CheckpointExpectation,
): { meta: CheckpointMeta; net: TrainableNetwork } {
  const { meta, params } = loadCheckpoint(bytes, expect);
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
