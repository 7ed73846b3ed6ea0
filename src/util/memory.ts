/**
 * Keeping a long streaming job's memory flat (`data` over a large folder). Each batch leaves
 * garbage that only V8 can free: sharp hands every decoded image back as a Buffer whose bytes
 * live outside the JS heap, and V8 collects such buffers on its own schedule, so the resident
 * size rose and fell with the collections and the peak grew with the run's length. Measured on
 * `data` over 5,000 generated JPEGs at 64 px (patch tokenizer): peak 139 MB after 250 images,
 * 166 MB at the end. Collecting after every 2 MB of decoded pixels, then handing the freed pages
 * back (with MALLOC_ARENA_MAX=1, as the launchers set it): 133 MB from the first batches to the
 * end.
 */
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { releaseFreeMemory, streamingMalloc } from "../engine.ts";

/**
 * Readies this process for a long streaming job: malloc returns image-sized blocks to the
 * system as they are freed (engine.ts, streamingMalloc). Call once, before the first batch.
 */
export function beginStreaming(): void {
  streamingMalloc();
}

let collect: (() => void) | null | undefined;

/**
 * V8's full garbage collection, exposed at run time (the `--expose-gc` flag applies to contexts
 * made after it is set); null where the runtime refuses.
 */
function garbageCollector(): (() => void) | null {
  if (collect === undefined) {
    try {
      setFlagsFromString("--expose-gc");
      const gc = runInNewContext("gc");
      collect = typeof gc === "function" ? (gc as () => void) : null;
    } catch {
      collect = null;
    }
  }
  return collect;
}

/**
 * Frees what the last batches left behind: a full collection (tens of ms), then, once the
 * finalizers of the collected native buffers have run (they run after the current task),
 * malloc's free pages back to the system (releaseFreeMemory).
 */
export async function settleMemory(): Promise<void> {
  collectGarbage();
  await new Promise((resolve) => setTimeout(resolve, 0));
  releaseFreeMemory();
}

/** Runs V8's full collection; false where it is not available (nothing was collected). */
export function collectGarbage(): boolean {
  const gc = garbageCollector();
  gc?.();
  return gc !== null;
}
