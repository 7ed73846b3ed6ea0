/** Shared test helpers: run the CLI as a user would, and make scratch folders. */
import { equal, match, notEqual } from "node:assert/strict";
import type { Rng } from "../src/util/rng.ts";
export const repoRoot = new URL("..", import.meta.url).pathname;

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `checkerboard ARGS` in a subprocess from the repository root. */
export async function runCli(args: string[], opts: { cwd?: string } = {}): Promise<CliResult> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${repoRoot}cli/main.ts`, ...args],
    cwd: opts.cwd ?? repoRoot,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** A fresh temporary folder, removed by the returned cleanup. */
export async function tempDir(): Promise<{ path: string; [Symbol.asyncDispose](): Promise<void> }> {
  const path = await Deno.makeTempDir({ prefix: "checkerboard-test-" });
  return {
    path,
    async [Symbol.asyncDispose]() {
      await Deno.remove(path, { recursive: true }).catch(() => {});
    },
  };
}

/**
 * Runs `checkerboard ARGS` and asserts a failure with exactly one error line matching
 * `pattern` (a device notice, printed where no GPU is present, may precede it).
 */
export async function expectOneLineError(args: string[], pattern: RegExp): Promise<CliResult> {
  const r = await runCli(args);
  notEqual(r.code, 0, args.join(" "));
  match(r.stderr, pattern, args.join(" "));
  const lines = r.stderr.trim().split("\n").filter((l) => !l.startsWith("checkerboard: notice:"));
  equal(lines.length, 1, `one line for ${args.join(" ")}: ${r.stderr}`);
  return r;
}

/** n normal values of standard deviation `scale` (Box-Muller on `rng`). */
export function randomNormals(n: number, rng: Rng, scale: number): Float32Array {
  return Float32Array.from({ length: n }, () => {
    const u = Math.max(rng.next(), 1e-12), v = rng.next();
    return scale * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  });
}
