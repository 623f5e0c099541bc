/**
 * The one module that knows which TensorFlow.js backend is loaded.
 *
 * Priority: `@tensorflow/tfjs-node-gpu` (only when a GPU is asked for), `@tensorflow/tfjs-node`,
 * the WebAssembly backend, the pure-JS CPU backend. The two native packages are optional
 * dependencies whose installers download libtensorflow; where that failed they are simply absent
 * and we fall back. Every other package uses `@tensorflow/tfjs-core` ops and never imports a
 * backend itself.
 *
 * `webgpu` is `@tensorflow/tfjs-backend-webgpu` on Dawn (npm `webgpu`, see `dawn.ts`): any GPU
 * with a Vulkan, Metal or Direct3D 12 driver, nothing to install but the driver. It cannot read a
 * tensor synchronously in Node (`dataSync` needs `OffscreenCanvas`), so `auto` considers it, and
 * `tensorflow-gpu` before it, only for a caller that says it reads asynchronously
 * (`preferGpu`, the worker); with it the order is tensorflow-gpu (where it loads and sees a CUDA
 * GPU), webgpu (on a hardware adapter), tensorflow, wasm, cpu. Asked for by name and finding no
 * adapter at all, webgpu falls back to wasm with a warning saying why and what to install.
 *
 * Kernels whose fastest form differs by backend are chosen here too
 * ({@link batchedProductKernel}); `nn/` asks rather than testing backend names itself.
 */
import { createRequire } from 'node:module';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import {
  type DawnBackendFailure,
  defaultDawnBackends,
  listWebGpuAdapters,
  useWebGpuAdapter,
  type WebGpuAdapterInfo,
} from './dawn.js';

export type { WebGpuAdapterInfo } from './dawn.js';

const require = createRequire(import.meta.url);

/** Backends in order of preference. */
export const BACKENDS = ['tensorflow-gpu', 'webgpu', 'tensorflow', 'wasm', 'cpu'] as const;
export type BackendName = (typeof BACKENDS)[number];

/**
 * The backends that read a tensor synchronously (`dataSync`, `arraySync`): all but webgpu, which
 * cannot in Node. The choices of a command that reads that way (sampling, scoring).
 */
export const SYNC_READ_BACKENDS: readonly BackendName[] = BACKENDS.filter((b) => b !== 'webgpu');

export interface BackendOptions {
  /** A backend name, or `auto` (default) for the first that loads, in {@link BACKENDS} order. */
  backend?: BackendName | 'auto';
  /**
   * A GPU: the CUDA device index for `tensorflow-gpu`, the adapter index (in
   * {@link listWebGpuAdapters}' order, hardware first) for `webgpu`; with `auto`, tensorflow-gpu
   * then webgpu. Fails clearly, naming what was tried, when neither can use it.
   */
  gpu?: number;
  /**
   * `auto` tries the GPU backends first (tensorflow-gpu, then webgpu on a hardware adapter).
   * Only for callers that read tensors with `await data()`: webgpu has no synchronous reads in
   * Node. Default false: `auto` is tensorflow, wasm, cpu.
   */
  preferGpu?: boolean;
  /**
   * Dawn backends webgpu asks for adapters, in order (default: vulkan, opengles on Linux;
   * d3d12, vulkan on Windows; metal on macOS), or `ARCHIPELAGO_DAWN_BACKENDS` (comma-separated).
   */
  dawnBackends?: string[];
  /**
   * Threads each loaded instance of the backend may compute on (the worker's `--max-threads`
   * divided among its data-parallel replicas). libtensorflow (`tensorflow`, `tensorflow-gpu`)
   * sizes its thread pools when it loads, from {@link nativeThreadEnv}; the wasm and cpu
   * backends compute on the calling thread in Node, so one thread each already.
   */
  threadsPerReplica?: number;
}

/**
 * The environment libtensorflow reads for its thread pools (`TF_NUM_INTRAOP_THREADS`, within an
 * op; `TF_NUM_INTEROP_THREADS`, ops at once: 1, as tfjs runs one op at a time), unless the user
 * set them. Empty without a cap.
 */
export function nativeThreadEnv(
  threadsPerReplica: number | undefined,
  env: NodeJS.ProcessEnv = process.env,
): Record<string, string> {
  if (threadsPerReplica === undefined) return {};
  const out: Record<string, string> = {};
  if (!env.TF_NUM_INTRAOP_THREADS) out.TF_NUM_INTRAOP_THREADS = String(threadsPerReplica);
  if (!env.TF_NUM_INTEROP_THREADS) out.TF_NUM_INTEROP_THREADS = '1';
  return out;
}

export interface BackendInfo {
  name: BackendName;
  /** The tfjs backend id (`tensorflow`, `wasm`, `cpu`). */
  tfBackend: string;
  gpu?: number;
  /** The WebGPU adapter (webgpu only): its name, driver and limits. */
  adapter?: WebGpuAdapterInfo;
  /** Backends that were tried before this one and why they were skipped. */
  skipped: { name: BackendName; reason: string }[];
  /** Set when the backend asked for by name could not be used and another was: why, and how to fix it. */
  warning?: string;
}

/** One line for a log: the backend and, on webgpu, the adapter's name, driver and limits. */
export function describeBackend(info: BackendInfo): string {
  const a = info.adapter;
  if (!a) return info.gpu === undefined ? info.name : `${info.name} (GPU ${info.gpu})`;
  const mib = (n: number) => `${Math.round(n / 2 ** 20)} MiB`;
  return (
    `webgpu on adapter ${a.index} "${a.name}" (Dawn ${a.dawnBackend}, ${a.featureLevel}` +
    `${a.software ? ', software: slower than wasm' : ''}${a.description ? `; ${a.description}` : ''}; ` +
    `maxBufferSize ${mib(a.limits.maxBufferSize)}, maxStorageBufferBindingSize ` +
    `${mib(a.limits.maxStorageBufferBindingSize)}, workgroup storage ` +
    `${a.limits.maxComputeWorkgroupStorageSize} B, ${a.limits.maxComputeInvocationsPerWorkgroup} ` +
    `invocations per workgroup)`
  );
}

export class BackendUnavailableError extends Error {
  constructor(
    readonly backend: BackendName,
    message: string,
  ) {
    super(message);
    this.name = 'BackendUnavailableError';
  }
}

const GPU_HELP =
  'install it with `npm install @tensorflow/tfjs-node-gpu@4.22.0` on a Linux x86_64 machine with ' +
  'an NVIDIA driver, CUDA 11.2 and cuDNN 8.1 (the versions libtensorflow 2.9 is built against), ' +
  'or use --backend webgpu (any GPU with a Vulkan, Metal or Direct3D 12 driver); ' +
  'or drop --gpu to train on the CPU';

let current: BackendInfo | null = null;

/** The backend selected by {@link initBackend}, or `null` before it ran. */
export function currentBackend(): BackendInfo | null {
  return current;
}

/** What {@link load} activated: the tfjs backend id and, on webgpu, the adapter. */
interface Loaded {
  tfBackend: string;
  adapter?: WebGpuAdapterInfo;
}

async function load(
  name: BackendName,
  options: BackendOptions,
  hardwareOnly: boolean,
): Promise<Loaded> {
  const { gpu, threadsPerReplica } = options;
  switch (name) {
    case 'tensorflow-gpu': {
      // libtensorflow reads the visible devices and its thread counts once, when it loads.
      if (gpu !== undefined) process.env.CUDA_VISIBLE_DEVICES = String(gpu);
      Object.assign(process.env, nativeThreadEnv(threadsPerReplica));
      await import('@tensorflow/tfjs-node-gpu' as string);
      return { tfBackend: 'tensorflow' };
    }
    case 'webgpu':
      return { tfBackend: 'webgpu', adapter: await loadWebGpu(options, hardwareOnly) };
    case 'tensorflow':
      Object.assign(process.env, nativeThreadEnv(threadsPerReplica));
      await import('@tensorflow/tfjs-node' as string);
      return { tfBackend: 'tensorflow' };
    case 'wasm': {
      const wasm = await import('@tensorflow/tfjs-backend-wasm');
      wasm.setWasmPaths(`${path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm'))}/`);
      return { tfBackend: 'wasm' };
    }
    case 'cpu':
      await import('@tensorflow/tfjs-backend-cpu');
      return { tfBackend: 'cpu' };
  }
}

function dawnBackendsOf(options: BackendOptions): string[] {
  if (options.dawnBackends) return options.dawnBackends;
  const env = process.env.ARCHIPELAGO_DAWN_BACKENDS;
  return env ? env.split(',').map((b) => b.trim()) : defaultDawnBackends();
}

function failuresText(failures: DawnBackendFailure[]): string {
  return failures.map((f) => `${f.dawnBackend}: ${f.reason}`).join('; ');
}

/** The adapter tfjs's webgpu backend is registered on (`dawnBackend/name`). */
let registeredAdapter: string | null = null;

/**
 * Picks the adapter (`gpu`, else the best) and registers tfjs's webgpu backend on it, replacing
 * any earlier registration so that another adapter can be chosen later.
 */
async function loadWebGpu(
  options: BackendOptions,
  hardwareOnly: boolean,
): Promise<WebGpuAdapterInfo> {
  const { adapters, failures } = await listWebGpuAdapters(dawnBackendsOf(options));
  if (adapters.length === 0) throw new Error(`no WebGPU adapter (${failuresText(failures)})`);
  const listing = adapters
    .map((a) => `${a.index} "${a.name}" (${a.dawnBackend}${a.software ? ', software' : ''})`)
    .join(', ');
  const chosen = adapters[options.gpu ?? 0];
  if (!chosen) throw new Error(`no WebGPU adapter ${options.gpu}; adapters: ${listing}`);
  if (hardwareOnly && chosen.software) {
    throw new Error(
      `only a software adapter, ${listing}: slower than wasm (pass --backend webgpu to use it anyway)`,
    );
  }
  const key = `${chosen.dawnBackend}/${chosen.name}`;
  // Registered on this adapter already (switching back from another backend): keep its device.
  if (registeredAdapter === key && tf.findBackendFactory('webgpu')) return chosen;
  const requestAdapter = await useWebGpuAdapter(chosen);
  const webgpu = await import('@tensorflow/tfjs-backend-webgpu');
  if (tf.findBackendFactory('webgpu')) tf.removeBackend('webgpu');
  tf.registerBackend('webgpu', async () => {
    // What the backend's own registration asks for, on the adapter chosen here.
    const adapter = await requestAdapter();
    const l = adapter.limits;
    const device = await adapter.requestDevice({
      requiredFeatures: adapter.features.has('timestamp-query') ? ['timestamp-query'] : [],
      requiredLimits: {
        maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
        maxComputeWorkgroupsPerDimension: l.maxComputeWorkgroupsPerDimension,
        maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
        maxBufferSize: l.maxBufferSize,
        maxComputeWorkgroupSizeX: l.maxComputeWorkgroupSizeX,
        maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
      },
    });
    return new webgpu.WebGPUBackend(device as never, adapter.info as never);
  });
  registeredAdapter = key;
  return chosen;
}

function reasonOf(err: unknown): string {
  const e = err as { code?: string; message?: string };
  if (e?.code === 'ERR_MODULE_NOT_FOUND' || e?.code === 'MODULE_NOT_FOUND') return 'not installed';
  return e?.message ?? String(err);
}

/**
 * Load and activate a backend. Idempotent for the same request.
 *
 * @throws {BackendUnavailableError} when an explicitly requested backend (or a GPU) cannot load;
 *   the message names the valid options or says what to install.
 */
export async function initBackend(options: BackendOptions = {}): Promise<BackendInfo> {
  const requested = options.backend ?? 'auto';
  if (requested !== 'auto' && !BACKENDS.includes(requested)) {
    throw new BackendUnavailableError(
      requested,
      `unknown backend "${requested}"; valid: auto, ${BACKENDS.join(', ')}`,
    );
  }
  const gpu = options.gpu;
  if (gpu !== undefined && (!Number.isInteger(gpu) || gpu < 0)) {
    throw new BackendUnavailableError(
      'tensorflow-gpu',
      `--gpu must be a device index >= 0, got ${gpu}`,
    );
  }
  if (
    gpu !== undefined &&
    requested !== 'auto' &&
    requested !== 'tensorflow-gpu' &&
    requested !== 'webgpu'
  ) {
    throw new BackendUnavailableError(
      requested,
      `--gpu ${gpu} needs the tensorflow-gpu or webgpu backend, not ${requested}`,
    );
  }
  const candidates: BackendName[] =
    requested !== 'auto'
      ? // webgpu named without a device falls back to wasm where it finds no adapter.
        requested === 'webgpu' && gpu === undefined
        ? ['webgpu', 'wasm']
        : [requested]
      : gpu !== undefined
        ? ['tensorflow-gpu', 'webgpu']
        : BACKENDS.filter(
            (b) => options.preferGpu === true || (b !== 'tensorflow-gpu' && b !== 'webgpu'),
          );
  if (
    current &&
    current.gpu === gpu &&
    (requested === 'auto' ? candidates.includes(current.name) : current.name === requested)
  )
    return current;

  const skipped: BackendInfo['skipped'] = [];
  for (const name of candidates) {
    try {
      // Asked for by name, any adapter will do; auto (and --gpu alone) wants a fast one.
      const loaded = await load(name, options, requested === 'auto');
      if (name === 'tensorflow-gpu' && requested === 'auto') await assertCudaDevice();
      if (!(await tf.setBackend(loaded.tfBackend)))
        throw new Error(`tf.setBackend('${loaded.tfBackend}') failed`);
      await tf.ready();
      current = {
        name,
        tfBackend: loaded.tfBackend,
        skipped,
        ...(gpu !== undefined ? { gpu } : {}),
        ...(loaded.adapter ? { adapter: loaded.adapter } : {}),
        ...(requested === 'webgpu' && name !== 'webgpu'
          ? {
              warning: `webgpu is unavailable (${skipped[0]?.reason}): training on ${name} instead`,
            }
          : {}),
      };
      return current;
    } catch (err) {
      const reason = reasonOf(err);
      if (candidates.length === 1) {
        throw new BackendUnavailableError(
          name,
          name === 'tensorflow-gpu'
            ? `${gpu === undefined ? 'tensorflow-gpu' : `GPU ${gpu}`} requested but @tensorflow/tfjs-node-gpu is unavailable (${reason}): ${GPU_HELP}`
            : name === 'webgpu'
              ? `GPU ${gpu} requested but webgpu cannot use it (${reason})`
              : `backend ${name} is unavailable (${reason}); valid: auto, ${BACKENDS.join(', ')}`,
        );
      }
      skipped.push({ name, reason });
    }
  }
  if (gpu !== undefined) {
    throw new BackendUnavailableError(
      'tensorflow-gpu',
      `GPU ${gpu} requested but no backend can use it: tensorflow-gpu: @tensorflow/tfjs-node-gpu ` +
        `is unavailable (${skipped[0]?.reason}): ${GPU_HELP}; webgpu: ${skipped[1]?.reason}`,
    );
  }
  throw new BackendUnavailableError(
    'cpu',
    `no TensorFlow.js backend could be loaded: ${skipped.map((s) => `${s.name}: ${s.reason}`).join('; ')}`,
  );
}

/**
 * tfjs-node-gpu loads on a machine without a usable CUDA GPU and then computes on the CPU; auto
 * wants it only where it sees one.
 */
async function assertCudaDevice(): Promise<void> {
  await tf.setBackend('tensorflow');
  const backend = tf.backend() as { isUsingGpuDevice?: boolean };
  if (backend.isUsingGpuDevice !== true)
    throw new Error('loaded, but libtensorflow sees no CUDA GPU (driver, CUDA 11.2, cuDNN 8.1?)');
}

/**
 * How a batched product (attention's `q k^T` and `P v`, the grouped products of
 * `nn/fast-matmul.ts`) runs:
 * - `depthwise-conv`: as a depthwise convolution, one group per batch entry. On wasm that is
 *   XNNPACK's fast path, while a batched `matMul` takes a scalar loop (4-5x slower at attention
 *   sizes; docs/machine-notes.md "The matMul fix").
 * - `batched-matmul`: one batched `matMul`, everywhere else: on webgpu one tiled matMul shader
 *   rather than a convolution shader with a channel multiplier (likely faster; not measured, no
 *   GPU here), on tfjs-node one BatchMatMul.
 * Both give the same numbers to float32 rounding (`test/nn/batched-product-kernels.test.ts`).
 */
export type BatchedProductKernel = 'depthwise-conv' | 'batched-matmul';

let forcedKernel: BatchedProductKernel | null = null;

/** The batched-product kernel for the active backend (or the one forced). */
export function batchedProductKernel(): BatchedProductKernel {
  if (forcedKernel) return forcedKernel;
  return tf.getBackend() === 'wasm' ? 'depthwise-conv' : 'batched-matmul';
}

/** Runs batched products with `kernel` on every backend, or (`null`) with each backend's own. */
export function forceBatchedProductKernel(kernel: BatchedProductKernel | null): void {
  forcedKernel = kernel;
}
