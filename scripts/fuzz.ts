#!/usr/bin/env -S deno run -A
/**
 * The file-format fuzzer: builds a small real corpus with the tool (tokenizer, shards,
 * manifest, a tiny checkpoint and its resume state, a folder: dataset), then for each case
 * copies it, applies one mutation to one file, runs the command that reads that file and
 * judges the outcome (scripts/fuzz/classify.ts). Ends with a table of counts per format and
 * outcome, every bad case with what to run to see it again, and a JSON report.
 *
 *   deno run -A scripts/fuzz.ts [--cases N] [--seed S] [--formats LIST] [--jobs J]
 *                               [--timeout-s T] [--out FILE] [--keep]
 *   deno run -A scripts/fuzz.ts --case ID [--seed S]    # one case again; keeps its folder
 *
 * Exit status 0 when no case was bad, 1 when some were, 2 on bad usage.
 */
import { parseArgs } from "node:util";
import { dirname, join } from "node:path";
import { judge, snapshot } from "./fuzz/classify.ts";
import { buildCorpus, copyTree } from "./fuzz/corpus.ts";
import { FORMAT_NAMES, type FuzzCase, makeCase } from "./fuzz/formats.ts";
import { type CaseResult, formatBad, formatTable, makeReport, type Report } from "./fuzz/report.ts";
import { runTool } from "./fuzz/runner.ts";

export interface FuzzOptions {
  cases: number;
  seed: number;
  formats: string[];
  jobs: number;
  timeoutS: number;
  out?: string;
  keep?: boolean;
  /** Progress lines on stderr. */
  quiet?: boolean;
}

/** Case i of a run cycles through the formats: format i mod F, its case number i div F. */
export function caseIds(cases: number, formats: string[]): string[] {
  return Array.from(
    { length: cases },
    (_, i) => `${formats[i % formats.length]}-${Math.floor(i / formats.length)}`,
  );
}

function splitId(id: string): { format: string; index: number } {
  const m = /^([a-z]+)-(\d+)$/.exec(id);
  if (!m || !FORMAT_NAMES.includes(m[1])) {
    throw new UsageFailure(
      `--case: '${id}' is not a case id like model-12 (formats: ${FORMAT_NAMES.join(", ")})`,
    );
  }
  return { format: m[1], index: Number(m[2]) };
}

class UsageFailure extends Error {}

/** An error line saying the model's outputs are NaN or Inf. */
const NON_FINITE_ERROR = /error: .*(not finite|non-finite|overflow|NaN|Infinity)/;

/** The lines of stderr that say what happened: from the first error line, else the last ones. */
function stderrHead(stderr: string): string[] {
  const lines = stderr.split(/\r|\n/).filter((l) => l.trim());
  const first = lines.findIndex((l) => /error|panicked|Uncaught|Segmentation|signal/i.test(l));
  const chosen = first >= 0 ? lines.slice(first, first + 8) : lines.slice(-8);
  return chosen.map((l) => (l.length > 300 ? `${l.slice(0, 300)}...` : l));
}

async function runCase(
  corpus: string,
  workRoot: string,
  c: FuzzCase,
  opts: { timeoutS: number; seed: number; keep: boolean },
): Promise<CaseResult & { dir: string; stdout: string; stderr: string }> {
  const dir = join(workRoot, c.id);
  await copyTree(corpus, dir);
  await c.mutation.apply(dir);
  const before = await snapshot(dir);
  const earlierOutputs = new Map<string, string>();
  for (const output of c.command.outputs) {
    if (!output.endsWith(".jsonl")) continue;
    const text = await Deno.readTextFile(join(dir, output)).catch(() => undefined);
    if (text !== undefined) earlierOutputs.set(output, text);
  }
  const run = await runTool(c.command.args, { cwd: dir, timeoutMs: opts.timeoutS * 1000 });
  const j = await judge({
    run,
    caseDir: dir,
    outputs: c.command.outputs,
    injectsNonFinite: c.mutation.injectsNonFinite,
    mustRefuse: c.mutation.mustRefuse,
    before,
    earlierOutputs,
  });
  if (j.outcome === "success" && c.command.oracle) {
    const oracle = await runTool(c.command.oracle, { cwd: dir, timeoutMs: opts.timeoutS * 1000 });
    const line = oracle.stderr.split("\n").find((l) => NON_FINITE_ERROR.test(l));
    if (line !== undefined) {
      j.outcome = "NaN OUTPUT";
      j.detail = `exit 0, but 'checkerboard ${
        c.command.oracle.slice(0, 2).join(" ")
      }' on the same files says: ${line.slice(0, 200)}`;
    }
  }
  if (!opts.keep) await Deno.remove(dir, { recursive: true }).catch(() => {});
  return {
    id: c.id,
    format: c.format,
    file: c.mutation.file,
    mutation: c.mutation.what,
    command: c.command.args.join(" "),
    commandName: c.command.name,
    outcome: j.outcome,
    detail: j.detail,
    exit: run.code,
    signal: run.signal,
    ms: run.ms,
    stderrHead: stderrHead(run.stderr),
    reproduce: `deno run -A scripts/fuzz.ts --case ${c.id} --seed ${opts.seed}`,
    dir,
    stdout: run.stdout,
    stderr: run.stderr,
  };
}

function progressLine(done: number, total: number, started: number, results: CaseResult[]): string {
  const secs = (performance.now() - started) / 1000;
  const rate = done / Math.max(secs, 1e-3);
  const bad = new Map<string, number>();
  for (const r of results) {
    if (r.outcome !== "clean error" && r.outcome !== "success") {
      bad.set(r.outcome, (bad.get(r.outcome) ?? 0) + 1);
    }
  }
  const badText = bad.size ? [...bad].map(([o, n]) => `${o} ${n}`).join(", ") : "none";
  const eta = Math.round((total - done) / Math.max(rate, 1e-6));
  return `fuzz: ${done}/${total} cases, ${rate.toFixed(2)} cases/s, ETA ${Math.floor(eta / 60)}m${
    String(eta % 60).padStart(2, "0")
  }s; bad: ${badText}`;
}

/** Builds the corpus, runs the cases `jobs` at a time and returns the report. */
export async function runFuzz(opts: FuzzOptions): Promise<Report> {
  const started = performance.now();
  const root = await Deno.makeTempDir({ prefix: "checkerboard-fuzz-" });
  const log = (line: string) => opts.quiet || console.error(line);
  try {
    const corpus = join(root, "corpus");
    await Deno.mkdir(corpus);
    log(`fuzz: building the corpus in ${corpus}`);
    await buildCorpus(corpus);
    log(`fuzz: corpus built in ${((performance.now() - started) / 1000).toFixed(1)} s`);
    const ids = caseIds(opts.cases, opts.formats);
    const results: CaseResult[] = [];
    let next = 0, lastLine = performance.now();
    const loopStart = performance.now();
    const worker = async () => {
      while (next < ids.length) {
        const id = ids[next++];
        const { format, index } = splitId(id);
        const c = await makeCase(corpus, opts.seed, format, index);
        const r = await runCase(corpus, join(root, "cases"), c, {
          timeoutS: opts.timeoutS,
          seed: opts.seed,
          keep: false,
        });
        const { dir: _d, stdout: _o, stderr: _e, ...result } = r;
        results.push(result);
        if (result.outcome !== "clean error" && result.outcome !== "success") {
          log(`fuzz: ${result.outcome} ${result.id} (${result.mutation}; ${c.command.name})`);
        }
        const now = performance.now();
        if (
          results.length === ids.length || results.length % 100 === 0 || now - lastLine > 15_000
        ) {
          lastLine = now;
          log(progressLine(results.length, ids.length, loopStart, results));
        }
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, opts.jobs) }, worker));
    const report = makeReport(results, {
      seed: opts.seed,
      formats: opts.formats,
      seconds: (performance.now() - loopStart) / 1000,
    });
    if (opts.out) {
      await Deno.mkdir(dirname(opts.out) || ".", { recursive: true });
      await Deno.writeTextFile(opts.out, JSON.stringify(report, null, 2) + "\n");
    }
    return report;
  } finally {
    if (!opts.keep) await Deno.remove(root, { recursive: true }).catch(() => {});
    else log(`fuzz: kept ${root}`);
  }
}

/** `--case ID`: builds the corpus, runs that one case, prints everything, keeps its folder. */
async function runOneCase(id: string, seed: number, timeoutS: number): Promise<number> {
  const { format, index } = splitId(id);
  const root = await Deno.makeTempDir({ prefix: "checkerboard-fuzz-case-" });
  const corpus = join(root, "corpus");
  await Deno.mkdir(corpus);
  await buildCorpus(corpus);
  const c = await makeCase(corpus, seed, format, index);
  const r = await runCase(corpus, root, c, { timeoutS, seed, keep: true });
  console.log(`case      ${r.id} (seed ${seed})`);
  console.log(`file      ${r.file}`);
  console.log(`mutation  ${r.mutation}`);
  console.log(
    `command   cd ${r.dir} && deno run -A ${join(Deno.cwd(), "cli/main.ts")} ${r.command}`,
  );
  console.log(
    `outcome   ${r.outcome}${r.detail ? ` (${r.detail})` : ""}; exit ${r.exit}${
      r.signal ? `, signal ${r.signal}` : ""
    }, ${r.ms} ms`,
  );
  console.log(`--- stdout\n${r.stdout}--- stderr\n${r.stderr}---`);
  console.log(`kept      ${r.dir} (the mutated copy; the corpus is ${corpus})`);
  return r.outcome === "clean error" || r.outcome === "success" ? 0 : 1;
}

function intArg(name: string, text: string | undefined, fallback: number, min: number): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < min) {
    throw new UsageFailure(`--${name}: must be an integer >= ${min}, got '${text}'`);
  }
  return n;
}

async function main(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      cases: { type: "string" },
      seed: { type: "string" },
      formats: { type: "string" },
      jobs: { type: "string" },
      "timeout-s": { type: "string" },
      out: { type: "string" },
      case: { type: "string" },
      keep: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
  });
  if (values.help) {
    console.log(
      [
        "Usage: deno run -A scripts/fuzz.ts [--cases N] [--seed S] [--formats LIST] [--jobs J]",
        "                                   [--timeout-s T] [--out FILE] [--keep]",
        "       deno run -A scripts/fuzz.ts --case ID [--seed S]",
        "",
        `  --cases N      cases to run, cycling through the formats (default 3000)`,
        `  --seed S       seed of the mutations (default 0)`,
        `  --formats LIST comma-separated subset of ${FORMAT_NAMES.join(",")} (default all)`,
        `  --jobs J       cases run at once (default 2)`,
        `  --timeout-s T  a case running longer is a HANG (default 30)`,
        `  --out FILE     write the JSON report there (default out/fuzz-report.json)`,
        `  --keep         keep the temporary folder (corpus and cases)`,
        `  --case ID      run one case (e.g. model-12) again and keep its folder`,
      ].join("\n"),
    );
    return 0;
  }
  const seed = intArg("seed", values.seed, 0, 0);
  const timeoutS = intArg("timeout-s", values["timeout-s"], 30, 1);
  if (values.case) return await runOneCase(values.case, seed, timeoutS);
  const formats = values.formats ? values.formats.split(",").map((s) => s.trim()) : FORMAT_NAMES;
  for (const f of formats) {
    if (!FORMAT_NAMES.includes(f)) {
      throw new UsageFailure(
        `--formats: unknown format '${f}' (one of ${FORMAT_NAMES.join(", ")})`,
      );
    }
  }
  const report = await runFuzz({
    cases: intArg("cases", values.cases, 3000, 1),
    seed,
    formats,
    jobs: intArg("jobs", values.jobs, 2, 1),
    timeoutS,
    out: values.out ?? "out/fuzz-report.json",
    keep: values.keep,
  });
  if (report.bad.length > 0) console.log(formatBad(report) + "\n");
  console.log(formatTable(report));
  console.log(
    `\n${report.cases} cases in ${report.seconds} s (${report.secondsPerCase} s each), ` +
      `${report.bad.length} bad; report: ${values.out ?? "out/fuzz-report.json"}`,
  );
  return report.bad.length > 0 ? 1 : 0;
}

if (import.meta.main) {
  try {
    Deno.exit(await main(Deno.args));
  } catch (err) {
    if (
      err instanceof UsageFailure || (err as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")
    ) {
      console.error(`fuzz: ${(err as Error).message}`);
      Deno.exit(2);
    }
    throw err;
  }
}
