/**
 * The study's report: OUT/report/report.md with its figures and the seed-0 sample grids beside
 * it (a folder to copy as it is, e.g. into docs/), and OUT/report/results.json with every
 * number of the report. Timings appear only in lines that name seconds or minutes, so two
 * reports of the same runs differ only there.
 */
import { join } from "node:path";
import { encodePng } from "../data/png.ts";
import { writeFileAtomic } from "../util/files.ts";
import {
  checkerboardVsRandom,
  type Finding,
  gainsLevelOff,
  isBase,
  type Measure,
  type ModelSummary,
  multiscaleVsSingle,
  ratiosClose,
  type Stat,
  summarize,
} from "./aggregate.ts";
import {
  ENTROPY_ORDERS,
  ENTROPY_STEPS,
  EVAL_STEPS,
  partConfigs,
  type PartName,
  type RunSpec,
  STUDY_PARTS,
} from "./design.ts";
import { entropyPlot, mixingHeatMap, nllPlot, type Png } from "./figures.ts";
import type { RunRecords, StudySettings } from "./run.ts";

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
  /** How the steps per model were chosen. */
  plannedFrom?: string;
}

const f3 = (v: number) => v.toFixed(3);
const pm = (s: Stat, digits = 3) => `${s.mean.toFixed(digits)} ± ${s.sd.toFixed(digits)}`;
const ratioLabel = (r: string) => (r === "single" ? "single-scale" : `ratio ${r}`);
const mixLabel = (
  m: string,
) => (m === "none" ? "no mixing" : m === "all" ? "all layers" : `first ${m} layers`);

/** Writes OUT/report/; returns the report's path. */
export async function writeReport(
  reportDir: string,
  runsDir: string,
  parts: readonly PartName[],
  records: readonly RunRecords[],
  facts: StudyFacts,
  scalesOf: (ratio: string) => number[],
): Promise<string> {
  await Deno.mkdir(join(reportDir, "figures"), { recursive: true });
  const md: string[] = [];
  const results: Record<string, unknown> = {};
  const figure = async (name: string, png: Png) => {
    await writeFileAtomic(
      join(reportDir, "figures", name),
      encodePng(png.rgb, png.width, png.height),
    );
    return `figures/${name}`;
  };
  const summaries = (part: PartName) =>
    partConfigs(part).map((c) => summarize(c, records, scalesOf));

  md.push(`# Study: progressive checkerboards on ${facts.dataset}`, "");
  md.push(...setupSection(facts, parts, records), "");

  const findings: Finding[] = [];
  const ratios = parts.includes("ratios") ? summaries("ratios") : [];
  const orders = parts.includes("order") ? summaries("order") : [];
  const base = [...ratios, ...orders].find((m) => isBase(m.config));
  if (parts.includes("ratios") || parts.includes("order")) {
    findings.push(
      multiscaleVsSingle(ratios),
      ratiosClose(ratios),
      checkerboardVsRandom(
        orders.find((m) => m.config.order === "checkerboard"),
        orders.find((m) => m.config.order === "random"),
      ),
      gainsLevelOff(base),
    );
    md.push("## Findings", "");
    for (const f of findings) {
      const verdict = f.reproduced === undefined
        ? "not tested"
        : f.reproduced
        ? "reproduced"
        : "NOT reproduced";
      md.push(`- **${f.title}: ${verdict}.**`, ...f.evidence.map((e) => `  - ${e}`));
    }
    md.push("");
    results.findings = findings;
  }

  if (parts.includes("ratios")) {
    md.push(`## ${STUDY_PARTS.ratios}`, "");
    md.push(
      "Validation NLL, mean ± standard deviation over seeds, at each number of steps per scale " +
        "(total steps in brackets). Bits per token average over every token of the pyramid, so " +
        "they compare models with the same scales; bits per image sum them, the code length of " +
        "the whole pyramid, which bounds the code length of the final-scale tokens and so " +
        "compares all ratios, the single-scale model included.",
      "",
    );
    for (const measure of ["bitsPerToken", "bitsPerImage", "finalScaleBits"] as Measure[]) {
      md.push(
        ...nllTable(
          ratios,
          (m) => `${ratioLabel(m.config.ratio)} (${m.scales.join(",")})`,
          measure,
        ),
        "",
      );
    }
    const label = (m: ModelSummary) => ratioLabel(m.config.ratio);
    const a = await figure(
      "fig5-steps-per-scale.png",
      nllPlot(ratios, label, {
        x: "stepsPerScale",
        measure: "bitsPerToken",
        title: "NLL by steps per scale",
      }),
    );
    const b = await figure(
      "fig5-total-steps.png",
      nllPlot(ratios, label, {
        x: "totalSteps",
        measure: "bitsPerToken",
        title: "NLL by total steps",
      }),
    );
    const c = await figure(
      "fig5-bits-per-image.png",
      nllPlot(ratios, label, {
        x: "totalSteps",
        measure: "bitsPerImage",
        title: "bits per image by total steps",
      }),
    );
    md.push(
      `![NLL by steps per scale](${a}) ![NLL by total steps](${b})`,
      "",
      `![bits per image by total steps](${c})`,
      "",
    );
    results.ratios = ratios.map(modelResult);
  }

  if (parts.includes("order")) {
    md.push(`## ${STUDY_PARTS.order}`, "");
    md.push(...nllTable(orders, (m) => m.config.order, "bitsPerToken"), "");
    const p = await figure(
      "fig4c-order.png",
      nllPlot(orders, (m) => m.config.order, {
        x: "totalSteps",
        measure: "bitsPerToken",
        title: "checkerboard vs random, ratio 2",
      }),
    );
    md.push(`![checkerboard vs random order](${p})`, "");
    results.order = orders.map(modelResult);
  }

  if (parts.includes("mixing")) {
    const mixing = summaries("mixing");
    md.push(`## ${STUDY_PARTS.mixing}`, "");
    md.push(
      "| key RoPE mixing | bits/token at P=4 | mean over P = " + EVAL_STEPS.join(", ") + " |",
      "|---|---|---|",
    );
    for (const m of mixing) {
      const p4 = m.points.find((p) => p.stepsPerScale === 4)!;
      const meanOverP = m.points.reduce((a, p) => a + p.bitsPerToken.mean, 0) / m.points.length;
      md.push(`| ${mixLabel(m.config.ropeMix)} | ${pm(p4.bitsPerToken)} | ${f3(meanOverP)} |`);
    }
    md.push("", "Training time per step (batch " + facts.settings.batch + ", seconds):", "");
    for (const m of mixing) {
      md.push(`- ${mixLabel(m.config.ropeMix)}: ${pm(m.secondsPerStep, 4)} seconds per batch`);
    }
    md.push(
      "",
      "Learned mixing weights alpha = sigmoid(a) per layer and head (seed " +
        "0): keys rotate by alpha x (output position) + (1 - alpha) x (sampled position); blue " +
        "cells lean to the sampled position, red to the output position.",
      "",
    );
    const maps = mixing.filter((m) => m.config.ropeMix !== "none").flatMap((m) =>
      m.runs.filter((r) => r.spec.seed === 0).map((r) => ({
        label: mixLabel(m.config.ropeMix),
        alpha: r.train.mixAlpha,
      }))
    );
    const p = await figure("table2-mixing.png", mixingHeatMap(maps));
    md.push(`![mixing weights](${p})`, "");
    results.mixing = mixing.map((m) => ({
      ...modelResult(m),
      mixAlpha: m.runs.map((r) => ({ seed: r.spec.seed, alpha: r.train.mixAlpha })),
    }));
  }

  if (parts.includes("entropy")) {
    md.push(`## ${STUDY_PARTS.entropy}`, "");
    const withEntropy = ENTROPY_ORDERS.map((order) => ({
      name: order,
      records: records.filter((r) =>
        isBase({ ...r.spec, order: "checkerboard" }) && r.spec.order === order && r.entropy
      )
        .sort((a, b) => a.spec.seed - b.spec.seed).map((r) => r.entropy!),
    }));
    const n = withEntropy[0].records[0]?.images ?? 0;
    md.push(
      `Entropy (bits) of each location's sampling distribution, averaged over the locations of ` +
        `a step; mean and 25th-75th percentiles over ${n} samples per model, averaged over ` +
        `${facts.seeds} seeds. Each order has its own model (ratio 2), trained in that order. ` +
        "Dashed lines: scale boundaries.",
      "",
    );
    const links: string[] = [];
    for (const P of ENTROPY_STEPS) {
      links.push(
        `![entropy at P=${P}](${await figure(
          `fig6-entropy-P${P}.png`,
          entropyPlot(withEntropy, P),
        )})`,
      );
    }
    md.push(links.join(" "), "");
    md.push("| order | " + ENTROPY_STEPS.map((P) => `mean entropy at P=${P}`).join(" | ") + " |");
    md.push("|---|" + ENTROPY_STEPS.map(() => "---|").join(""));
    for (const o of withEntropy) {
      const cells = ENTROPY_STEPS.map((P) => {
        const means = o.records.map((r) => {
          const steps = r.byP.find((b) => b.stepsPerScale === P)!.steps;
          return steps.reduce((a, s) => a + s.mean, 0) / steps.length;
        });
        return f3(means.reduce((a, b) => a + b, 0) / means.length);
      });
      md.push(`| ${o.name} | ${cells.join(" | ")} |`);
    }
    md.push("");
    results.entropy = withEntropy;
  }

  if (parts.includes("samples")) {
    md.push(`## Samples`, "");
    md.push(
      `Seed-0 models; ${facts.settings.perClass} samples per class (one row per class), CFG ` +
        `weight ${facts.settings.guidance} from the first step, temperature 1. Every model's grids ` +
        `and samples.npz (arr_0 uint8 (n, H, W, 3), labels) for FID tools are in the study's ` +
        `runs/<model>/samples/P<p>/ folders.`,
      "",
    );
    await Deno.mkdir(join(reportDir, "grids"), { recursive: true });
    md.push("| model | " + EVAL_STEPS.map((P) => `P=${P}`).join(" | ") + " |");
    md.push("|---|" + EVAL_STEPS.map(() => "---|").join(""));
    const seed0 = records.filter((r) => r.spec.seed === 0 && r.samples); // in part order
    for (const r of seed0) {
      const cells: string[] = [];
      for (const s of r.samples!.byP) {
        const name = `${r.id}-P${s.stepsPerScale}.png`;
        await Deno.copyFile(join(runsDir, r.id, s.grid), join(reportDir, "grids", name));
        cells.push(`<img src="grids/${name}" width="160">`);
      }
      md.push(`| ${modelName(r.spec)} | ${cells.join(" | ")} |`);
    }
    md.push("");
  }

  results.facts = { ...facts, plannedFrom: undefined };
  await writeFileAtomic(join(reportDir, "results.json"), JSON.stringify(results, null, 1) + "\n");
  const path = join(reportDir, "report.md");
  await writeFileAtomic(path, md.join("\n"));
  return path;
}

function modelName(r: Omit<RunSpec, "seed">): string {
  return `${ratioLabel(r.ratio)}, ${r.order}, ${mixLabel(r.ropeMix)}`;
}

function modelResult(m: ModelSummary) {
  return {
    config: m.config,
    scales: m.scales,
    seeds: m.seeds,
    points: m.points,
    finalLoss: m.finalLoss,
    paramCount: m.paramCount,
  };
}

/** A markdown table: one row per model, one column per step count. */
function nllTable(
  models: readonly ModelSummary[],
  label: (m: ModelSummary) => string,
  measure: Measure,
): string[] {
  const title: Record<Measure, string> = {
    bitsPerToken: "bits per token",
    bitsPerImage: "bits per image",
    finalScaleBits: "final-scale bits per token",
  };
  const digits = measure === "bitsPerImage" ? 1 : 3;
  return [
    `| ${title[measure]} | ` + EVAL_STEPS.map((P) => `P=${P}`).join(" | ") + " |",
    "|---|" + EVAL_STEPS.map(() => "---|").join(""),
    ...models.map((m) =>
      `| ${label(m)} | ` +
      m.points.map((p) => `${pm(p[measure], digits)} (${p.totalSteps})`).join(" | ") + " |"
    ),
  ];
}

function setupSection(
  facts: StudyFacts,
  parts: readonly PartName[],
  records: readonly RunRecords[],
): string[] {
  const s = facts.settings;
  const shape = s.depth || s.width || s.heads
    ? ` with overrides${s.depth ? ` depth ${s.depth}` : ""}${s.width ? ` width ${s.width}` : ""}${
      s.heads ? ` heads ${s.heads}` : ""
    }`
    : "";
  const epochs = (s.iters * s.batch) / facts.counts.train;
  const params = records.length ? records[0].train.paramCount : 0;
  const trainMinutes = records.reduce((a, r) => a + r.train.seconds, 0) / 60;
  return [
    `Parts: ${parts.map((p) => `${p} (${STUDY_PARTS[p]})`).join("; ")}.`,
    "",
    `- Data: ${facts.dataset} (${facts.dataDir}), ${facts.counts.train} training and ` +
    `${facts.counts.val} validation images of ${facts.imageSide}x${facts.imageSide} pixels, ` +
    `${facts.classes} classes; patch tokenizer of ${facts.codes} codes on ${facts.patch}x${facts.patch} ` +
    `patches, final grid ${facts.finalSide}x${facts.finalSide} tokens.`,
    `- Models: preset ${s.preset}${shape}, ${
      (params / 1e6).toFixed(2)
    }M parameters; ${records.length} ` +
    `trained models (${facts.seeds} seeds per configuration).`,
    `- Training budget per model: ${s.iters} optimizer steps of ${s.batch} images ` +
    `(${s.iters * s.batch} images, ${epochs.toFixed(2)} epochs), the same for every model; ` +
    `AdamW lr ${s.lr} with ${s.warmup} warmup steps, dropping to lr/10 at 90% and 95% of the run; ` +
    `steps per scale drawn per batch from ${EVAL_STEPS.join(", ")}; class dropout 0.1.`,
    `- Evaluation: teacher-forced NLL on ${Math.min(s.evalImages, facts.counts.val)} validation ` +
    `images spread evenly over the split, at ${EVAL_STEPS.join(", ")} steps per scale.`,
    "- Nothing was tuned on the validation split: every setting above is fixed before training " +
    "(the study's defaults or its command line), and the validation images serve only the numbers " +
    "below. Spreads are the standard deviation over seeds.",
    facts.budgetMinutes !== undefined
      ? `- Budget: ${facts.budgetMinutes} minutes on ${facts.device}: ${facts.plannedFrom ?? ""}`
      : `- Steps per model given on the command line; device ${facts.device}.`,
    `- Training took ${trainMinutes.toFixed(1)} minutes over all models.`,
  ];
}
