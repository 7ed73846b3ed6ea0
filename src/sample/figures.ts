/**
 * The entropy outputs of `sample --entropy` (paper Figures 6 and 7): the per-step statistics as
 * JSON, the per-step plot with its 25-75% band and scale boundaries, and the per-location heat
 * maps per scale (the mean over images, then a few single images). The command only stages
 * what this returns.
 */
import { entropyMaps, stepEntropyStats } from "./entropy.ts";
import { linePlot } from "./plot.ts";
import type { Canvas } from "./plot.ts";
import { heatMapFigure, progressiveSelection } from "./render.ts";
import { stepsPerScale } from "../plan/blocks.ts";
import type { SampledCodes, SamplingOptions } from "./sampler.ts";

export interface EntropyFigures {
  /** entropy.json's text. */
  json: string;
  /** entropy.png: mean entropy per step with the 25-75% band. */
  plot: Canvas;
  /** entropy-maps.png: per-scale maps, the mean and then `mapImages` single images. */
  maps: Canvas;
}

/** JSON indented by 2, with arrays of numbers and flat objects kept on one line each. */
export function compactJson(value: unknown): string {
  return JSON.stringify(value, null, 2)
    .replace(/\[[^\[\]{}"]*\]/g, (m) => JSON.stringify(JSON.parse(m)))
    .replace(/\{[^\[\]{}]*\}/g, (m) => JSON.stringify(JSON.parse(m)));
}

/** Builds the three entropy outputs of sampled codes that carry entropies. */
export function entropyFigures(
  r: SampledCodes & { entropy: Float32Array },
  o: Pick<SamplingOptions, "order" | "steps">,
  rowOrder: readonly number[],
  mapImages: number,
): EntropyFigures {
  const n = r.labels.length, scales = r.scales;
  const stats = stepEntropyStats(r.entropy, r.stepOf, n, scales, r.totalSteps);
  const maps = entropyMaps(r.entropy, n, scales);
  const round = (v: number) => Math.round(v * 1e4) / 1e4;
  const json = {
    unit: "bits",
    images: n,
    scales,
    totalSteps: r.totalSteps,
    order: o.order,
    steps: stats.map((s) => ({
      step: s.step + 1,
      scale: scales[s.scale],
      locations: s.locations,
      mean: round(s.mean),
      p25: round(s.p25),
      p75: round(s.p75),
    })),
    maps: scales.map((s, k) => ({ side: s, mean: Array.from(maps[k], round) })),
  };

  const boundaries = stats.slice(1).filter((s, i) => s.scale !== stats[i].scale).map((s) =>
    s.step + 0.5
  );
  const plot = linePlot({
    width: 720,
    height: 400,
    x: stats.map((s) => s.step + 1),
    series: [
      { y: stats.map((s) => s.p25), color: [90, 120, 200], thickness: 1, dash: [4, 3] },
      { y: stats.map((s) => s.p75), color: [90, 120, 200], thickness: 1, dash: [4, 3] },
      { y: stats.map((s) => s.mean), color: [20, 60, 170], thickness: 2, label: "mean" },
    ],
    bands: [{
      lo: stats.map((s) => s.p25),
      hi: stats.map((s) => s.p75),
      color: [90, 120, 200],
      alpha: 0.25,
      label: "25-75%",
    }],
    vlines: boundaries,
    integerX: true,
    xLabel: "step",
    yLabel: "entropy (bits)",
    title: `${n} images, P ${stepsPerScale(scales, o.steps).join(",")}`,
  });

  // Single-image maps of the first image of the first classes (as in progressive.png).
  const single = progressiveSelection(r.labels, rowOrder, mapImages).map((i) => ({
    label: `img ${i}`,
    maps: entropyMaps(r.entropy, n, scales, [i]),
  }));
  const heat = heatMapFigure([{ label: "mean", maps }, ...single], scales, { panel: 96 });
  return { json: compactJson(json) + "\n", plot, maps: heat };
}
