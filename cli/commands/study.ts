/**
 * `checkerboard study`: reproduce the paper's findings at small scale (Figures 4(c), 5 and 6
 * and Table 2) on the user's data, within a time budget, resumably.
 */
import { join, resolve } from "node:path";
import type { Command, OptionValues } from "../command.ts";
import { floatOption, intOption, requiredString, stringOption } from "../options.ts";
import { deviceFrom, deviceOption } from "./common.ts";
import { tokenizerForManifest } from "./train.ts";
import { UsageError, UserError } from "../../src/errors.ts";
import { type Manifest, readManifest } from "../../src/data/shards.ts";
import { loadDataset } from "../../src/data/dataset.ts";
import type { ImageSet } from "../../src/data/dataset.ts";
import { makeShards } from "../../src/data/make_shards.ts";
import { scalesForRatio } from "../../src/plan/scales.ts";
import { parsePreset, PRESET_NAMES } from "../../src/model/config.ts";
import { exists, readJsonFile, writeFileAtomic } from "../../src/util/files.ts";
import type { Device } from "../../src/engine.ts";
import { reason } from "../../src/util/files.ts";
import type { PatchTokenizer } from "../../src/tokenizer/patch_vq.ts";
import {
  parseParts,
  PART_NAMES,
  runId,
  type RunSpec,
  runWork,
  STUDY_PARTS,
  studyRuns,
} from "../../src/study/design.ts";
import { type RunRecords, runStages, type StudySettings } from "../../src/study/run.ts";
import {
  estimateRun,
  itersForBudget,
  shapeKey,
  type ShapeTiming,
  timeShape,
} from "../../src/study/budget.ts";
import { writeReport } from "../../src/study/report.ts";

const DEFAULTS = {
  budgetMinutes: 120,
  preset: "tiny",
  seeds: 2,
  batch: 32,
  lr: 1e-3,
  evalImages: 500,
  perClass: 8,
  entropyImages: 256,
  cfg: 2,
};
/** Fewer steps than this per model would make the comparisons noise. */
const MIN_ITERS = 10;
const STUDY_FILE = "study.json";

interface StudyFile {
  format: "checkerboard-study";
  version: 1;
  data: string;
  seeds: number;
  budgetMinutes?: number;
  settings: StudySettings;
  /** How the iterations were chosen, for the report. */
  plannedFrom: string;
  device: string;
}

/** The settings the command line asks for; iters is 0 when the budget is to choose it. */
function requestedSettings(values: OptionValues): StudySettings {
  const iters = intOption(values, "iters", { min: 1 }) ?? 0;
  return {
    preset: parsePreset(stringOption(values, "preset") ?? DEFAULTS.preset),
    depth: intOption(values, "depth", { min: 1 }),
    width: intOption(values, "width", { min: 1 }),
    heads: intOption(values, "heads", { min: 1 }),
    iters,
    batch: intOption(values, "batch", { min: 1 }) ?? DEFAULTS.batch,
    lr: floatOption(values, "lr", { min: 0 }) ?? DEFAULTS.lr,
    warmup: intOption(values, "warmup", { min: 0 }) ?? -1,
    evalImages: intOption(values, "eval-images", { min: 1 }) ?? DEFAULTS.evalImages,
    perClass: intOption(values, "per-class", { min: 1 }) ?? DEFAULTS.perClass,
    entropyImages: intOption(values, "entropy-images", { min: 1 }) ?? DEFAULTS.entropyImages,
    guidance: floatOption(values, "cfg", { min: 0 }) ?? DEFAULTS.cfg,
  };
}

/** Warmup: a tenth of the run, at most 100 steps, unless given. */
function withIters(s: StudySettings, iters: number): StudySettings {
  return { ...s, iters, warmup: s.warmup >= 0 ? s.warmup : Math.min(100, Math.floor(iters / 10)) };
}

/** An existing study.json must agree with what this command line asks for. */
function checkResumable(
  stored: StudyFile,
  asked: StudySettings,
  seeds: number,
  data: string,
  path: string,
) {
  const clash: string[] = [];
  if (stored.data !== data) clash.push(`--data ${data} (study: ${stored.data})`);
  if (stored.seeds !== seeds) clash.push(`--seeds ${seeds} (study: ${stored.seeds})`);
  for (const key of Object.keys(asked) as (keyof StudySettings)[]) {
    const given = asked[key];
    if (key === "iters" && given === 0) continue; // chosen by the budget at the start
    if (key === "warmup" && given === -1) continue;
    if (given !== stored.settings[key]) {
      clash.push(`${key} ${given} (study: ${stored.settings[key]})`);
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
    private readonly tokenizer: PatchTokenizer,
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
        tokenizerPath: m.tokenizer.path,
        ratio,
        scales,
        shardSize: 4096,
        device: this.device,
      });
    }
    const manifest = await readManifest(dir);
    if (manifest.tokenizer.hash !== this.tokenizer.config.hash) {
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
  usage: "study --data DIR --out DIR [--budget-minutes M] [--preset tiny] [--parts LIST] [options]",
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
    "budget-minutes": {
      type: "string",
      valueName: "M",
      description:
        `wall time the whole study should take; sets the steps per model (default: ${DEFAULTS.budgetMinutes})`,
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
    preset: {
      type: "string",
      valueName: PRESET_NAMES.join("|"),
      description: `model preset of every run (default: ${DEFAULTS.preset})`,
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
      description: `seeds per model, at least 2 (default: ${DEFAULTS.seeds})`,
    },
    batch: {
      type: "string",
      valueName: "N",
      description: `images per step (default: ${DEFAULTS.batch})`,
    },
    lr: {
      type: "string",
      valueName: "LR",
      description: `peak learning rate (default: ${DEFAULTS.lr})`,
    },
    warmup: {
      type: "string",
      valueName: "N",
      description: "warmup steps (default: a tenth of the run, at most 100)",
    },
    "eval-images": {
      type: "string",
      valueName: "N",
      description: `validation images scored per step count (default: ${DEFAULTS.evalImages})`,
    },
    "per-class": {
      type: "string",
      valueName: "N",
      description: `samples per class in each grid (default: ${DEFAULTS.perClass})`,
    },
    "entropy-images": {
      type: "string",
      valueName: "N",
      description: `samples per entropy measurement (default: ${DEFAULTS.entropyImages})`,
    },
    cfg: {
      type: "string",
      valueName: "W",
      description:
        `CFG weight of samples and entropy, from the first step (default: ${DEFAULTS.cfg})`,
    },
    device: deviceOption,
  },
  details: [
    "Parts (each can run alone with --parts; they share models):",
    ...PART_NAMES.map((p) => `  ${p.padEnd(8)} ${STUDY_PARTS[p]}`),
    "",
    "Every model is trained with the same number of optimizer steps and evaluated on the same",
    "validation images. With a budget, the study times a few steps of every model shape first",
    "and picks the steps per model so that training, evaluation and sampling fill the budget;",
    "the choice is stored in OUT/study.json. Run the same command again after Ctrl-C, kill or",
    "a crash: finished runs and stages are reused, and the report's numbers come out the same.",
    "The report (OUT/report/report.md, its figures, sample grids and results.json) is written",
    "at the end; copy the folder as it is to publish it.",
    "",
    "Example: checkerboard study --data out/mnist-r2 --out out/study-mnist",
  ].join("\n"),
  async run(values) {
    const started = performance.now();
    const dataDir = resolve(requiredString(values, "data"));
    const outDir = requiredString(values, "out");
    const parts = parseParts(stringOption(values, "parts") ?? "all");
    const seeds = intOption(values, "seeds", { min: 2 }) ?? DEFAULTS.seeds;
    const asked = requestedSettings(values);
    const budgetGiven = floatOption(values, "budget-minutes", { min: 0 });
    if (budgetGiven !== undefined && asked.iters > 0) {
      throw new UsageError("give --budget-minutes or --iters, not both");
    }
    if (budgetGiven !== undefined && !(budgetGiven > 0)) {
      throw new UsageError("--budget-minutes must be greater than 0");
    }
    const budgetMinutes = asked.iters > 0 ? undefined : (budgetGiven ?? DEFAULTS.budgetMinutes);

    const manifest = await readManifest(dataDir);
    const tokenizer = await tokenizerForManifest(manifest, dataDir);
    const device = await deviceFrom(values);
    await Deno.mkdir(outDir, { recursive: true }).catch((err) => {
      throw new UserError(`cannot create the study folder ${outDir}: ${reason(err)}`);
    });
    const studyPath = join(outDir, STUDY_FILE);
    const data = new RatioData({ dir: dataDir, manifest }, tokenizer, outDir, device);
    const runs = studyRuns(parts, seeds);
    const runsDir = join(outDir, "runs");

    // Data for every ratio first: the timings need it, and it counts against the budget.
    for (const ratio of new Set(runs.map((r) => r.ratio))) await data.get(ratio);

    let study: StudyFile;
    if (await exists(studyPath)) {
      study = await readJsonFile(studyPath, "a study file") as StudyFile;
      if (study?.format !== "checkerboard-study" || typeof study.settings !== "object") {
        throw new UserError(
          `${studyPath} is not a study file of 'checkerboard study' (give another --out)`,
        );
      }
      checkResumable(study, asked, seeds, dataDir, studyPath);
      console.error(`study: continuing ${outDir} (${study.settings.iters} steps per model)`);
    } else {
      let settings: StudySettings, plannedFrom: string;
      if (asked.iters > 0) {
        settings = withIters(asked, asked.iters);
        plannedFrom = `${asked.iters} steps per model given on the command line.`;
      } else {
        ({ settings, plannedFrom } = await planIters(
          asked,
          runs,
          parts,
          data,
          tokenizer,
          device,
          budgetMinutes!,
          started,
        ));
      }
      study = {
        format: "checkerboard-study",
        version: 1,
        data: dataDir,
        seeds,
        budgetMinutes,
        settings,
        plannedFrom,
        device,
      };
      await writeFileAtomic(studyPath, JSON.stringify(study, null, 1) + "\n");
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
    const path = await writeReport(reportDir, runsDir, parts, records, {
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
      plannedFrom: study.plannedFrom,
    }, (ratio) => data.scales(ratio));
    console.log(
      `study: ${runs.length} models; this invocation took ${
        minutes((performance.now() - started) / 1000)
      }`,
    );
    console.log(`wrote ${path}`);
  },
};

/** Times every model shape and picks the steps per model that fill the budget. */
async function planIters(
  asked: StudySettings,
  runs: readonly RunSpec[],
  parts: ReturnType<typeof parseParts>,
  data: RatioData,
  tokenizer: PatchTokenizer,
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
  const settings = withIters(asked, iters);
  const perStep = estimates.reduce((a, e) => a + e.trainStep, 0);
  return {
    settings,
    plannedFrom: `${iters} steps per model for ${runs.length} models, planned from the measured ` +
      `${perStep.toFixed(2)} seconds per step over all models and about ${minutes(measuring)} ` +
      `of evaluation and sampling (data and timing took ${minutes(elapsed)}).`,
  };
}
