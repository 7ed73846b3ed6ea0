/**
 * Runs `checkerboard ARGS` as a subprocess (`deno run -A cli/main.ts`) with a time limit and
 * a memory limit: a case that runs past the time is killed (a HANG), one whose resident memory
 * passes the limit is killed too (a huge length that was believed). The machine is shared, so
 * the tool runs single-threaded where it can.
 */
import { fileURLToPath as fromFileUrl } from "node:url";

export const CLI = fromFileUrl(new URL("../../cli/main.ts", import.meta.url));
export const REPO = fromFileUrl(new URL("../../", import.meta.url));

export interface RunResult {
  code: number;
  /** The signal that ended the process (not ours), e.g. SIGSEGV. */
  signal: string | null;
  timedOut: boolean;
  /** Killed by us for using more than the memory limit. */
  memoryKilled: boolean;
  peakRssMiB: number;
  stdout: string;
  stderr: string;
  ms: number;
}

export interface RunOptions {
  cwd: string;
  timeoutMs: number;
  memoryLimitMiB?: number;
}

function rssMiB(pid: number): number {
  try {
    const status = Deno.readTextFileSync(`/proc/${pid}/status`);
    const kb = /VmRSS:\s+(\d+) kB/.exec(status)?.[1];
    return kb ? Number(kb) / 1024 : 0;
  } catch {
    return 0;
  }
}

export async function runTool(args: string[], opts: RunOptions): Promise<RunResult> {
  const start = performance.now();
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", CLI, ...args],
    cwd: opts.cwd,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1", OPENBLAS_NUM_THREADS: "1" },
  }).spawn();
  let timedOut = false, memoryKilled = false, peak = 0;
  const kill = () => {
    try {
      child.kill("SIGKILL");
    } catch { /* already gone */ }
  };
  const timer = setTimeout(() => {
    timedOut = true;
    kill();
  }, opts.timeoutMs);
  const limit = opts.memoryLimitMiB ?? 4096;
  const watch = setInterval(() => {
    const rss = rssMiB(child.pid);
    peak = Math.max(peak, rss);
    if (rss > limit) {
      memoryKilled = true;
      kill();
    }
  }, 100);
  const out = await child.output();
  clearTimeout(timer);
  clearInterval(watch);
  const dec = new TextDecoder();
  return {
    code: out.code,
    signal: timedOut || memoryKilled ? null : out.signal,
    timedOut,
    memoryKilled,
    peakRssMiB: Math.round(peak),
    stdout: dec.decode(out.stdout),
    stderr: dec.decode(out.stderr),
    ms: Math.round(performance.now() - start),
  };
}
