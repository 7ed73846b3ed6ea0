/**
 * The study's report: OUT/report/report.md with its figures and the seed-0 sample grids beside
 * it (a folder to copy as it is, e.g. into docs/), results.json with every number of the
 * report and timings.json with its seconds and minutes. The report is drawn from the results
 * alone (src/study/results.ts), so `study --report-only` draws it again from results.json.
 * Timings appear only in lines that name seconds or minutes, so two reports of the same runs
 * differ only there.
 */
import { join } from "node:path";
import { encodePng } from "../data/png.ts";
import { fileSystemError, writeFileAtomic } from "../util/files.ts";
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
  stat,
  undertrainedEvidence,
} from "./aggregate.ts";
import { ENTROPY_STEPS, EVAL_STEPS, STUDY_PARTS } from "./design.ts";
import { entropyPlot, mixingHeatMap, nllPlot, type Png } from "./figures.ts";
import type { RunRecords } from "./run.ts";
import {
  type Config,
  gridFile,
  resultsJson,
  type StudyFacts,
  type StudyResults,
  type StudyTimings,
  timingsJson,
} from "./results.ts";

export type { StudyFacts };

const pm = (s: Stat, digits = 3) => `${s.mean.toFixed(digits)} ± ${s.sd.toFixed(digits)}`;
const ratioLabel = (r: string) => (r === "single" ? "single-scale" : `ratio ${r}`);
const mixLabel = (
  m: string,
) => (m === "none" ? "no mixing" : m === "all" ? "all layers" : `first ${m} layers`);
const percent = (f: number) => `${Math.round(f * 1000) / 10}%`;

/** Copies every seed-0 sample grid of `records` from its run folder into REPORT/grids/. */
export async function copyGrids(
  reportDir: string,
  runsDir: string,
  records: readonly RunRecords[],
): Promise<void> {
  try {
    await Deno.mkdir(join(reportDir, "grids"), { recursive: true });
    for (const r of records.filter((r) => r.spec.seed === 0 && r.samples)) {
      for (const s of r.samples!.byP) {
        await Deno.copyFile(
          join(runsDir, r.id, s.grid),
          join(reportDir, gridFile(r.id, s.stepsPerScale)),
        );
      }
    }
  } catch (err) {
    throw fileSystemError(err, `cannot copy the sample grids into ${join(reportDir, "grids")}`);
  }
}

/** The models' epochs over the training split. */
export function epochsOf(facts: StudyFacts): number {
  const s = facts.settings;
  return (s.iters * s.batch * s.accum) / facts.counts.train;
}

/** Writes REPORT/report.md, its figures, results.json and timings.json; returns report.md's path. */
export async function writeReport(
  reportDir: string,
  results: StudyResults,
  timings?: StudyTimings,
): Promise<string> {
  const { parts, facts } = results;
  await Deno.mkdir(join(reportDir, "figures"), { recursive: true }).catch((err) => {
    throw fileSystemError(err, `cannot write the report into ${reportDir}`);
  });
  const md: string[] = [];
  const figure = async (name: string, png: Png) => {
    await writeFileAtomic(
      join(reportDir, "figures", name),
      encodePng(png.rgb, png.width, png.height),
    );
    return `figures/${name}`;
  };

  md.push(`# Study: progressive checkerboards on ${facts.dataset}`, "");
  const ratios = results.ratios ?? [];
  const orders = results.order ?? [];
  const mixing = results.mixing ?? [];
  const base = [...ratios, ...orders, ...mixing].find((m) => isBase(m.config));
  const warnings = undertrainedEvidence(epochsOf(facts), base);
  if (warnings.length) md.push(...warningParagraph(warnings), "");
  md.push(...setupSection(results, timings), "");

  const findings: Finding[] = [];
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
  }
  const bars = "Error bars: one standard deviation over seeds.";

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
      bars,
      "",
    );
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
    md.push(`![checkerboard vs random order](${p})`, "", bars, "");
  }

  if (parts.includes("mixing")) {
    md.push(`## ${STUDY_PARTS.mixing}`, "");
    md.push(
      "| key RoPE mixing | bits/token at P=4 | mean over P = " + EVAL_STEPS.join(", ") + " |",
      "|---|---|---|",
    );
    for (const m of mixing) {
      const p4 = m.points.find((p) => p.stepsPerScale === 4)!;
      md.push(`| ${mixLabel(m.config.ropeMix)} | ${pm(p4.bitsPerToken)} | ${pm(meanOverP(m))} |`);
    }
    const p = await figure(
      "table2-nll.png",
      nllPlot(mixing, (m) => mixLabel(m.config.ropeMix), {
        x: "stepsPerScale",
        measure: "bitsPerToken",
        title: "key RoPE mixing, ratio 2",
      }),
    );
    md.push("", `![NLL with and without key RoPE mixing](${p})`, "", bars, "");
    const perStep = timings?.secondsPerStep ?? [];
    const times = mixing.map((m) => ({
      m,
      t: perStep.find((t) => sameConfig(t.config, m.config)),
    }));
    if (times.every(({ t }) => t)) {
      md.push(`Training time per step (batch ${facts.settings.batch}, seconds):`, "");
      for (const { m, t } of times) {
        md.push(
          `- ${mixLabel(m.config.ropeMix)}: ${t!.mean.toFixed(4)} ± ${t!.sd.toFixed(4)} ` +
            "seconds per batch",
        );
      }
      md.push("");
    }
    md.push(
      "Learned mixing weights alpha = sigmoid(a) per layer and head (seed " +
        "0): keys rotate by alpha x (output position) + (1 - alpha) x (sampled position); blue " +
        "cells lean to the sampled position, red to the output position.",
      "",
    );
    const maps = mixing.filter((m) => m.config.ropeMix !== "none").flatMap((m) =>
      m.mixAlpha.filter((a) => a.seed === 0).map((a) => ({
        label: mixLabel(m.config.ropeMix),
        alpha: a.alpha,
      }))
    );
    const h = await figure("table2-mixing.png", mixingHeatMap(maps));
    md.push(`![mixing weights](${h})`, "");
  }

  if (parts.includes("entropy") && results.entropy) {
    md.push(`## ${STUDY_PARTS.entropy}`, "");
    const withEntropy = results.entropy;
    const n = withEntropy[0]?.records[0]?.images ?? 0;
    md.push(
      `Entropy (bits) of each location's sampling distribution, averaged over the locations of ` +
        `a step; the line is the mean over ${n} samples per model, averaged over ` +
        `${facts.seeds} seeds, with error bars of one standard deviation over seeds; the band ` +
        `spans the 25th-75th percentiles over samples (averaged over seeds). Each order has its ` +
        `own model (ratio 2), trained in that order. Dashed lines: scale boundaries. ` +
        guidanceText(facts) + ".",
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
    md.push(
      "Mean entropy over all steps, mean ± standard deviation over seeds:",
      "",
      "| order | " + ENTROPY_STEPS.map((P) => `mean entropy at P=${P}`).join(" | ") + " |",
    );
    md.push("|---|" + ENTROPY_STEPS.map(() => "---|").join(""));
    for (const o of withEntropy) {
      const cells = ENTROPY_STEPS.map((P) =>
        pm(stat(o.records.map((r) => {
          const steps = r.byP.find((b) => b.stepsPerScale === P)!.steps;
          return steps.reduce((a, s) => a + s.mean, 0) / steps.length;
        })))
      );
      md.push(`| ${o.name} | ${cells.join(" | ")} |`);
    }
    md.push("");
  }

  if (parts.includes("samples") && results.samples) {
    md.push(`## Samples`, "");
    md.push(
      `Seed-0 models; ${facts.settings.perClass} samples per class (one row per class), ` +
        `${guidanceText(facts)}, temperature 1. Every model's grids ` +
        `and samples.npz (arr_0 uint8 (n, H, W, 3), labels) for FID tools are in the study's ` +
        `runs/<model>/samples/P<p>/ folders.`,
      "",
    );
    md.push("| model | " + EVAL_STEPS.map((P) => `P=${P}`).join(" | ") + " |");
    md.push("|---|" + EVAL_STEPS.map(() => "---|").join(""));
    for (const r of results.samples) {
      const cells = r.grids.map((g) => `<img src="${g.file}" width="160">`);
      md.push(`| ${modelName(r.config)} | ${cells.join(" | ")} |`);
    }
    md.push("");
  }

  await writeFileAtomic(
    join(reportDir, "results.json"),
    resultsJson(results, { warnings, findings: findings.length ? findings : undefined }),
  );
  if (timings) await writeFileAtomic(join(reportDir, "timings.json"), timingsJson(timings));
  const path = join(reportDir, "report.md");
  await writeFileAtomic(path, md.join("\n"));
  return path;
}

/** The honesty warning at the top of a report whose models are too far from converged. */
function warningParagraph(reasons: string[]): string[] {
  return [
    "> **Warning: these models are undertrained**, so this study cannot test the paper's " +
    "findings about conditioning within a scale (more steps per scale, the checkerboard " +
    "against random order, key RoPE mixing): " + reasons.join("; ") + ". A model that " +
    "has learned to use the locations sampled earlier in a scale predicts better with more " +
    "steps per scale; read the numbers below as a run of the pipeline, not as evidence for " +
    "or against the paper, and give the study more time (--budget-minutes, --iters) or a " +
    "higher --lr.",
  ];
}

/** How the samples were guided, as the report's text says it. */
function guidanceText(facts: StudyFacts): string {
  const s = facts.settings;
  if (s.guidance === 0) return "no classifier-free guidance";
  return s.guidanceStart > 0
    ? `CFG weight ${s.guidance} from step ${s.guidanceStart + 1} (off for the first ` +
      `${s.guidanceStart} steps, as in 'checkerboard sample')`
    : `CFG weight ${s.guidance} from the first step`;
}

/** Each seed's bits per token averaged over the step counts, over seeds. */
function meanOverP(m: ModelSummary): Stat {
  return stat(
    m.seeds.map((_, i) =>
      m.points.reduce((a, p) => a + p.bitsPerToken.values[i], 0) / m.points.length
    ),
  );
}

const sameConfig = (a: Config, b: Config) =>
  a.ratio === b.ratio && a.order === b.order && a.ropeMix === b.ropeMix;

function modelName(r: Config): string {
  return `${ratioLabel(r.ratio)}, ${r.order}, ${mixLabel(r.ropeMix)}`;
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

function setupSection(results: StudyResults, timings?: StudyTimings): string[] {
  const { facts, parts } = results;
  const s = facts.settings;
  const shape = s.depth || s.width || s.heads
    ? ` with overrides${s.depth ? ` depth ${s.depth}` : ""}${s.width ? ` width ${s.width}` : ""}${
      s.heads ? ` heads ${s.heads}` : ""
    }`
    : "";
  const images = s.iters * s.batch * s.accum;
  const batch = s.accum > 1 ? `${s.accum} x ${s.batch} images` : `${s.batch} images`;
  const drops = s.lrDrops.length
    ? `stepping down at ${s.lrDrops.map(percent).join(" and ")} of the run to end at lr/10`
    : "constant after the warmup";
  const lines = [
    `Parts: ${parts.map((p) => `${p} (${STUDY_PARTS[p]})`).join("; ")}.`,
    "",
    `- Data: ${facts.dataset} (${facts.dataDir}), ${facts.counts.train} training and ` +
    `${facts.counts.val} validation images of ${facts.imageSide}x${facts.imageSide} pixels, ` +
    `${facts.classes} classes; patch tokenizer of ${facts.codes} codes on ${facts.patch}x${facts.patch} ` +
    `patches, final grid ${facts.finalSide}x${facts.finalSide} tokens.`,
    `- Models: the ${s.model} preset${shape}, ${
      (results.paramCount / 1e6).toFixed(2)
    }M parameters; ${results.models} ` +
    `trained models (${facts.seeds} seeds per configuration).`,
    `- Training budget per model: ${s.iters} optimizer steps of ${batch} ` +
    `(${images} images, ${epochsOf(facts).toFixed(2)} epochs), the same for every model; ` +
    `AdamW lr ${s.lr} with ${s.warmup} warmup steps, ${drops}; ` +
    `steps per scale drawn per batch from ${s.stepsPerScaleTrain.join(", ")}; class dropout ` +
    `${s.classDropout}.`,
    `- Evaluation: teacher-forced NLL on ${Math.min(s.evalImages, facts.counts.val)} validation ` +
    `images spread evenly over the split, at ${EVAL_STEPS.join(", ")} steps per scale. ` +
    `Samples and entropies: ${guidanceText(facts)}, temperature 1.`,
    "- Nothing was tuned on the validation split: every setting above is fixed before training " +
    "(the study's defaults or its command line), and the validation images serve only the numbers " +
    "below. Spreads are the standard deviation over seeds.",
  ];
  const planned = timings?.plannedFrom ? `: ${timings.plannedFrom}` : ".";
  lines.push(
    facts.budgetMinutes !== undefined
      ? `- Budget: ${facts.budgetMinutes} minutes on ${facts.device}${planned}`
      : `- Steps per model given on the command line; device ${facts.device}.`,
  );
  if (timings) {
    lines.push(
      `- Training took ${(timings.trainSeconds / 60).toFixed(1)} minutes over all models.`,
    );
  }
  return lines;
}
