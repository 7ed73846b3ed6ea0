/**
 * The typed wrapper over the native addon (native/addon): the only file that loads it.
 * Everything else talks to the engine through the functions here, which check shapes and
 * arguments and turn "you need to build it / there is no GPU" into UserErrors.
 *
 * Errors thrown by native code carry `nativeFile` and `nativeLine` (see NativeError).
 */
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { UserError } from "./errors.ts";
import { launchedRank } from "./dist/launch_env.ts";
import { inFlightCount, settleInFlight } from "./util/in_flight.ts";
import type { NativeVqNetConstructor } from "./tokenizer/vq_net.ts";
import type { NativeVqTrainerConstructor } from "./tokenizer/vq_trainer.ts";

/** The `--device` choices. */
export const DEVICES = ["auto", "cpu", "cuda"] as const;
export type DeviceChoice = (typeof DEVICES)[number];
/** A device the engine runs on. */
export type Device = "cpu" | "cuda";
/** A native backend: the devices plus `cpu-ref`, the plain-loop reference (for tests). */
export type Backend = Device | "cpu-ref";

export interface CudaDevice {
  name: string;
  memoryBytes: number;
  /** e.g. "9.0" */
  computeCapability: string;
}

export interface CudaStatus {
  /** The addon was built with the CUDA backend (nvcc was found). */
  compiled: boolean;
  /** ... and a driver and a GPU are present. */
  available: boolean;
  /** Why CUDA is not available (the CUDA runtime's own words), when it is not. */
  reason?: string;
  /** e.g. 13000 for CUDA 13.0; 0 when not compiled. */
  runtimeVersion: number;
  /** 0 when no driver is installed. */
  driverVersion: number;
  devices: CudaDevice[];
}

/** Several processes: MPI in this build, and NCCL on this machine (native/addon/dist.cc). */
export interface DistSupport {
  mpi: boolean;
  /** e.g. "Open MPI v4.1.4"; empty without MPI. */
  mpiLibrary: string;
  mpiWhyNot: string;
  nccl: { loaded: boolean; version: number; path: string; whyNot: string };
}

export interface EngineInfo {
  /** package.json's version when the addon was built. */
  addonVersion: string;
  addonPath: string;
  build: {
    type: string;
    compiler: string;
    cxxFlags: string;
    cudaCompiler: string;
    cudaFlags: string;
    cudaArchitectures: string;
  };
  blas: {
    /** "openblas", or "blocked" (a portable loop: OpenBLAS was not found at build time). */
    name: string;
    threads: number;
    /** openblas_get_config(); empty for "blocked". */
    config: string;
  };
  backends: string[];
  /** The model backends (`cpu-ref`, `cpu`, `cuda`, `cuda-fp32`), whether usable here or not. */
  modelBackends: string[];
  cuda: CudaStatus;
  dist: DistSupport;
}

/** An Error raised in native code. */
export interface NativeError extends Error {
  nativeFile: string;
  nativeLine: number;
}

export function isNativeError(err: unknown): err is NativeError {
  return err instanceof Error && typeof (err as Partial<NativeError>).nativeFile === "string";
}

/** What the addon exports (native/addon/bindings.h). Prefer the typed wrappers below. */
export interface Addon {
  buildInfo(): {
    version: string;
    buildType: string;
    compiler: string;
    cxxFlags: string;
    blas: string;
    blasConfig: string;
    blasThreads: number;
    cudaCompiled: boolean;
    cudaCompiler: string;
    cudaFlags: string;
    cudaArchitectures: string;
    backends: string[];
    modelBackends: string[];
  };
  cudaStatus(): CudaStatus;
  gemm(
    backend: string,
    transA: boolean,
    transB: boolean,
    m: number,
    n: number,
    k: number,
    alpha: number,
    a: Float32Array,
    lda: number,
    b: Float32Array,
    ldb: number,
    beta: number,
    c: Float32Array,
    ldc: number,
  ): void;
  setThreads(threads: number, splitThreads?: number): number;
  nearestCodes(
    backend: string,
    points: Float32Array,
    n: number,
    d: number,
    codebook: Float32Array,
    k: number,
    chunkRows?: number,
  ): Promise<{ index: Int32Array; dist2: Float32Array }>;
  /** Resolves once none of the addon's async calls (nearestCodes, model calls) is running. */
  whenIdle(): Promise<void>;
  releaseFreeMemory(): boolean;
  streamingMalloc(): boolean;
  linearSeconds(
    backend: string,
    rows: number,
    inFeatures: number,
    outFeatures: number,
    repeats: number,
  ): Promise<{ seconds: number[]; precision: string }>;
  /** Several ranks (native/addon/dist.cc); used through src/dist/world.ts only. */
  distLaunch(): {
    rank: number;
    world: number;
    localRank: number;
    localWorld: number;
    launcher: string;
  };
  distInit(): { rank: number; world: number; supported: boolean; whyNot: string };
  distSupport(): DistSupport;
  distAllReduce(values: Float64Array): void;
  distBroadcast(bytes: Uint8Array, root: number): void;
  distGather(bytes: Uint8Array): Uint8Array;
  distBarrier(): void;
  distAbort(code: number): never;
  distFinalize(): void;
  distCounters(): { calls: number; bytes: number; seconds: number };
  distTransport(device: Device): string;
  /** LlamaGen's VQ-16 network (native/addon/vq.cc); used through src/tokenizer/vq_net.ts only. */
  VqNet: NativeVqNetConstructor;
  /** Training that network (native/addon/vq_trainer.cc); through src/tokenizer/vq_trainer.ts. */
  VqTrainer: NativeVqTrainerConstructor;
}

/** Where the addon is: $CHECKERBOARD_ADDON, else build/Release/checkerboard.node. */
export function addonPath(): string {
  let fromEnv: string | undefined;
  try {
    fromEnv = Deno.env.get("CHECKERBOARD_ADDON");
  } catch {
    fromEnv = undefined; // no env permission: use the default
  }
  return fromEnv || fileURLToPath(new URL("../build/Release/checkerboard.node", import.meta.url));
}

let loaded: Addon | undefined;

/**
 * OpenBLAS's idle worker threads spin (sched_yield) for about 2^28 cycles after each call
 * before they sleep; between matrix products the engine runs its own threads (attention,
 * elementwise ops), which then share the cores with spinning workers. A timeout of 2^4 cycles
 * puts them to sleep at once. Read once when OpenBLAS loads, so it is set before the addon
 * loads, unless the user set it.
 */
function quietBlasThreads() {
  try {
    if (Deno.env.get("OPENBLAS_THREAD_TIMEOUT") === undefined) {
      Deno.env.set("OPENBLAS_THREAD_TIMEOUT", "4");
    }
  } catch {
    // no env permission: keep OpenBLAS's default
  }
}

/** The raw addon, loaded on first use. Throws a UserError when it is not built. */
export function nativeAddon(): Addon {
  if (loaded) return loaded;
  const path = addonPath();
  try {
    Deno.statSync(path);
  } catch {
    throw new UserError(
      `the native addon is not built (${path} is missing): run 'npm install' and then ` +
        `'scripts/build-addon.sh' (see the README's setup)`,
    );
  }
  quietBlasThreads();
  try {
    loaded = createRequire(import.meta.url)(path) as Addon;
  } catch (err) {
    throw new UserError(
      `cannot load the native addon ${path}: ${(err as Error).message.split("\n")[0]} ` +
        `(rebuild it with 'scripts/build-addon.sh')`,
    );
  }
  return loaded;
}

/**
 * Resolves once no native work runs on another thread: no async call of the addon (model
 * forward, backward, step, sample; nearestCodes) and no tracked sharp decode
 * (src/util/in_flight.ts). The process must await it before Deno.exit: exit() runs the static
 * destructors of the loaded libraries (OpenBLAS, the CUDA runtime, libvips, the C++ runtime)
 * under any thread still computing, and the process then dies of SIGSEGV. Never loads the
 * addon; cheap when nothing runs.
 */
export async function settleNativeWork(): Promise<void> {
  do {
    await settleInFlight();
    if (loaded) await loaded.whenIdle();
  } while (inFlightCount() > 0);
}

/**
 * Sets the threads of the cpu backend, OpenBLAS's included (0: one per hardware thread);
 * returns the count now in use. The matrix products are cut into pieces for `splitThreads`
 * threads (default: `threads`), and that cut fixes their rounding: a process that runs fewer
 * threads than it cuts for (a rank of several on one machine) computes the same bits as one
 * process with `splitThreads` threads.
 */
export function setThreads(threads: number, splitThreads?: number): number {
  return nativeAddon().setThreads(threads, splitThreads);
}

/**
 * Hands the free pages of the process's malloc arenas back to the system (glibc's malloc_trim);
 * a streaming job calls it between batches so that its peak memory does not creep up with its
 * length. Returns whether anything was released.
 */
export function releaseFreeMemory(): boolean {
  return nativeAddon().releaseFreeMemory();
}

/**
 * Tunes malloc for a long streaming job: large freed blocks go straight back to the system
 * instead of fragmenting its arenas (native/addon/addon.cc, streamingMalloc). For `data` only:
 * it slows the model's own work. Returns whether anything was changed.
 */
export function streamingMalloc(): boolean {
  return nativeAddon().streamingMalloc();
}

export function engineInfo(): EngineInfo {
  const addon = nativeAddon();
  const b = addon.buildInfo();
  return {
    addonVersion: b.version,
    addonPath: addonPath(),
    build: {
      type: b.buildType,
      compiler: b.compiler,
      cxxFlags: b.cxxFlags,
      cudaCompiler: b.cudaCompiler,
      cudaFlags: b.cudaFlags,
      cudaArchitectures: b.cudaArchitectures,
    },
    blas: { name: b.blas, threads: b.blasThreads, config: b.blasConfig },
    backends: b.backends,
    modelBackends: b.modelBackends,
    cuda: addon.cudaStatus(),
    dist: addon.distSupport(),
  };
}

export function cudaStatus(): CudaStatus {
  return nativeAddon().cudaStatus();
}

let noticePrinted = false;

/**
 * The device to run on. "auto" picks CUDA when a GPU is usable, else the CPU; when the addon
 * has CUDA but no GPU or driver is there, it says so once on stderr. "cuda" without a usable
 * GPU is a UserError giving the reason.
 */
export function resolveDevice(requested: DeviceChoice): Device {
  if (requested === "cpu") return "cpu";
  if (requested !== "cuda" && requested !== "auto") {
    throw new UserError(`unknown device '${requested}' (one of: ${DEVICES.join(", ")})`);
  }
  const status = cudaStatus();
  if (status.available) return "cuda";
  if (requested === "cuda") {
    throw new UserError(
      `--device cuda: CUDA is not available (${status.reason || "no reason given"})`,
    );
  }
  // Once per job: the other ranks of a multi-process run keep quiet (src/dist/world.ts).
  if (status.compiled && !noticePrinted && launchedRank() === 0) {
    noticePrinted = true;
    console.error(
      `checkerboard: notice: no CUDA device (${status.reason || "no reason given"}); using the CPU`,
    );
  }
  return "cpu";
}

function checkCount(value: number, name: string, min: number, max = 2 ** 31 - 1): void {
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new UserError(`${name} must be an integer in [${min}, ${max}], got ${shown(value)}`);
  }
}

/** A value as an error message shows it: never "undefined", "null" or "[object Object]". */
function shown(value: unknown): string {
  if (typeof value === "number") return String(value);
  if (typeof value === "string") return `the text '${value}'`;
  if (value === undefined || value === null) return "no value";
  return `a value of type ${Array.isArray(value) ? "array" : typeof value}`;
}

function checkBackend(backend: string): void {
  if (backend !== "cpu" && backend !== "cuda" && backend !== "cpu-ref") {
    throw new UserError(`unknown backend '${backend}' (one of: cpu, cuda, cpu-ref)`);
  }
}

/**
 * For each of the n points (n, d) the nearest of the k codes (k, d) in squared Euclidean
 * distance; ties go to the lowest index. Runs off the JS thread. `chunkRows` bounds how many
 * points are processed at once (default: automatic).
 */
export async function nearestCodes(
  device: Backend,
  points: Float32Array, // (n, d)
  n: number,
  d: number,
  codebook: Float32Array, // (k, d)
  k: number,
  opts: { chunkRows?: number } = {},
): Promise<{ index: Int32Array /* (n) */; dist2: Float32Array /* (n) */ }> {
  checkBackend(device);
  checkCount(n, "nearestCodes: n", 0, Number.MAX_SAFE_INTEGER);
  checkCount(d, "nearestCodes: d", 1);
  checkCount(k, "nearestCodes: k (codebook size)", 1);
  if (!(points instanceof Float32Array) || !(codebook instanceof Float32Array)) {
    throw new UserError("nearestCodes: points and codebook must be Float32Arrays");
  }
  if (points.length !== n * d) {
    throw new UserError(
      `nearestCodes: points has ${points.length} values, expected n * d = ${n} * ${d} = ${n * d}`,
    );
  }
  if (codebook.length !== k * d) {
    throw new UserError(
      `nearestCodes: codebook has ${codebook.length} values, expected k * d = ${k} * ${d} = ${
        k * d
      }`,
    );
  }
  if (opts.chunkRows !== undefined) checkCount(opts.chunkRows, "nearestCodes: chunkRows", 1);
  return await nativeAddon().nearestCodes(device, points, n, d, codebook, k, opts.chunkRows);
}

export interface GemmArgs {
  transA?: boolean;
  transB?: boolean;
  m: number;
  n: number;
  k: number;
  alpha?: number;
  a: Float32Array; // (m, k), or (k, m) if transA; row stride lda
  lda?: number;
  b: Float32Array; // (k, n), or (n, k) if transB; row stride ldb
  ldb?: number;
  beta?: number;
  c: Float32Array; // (m, n), row stride ldc; overwritten
  ldc?: number;
}

/**
 * C = alpha * op(A) * op(B) + beta * C (row-major), synchronously, into `c`. Strides default to
 * the dense ones. For tests and small products; the model's math stays inside native calls.
 */
export function gemm(device: Backend, g: GemmArgs): void {
  checkBackend(device);
  const transA = g.transA ?? false, transB = g.transB ?? false;
  checkCount(g.m, "gemm: m", 0);
  checkCount(g.n, "gemm: n", 0);
  checkCount(g.k, "gemm: k", 0);
  const lda = g.lda ?? Math.max(1, transA ? g.m : g.k);
  const ldb = g.ldb ?? Math.max(1, transB ? g.k : g.n);
  const ldc = g.ldc ?? Math.max(1, g.n);
  nativeAddon().gemm(
    device,
    transA,
    transB,
    g.m,
    g.n,
    g.k,
    g.alpha ?? 1,
    g.a,
    lda,
    g.b,
    ldb,
    g.beta ?? 0,
    g.c,
    ldc,
  );
}

/** A model backend: the devices, `cpu-ref`, and `cuda-fp32` (the cuda model with fp32 matmuls). */
export type ModelBackend = Backend | "cuda-fp32";

/**
 * Times the model's own linear, y (rows, out) = x (rows, in) . w^T + b, on a model backend, off
 * the JS thread: the kernel the model's forward runs (on `cuda` the bf16 tensor-core kernel on a
 * bf16 input and weight copy; OpenBLAS sgemm on `cpu`), on buffers allocated and filled once in
 * the backend's memory, each run synchronized, after one warm-up run. The reference of the
 * benchmarks' "fraction of the matmul rate". Returns the seconds of each of `repeats` runs.
 */
export async function linearSeconds(
  device: ModelBackend,
  shape: { rows: number; in: number; out: number },
  repeats: number,
): Promise<{ seconds: number[]; precision: string }> {
  if (device !== "cuda-fp32") checkBackend(device);
  checkCount(shape.rows, "linearSeconds: rows", 1, 2 ** 40);
  checkCount(shape.in, "linearSeconds: in", 1);
  checkCount(shape.out, "linearSeconds: out", 1);
  checkCount(repeats, "linearSeconds: repeats", 1, 1_000_000);
  return await nativeAddon().linearSeconds(device, shape.rows, shape.in, shape.out, repeats);
}
