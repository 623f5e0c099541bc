/**
 * The one module that knows which TensorFlow.js backend is loaded.
 *
 * Priority: `@tensorflow/tfjs-node-gpu` (only when a GPU is asked for), `@tensorflow/tfjs-node`,
 * the WebAssembly backend, the pure-JS CPU backend. The two native packages are optional
 * dependencies whose installers download libtensorflow; where that failed they are simply absent
 * and we fall back. Every other package uses `@tensorflow/tfjs-core` ops and never imports a
 * backend itself.
 */
import { createRequire } from 'node:module';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';

const require = createRequire(import.meta.url);

/** Backends in order of preference. */
export const BACKENDS = ['tensorflow-gpu', 'tensorflow', 'wasm', 'cpu'] as const;
export type BackendName = (typeof BACKENDS)[number];

export interface BackendOptions {
  /** A backend name, or `auto` (default) for the first that loads, in {@link BACKENDS} order. */
  backend?: BackendName | 'auto';
  /** CUDA device index; asks for `tensorflow-gpu` and fails clearly when it is not installed. */
  gpu?: number;
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
  /** Backends that were tried before this one and why they were skipped. */
  skipped: { name: BackendName; reason: string }[];
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
  'an NVIDIA driver, CUDA 11.2 and cuDNN 8.1 (the versions libtensorflow 2.9 is built against); ' +
  'or drop --gpu to train on the CPU';

let current: BackendInfo | null = null;

/** The backend selected by {@link initBackend}, or `null` before it ran. */
export function currentBackend(): BackendInfo | null {
  return current;
}

async function load(
  name: BackendName,
  gpu: number | undefined,
  threadsPerReplica: number | undefined,
): Promise<string> {
  switch (name) {
    case 'tensorflow-gpu': {
      // libtensorflow reads the visible devices and its thread counts once, when it loads.
      if (gpu !== undefined) process.env.CUDA_VISIBLE_DEVICES = String(gpu);
      Object.assign(process.env, nativeThreadEnv(threadsPerReplica));
      await import('@tensorflow/tfjs-node-gpu' as string);
      return 'tensorflow';
    }
    case 'tensorflow':
      Object.assign(process.env, nativeThreadEnv(threadsPerReplica));
      await import('@tensorflow/tfjs-node' as string);
      return 'tensorflow';
    case 'wasm': {
      const wasm = await import('@tensorflow/tfjs-backend-wasm');
      wasm.setWasmPaths(`${path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm'))}/`);
      return 'wasm';
    }
    case 'cpu':
      await import('@tensorflow/tfjs-backend-cpu');
      return 'cpu';
  }
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
  if (options.gpu !== undefined && (!Number.isInteger(options.gpu) || options.gpu < 0)) {
    throw new BackendUnavailableError(
      'tensorflow-gpu',
      `--gpu must be a device index >= 0, got ${options.gpu}`,
    );
  }
  if (options.gpu !== undefined && requested !== 'auto' && requested !== 'tensorflow-gpu') {
    throw new BackendUnavailableError(
      requested,
      `--gpu ${options.gpu} needs the tensorflow-gpu backend, not ${requested}`,
    );
  }
  const candidates: BackendName[] =
    options.gpu !== undefined
      ? ['tensorflow-gpu']
      : requested === 'auto'
        ? BACKENDS.filter((b) => b !== 'tensorflow-gpu')
        : [requested];
  if (current && candidates.includes(current.name) && current.gpu === options.gpu) return current;

  const skipped: BackendInfo['skipped'] = [];
  for (const name of candidates) {
    try {
      const tfBackend = await load(name, options.gpu, options.threadsPerReplica);
      if (!(await tf.setBackend(tfBackend)))
        throw new Error(`tf.setBackend('${tfBackend}') failed`);
      await tf.ready();
      current = {
        name,
        tfBackend,
        skipped,
        ...(options.gpu !== undefined ? { gpu: options.gpu } : {}),
      };
      return current;
    } catch (err) {
      const reason = reasonOf(err);
      if (name === 'tensorflow-gpu') {
        throw new BackendUnavailableError(
          name,
          `GPU ${options.gpu} requested but @tensorflow/tfjs-node-gpu is unavailable (${reason}): ${GPU_HELP}`,
        );
      }
      if (candidates.length === 1) {
        throw new BackendUnavailableError(
          name,
          `backend ${name} is unavailable (${reason}); valid: auto, ${BACKENDS.join(', ')}`,
        );
      }
      skipped.push({ name, reason });
    }
  }
  throw new BackendUnavailableError(
    'cpu',
    `no TensorFlow.js backend could be loaded: ${skipped.map((s) => `${s.name}: ${s.reason}`).join('; ')}`,
  );
}
