/**
 * Judging a case's outcome. Good: a clean error (exit 1 or 2 with one `checkerboard: error:`
 * line) or success. Bad, in order of precedence: HANG (past the time limit), MEMORY (past the
 * memory limit), SIGNAL, STACK TRACE (exit 70, "internal error", a JS stack or a Deno panic),
 * BAD MESSAGE (`undefined`, `null` or `[object Object]` in the output), NaN OUTPUT (exit 0 with
 * NaN/Infinity printed or written, a constant sampled image, a non-finite input accepted, or
 * a success whose command's oracle, run after it in scripts/fuzz.ts, finds non-finite outputs),
 * SILENT ACCEPT (exit 0 without a warning on a file the mutation made invalid: a duplicate key,
 * overlapping tensors, a label past the classes, an empty class folder, ...),
 * WRITTEN ON ERROR (an error after files were written or changed), UNCLEAR ERROR (exit 1/2
 * without exactly one error line, or another exit status).
 */
import { unzipSync } from "fflate";
import { join } from "node:path";
import type { RunResult } from "./runner.ts";
import { nonFiniteTensors } from "./safetensors.ts";

export const GOOD = ["clean error", "success"] as const;
export const BAD = [
  "HANG",
  "MEMORY",
  "SIGNAL",
  "STACK TRACE",
  "BAD MESSAGE",
  "NaN OUTPUT",
  "SILENT ACCEPT",
  "WRITTEN ON ERROR",
  "UNCLEAR ERROR",
] as const;
export type Outcome = typeof GOOD[number] | typeof BAD[number];
export const OUTCOMES: Outcome[] = [...GOOD, ...BAD];

export function isBad(o: Outcome): boolean {
  return (BAD as readonly string[]).includes(o);
}

/** The words that must never reach a user; "JSON null" and "null class" are meant. */
const BAD_WORDS = /\bundefined\b|\[object Object\]|(?<!JSON )\bnull\b(?![- ]class)/;
const NON_FINITE = /\b(NaN|nan|-?Infinity|-?inf)\b/;
const STACK = /^\s+at .*(:\d+:\d+\)?|\(native\))$|internal error|error: Uncaught|panicked/m;
const ERROR_LINE = /^checkerboard: error: /;

/** Path -> content digest of every file under `dir` (folders are not files: ignored). */
export async function snapshot(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  async function walk(path: string, rel: string) {
    for await (const e of Deno.readDir(path)) {
      const p = join(path, e.name), r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory) await walk(p, r);
      else if (e.isSymlink) out.set(r, `link:${await Deno.readLink(p).catch(() => "?")}`);
      else {
        const bytes = await Deno.readFile(p).catch(() => new Uint8Array());
        const digest = await crypto.subtle.digest("SHA-1", bytes);
        out.set(
          r,
          Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join(""),
        );
      }
    }
  }
  await walk(dir, "");
  return out;
}

function changedFiles(before: Map<string, string>, after: Map<string, string>): string[] {
  const changed: string[] = [];
  for (const [path, digest] of after) {
    if (before.get(path) !== digest) changed.push(before.has(path) ? `${path} (changed)` : path);
  }
  return changed;
}

/** The images of a samples.npz that are a single colour (what NaN logits or codebooks give). */
function constantImages(bytes: Uint8Array): string | null {
  const files = unzipSync(bytes);
  const arr = files["arr_0.npy"];
  if (!arr) return "samples.npz has no arr_0";
  const view = new DataView(arr.buffer, arr.byteOffset, arr.byteLength);
  const headerLen = view.getUint16(8, true);
  const shape =
    /'shape':\s*\(([^)]*)\)/.exec(new TextDecoder().decode(arr.subarray(10, 10 + headerLen)))?.[1]
      .split(",").map((s) => s.trim()).filter((s) => s).map(Number) ?? [];
  const pixels = arr.subarray(10 + headerLen);
  const per = shape.slice(1).reduce((a, b) => a * b, 1);
  for (let i = 0; i < (shape[0] ?? 0); i++) {
    const img = pixels.subarray(i * per, (i + 1) * per);
    let constant = true;
    for (let j = 3; j < img.length && constant; j++) constant = img[j] === img[j % 3];
    if (constant) return `sampled image ${i} is one colour (${img[0]},${img[1]},${img[2]})`;
  }
  return null;
}

/**
 * Why an output written by a successful command looks like NaN went into it, or null. Text
 * lines that were in the file before the command ran (a resumed metrics.jsonl) are not its own.
 */
async function nanInOutput(
  caseDir: string,
  output: string,
  earlier: string | undefined,
): Promise<string | null> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(join(caseDir, output));
  } catch {
    return null; // not written: the command's own business
  }
  if (output.endsWith(".safetensors")) {
    const bad = nonFiniteTensors(bytes);
    return bad && bad.length > 0
      ? `${output} holds non-finite values in ${bad.slice(0, 3).join(", ")}`
      : null;
  }
  if (output.endsWith(".npz")) return constantImages(bytes);
  const old = new Set((earlier ?? "").split("\n"));
  const line = new TextDecoder().decode(bytes).split("\n").find((l) =>
    !old.has(l) && /\bnull\b|NaN|Infinity/.test(l)
  );
  if (line !== undefined) return `${output} holds null/NaN/Infinity: ${line.slice(0, 160)}`;
  return null;
}

export interface Judgement {
  outcome: Outcome;
  detail: string;
}

export interface JudgeInput {
  run: RunResult;
  caseDir: string;
  outputs: string[];
  injectsNonFinite: boolean;
  mustRefuse: boolean;
  before: Map<string, string>;
  /** The text of each output file that existed before the command ran. */
  earlierOutputs: Map<string, string>;
}

export async function judge(
  { run, caseDir, outputs, injectsNonFinite, mustRefuse, before, earlierOutputs }: JudgeInput,
): Promise<Judgement> {
  const all = `${run.stdout}\n${run.stderr}`;
  if (run.timedOut) return { outcome: "HANG", detail: `killed after ${run.ms} ms` };
  if (run.memoryKilled) {
    return { outcome: "MEMORY", detail: `killed at over ${run.peakRssMiB} MiB resident` };
  }
  if (run.signal) return { outcome: "SIGNAL", detail: `killed by ${run.signal}` };
  if (run.code === 70 || STACK.test(run.stderr)) {
    return { outcome: "STACK TRACE", detail: `exit ${run.code}` };
  }
  const badWord = BAD_WORDS.exec(all);
  if (badWord) {
    const line = all.split("\n").find((l) => BAD_WORDS.test(l)) ?? "";
    return { outcome: "BAD MESSAGE", detail: `'${badWord[0]}' in: ${line.slice(0, 200)}` };
  }
  if (run.code === 0) {
    const printed = all.split("\n").find((l) => NON_FINITE.test(l));
    if (printed !== undefined) {
      return { outcome: "NaN OUTPUT", detail: `printed: ${printed.slice(0, 200)}` };
    }
    if (injectsNonFinite) {
      return { outcome: "NaN OUTPUT", detail: "exit 0 although the mutated file holds NaN or Inf" };
    }
    for (const output of outputs) {
      const why = await nanInOutput(caseDir, output, earlierOutputs.get(output));
      if (why) return { outcome: "NaN OUTPUT", detail: why };
    }
    if (mustRefuse && !/warn/i.test(all)) {
      return { outcome: "SILENT ACCEPT", detail: "exit 0 without an error or a warning" };
    }
    return { outcome: "success", detail: "" };
  }
  if (run.code === 1 || run.code === 2) {
    const errorLines = run.stderr.split("\n").filter((l) => ERROR_LINE.test(l));
    if (errorLines.length !== 1) {
      return {
        outcome: "UNCLEAR ERROR",
        detail: `exit ${run.code} with ${errorLines.length} error lines`,
      };
    }
    const changed = changedFiles(before, await snapshot(caseDir));
    if (changed.length > 0) {
      return {
        outcome: "WRITTEN ON ERROR",
        detail: `wrote ${changed.slice(0, 4).join(", ")}${changed.length > 4 ? ", ..." : ""}`,
      };
    }
    return { outcome: "clean error", detail: errorLines[0].slice(0, 300) };
  }
  return { outcome: "UNCLEAR ERROR", detail: `exit status ${run.code}` };
}
