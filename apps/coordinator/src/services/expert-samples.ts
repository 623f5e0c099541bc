import { renderGrid } from '@archipelago/data';
import { euler, initialNoise, timeGrid, velocityExpert } from '@archipelago/diffusion';
import { specOfMeta } from '@archipelago/models';
import type { ObjectStore } from '@archipelago/storage';
import * as tf from '@tensorflow/tfjs-core';
import { asc, eq } from 'drizzle-orm';
import type { Db } from '../db/database.js';
import { checkpoints, experts } from '../db/schema/index.js';
import { networkFromCheckpoint } from '../ensembles/network-from-checkpoint.js';

export interface ExpertSampleOptions {
  /** Images per expert (one row each). */
  perExpert?: number;
  /** Euler steps on the velocity of each expert (DDPM experts through the SNR-matched conversion). */
  steps?: number;
  seed?: number;
}

/**
 * A PNG with one row of samples per expert of a run, each drawn from its last accepted
 * checkpoint on its own (no router): what each expert has learnt of its cluster. Experts without
 * a checkpoint are skipped.
 */
export async function renderExpertSamples(
  db: Db,
  store: ObjectStore,
  runId: string,
  options: ExpertSampleOptions = {},
): Promise<Buffer | null> {
  const perExpert = options.perExpert ?? 8;
  const steps = options.steps ?? 20;
  const rows: Uint8Array[] = [];
  let shape: [number, number, number] | null = null;
  for (const expert of db
    .select()
    .from(experts)
    .where(eq(experts.runId, runId))
    .orderBy(asc(experts.cluster))
    .all()) {
    if (!expert.checkpointId) continue;
    const ckpt = db
      .select()
      .from(checkpoints)
      .where(eq(checkpoints.id, expert.checkpointId))
      .get()!;
    const { meta, net } = networkFromCheckpoint(await store.getBytes(ckpt.key), { kind: 'expert' });
    const config = meta.architecture;
    try {
      const c = config as { imageSize: number; channels: number; numClasses: number };
      const model = velocityExpert({
        objective: specOfMeta(meta),
        network: (x, tau, labels) => net.apply(x, tau, labels),
        // Pixels live in [-1, 1] (see DEFAULT_INFERENCE.x0Clamp).
        conversion: { mode: 'snr', x0Clamp: [-1, 1] },
      });
      const xT = initialNoise(
        [perExpert, c.imageSize, c.imageSize, c.channels],
        (options.seed ?? 0) + 1,
      );
      const x0 = euler(model, xT, timeGrid(steps));
      // [-1, 1] -> bytes.
      const bytes = tf.tidy(() =>
        tf.cast(tf.round(tf.mul(tf.add(tf.clipByValue(x0, -1, 1), 1), 127.5)), 'int32'),
      );
      rows.push(Uint8Array.from(await bytes.data()));
      tf.dispose([xT, x0, bytes]);
      shape = [c.imageSize, c.imageSize, c.channels];
    } finally {
      net.dispose();
    }
  }
  if (!shape || rows.length === 0) return null;
  const [h, w, ch] = shape;
  const size = h * w * ch;
  const pixels = new Uint8Array(rows.length * perExpert * size);
  for (const [i, r] of rows.entries()) pixels.set(r, i * perExpert * size);
  const set = {
    height: h,
    width: w,
    channels: ch as 1 | 3,
    count: rows.length * perExpert,
    pixels,
    labels: new Int32Array(rows.length * perExpert).fill(-1),
    classNames: [],
  };
  return renderGrid(
    set,
    rows.map((_, i) => Array.from({ length: perExpert }, (_, j) => i * perExpert + j)),
    { scale: h <= 32 ? 2 : 1 },
  );
}
