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

/** The names in folder `dir`, sorted. */
export async function folderNames(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(dir)) names.push(e.name);
  return names.sort();
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

/**
 * Mounts a tmpfs with mount `options` (e.g. "ro,size=1m", "size=300k") at `path`, made if
 * missing: a read-only or a small file system for the tests of such failures. Returns the
 * function that unmounts it, or undefined where this process may not mount (not root).
 */
export async function mountTmpfs(
  path: string,
  options: string,
): Promise<(() => Promise<void>) | undefined> {
  await Deno.mkdir(path, { recursive: true });
  const r = await new Deno.Command("mount", {
    args: ["-t", "tmpfs", "-o", options, "tmpfs", path],
    stdout: "null",
    stderr: "null",
  }).output().catch(() => null);
  if (!r?.success) return undefined;
  return async () => {
    await new Deno.Command("umount", { args: [path], stdout: "null", stderr: "null" }).output();
  };
}
