/**
 * The ranks of a multi-process run (DESIGN.md "Scale-out"): `mpirun -np N checkerboard ...`
 * or `srun checkerboard ...` start N copies of the tool; each finds its rank and the world
 * size from the launcher's environment, and MPI (native/engine/dist/) connects them. Without
 * a launcher the tool is one process and every function here is a no-op.
 *
 * Rank 0 alone prints progress and writes files; every rank runs the same control flow, so
 * that each collective is reached by every rank in the same order.
 */
import { nativeAddon, setThreads } from "../engine.ts";
import { UserError } from "../errors.ts";
import { launchedRanks } from "./launch_env.ts";

export { launchedRanks };

export interface World {
  rank: number;
  /** Ranks in the job (1: a single process). */
  size: number;
  /** This rank's index among the ranks on its machine, and their count. */
  localRank: number;
  localSize: number;
  /** "none", "openmpi", "pmi" or "slurm". */
  launcher: string;
  isRoot: boolean;
}

const SINGLE: World = {
  rank: 0,
  size: 1,
  localRank: 0,
  localSize: 1,
  launcher: "none",
  isRoot: true,
};

let current: World = SINGLE;

/**
 * Joins the other ranks when a launcher started several (MPI_Init), before anything touches
 * a GPU: each rank takes its local GPU. The CPU threads are shared out among the ranks of one
 * machine, unless `--threads` sets them later (for every rank, and the cut of the products with
 * them). Idempotent.
 */
export function startWorld(): World {
  if (current !== SINGLE || launchedRanks() <= 1) return current;
  const addon = nativeAddon();
  const launch = addon.distLaunch();
  const joined = addon.distInit();
  if (joined.world !== launch.world) {
    throw new UserError(
      `the ${launch.launcher} launcher started ${launch.world} ranks but ${
        joined.supported ? "MPI did not join them" : joined.whyNot
      }`,
    );
  }
  current = {
    rank: joined.rank,
    size: joined.world,
    localRank: launch.localRank,
    localSize: launch.localWorld,
    launcher: launch.launcher,
    isRoot: joined.rank === 0,
  };
  // The products are still cut for every core, as one process here cuts them: the ranks'
  // sums round as that process's do (engine.ts, setThreads), and so do their samples.
  // The engine's own count (the machine's hardware threads, as one process uses by default),
  // not the launcher's binding of this rank to a core or two.
  const cores = setThreads(0);
  setThreads(Math.max(1, Math.floor(cores / Math.max(1, current.localSize))), cores);
  return current;
}

/** This process's place in the job (a single process until startWorld joined others). */
export function world(): World {
  return current;
}

/** In place: the sum of `values` over every rank. */
export function allReduceSum(values: Float64Array): Float64Array {
  if (current.size > 1) nativeAddon().distAllReduce(values);
  return values;
}

/** Every rank's bytes, concatenated in rank order, on rank 0; null on the other ranks. */
export function gatherBytes(bytes: Uint8Array): Uint8Array | null {
  if (current.size === 1) return bytes;
  const all = nativeAddon().distGather(bytes);
  return current.isRoot ? all : null;
}

/** In place: rank 0's bytes on every rank (the same length everywhere). */
export function broadcastBytes(bytes: Uint8Array): Uint8Array {
  if (current.size > 1) nativeAddon().distBroadcast(bytes, 0);
  return bytes;
}

/** Rank 0's JSON value on every rank. */
export function broadcastJson<T>(value: T): T {
  if (current.size === 1) return value;
  const text = current.isRoot ? new TextEncoder().encode(JSON.stringify(value)) : null;
  const length = broadcastBytes(new Uint8Array(new Float64Array([text?.length ?? 0]).buffer));
  const n = new Float64Array(length.buffer)[0];
  const bytes = broadcastBytes(text ?? new Uint8Array(n));
  return JSON.parse(new TextDecoder().decode(bytes)) as T;
}

/** Waits for every rank. */
export function barrier(): void {
  if (current.size > 1) nativeAddon().distBarrier();
}

/**
 * Ends every rank of the job with `code`: a rank that failed must not leave the others
 * waiting in their next collective.
 */
export function abortWorld(code: number): void {
  if (current.size > 1) nativeAddon().distAbort(Math.min(255, Math.max(1, code)));
}

/** MPI_Finalize at the end of a run that succeeded (mpirun counts a rank without it failed). */
export function finishWorld(): void {
  if (current.size > 1) {
    nativeAddon().distFinalize();
    current = SINGLE;
  }
}

/** Figures of the gradient collectives so far: calls, bytes this rank sent, seconds. */
export function collectiveCounters(): { calls: number; bytes: number; seconds: number } {
  return current.size > 1 ? nativeAddon().distCounters() : { calls: 0, bytes: 0, seconds: 0 };
}

/**
 * Rank r's part of n items cut into the ranks' contiguous ranges as equal as possible (the
 * first n % size ranks one larger): [begin, end).
 */
export function rankRange(n: number, w: World = current): { begin: number; end: number } {
  const base = Math.floor(n / w.size), extra = n % w.size;
  const begin = w.rank * base + Math.min(w.rank, extra);
  return { begin, end: begin + base + (w.rank < extra ? 1 : 0) };
}
