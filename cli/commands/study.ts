/**
 * `checkerboard study`: reproduce the paper's findings at small scale (Figures 4(c), 5 and 6
 * and Table 2) on the user's data, within a time budget, resumably.
 */
import { join, resolve } from "node:path";
import type { Command, OptionValues } from "../command.ts";
import { floatOption, intOption, requiredString, stringOption } from "../options.ts";
import { deviceFrom, deviceOption } from "./common.ts";
import { tokenizerDirOf, tokenizerForManifest } from "../../src/data/manifest_tokenizer.ts";
import { UsageError, UserError } from "../../src/errors.ts";
import { type Manifest, readManifest } from "../../src/data/shards.ts";
import { loadDataset } from "../../src/data/dataset.ts";
import type { ImageSet } from "../../src/data/dataset.ts";
import { makeShards } from "../../src/data/make_shards.ts";
import { scalesForRatio } from "../../src/plan/scales.ts";
import { parsePreset, PRESET_NAMES } from "../../src/model/config.ts";
import { exists, readJsonFile, writeFileAtomic } from "../../src/util/files.ts";
import { Fields } from "../../src/util/schema.ts";
import type { Device } from "../../src/engine.ts";
import { reason } from "../../src/util/files.ts";
import type { ImageTokenizer } from "../../src/tokenizer/tokenizer.ts";
import {
  parseParts,
  PART_NAMES,
  runId,
  type RunSpec,
  runWork,
  STUDY_PARTS,
  studyRuns,
} from "../../src/study/design.ts";
import { type RunRecords, runStages } from "../../src/study/run.ts";
import {
  defaultSettings,
  readSettings,
  SETTING_OPTIONS,
  settingsJson,
  showSetting,
  STUDY_DEFAULTS,
  type StudySettings,
} from "../../src/study/settings.ts";
import {
  collectResults,
  collectTimings,
  readResults,
  readTimings,
} from "../../src/study/results.ts";
import {
  estimateRun,
  itersForBudget,
  shapeKey,
  type ShapeTiming,
  timeShape,
} from "../../src/study/budget.ts";
import { copyGrids, writeReport } from "../../src/study/report.ts";
import { SAMPLE_DEFAULTS, TRAIN_DEFAULTS } from "../../src/train/defaults.ts";

/** Fewer steps than this per model would make the comparisons noise. */
const MIN_ITERS = 10;
const STUDY_FILE = "study.json";
const STUDY_FORMAT = "checkerboard-study";
/** 2: settings name the model `model` and hold the training recipe and the guidance start. */
const STUDY_VERSION = 2;

interface StudyFile {
  data: string;
  seeds: number;
  budgetMinutes?: number;
  settings: StudySettings;
  /** How the iterations were chosen, for the report. */
  plannedFrom: string;
  device: string;
}

/**
 * The settings the command line asks for, each option not given at its default (iters 0: the
 * budget chooses it), and the settings that were given explicitly.
 */
function requestedSettings(values: OptionValues): {
  settings: StudySettings;
  given: (keyof StudySettings)[];
} {
  const d = defaultSettings();
  const model = stringOption(values, "model");
  const settings: StudySettings = {
    ...d,
    model: model === undefined ? d.model : parsePreset(model),
    depth: intOption(values, "depth", { min: 1 }),
    width: intOption(values, "width", { min: 1 }),
    heads: intOption(values, "heads", { min: 1 }),
    iters: intOption(values, "iters", { min: 1 }) ?? 0,
    batch: intOption(values, "batch", { min: 1 }) ?? d.batch,
    lr: floatOption(values, "lr", { min: 0 }) ?? d.lr,
    warmup: intOption(values, "warmup", { min: 0 }) ?? d.warmup,
    evalImages: intOption(values, "eval-images", { min: 1 }) ?? d.evalImages,
    perClass: intOption(values, "per-class", { min: 1 }) ?? d.perClass,
    entropyImages: intOption(values, "entropy-images", { min: 1 }) ?? d.entropyImages,
    guidance: floatOption(values, "cfg", { min: 0 }) ?? d.guidance,
    guidanceStart: intOption(values, "cfg-start", { min: 0 }) ?? d.guidanceStart,
  };
  const given = (Object.keys(SETTING_OPTIONS) as (keyof StudySettings)[]).filter((key) =>
    values[SETTING_OPTIONS[key]!] !== undefined
  );
  return { settings, given };
}

/** Reads OUT/study.json (version 1 or 2), checking every field. */
async function readStudyFile(path: string): Promise<StudyFile> {
  const json = await readJsonFile(path, "a study file");
  if (json?.format !== STUDY_FORMAT) {
    throw new UserError(
      `${path} is not a study file of 'checkerboard study' (give another --out)`,
    );
  }
  const f = Fields.of(json, path);
  const version = f.int("version", { min: 1, max: STUDY_VERSION });
  return {
    data: f.string("data", { nonEmpty: true }),
    seeds: f.int("seeds", { min: 2 }),
    budgetMinutes: f.has("budgetMinutes") ? f.number("budgetMinutes", { min: 0 }) : undefined,
    settings: readSettings(f.object("settings"), version),
    plannedFrom: f.string("plannedFrom"),
    device: f.string("device", { nonEmpty: true }),
  };
}

/**
 * An existing study.json must agree with every setting this command line gives (a setting
 * left out continues at the study's value, whatever today's default).
 */
function checkResumable(
  stored: StudyFile,
  asked: { settings: StudySettings; given: (keyof StudySettings)[] },
  seeds: number | undefined,
  data: string,
  path: string,
) {
  const clash: string[] = [];
  if (stored.data !== data) clash.push(`--data ${data} (study: ${stored.data})`);
  if (seeds !== undefined && stored.seeds !== seeds) {
    clash.push(`--seeds ${seeds} (study: ${stored.seeds})`);
  }
  for (const key of asked.given) {
    const given = asked.settings[key], was = stored.settings[key];
    if (showSetting(given) !== showSetting(was)) {
      clash.push(
        `--${SETTING_OPTIONS[key]} ${showSetting(given)} (study: ${
          was === undefined ? "not given" : showSetting(was)
        })`,
      );
    }
  }
  if (clash.length) {
    throw new UserError(
      `${path} was started with other settings: ${clash.join(", ")}; run with the same ` +
        `options to continue it, or give another --out`,
    );
  }
}

/** Shard folders per ratio: the given folder where its scales match, else OUT/data/ratio-R. */
class RatioData {
  private images?: ImageSet;
  private readonly made = new Map<string, { dir: string; manifest: Manifest }>();

  constructor(
    private readonly given: { dir: string; manifest: Manifest },
    private readonly tokenizer: ImageTokenizer,
    private readonly outDir: string,
    private readonly device: Device,
  ) {}

  get finalSide(): number {
    const s = this.given.manifest.scales;
    return s[s.length - 1];
  }

  scales(ratio: string): number[] {
    return scalesForRatio(ratio, this.finalSide);
  }

  async get(ratio: string): Promise<{ dir: string; manifest: Manifest }> {
    const scales = this.scales(ratio);
    if (scales.join(",") === this.given.manifest.scales.join(",")) return this.given;
    const cached = this.made.get(ratio);
    if (cached) return cached;
    const dir = join(this.outDir, "data", `ratio-${ratio}`);
    if (!(await exists(join(dir, "manifest.json")))) {
      const m = this.given.manifest;
      console.error(
        `study: encoding ${m.dataset} at scales ${scales.join(",")} (ratio ${ratio}) into ${dir}`,
      );
      this.images ??= await loadDataset(m.dataset, { side: m.imageSide });
      await makeShards(this.images, dir, {
        tokenizer: this.tokenizer,
        tokenizerDir: tokenizerDirOf(m, this.given.dir),
        ratio,
        scales,
        shardSize: 4096,
        device: this.device,
      });
    }
    const manifest = await readManifest(dir);
    if (manifest.tokenizer.hash !== this.tokenizer.hash) {
      throw new UserError(
        `${
          join(dir, "manifest.json")
        } was encoded with another tokenizer (${manifest.tokenizer.hash}); ` +
          `remove ${dir} to encode it again`,
      );
    }
    const entry = { dir, manifest };
    this.made.set(ratio, entry);
    return entry;
  }
}

function minutes(seconds: number) {
  return `${(seconds / 60).toFixed(1)} minutes`;
}

export const command: Command = {
  name: "study",
  summary: "reproduce the paper's findings (Figures 4c, 5, 6, Table 2) on your data",
  usage: "study --data DIR --out DIR [--budget-minutes M] [--model tiny] [--parts LIST] " +
    "[options], or study --report-only --out DIR",
  options: {
    data: {
      type: "string",
      valueName: "DIR",
      description:
        "token shard folder from 'checkerboard data'; other ratios are encoded from the same dataset and tokenizer (required)",
    },
    out: {
      type: "string",
      valueName: "DIR",
      description:
        "study folder: study.json, data/, runs/, report/ (required; run again to continue)",
    },
    "report-only": {
      type: "boolean",
      description:
        "draw the report again from its results.json (in --out, or --out/report), training nothing",
    },
    "budget-minutes": {
      type: "string",
      valueName: "M",
      description:
        `wall time the whole study should take; sets the steps per model (default: ${STUDY_DEFAULTS.budgetMinutes})`,
    },
    iters: {
      type: "string",
      valueName: "N",
      description: "optimizer steps per model (instead of the budget)",
    },
    parts: {
      type: "string",
      valueName: "LIST",
      description: `parts to run: all, or some of ${PART_NAMES.join(", ")} (default: all)`,
    },
    model: {
      type: "string",
      valueName: PRESET_NAMES.join("|"),
      description: `model preset of every run, as in 'train' (default: ${TRAIN_DEFAULTS.model})`,
    },
    depth: { type: "string", valueName: "N", description: "layers (overrides the preset)" },
    width: { type: "string", valueName: "N", description: "model width (overrides the preset)" },
    heads: {
      type: "string",
      valueName: "N",
      description: "attention heads (overrides the preset)",
    },
    seeds: {
      type: "string",
      valueName: "N",
      description: `seeds per model, at least 2 (default: ${STUDY_DEFAULTS.seeds})`,
    },
    batch: {
      type: "string",
      valueName: "N",
      description: `images per step (default: ${TRAIN_DEFAULTS.batch})`,
    },
    lr: {
      type: "string",
      valueName: "LR",
      description: `peak learning rate (default: ${TRAIN_DEFAULTS.lr}, as in 'train')`,
    },
    warmup: {
      type: "string",
      valueName: "N",
      description: `warmup steps (default: ${TRAIN_DEFAULTS.warmup}, as in 'train')`,
    },
    "eval-images": {
      type: "string",
      valueName: "N",
      description:
        `validation images scored per step count (default: ${STUDY_DEFAULTS.evalImages})`,
    },
    "per-class": {
      type: "string",
      valueName: "N",
      description: `samples per class in each grid (default: ${STUDY_DEFAULTS.perClass})`,
    },
    "entropy-images": {
      type: "string",
      valueName: "N",
      description: `samples per entropy measurement (default: ${STUDY_DEFAULTS.entropyImages})`,
    },
    cfg: {
      type: "string",
      valueName: "W",
      description: `CFG weight of samples and entropy (default: ${SAMPLE_DEFAULTS.cfg})`,
    },
    "cfg-start": {
      type: "string",
      valueName: "N",
      description:
        `guidance is off for the first N steps, as in 'sample' (default: ${SAMPLE_DEFAULTS.cfgStart})`,
    },
    device: deviceOption,
  },
  details: [
    "Parts (each can run alone with --parts; they share models):",
    ...PART_NAMES.map((p) => `  ${p.padEnd(8)} ${STUDY_PARTS[p]}`),
    "",
    "Every model is trained with the same number of optimizer steps and evaluated on the same",
    "validation images; the training recipe is train's (src/train/defaults.ts) unless --lr or",
    "--warmup say otherwise. With a budget, the study times a few steps of every model shape",
    "first and picks the steps per model so that training, evaluation and sampling fill the",
    "budget; the choice is stored in OUT/study.json. Run the same command again after Ctrl-C,",
    "kill or a crash: finished runs and stages are reused, and the report's numbers come out",
    "the same. The report (OUT/report/report.md, its figures, sample grids, results.json and",
    "timings.json) is written at the end; copy the folder as it is to publish it, and draw it",
    "again with --report-only (e.g. after an update of the figures).",
    "",
    "Example: checkerboard study --data out/mnist-r2 --out out/study-mnist",
  ].join("\n"),
  async run(values) {
    if (values["report-only"]) return await reportOnly(values);
    const started = performance.now();
    const dataDir = resolve(requiredString(values, "data"));
    const outDir = requiredString(values, "out");
    const parts = parseParts(stringOption(values, "parts") ?? "all");
    const seedsGiven = intOption(values, "seeds", { min: 2 });
    const asked = requestedSettings(values);
    const itersGiven = asked.settings.iters > 0;
    const budgetGiven = floatOption(values, "budget-minutes", { min: 0 });
    if (budgetGiven !== undefined && itersGiven) {
      throw new UsageError("give --budget-minutes or --iters, not both");
    }
    if (budgetGiven !== undefined && !(budgetGiven > 0)) {
      throw new UsageError("--budget-minutes must be greater than 0");
    }
    const budgetMinutes = itersGiven ? undefined : (budgetGiven ?? STUDY_DEFAULTS.budgetMinutes);

    const manifest = await readManifest(dataDir);
    const tokenizer = await tokenizerForManifest(manifest, dataDir);
    const device = await deviceFrom(values);
    await Deno.mkdir(outDir, { recursive: true }).catch((err) => {
      throw new UserError(`cannot create the study folder ${outDir}: ${reason(err)}`);
    });
    const studyPath = join(outDir, STUDY_FILE);
    const data = new RatioData({ dir: dataDir, manifest }, tokenizer, outDir, device);
    const runsDir = join(outDir, "runs");

    // An existing study decides the seeds; check it before any work.
    let study: StudyFile | undefined;
    if (await exists(studyPath)) {
      study = await readStudyFile(studyPath);
      checkResumable(study, asked, seedsGiven, dataDir, studyPath);
    }
    const seeds = study?.seeds ?? seedsGiven ?? STUDY_DEFAULTS.seeds;
    const runs = studyRuns(parts, seeds);

    // Data for every ratio first: the timings need it, and it counts against the budget.
    for (const ratio of new Set(runs.map((r) => r.ratio))) await data.get(ratio);

    if (study) {
      console.error(`study: continuing ${outDir} (${study.settings.iters} steps per model)`);
    } else {
      let settings: StudySettings, plannedFrom: string;
      if (itersGiven) {
        settings = asked.settings;
        plannedFrom = `${settings.iters} steps per model given on the command line.`;
      } else {
        ({ settings, plannedFrom } = await planIters(
          asked.settings,
          runs,
          parts,
          data,
          tokenizer,
          device,
          budgetMinutes!,
          started,
        ));
      }
      study = { data: dataDir, seeds, budgetMinutes, settings, plannedFrom, device };
      const file = {
        format: STUDY_FORMAT,
        version: STUDY_VERSION,
        ...study,
        settings: settingsJson(settings),
      };
      await writeFileAtomic(studyPath, JSON.stringify(file, null, 1) + "\n");
      console.error(`study: ${plannedFrom}`);
    }

    const records: RunRecords[] = [];
    // The ETA counts only runs this invocation worked on (reused ones take no time).
    const loopStart = performance.now();
    let worked = 0;
    for (const [i, run] of runs.entries()) {
      const d = await data.get(run.ratio);
      const log = (line: string) => console.error(line);
      const eta = worked > 0
        ? `, about ${
          minutes(((performance.now() - loopStart) / 1000 / worked) * (runs.length - i))
        } left`
        : "";
      log(`study: [${i + 1}/${runs.length}] ${runId(run)}${eta}`);
      const t0 = performance.now();
      records.push(
        await runStages({
          run,
          work: runWork(run, parts),
          settings: study.settings,
          data: d,
          tokenizer,
          device,
          runsDir,
          quiet: false,
          log,
        }),
      );
      if (performance.now() - t0 > 1000) worked++;
    }
    const reportDir = join(outDir, "report");
    const results = collectResults(parts, records, {
      dataset: manifest.dataset,
      dataDir: values.data as string,
      counts: manifest.counts,
      classes: manifest.classes.length,
      imageSide: manifest.imageSide,
      patch: manifest.patch,
      codes: manifest.codes,
      finalSide: data.finalSide,
      settings: study.settings,
      seeds,
      budgetMinutes: study.budgetMinutes,
      device: study.device,
    }, (ratio) => data.scales(ratio));
    await copyGrids(reportDir, runsDir, records);
    const path = await writeReport(
      reportDir,
      results,
      collectTimings(records, study.plannedFrom),
    );
    console.log(
      `study: ${runs.length} models; this invocation took ${
        minutes((performance.now() - started) / 1000)
      }`,
    );
    console.log(`wrote ${path}`);
  },
};

/** `study --report-only --out DIR`: the report drawn again from DIR's results.json. */
async function reportOnly(values: OptionValues): Promise<void> {
  // Options at their parser default (--device) were not given.
  const extra = Object.keys(values).filter((k) =>
    values[k] !== undefined && values[k] !== command.options[k]?.default &&
    !["report-only", "out", "help"].includes(k)
  );
  if (extra.length) {
    throw new UsageError(
      `--report-only takes only --out (the study or report folder), not --${extra[0]}`,
    );
  }
  const outDir = requiredString(values, "out");
  const candidates = [outDir, join(outDir, "report")];
  let reportDir: string | undefined;
  for (const dir of candidates) {
    if (await exists(join(dir, "results.json"))) {
      reportDir = dir;
      break;
    }
  }
  if (!reportDir) {
    throw new UserError(
      `no results.json in ${outDir} or ${join(outDir, "report")}: --report-only needs a ` +
        `finished study's folder or its report folder`,
    );
  }
  const results = await readResults(join(reportDir, "results.json"), reportDir);
  const timings = await readTimings(join(reportDir, "timings.json"));
  const path = await writeReport(reportDir, results, timings);
  console.log(`wrote ${path}`);
}

/** Times every model shape and picks the steps per model that fill the budget. */
async function planIters(
  asked: StudySettings,
  runs: readonly RunSpec[],
  parts: ReturnType<typeof parseParts>,
  data: RatioData,
  tokenizer: ImageTokenizer,
  device: Device,
  budgetMinutes: number,
  started: number,
): Promise<{ settings: StudySettings; plannedFrom: string }> {
  const timings = new Map<string, ShapeTiming>();
  for (const run of runs) {
    const key = shapeKey(run);
    if (timings.has(key)) continue;
    console.error(`study: timing ${key}`);
    timings.set(key, await timeShape(run, await data.get(run.ratio), tokenizer, asked, device));
  }
  const estimates = await Promise.all(runs.map(async (run) => {
    const d = await data.get(run.ratio);
    return estimateRun(
      timings.get(shapeKey(run))!,
      d.manifest.scales,
      runWork(run, parts),
      asked,
      d.manifest.classes.length,
      d.manifest.counts.val,
    );
  }));
  const elapsed = (performance.now() - started) / 1000;
  const left = budgetMinutes * 60 - elapsed;
  const iters = itersForBudget(left, estimates);
  const measuring = estimates.reduce((a, e) => a + e.measure, 0);
  if (iters < MIN_ITERS) {
    const perStep = estimates.reduce((a, e) => a + e.trainStep, 0);
    const needed = (elapsed + (measuring + MIN_ITERS * perStep) / 0.9) / 60;
    throw new UserError(
      `a budget of ${budgetMinutes} minutes leaves ${iters} steps per model for ${runs.length} ` +
        `models (at least ${MIN_ITERS} are needed; measuring alone takes about ${
          minutes(measuring)
        }): ` +
        `give --budget-minutes ${Math.ceil(needed)} or more, fewer --parts, or --iters`,
    );
  }
  const settings = { ...asked, iters };
  const perStep = estimates.reduce((a, e) => a + e.trainStep, 0);
  return {
    settings,
    plannedFrom: `${iters} steps per model for ${runs.length} models, planned from the measured ` +
      `${perStep.toFixed(2)} seconds per step over all models and about ${minutes(measuring)} ` +
      `of evaluation and sampling (data and timing took ${minutes(elapsed)}).`,
  };
}
