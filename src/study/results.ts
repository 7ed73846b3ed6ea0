/**
 * The study's results, the one input of its report: every number the report shows, gathered
 * from the runs' records (collectResults) or read back from a report's results.json
 * (readResults), so that a report can be drawn again without its runs, e.g. after the figures
 * change (`checkerboard study --report-only`).
 *
 * Two files beside report.md: results.json, the same for two studies of the same settings
 * (a restarted study compares equal to a straight one), and timings.json, the seconds and
 * minutes that differ between machines and runs.
 *
 * results.json version 1 (before --report-only) held the model summaries, the entropy records
 * and the facts, but not the parts, the sample grids or the recipe fixed by that version; they
 * are rebuilt from the report folder and from what version 1 did (see settings.ts).
 */
import { join } from "node:path";
import { UserError } from "../errors.ts";
import { exists, readJsonFile } from "../util/files.ts";
import { Fields } from "../util/schema.ts";
import { isBase, type ModelSummary, stat, summarize } from "./aggregate.ts";
import {
  ENTROPY_ORDERS,
  ENTROPY_STEPS,
  EVAL_STEPS,
  PART_NAMES,
  partConfigs,
  type PartName,
  runId,
  type RunSpec,
  studyRuns,
} from "./design.ts";
import type { EntropyRecord, RunRecords } from "./run.ts";
import { readSettings, type StudySettings } from "./settings.ts";
import { ORDER_NAMES, type OrderName } from "../plan/orders.ts";

export type Config = Omit<RunSpec, "seed">;

/** What the report says about the data and the setup. */
export interface StudyFacts {
  dataset: string;
  dataDir: string;
  counts: { train: number; val: number };
  classes: number;
  imageSide: number;
  patch: number;
  codes: number;
  finalSide: number;
  settings: StudySettings;
  seeds: number;
  budgetMinutes?: number;
  device: string;
}

export interface EntropyResult {
  /** The order the model was trained and sampled in. */
  name: string;
  /** One record per seed, in seed order. */
  records: EntropyRecord[];
}

export interface SampleGrids {
  id: string;
  config: Config;
  /** Grid files relative to the report folder, one per step count. */
  grids: { stepsPerScale: number; file: string }[];
}

export interface StudyResults {
  parts: PartName[];
  facts: StudyFacts;
  /** Models trained (configurations x seeds). */
  models: number;
  /** Parameters of the base model (ratio 2, checkerboard, no mixing) or else of the first. */
  paramCount: number;
  ratios?: ModelSummary[];
  order?: ModelSummary[];
  mixing?: ModelSummary[];
  entropy?: EntropyResult[];
  samples?: SampleGrids[];
}

export interface StudyTimings {
  /** How the steps per model were chosen (from the budget, or given). */
  plannedFrom?: string;
  /** Training time summed over every model. */
  trainSeconds: number;
  /** Seconds per optimizer step, mean and standard deviation over seeds, per configuration. */
  secondsPerStep: { config: Config; mean: number; sd: number }[];
}

export const RESULTS_FORMAT = "checkerboard-study-results";
export const RESULTS_VERSION = 2;
const TIMINGS_FORMAT = "checkerboard-study-timings";

/** The file name of a run's seed-0 grid at P in the report's grids/ folder. */
export const gridFile = (id: string, P: number) => `grids/${id}-P${P}.png`;

/** The results of finished runs (`records`, in run order). */
export function collectResults(
  parts: readonly PartName[],
  records: readonly RunRecords[],
  facts: StudyFacts,
  scalesOf: (ratio: string) => number[],
): StudyResults {
  const summaries = (part: PartName) =>
    parts.includes(part)
      ? partConfigs(part).map((c) => summarize(c, records, scalesOf))
      : undefined;
  const base = records.find((r) => isBase(r.spec)) ?? records[0];
  const results: StudyResults = {
    parts: [...parts],
    facts,
    models: records.length,
    paramCount: base ? base.train.paramCount : 0,
    ratios: summaries("ratios"),
    order: summaries("order"),
    mixing: summaries("mixing"),
  };
  if (parts.includes("entropy")) {
    results.entropy = ENTROPY_ORDERS.map((order) => ({
      name: order,
      records: records
        .filter((r) => isBase({ ...r.spec, order: "checkerboard" }) && r.spec.order === order)
        .filter((r) => r.entropy)
        .sort((a, b) => a.spec.seed - b.spec.seed)
        .map((r) => r.entropy!),
    }));
  }
  if (parts.includes("samples")) {
    results.samples = records.filter((r) => r.spec.seed === 0 && r.samples).map((r) => ({
      id: r.id,
      config: configOf(r.spec),
      grids: r.samples!.byP.map((s) => ({
        stepsPerScale: s.stepsPerScale,
        file: gridFile(r.id, s.stepsPerScale),
      })),
    }));
  }
  return results;
}

/** The timings of finished runs. */
export function collectTimings(
  records: readonly RunRecords[],
  plannedFrom: string | undefined,
): StudyTimings {
  const configs: Config[] = [];
  for (const r of records) {
    const c = configOf(r.spec);
    if (!configs.some((d) => sameConfig(c, d))) configs.push(c);
  }
  return {
    plannedFrom,
    trainSeconds: records.reduce((a, r) => a + r.train.seconds, 0),
    secondsPerStep: configs.map((config) => {
      const s = stat(
        records.filter((r) => sameConfig(r.spec, config)).map((r) => r.train.secondsPerStep),
      );
      return { config, mean: s.mean, sd: s.sd };
    }),
  };
}

const configOf = (r: Config): Config => ({ ratio: r.ratio, order: r.order, ropeMix: r.ropeMix });
const sameConfig = (a: Config, b: Config) =>
  a.ratio === b.ratio && a.order === b.order && a.ropeMix === b.ropeMix;

/** results.json as written: the results, with the findings and warnings the report drew. */
export function resultsJson(results: StudyResults, derived: Record<string, unknown>): string {
  const { parts, facts, models, paramCount, ...sections } = results;
  const ordered = {
    format: RESULTS_FORMAT,
    version: RESULTS_VERSION,
    parts,
    ...derived,
    ...sections,
    facts,
    models,
    paramCount,
  };
  return JSON.stringify(ordered, null, 1) + "\n";
}

export function timingsJson(t: StudyTimings): string {
  return JSON.stringify({ format: TIMINGS_FORMAT, version: 1, ...t }, null, 1) + "\n";
}

/**
 * Reads a report's results.json (version 1 or 2). `reportDir` is the folder it lies in: a
 * version-1 file's sample grids are the files of its grids/ folder.
 */
export async function readResults(path: string, reportDir: string): Promise<StudyResults> {
  const f = Fields.of(await readJsonFile(path, "the results.json of a study report"), path);
  const version = f.has("format") ? versionOf(f) : 1;
  if (version === 1 && !f.has("facts")) {
    throw new UserError(`${path} is not the results.json of a 'checkerboard study' report`);
  }
  const facts = readFacts(f.object("facts"), version);
  const section = (key: string) =>
    f.has(key) ? f.objectList(key, (m) => readSummary(m, version)) : undefined;
  const results: StudyResults = {
    parts: [],
    facts,
    models: 0,
    paramCount: 0,
    ratios: section("ratios"),
    order: section("order"),
    mixing: section("mixing"),
    entropy: f.has("entropy") ? f.objectList("entropy", readEntropy) : undefined,
  };
  if (version === 1) {
    // Version 1 wrote a section per part that ran, and the samples part's grids.
    results.parts = PART_NAMES.filter((p) => p === "samples" || f.has(p));
    const runs = studyRuns(results.parts, facts.seeds);
    results.samples = await version1Grids(runs, reportDir);
    if (results.samples.length === 0) {
      results.parts = results.parts.filter((p) => p !== "samples");
      delete results.samples;
    }
    results.models = studyRuns(results.parts, facts.seeds).length;
    const summaries = [results.ratios, results.order, results.mixing].flat().filter((m) => !!m);
    results.paramCount = (summaries.find((m) => isBase(m!.config)) ?? summaries[0])?.paramCount ??
      0;
  } else {
    results.parts = f.list("parts", (v, at) => {
      if (!(PART_NAMES as unknown[]).includes(v)) {
        f.fail(at, `must be one of ${PART_NAMES.join(", ")}`, v);
      }
      return v as PartName;
    });
    results.models = f.int("models", { min: 0 });
    results.paramCount = f.int("paramCount", { min: 0 });
    if (f.has("samples")) {
      results.samples = f.objectList("samples", (s) => ({
        id: s.string("id", { nonEmpty: true }),
        config: readConfig(s.object("config")),
        grids: s.objectList("grids", (g) => ({
          stepsPerScale: g.int("stepsPerScale", { min: 1 }),
          file: g.string("file", { nonEmpty: true }),
        })),
      }));
    }
  }
  for (const part of results.parts) {
    const key = part as keyof StudyResults;
    if (results[key] === undefined) f.fail(part, "is missing (the parts name it)");
  }
  return results;
}

function versionOf(f: Fields): number {
  f.literal("format", RESULTS_FORMAT);
  return f.literal("version", RESULTS_VERSION);
}

/** Seed-0 grids of a version-1 report: the files of grids/ named after the runs. */
async function version1Grids(runs: readonly RunSpec[], reportDir: string): Promise<SampleGrids[]> {
  const out: SampleGrids[] = [];
  for (const run of runs.filter((r) => r.seed === 0)) {
    const id = runId(run);
    const grids = [];
    for (const P of [1, 2, 4, 8, 16]) {
      if (await exists(join(reportDir, gridFile(id, P)))) {
        grids.push({ stepsPerScale: P, file: gridFile(id, P) });
      }
    }
    if (grids.length) out.push({ id, config: configOf(run), grids });
  }
  return out;
}

function readFacts(f: Fields, version: number): StudyFacts {
  const counts = f.object("counts");
  return {
    dataset: f.string("dataset", { nonEmpty: true }),
    dataDir: f.string("dataDir"),
    counts: { train: counts.int("train", { min: 1 }), val: counts.int("val", { min: 0 }) },
    classes: f.int("classes", { min: 1 }),
    imageSide: f.int("imageSide", { min: 1 }),
    patch: f.int("patch", { min: 1 }),
    codes: f.int("codes", { min: 1 }),
    finalSide: f.int("finalSide", { min: 1 }),
    settings: readSettings(f.object("settings"), version),
    seeds: f.int("seeds", { min: 1 }),
    budgetMinutes: f.has("budgetMinutes") ? f.number("budgetMinutes", { min: 0 }) : undefined,
    device: f.string("device"),
  };
}

function readConfig(f: Fields): Config {
  return {
    ratio: f.string("ratio", { nonEmpty: true }),
    order: f.choice("order", ORDER_NAMES) as OrderName,
    ropeMix: f.string("ropeMix", { nonEmpty: true }),
  };
}

/** A Stat from its values (mean and spread are recomputed, so they always agree). */
const readStat = (f: Fields, key: string) =>
  stat(f.object(key).numberList("values", {}, { minLength: 1 }));

function readSummary(f: Fields, version: number): ModelSummary {
  const alphaRows = (a: Fields) =>
    a.list("alpha", (row, at) => {
      if (!Array.isArray(row) || row.some((v) => typeof v !== "number" || !Number.isFinite(v))) {
        a.fail(at, "must be a list of numbers", row);
      }
      return row as number[];
    });
  const seeds = f.intList("seeds", { min: 0 }, { minLength: 1 });
  // One value per seed, in seed order.
  const perSeed = (p: Fields, key: string) => {
    const s = readStat(p, key);
    if (s.values.length !== seeds.length) {
      p.fail(`${key}.values`, `must hold one value per seed (${seeds.length})`, s.values);
    }
    return s;
  };
  const points = f.objectList("points", (p) => ({
    stepsPerScale: p.int("stepsPerScale", { min: 1 }),
    totalSteps: p.int("totalSteps", { min: 1 }),
    bitsPerToken: perSeed(p, "bitsPerToken"),
    bitsPerImage: perSeed(p, "bitsPerImage"),
    finalScaleBits: perSeed(p, "finalScaleBits"),
  }));
  if (points.map((p) => p.stepsPerScale).join(",") !== EVAL_STEPS.join(",")) {
    f.fail("points", `must be one per steps per scale ${EVAL_STEPS.join(", ")}, in order`);
  }
  return {
    config: readConfig(f.object("config")),
    scales: f.intList("scales", { min: 1 }, { minLength: 1 }),
    seeds,
    points,
    finalLoss: perSeed(f, "finalLoss"),
    paramCount: f.int("paramCount", { min: 0 }),
    // Version 1 kept the mixing weights of the mixing part's models only.
    mixAlpha: version === 1 && !f.has("mixAlpha")
      ? []
      : f.objectList("mixAlpha", (a) => ({ seed: a.int("seed", { min: 0 }), alpha: alphaRows(a) })),
  };
}

function readEntropy(f: Fields): EntropyResult {
  const records = f.objectList("records", (r) => ({
    images: r.int("images", { min: 0 }),
    byP: r.objectList("byP", (b) => {
      const totalSteps = b.int("totalSteps", { min: 1 });
      const steps = b.objectList("steps", (s) => ({
        step: s.int("step", { min: 1 }),
        scale: s.int("scale", { min: 1 }),
        mean: s.number("mean", { min: 0 }),
        p25: s.number("p25", { min: 0 }),
        p75: s.number("p75", { min: 0 }),
      }));
      if (steps.length !== totalSteps) {
        b.fail("steps", `must hold one entry per step (${totalSteps})`, steps);
      }
      return { stepsPerScale: b.int("stepsPerScale", { min: 1 }), totalSteps, steps };
    }),
  }));
  // The figure and the table average the seeds step by step.
  for (const P of ENTROPY_STEPS) {
    const totals = records.map((r) => r.byP.find((b) => b.stepsPerScale === P)?.totalSteps);
    if (totals.some((t) => t === undefined || t !== totals[0])) {
      f.fail("records", `must each hold the entropy at ${P} steps per scale, of equal length`);
    }
  }
  return { name: f.string("name", { nonEmpty: true }), records };
}

/** Reads a report's timings.json; undefined when there is none (a version-1 report). */
export async function readTimings(path: string): Promise<StudyTimings | undefined> {
  if (!(await exists(path))) return undefined;
  const f = Fields.of(await readJsonFile(path, "the timings of a study report"), path);
  f.literal("format", TIMINGS_FORMAT);
  f.literal("version", 1);
  return {
    plannedFrom: f.has("plannedFrom") ? f.string("plannedFrom") : undefined,
    trainSeconds: f.number("trainSeconds", { min: 0 }),
    secondsPerStep: f.objectList("secondsPerStep", (s) => ({
      config: readConfig(s.object("config")),
      mean: s.number("mean", { min: 0 }),
      sd: s.number("sd", { min: 0 }),
    })),
  };
}
