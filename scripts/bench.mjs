#!/usr/bin/env node
// Benchmarks: one JSON object per line on stdout; progress on stderr.
// Import throughput and clustering time for 10,000 and 60,000 MNIST images, with scikit-learn
// on the same features as the reference measured in the same run (when python3-sklearn exists).
import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import {
  clusterDataset,
  computeFeatures,
  encodeNpy,
  encodePng,
  loadBuiltinDataset,
  loadMnistFull,
  readImageFolder,
} from '@archipelago/data';
import { initBackend } from '@archipelago/models';

const K = 8;

// scikit-learn's KMeans with the same recipe as ours, on the same .npy features.
const SKLEARN = `
import json, sys, time
import numpy as np, sklearn
from sklearn.cluster import KMeans
x = np.load(sys.argv[1]); k = int(sys.argv[2]); fine_k = int(sys.argv[3])
t0 = time.perf_counter()
rng = np.random.default_rng(0)
sample = x[rng.choice(len(x), size=min(len(x), max(fine_k, 16384)), replace=False)]
fine = KMeans(fine_k, init='k-means++', n_init=1, max_iter=50, random_state=0).fit(sample)
fine_labels = fine.predict(x)
w = np.bincount(fine_labels, minlength=fine_k).astype(np.float64)
used = w > 0
coarse = KMeans(k, n_init=10, max_iter=300, random_state=0).fit(fine.cluster_centers_[used], sample_weight=w[used])
to_coarse = np.zeros(fine_k, dtype=int); to_coarse[used] = coarse.labels_
labels = to_coarse[fine_labels]
seconds = time.perf_counter() - t0
centres = np.stack([x[labels == c].mean(0) for c in range(k)])
inertia = float(((x - centres[labels]) ** 2).sum())
print(json.dumps({'version': sklearn.__version__, 'seconds': seconds, 'inertia': inertia}))
`;

/** A python3 that has `module` (Debian's python3-sklearn and python3-torch live in /usr/bin/python3). */
function findPython(module) {
  for (const exe of ['python3', '/usr/bin/python3']) {
    if (spawnSync(exe, ['-c', `import ${module}`], { stdio: 'ignore' }).status === 0) return exe;
  }
  return null;
}
const PYTHON = findPython('sklearn');
const backend = await initBackend();
const common = { cores: os.cpus().length, node: process.version, backend: backend.name };
const emit = (record) => process.stdout.write(`${JSON.stringify({ ...record, ...common })}\n`);
const note = (line) => process.stderr.write(`${line}\n`);
const seconds = (t0) => (performance.now() - t0) / 1000;
const round = (x, digits = 3) => Number(x.toFixed(digits));

const tmp = await mkdtemp(path.join(os.tmpdir(), 'arch-bench-'));
try {
  // 1. Import: the built-in set, and a folder of PNG files decoded and resized by sharp.
  let t0 = performance.now();
  const mnist = await loadBuiltinDataset('mnist');
  let s = seconds(t0);
  emit({
    bench: 'import.builtin',
    dataset: 'mnist',
    images: mnist.count,
    seconds: round(s),
    imagesPerSec: round(mnist.count / s, 0),
  });

  const folderImages = 3000;
  const dir = path.join(tmp, 'png');
  const size = mnist.height * mnist.width;
  for (let c = 0; c < 10; c++) await mkdir(path.join(dir, String(c)), { recursive: true });
  for (let i = 0; i < folderImages; i++) {
    const idx = (i * 3331) % mnist.count;
    const png = await encodePng(
      mnist.pixels.subarray(idx * size, (idx + 1) * size),
      mnist.height,
      mnist.width,
      1,
    );
    await writeFile(
      path.join(dir, String(mnist.labels[idx]), `${String(i).padStart(5, '0')}.png`),
      png,
    );
  }
  note(`wrote ${folderImages} PNGs`);
  for (const [resolution, channels] of [
    [28, 1],
    [64, 3],
  ]) {
    t0 = performance.now();
    const set = await readImageFolder(dir, { resolution, channels });
    s = seconds(t0);
    emit({
      bench: 'import.folder',
      format: 'png',
      resolution,
      channels,
      images: set.count,
      seconds: round(s),
      imagesPerSec: round(set.count / s, 0),
    });
  }

  // 2. Clustering: PCA features + two-level k-means (fine 1024 -> K), 10,000 and 60,000 images.
  const full = await loadMnistFull('train');
  for (const [label, set] of [
    ['mnist-10k', mnist],
    ['mnist-60k', full],
  ]) {
    t0 = performance.now();
    const f = await computeFeatures(set, { seed: 0, pcaComponents: 32 });
    const featureSeconds = seconds(t0);
    t0 = performance.now();
    const c = await clusterDataset(f.features, f.n, f.d, { k: K, seed: 0 });
    const clusterSeconds = seconds(t0);
    emit({
      bench: 'cluster',
      dataset: label,
      images: set.count,
      features: `pca-${f.d}`,
      k: K,
      fineK: c.fineK,
      featureSeconds: round(featureSeconds),
      clusterSeconds: round(clusterSeconds),
      totalSeconds: round(featureSeconds + clusterSeconds),
      inertia: round(c.inertia, 1),
      sizes: Array.from(c.sizes),
    });

    // Reference: scikit-learn, same features, same recipe (k-means++ on a 16,384 subsample to
    // the fine centroids, assignment of all points, weighted k-means of the centroids, 10 inits).
    const npy = path.join(tmp, `${label}.npy`);
    await writeFile(npy, encodeNpy(f.features, [f.n, f.d]));
    const py = PYTHON
      ? spawnSync(PYTHON, ['-c', SKLEARN, npy, String(K), String(c.fineK)], { encoding: 'utf8' })
      : null;
    if (py?.status === 0) {
      const ref = JSON.parse(py.stdout);
      emit({
        bench: 'cluster.reference',
        dataset: label,
        images: set.count,
        tool: `scikit-learn ${ref.version}`,
        k: K,
        fineK: c.fineK,
        clusterSeconds: round(ref.seconds),
        inertia: round(ref.inertia, 1),
        oursOverReference: round(clusterSeconds / ref.seconds, 2),
      });
    } else {
      note(
        `scikit-learn reference skipped: ${py ? py.stderr.trim().split('\n').at(-1) : 'no python3 with scikit-learn'} (apt-get install python3-sklearn)`,
      );
    }
  }
} finally {
  await rm(tmp, { recursive: true, force: true });
}

// 3. Training and sampling: the DiT expert per backend and thread count, and PyTorch on the same
// architecture in the same run as the reference (when python3-torch is installed).
const modelsBench = path.resolve(import.meta.dirname, '../packages/models/bench');
/** Run a bench script, pass its JSON lines through (adding the common fields), return them. */
function runLines(cmd, args, env = {}) {
  const r = spawnSync(cmd, args, {
    encoding: 'utf8',
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
    maxBuffer: 64 * 1024 * 1024,
  });
  if (r.status !== 0) {
    note(`${path.basename(args.at(-1) ?? cmd)} failed with exit ${r.status}`);
    return [];
  }
  const records = r.stdout
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l));
  for (const rec of records)
    process.stdout.write(`${JSON.stringify({ cores: common.cores, node: common.node, ...rec })}\n`);
  return records;
}
const ours = runLines(process.execPath, [path.join(modelsBench, 'train-parallel.mjs')]);
runLines(process.execPath, [path.join(modelsBench, 'sample.mjs')]);
// Sampling an ensemble per routing strategy (the demo's ensemble when out/demo exists).
runLines(process.execPath, [
  path.join(import.meta.dirname, '../apps/coordinator/bench/sampling.mjs'),
]);
// The coordinator's event loop while 8 sampling requests run: on the loop and on a compute thread.
runLines(process.execPath, [
  path.join(import.meta.dirname, '../apps/coordinator/bench/event-loop.mjs'),
]);
// The acceptance test's cost per expert against that expert's training time (docs/method.md §12).
runLines(process.execPath, [
  path.join(import.meta.dirname, '../apps/coordinator/bench/acceptance.mjs'),
]);
// The worker heartbeat path: 10,000 connected workers, 1,024 heartbeating as fast as acks return,
// against a raw `ws` JSON server over the same connections (BENCH_HB_* to change the load).
runLines(process.execPath, [
  path.join(import.meta.dirname, '../apps/coordinator/bench/heartbeats.mjs'),
]);
const TORCH = findPython('torch');
if (TORCH) {
  const torch = runLines(TORCH, [path.join(modelsBench, 'torch_reference.py')]);
  const best = (rows) => rows.reduce((a, b) => (b.ms_per_step < a.ms_per_step ? b : a));
  const mine = ours.filter((r) => r.name === 'train_step_reference');
  if (mine.length > 0 && torch.length > 0) {
    const a = best(mine);
    const b = best(torch);
    emit({
      bench: 'train_step_reference_vs_pytorch',
      name: 'train_step_reference_ratio',
      ours: { backend: a.backend, threads: a.threads, ms_per_step: a.ms_per_step },
      pytorch: { threads: b.threads, ms_per_step: b.ms_per_step, version: b.torch },
      ratio: round(a.ms_per_step / b.ms_per_step, 2),
    });
  }
} else {
  note('PyTorch reference skipped: no python3 with torch (apt-get install python3-torch)');
}
