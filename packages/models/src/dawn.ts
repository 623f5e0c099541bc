/**
 * WebGPU in Node through Dawn (npm `webgpu`, Chrome's WebGPU implementation; its prebuilt
 * `dawn.node` for Linux, Windows and macOS is inside the npm tarball). Finds the adapters and
 * hands the chosen one to `@tensorflow/tfjs-backend-webgpu`. Only `backend.ts` uses this module:
 * it decides whether webgpu is used at all.
 *
 * Dawn's Node binding has no adapter enumeration, but asked for an adapter name that does not
 * exist it fails with the list of those it has ("Available adapters: * backend: 'vulkan', name:
 * '...'"); we ask each of the platform's Dawn backends in turn. The OpenGL ES backend offers only
 * WebGPU's `compatibility` feature level (enough for tfjs): it is how a machine with Mesa and no
 * Vulkan (CI here: llvmpipe, a software rasteriser) runs webgpu at all.
 */

/** A WebGPU adapter as Dawn lists it, with what a volunteer needs to see. */
export interface WebGpuAdapterInfo {
  /** Index for `--gpu N` in {@link listWebGpuAdapters}' order. */
  index: number;
  /** Dawn's backend: vulkan, metal, d3d12, opengles. */
  dawnBackend: string;
  /** The adapter's name as Dawn lists it (e.g. "NVIDIA GeForce RTX 4090", "llvmpipe (...)"). */
  name: string;
  /** The driver's description (e.g. "OpenGL version OpenGL ES 3.2 Mesa 22.3.6"). */
  description: string;
  /** A CPU rasteriser (llvmpipe, lavapipe, SwiftShader, WARP): correct, slower than wasm. */
  software: boolean;
  /** WebGPU feature level: core, or compatibility (the OpenGL ES backend). */
  featureLevel: 'core' | 'compatibility';
  /** The limits that bound a training step's tensors. */
  limits: {
    maxBufferSize: number;
    maxStorageBufferBindingSize: number;
    maxComputeWorkgroupStorageSize: number;
    maxComputeInvocationsPerWorkgroup: number;
    maxComputeWorkgroupsPerDimension: number;
  };
}

/** Why a Dawn backend offered no adapter, and what to install. */
export interface DawnBackendFailure {
  dawnBackend: string;
  reason: string;
}

type Create = (flags: string[]) => DawnGpu;
interface DawnGpu {
  requestAdapter(options?: Record<string, unknown>): Promise<DawnAdapter | null>;
  wgslLanguageFeatures?: unknown;
}
export interface DawnAdapter {
  info: { device: string; description: string; vendor: string; isFallbackAdapter?: boolean };
  limits: Record<string, number>;
  features: Set<string>;
  requestDevice(descriptor?: Record<string, unknown>): Promise<unknown>;
}

/** Dawn backends worth asking, per platform, best first. */
export function defaultDawnBackends(platform: NodeJS.Platform = process.platform): string[] {
  if (platform === 'darwin') return ['metal'];
  if (platform === 'win32') return ['d3d12', 'vulkan'];
  return ['vulkan', 'opengles'];
}

/** How to get an adapter from each Dawn backend. */
function fixFor(dawnBackend: string): string {
  if (dawnBackend !== 'opengles') return FIX[dawnBackend] ?? 'no help known for this Dawn backend';
  const platform = process.env.EGL_PLATFORM;
  return platform === 'surfaceless'
    ? FIX.opengles!
    : `${FIX.opengles}; EGL_PLATFORM is ${platform} here, which needs a display`;
}

const FIX: Record<string, string> = {
  vulkan:
    "install the GPU's driver with its Vulkan ICD and the Vulkan loader (Debian/Ubuntu: " +
    '`apt-get install libvulkan1` plus the NVIDIA driver, or `mesa-vulkan-drivers` for AMD ' +
    'and Intel; check with `vulkaninfo --summary`)',
  opengles:
    'install EGL and OpenGL ES (Debian/Ubuntu: `apt-get install libegl1 libgles2 libegl-mesa0 ' +
    'libgl1-mesa-dri`); without a display EGL needs EGL_PLATFORM=surfaceless (the default ' +
    'unless EGL_PLATFORM is set)',
  metal: 'Metal needs macOS 10.15 or later on a Mac with a Metal GPU',
  d3d12: 'update the GPU driver (Direct3D 12, Windows 10 or later)',
};

const SOFTWARE = /llvmpipe|lavapipe|softpipe|swiftshader|basic render|\bwarp\b/i;

let dawn: Promise<{ create: Create; globals: Record<string, unknown> }> | null = null;

/** Loads `dawn.node` once (it throws where the platform has no prebuilt binary). */
function loadDawn(): Promise<{ create: Create; globals: Record<string, unknown> }> {
  // Headless Linux: Mesa's EGL finds no display unless told to render without one. Dawn reads
  // this when its OpenGL ES backend first opens EGL.
  if (process.platform === 'linux' && process.env.EGL_PLATFORM === undefined)
    process.env.EGL_PLATFORM = 'surfaceless';
  dawn ??= import('webgpu' as string).then((m) => m as never);
  return dawn;
}

function requestOptions(dawnBackend: string): Record<string, unknown> {
  return dawnBackend === 'opengles'
    ? { featureLevel: 'compatibility', powerPreference: 'high-performance' }
    : { powerPreference: 'high-performance' };
}

/** Names of the adapters one Dawn backend offers (empty when none). */
async function adapterNames(create: Create, dawnBackend: string): Promise<string[]> {
  const gpu = create([`backend=${dawnBackend}`, 'adapter=\u0001archipelago-list-adapters']);
  try {
    const adapter = await gpu.requestAdapter(requestOptions(dawnBackend));
    return adapter ? [adapter.info.device] : [];
  } catch (err) {
    const message = (err as Error).message ?? '';
    const names: string[] = [];
    for (const m of message.matchAll(/\* backend: '([^']*)', name: '(.*)'/g)) {
      if (m[1] === dawnBackend) names.push(m[2]!);
    }
    if (names.length === 0) throw err;
    return names;
  }
}

async function open(
  create: Create,
  dawnBackend: string,
  name: string,
): Promise<{ gpu: DawnGpu; adapter: DawnAdapter } | null> {
  const gpu = create([`backend=${dawnBackend}`, `adapter=${name}`]);
  const adapter = await gpu.requestAdapter(requestOptions(dawnBackend));
  return adapter ? { gpu, adapter } : null;
}

function describe(
  index: number,
  dawnBackend: string,
  name: string,
  adapter: DawnAdapter,
): WebGpuAdapterInfo {
  const l = adapter.limits;
  return {
    index,
    dawnBackend,
    name,
    description: adapter.info.description,
    software:
      adapter.info.isFallbackAdapter === true ||
      SOFTWARE.test(name) ||
      SOFTWARE.test(adapter.info.description),
    featureLevel: dawnBackend === 'opengles' ? 'compatibility' : 'core',
    limits: {
      maxBufferSize: l.maxBufferSize!,
      maxStorageBufferBindingSize: l.maxStorageBufferBindingSize!,
      maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize!,
      maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup!,
      maxComputeWorkgroupsPerDimension: l.maxComputeWorkgroupsPerDimension!,
    },
  };
}

/**
 * Every adapter of the given Dawn backends, best first: hardware before software, then in the
 * backends' order (Vulkan before OpenGL ES), then as Dawn lists them. `failures` says, for each
 * backend that offered none, why and what to install.
 */
export async function listWebGpuAdapters(
  dawnBackends: string[] = defaultDawnBackends(),
): Promise<{ adapters: WebGpuAdapterInfo[]; failures: DawnBackendFailure[] }> {
  const { create } = await loadDawn();
  const found: Omit<WebGpuAdapterInfo, 'index'>[] = [];
  const failures: DawnBackendFailure[] = [];
  for (const dawnBackend of dawnBackends) {
    let names: string[];
    try {
      names = await adapterNames(create, dawnBackend);
    } catch (err) {
      failures.push({
        dawnBackend,
        reason: `${(err as Error).message.split('\n')[0]}; ${fixFor(dawnBackend)}`,
      });
      continue;
    }
    if (names.length === 0) {
      failures.push({ dawnBackend, reason: `no adapter; ${fixFor(dawnBackend)}` });
      continue;
    }
    for (const name of names) {
      const opened = await open(create, dawnBackend, name);
      if (opened) found.push(describe(0, dawnBackend, name, opened.adapter));
    }
  }
  const ordered = [...found.filter((a) => !a.software), ...found.filter((a) => a.software)];
  return { adapters: ordered.map((a, index) => ({ ...a, index })), failures };
}

/**
 * Makes the chosen adapter the one `@tensorflow/tfjs-backend-webgpu` gets: installs Dawn's
 * globals (`GPUBufferUsage`, ...) and a `navigator.gpu` (the backend checks for one) whose
 * `requestAdapter` answers with that adapter whatever the options (the backend's own would pick
 * Dawn's default adapter and, on OpenGL ES, none: it needs the compatibility feature level).
 * Returns that `requestAdapter`: each device needs a fresh adapter (Dawn "consumes" one).
 */
export async function useWebGpuAdapter(
  chosen: WebGpuAdapterInfo,
): Promise<() => Promise<DawnAdapter>> {
  const { create, globals } = await loadDawn();
  const gpu = create([`backend=${chosen.dawnBackend}`, `adapter=${chosen.name}`]);
  const requestAdapter = async () => {
    const adapter = await gpu.requestAdapter(requestOptions(chosen.dawnBackend));
    if (!adapter) throw new Error(`adapter "${chosen.name}" (${chosen.dawnBackend}) went away`);
    return adapter;
  };
  Object.assign(globalThis, globals);
  const navigatorGpu = {
    requestAdapter,
    getPreferredCanvasFormat: () => 'bgra8unorm',
    wgslLanguageFeatures: gpu.wgslLanguageFeatures,
  };
  const nav = (globalThis as { navigator?: object }).navigator;
  if (nav) Object.defineProperty(nav, 'gpu', { value: navigatorGpu, configurable: true });
  else
    Object.defineProperty(globalThis, 'navigator', {
      value: { gpu: navigatorGpu },
      configurable: true,
      writable: true,
    });
  return requestAdapter;
}
