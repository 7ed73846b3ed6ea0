/**
 * The study's numbers over seeds: mean and spread per model and step count, and the four
 * findings of the issue judged from them by rules stated in the report. Pure: no I/O.
 */
import type { NllPoint, RunRecords } from "./run.ts";
import { BASE, EVAL_STEPS, type RunSpec } from "./design.ts";

/** Mean and sample standard deviation (n - 1; 0 for one value). */
export interface Stat {
  mean: number;
  sd: number;
  values: number[];
}

export function stat(values: number[]): Stat {
  const n = values.length;
  const mean = values.reduce((a, b) => a + b, 0) / n;
  const sd = n > 1 ? Math.sqrt(values.reduce((a, v) => a + (v - mean) ** 2, 0) / (n - 1)) : 0;
  return { mean, sd, values };
}

export type Measure = "bitsPerToken" | "bitsPerImage" | "finalScaleBits";

/** One model (a configuration) over its seeds. */
export interface ModelSummary {
  config: Omit<RunSpec, "seed">;
  scales: number[];
  seeds: number[];
  /** Per step count of EVAL_STEPS, in order. */
  points: {
    stepsPerScale: number;
    totalSteps: number;
    bitsPerToken: Stat;
    bitsPerImage: Stat;
    finalScaleBits: Stat;
  }[];
  /** Mean training loss over the last 10% of the steps, over seeds. */
  finalLoss: Stat;
  paramCount: number;
  /** Learned key RoPE mixing weights alpha per seed: (layers with mixing, heads); [] without. */
  mixAlpha: { seed: number; alpha: number[][] }[];
}

export const sameConfig = (a: Omit<RunSpec, "seed">, b: Omit<RunSpec, "seed">) =>
  a.ratio === b.ratio && a.order === b.order && a.ropeMix === b.ropeMix;

/** The summary of configuration `config` over the given runs of it (all seeds). */
export function summarize(
  config: Omit<RunSpec, "seed">,
  all: readonly RunRecords[],
  scalesOf: (ratio: string) => number[],
): ModelSummary {
  const runs = all.filter((r) => sameConfig(r.spec, config)).sort((a, b) =>
    a.spec.seed - b.spec.seed
  );
  if (runs.length === 0) throw new Error(`no runs of ${JSON.stringify(config)}`);
  const at = (P: number) => runs.map((r) => r.nll.points.find((p) => p.stepsPerScale === P)!);
  const over = (ps: NllPoint[], m: Measure) => stat(ps.map((p) => p[m]));
  return {
    config,
    scales: scalesOf(config.ratio),
    seeds: runs.map((r) => r.spec.seed),
    points: EVAL_STEPS.map((P) => {
      const ps = at(P);
      return {
        stepsPerScale: P,
        totalSteps: ps[0].totalSteps,
        bitsPerToken: over(ps, "bitsPerToken"),
        bitsPerImage: over(ps, "bitsPerImage"),
        finalScaleBits: over(ps, "finalScaleBits"),
      };
    }),
    finalLoss: stat(runs.map((r) => r.train.finalLoss)),
    paramCount: runs[0].train.paramCount,
    mixAlpha: runs.map((r) => ({ seed: r.spec.seed, alpha: r.train.mixAlpha })),
  };
}

/**
 * Value of a curve (total steps -> measure) at `x` by linear interpolation in log2(total
 * steps); undefined outside the curve's range.
 */
export function valueAtTotalSteps(
  m: ModelSummary,
  measure: Measure,
  x: number,
): number | undefined {
  const xs = m.points.map((p) => Math.log2(p.totalSteps));
  const ys = m.points.map((p) => p[measure].mean);
  const lx = Math.log2(x);
  for (let i = 0; i < xs.length; i++) {
    if (xs[i] === lx) return ys[i];
    if (i > 0 && xs[i - 1] < lx && lx < xs[i]) {
      return ys[i - 1] + ((ys[i] - ys[i - 1]) * (lx - xs[i - 1])) / (xs[i] - xs[i - 1]);
    }
  }
  return undefined;
}

export interface Finding {
  title: string;
  /** True: reproduced; false: not; undefined: the parts it needs were not run. */
  reproduced?: boolean;
  /** The rule and the numbers it was judged on. */
  evidence: string[];
}

const f3 = (v: number) => v.toFixed(3);
const pm3 = (s: Stat) => `${f3(s.mean)} ± ${f3(s.sd)}`;

/**
 * Multiscale beats single-scale at equal total steps: at every total-step count of a multiscale
 * curve that the single-scale curve spans, the multiscale model's bits per image are lower.
 */
export function multiscaleVsSingle(ratios: ModelSummary[]): Finding {
  const title = "multiscale beats single-scale at equal total steps";
  const single = ratios.find((m) => m.config.ratio === "single");
  const multi = ratios.filter((m) => m.config.ratio !== "single");
  if (!single || multi.length === 0) return { title, evidence: ["(the ratios part was not run)"] };
  const evidence = [
    "Rule: at every total-step count of a multiscale model inside the single-scale model's " +
    "range, its bits per image (the code length of the pyramid, an upper bound for the final " +
    "tokens) is below the single-scale model's, interpolated in log total steps.",
  ];
  let wins = 0, comparisons = 0, finalWins = 0;
  for (const m of multi) {
    const parts: string[] = [];
    for (const p of m.points) {
      const s = valueAtTotalSteps(single, "bitsPerImage", p.totalSteps);
      if (s === undefined) continue;
      comparisons++;
      if (p.bitsPerImage.mean < s) wins++;
      if (p.finalScaleBits.mean < valueAtTotalSteps(single, "finalScaleBits", p.totalSteps)!) {
        finalWins++;
      }
      parts.push(`${p.totalSteps} steps: ${f3(p.bitsPerImage.mean)} vs ${f3(s)}`);
    }
    if (parts.length) evidence.push(`ratio ${m.config.ratio}: ${parts.join("; ")}`);
  }
  evidence.push(
    `multiscale lower in ${wins} of ${comparisons} comparisons of bits per image; for ` +
      `comparison, its final-scale bits per token (given the true coarser scales, which ` +
      `favours the multiscale models) are lower in ${finalWins} of ${comparisons}`,
  );
  return { title, reproduced: comparisons > 0 && wins === comparisons, evidence };
}

/**
 * Ratios 2, 3 and 4 are close at equal total steps: at every total-step count all three span,
 * their range of bits per image is smaller than the gap from the best of them to the
 * single-scale model (or, without one in range, to sqrt2).
 */
export function ratiosClose(ratios: ModelSummary[]): Finding {
  const title = "ratios 2, 3 and 4 are close at equal total steps";
  const three = ["2", "3", "4"].map((r) => ratios.find((m) => m.config.ratio === r));
  if (three.some((m) => !m)) return { title, evidence: ["(the ratios part was not run)"] };
  const others = ["single", "sqrt2"].map((r) => ratios.find((m) => m.config.ratio === r))
    .filter((m): m is ModelSummary => !!m);
  const evidence = [
    "Rule: at each total-step count that ratios 2, 3 and 4 all span, the range of their bits " +
    "per image is smaller than the gap from the best of them to the single-scale model (or to " +
    "sqrt2 where single-scale does not reach).",
  ];
  const totals = [...new Set(three.flatMap((m) => m!.points.map((p) => p.totalSteps)))].sort((
    a,
    b,
  ) => a - b);
  let held = 0, checked = 0;
  for (const x of totals) {
    const vs = three.map((m) => valueAtTotalSteps(m!, "bitsPerImage", x));
    if (vs.some((v) => v === undefined)) continue;
    const values = vs as number[];
    const range = Math.max(...values) - Math.min(...values);
    const other = others.map((m) => [m, valueAtTotalSteps(m, "bitsPerImage", x)] as const)
      .find(([, v]) => v !== undefined);
    if (!other) {
      evidence.push(
        `${x} steps: ratios 2/3/4 ${values.map(f3).join("/")}, range ${
          f3(range)
        } (nothing to compare with)`,
      );
      continue;
    }
    const gap = other[1]! - Math.min(...values);
    checked++;
    if (range < gap) held++;
    evidence.push(
      `${x} steps: ratios 2/3/4 ${values.map(f3).join("/")}, range ${f3(range)}; ` +
        `gap to ${other[0].config.ratio} ${f3(gap)}`,
    );
  }
  evidence.push(`the range is smaller than the gap at ${held} of ${checked} step counts`);
  return { title, reproduced: checked > 0 && held === checked, evidence };
}

/**
 * The checkerboard beats random order: lower bits per token at every step count for every seed
 * (a seed's two models start from the same initial weights and see the same batches, so seeds
 * pair up; a difference smaller than the seeds' spread then still counts only if every pair
 * agrees on its sign).
 */
export function checkerboardVsRandom(checker?: ModelSummary, random?: ModelSummary): Finding {
  const title = "the checkerboard beats random order";
  if (!checker || !random) return { title, evidence: ["(the order part was not run)"] };
  const evidence = [
    "Rule: for every seed, the checkerboard model's bits per token is below the random-order " +
    "model of the same seed at every step count (same ratio and tokens, so bits per token " +
    "compare directly; the two models of a seed share their initial weights and batches).",
  ];
  const seeds = checker.seeds.filter((s) => random.seeds.includes(s));
  let wins = 0, pairs = 0;
  checker.points.forEach((p, i) => {
    const r = random.points[i];
    const diffs = seeds.map((s) =>
      r.bitsPerToken.values[random.seeds.indexOf(s)] -
      p.bitsPerToken.values[checker.seeds.indexOf(s)]
    );
    pairs += diffs.length;
    wins += diffs.filter((d) => d > 0).length;
    evidence.push(
      `P=${p.stepsPerScale} (${p.totalSteps} steps): checkerboard ${pm3(p.bitsPerToken)}, ` +
        `random ${pm3(r.bitsPerToken)}; random minus checkerboard per seed ` +
        diffs.map(f3).join(", "),
    );
  });
  evidence.push(`checkerboard lower in ${wins} of ${pairs} (seed, step count) pairs`);
  return { title, reproduced: pairs > 0 && wins === pairs, evidence };
}

/**
 * Gains level off as steps increase: for the base model, more steps per scale lower the NLL
 * (the first doubling and P = 16 against P = 1 both gain), and the last doubling gains under a
 * quarter of what the first gains. With no gain at all there is nothing to level off.
 */
export function gainsLevelOff(base?: ModelSummary): Finding {
  const title = "gains level off as steps increase";
  if (!base) return { title, evidence: ["(no ratio-2 checkerboard model was trained)"] };
  const ys = base.points.map((p) => p.bitsPerToken.mean);
  const gains = ys.slice(1).map((y, i) => ys[i] - y);
  const shrinking = gains.every((g, i) => i === 0 || g < gains[i - 1]);
  const last = gains[gains.length - 1], first = gains[0];
  const total = ys[0] - ys[ys.length - 1];
  const evidence = [
    "Rule: for the ratio-2 checkerboard model, the first doubling of steps per scale and P = " +
    `${EVAL_STEPS[EVAL_STEPS.length - 1]} against P = 1 both lower the bits per token, and the ` +
    "last doubling gains under a quarter of what the first gains.",
    `bits per token at P = ${EVAL_STEPS.join(", ")}: ${ys.map(f3).join(", ")}`,
    `gains per doubling: ${gains.map(f3).join(", ")} (${
      shrinking ? "each smaller than the one before" : "not shrinking at every doubling"
    }); P = ${EVAL_STEPS[EVAL_STEPS.length - 1]} against P = 1: ${f3(total)}`,
  ];
  return { title, reproduced: first > 0 && total > 0 && last < first / 4, evidence };
}

export const isBase = (c: Omit<RunSpec, "seed">) => sameConfig(c, BASE);

/** Fewer epochs than this leave the models too far from converged for the study's findings. */
export const MIN_EPOCHS = 5;

/**
 * Why the study's models are undertrained, with the numbers that show it (empty when nothing
 * does): under MIN_EPOCHS epochs of the training split, or a base model whose NLL rises with
 * steps per scale, when more within-scale context should lower it.
 */
export function undertrainedEvidence(epochs: number, base?: ModelSummary): string[] {
  const out: string[] = [];
  if (epochs < MIN_EPOCHS) {
    out.push(
      `each model saw ${epochs.toFixed(2)} epochs of the training split (under ${MIN_EPOCHS})`,
    );
  }
  if (base) {
    const first = base.points[0], last = base.points[base.points.length - 1];
    const ys = base.points.map((p) => p.bitsPerToken.mean);
    const rises = ys.slice(1).filter((y, i) => y > ys[i]).length;
    if (last.bitsPerToken.mean > first.bitsPerToken.mean) {
      out.push(
        `the ratio-2 checkerboard model's NLL rises with steps per scale: ` +
          `${f3(first.bitsPerToken.mean)} bits per token at P = ${first.stepsPerScale}, ` +
          `${f3(last.bitsPerToken.mean)} at P = ${last.stepsPerScale} (it rises at ${rises} of ` +
          `${ys.length - 1} doublings of P: ${ys.map(f3).join(", ")})`,
      );
    }
  }
  return out;
}
