/**
 * Work running on threads outside JavaScript (sharp's image decodes, say) that the process
 * must not exit under: exit() runs the static destructors of every loaded library while such
 * a thread may still use them, and the process then dies of SIGSEGV after its last line was
 * printed. Work is registered here as it starts; `settleInFlight()` waits for all of it.
 * The native addon counts its own calls (src/engine.ts, settleNativeWork, waits for both).
 */
const running = new Set<Promise<void>>();

/**
 * Registers `work` until it settles; returns `work` unchanged. Register only work that does not
 * itself wait for other registered work (a raw native call), so that waiting never deadlocks.
 */
export function trackInFlight<T>(work: Promise<T>): Promise<T> {
  const done: Promise<void> = work.then(
    () => void running.delete(done),
    () => void running.delete(done),
  );
  running.add(done);
  return work;
}

/** How many registered pieces of work are still running. */
export function inFlightCount(): number {
  return running.size;
}

/** Resolves once no registered work is running, including work registered meanwhile. */
export async function settleInFlight(): Promise<void> {
  while (running.size > 0) await Promise.allSettled([...running]);
}
