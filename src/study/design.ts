/**
 * The study's design (issue "Study"): which parts exist, which training runs each part needs,
 * and what is measured on them. Pure: no I/O.
 *
 * A run is one trained model: a scale ratio, a within-scale order, a RoPE-mixing setting and a
 * seed. The parts share runs: the ratio-2 checkerboard model without mixing serves Figure 5,
 * Figure 4(c), Table 2 and Figure 6.
 */
import type { OrderName } from "../plan/orders.ts";
import { UsageError } from "../errors.ts";

/** The parts, in report order, with the paper figure each reproduces. */
export const STUDY_PARTS = {
  ratios: "Figure 5: validation NLL against steps, one model per scale ratio",
  order: "Figure 4(c): checkerboard against random within-scale order",
  mixing: "Table 2: key RoPE mixing in no, all or the first 2 layers",
  entropy: "Figure 6: sampling entropy per step for four orders",
  samples: "sample grids and samples.npz for every model and step count",
} as const;

export type PartName = keyof typeof STUDY_PARTS;
export const PART_NAMES = Object.keys(STUDY_PARTS) as PartName[];

export const RATIOS = ["sqrt2", "2", "3", "4", "single"] as const;
/** Steps per scale at which every model is evaluated (Figure 5's x axis). */
export const EVAL_STEPS = [1, 2, 4, 8, 16] as const;
/** Steps per scale of the entropy measurements (the paper's Figure 6: 4 and 8). */
export const ENTROPY_STEPS = [4, 8] as const;
export const ENTROPY_ORDERS: readonly OrderName[] = [
  "checkerboard",
  "random",
  "raster",
  "quadrant",
];
/** Mixing settings of Table 2, as --rope-mix spells them. */
export const MIXINGS = ["none", "all", "2"] as const;

export interface RunSpec {
  ratio: string;
  order: OrderName;
  /** "none", "all" or a layer count. */
  ropeMix: string;
  seed: number;
}

/** The base model every part varies one thing of. */
export const BASE: Omit<RunSpec, "seed"> = { ratio: "2", order: "checkerboard", ropeMix: "none" };

/** A folder-safe name, e.g. "r2-checkerboard-mix-none-s0". */
export function runId(r: RunSpec): string {
  return `r${r.ratio}-${r.order}-mix-${r.ropeMix}-s${r.seed}`;
}

/** The models one part compares (without seeds). */
export function partConfigs(part: PartName): Omit<RunSpec, "seed">[] {
  switch (part) {
    case "ratios":
      return RATIOS.map((ratio) => ({ ...BASE, ratio }));
    case "order":
      return (["checkerboard", "random"] as const).map((order) => ({ ...BASE, order }));
    case "mixing":
      return MIXINGS.map((ropeMix) => ({ ...BASE, ropeMix }));
    case "entropy":
      return ENTROPY_ORDERS.map((order) => ({ ...BASE, order }));
    case "samples":
      return [BASE];
  }
}

/** Every run the parts need, each once, in part order then seed order. */
export function studyRuns(parts: readonly PartName[], seeds: number): RunSpec[] {
  const out: RunSpec[] = [];
  const seen = new Set<string>();
  for (const part of parts) {
    for (const config of partConfigs(part)) {
      for (let seed = 0; seed < seeds; seed++) {
        const run = { ...config, seed };
        const id = runId(run);
        if (!seen.has(id)) {
          seen.add(id);
          out.push(run);
        }
      }
    }
  }
  return out;
}

/** What is measured on a run beyond its NLL at every step count of EVAL_STEPS. */
export interface RunWork {
  /** Entropy per step at ENTROPY_STEPS (the run is one of Figure 6's orders). */
  entropy: boolean;
  /** Sample grids at every step count of EVAL_STEPS. */
  samples: boolean;
}

export function runWork(run: RunSpec, parts: readonly PartName[]): RunWork {
  const sameModel = (c: Omit<RunSpec, "seed">) =>
    c.ratio === run.ratio && c.order === run.order && c.ropeMix === run.ropeMix;
  return {
    entropy: parts.includes("entropy") && partConfigs("entropy").some(sameModel),
    samples: parts.includes("samples"),
  };
}

/** "ratios,order" -> the parts in report order; "all" -> every part. */
export function parseParts(text: string): PartName[] {
  if (text.trim() === "all") return [...PART_NAMES];
  const given = text.split(",").map((p) => p.trim()).filter((p) => p.length > 0);
  for (const p of given) {
    if (!(PART_NAMES as string[]).includes(p)) {
      throw new UsageError(
        `--parts: unknown part '${p}' (use all or some of ${PART_NAMES.join(", ")})`,
      );
    }
  }
  if (given.length === 0) throw new UsageError("--parts: name at least one part");
  return PART_NAMES.filter((p) => given.includes(p));
}
