/** The study's PNG figures, in the form of the paper's Figures 4(c), 5 and 6 and Table 2(b). */
import { Canvas, GLYPH_H, linePlot, type LineSeries, type Rgb, textWidth } from "../sample/plot.ts";
import type { Measure, ModelSummary } from "./aggregate.ts";
import type { EntropyRecord } from "./run.ts";

export interface Png {
  width: number;
  height: number;
  rgb: Uint8Array;
}

const PALETTE: Rgb[] = [
  [31, 119, 180],
  [214, 39, 40],
  [44, 160, 44],
  [148, 103, 189],
  [255, 127, 14],
  [140, 86, 75],
];

const MEASURE_LABEL: Record<Measure, string> = {
  bitsPerToken: "NLL (bits per token)",
  bitsPerImage: "NLL (bits per image)",
  finalScaleBits: "final-scale NLL (bits per token)",
};

/** One line per model (mean over seeds, with dots), x = steps per scale or total steps (log2). */
export function nllPlot(
  models: readonly ModelSummary[],
  label: (m: ModelSummary) => string,
  o: { x: "stepsPerScale" | "totalSteps"; measure: Measure; title: string },
): Png {
  const series: LineSeries[] = models.map((m, i) => ({
    x: m.points.map((p) => p[o.x]),
    y: m.points.map((p) => p[o.measure].mean),
    color: PALETTE[i % PALETTE.length],
    markers: true,
    label: label(m),
  }));
  return linePlot({
    width: 640,
    height: 420,
    x: [],
    series,
    logX: true,
    yFromZero: false,
    xLabel: o.x === "stepsPerScale" ? "steps per scale" : "total steps",
    yLabel: MEASURE_LABEL[o.measure],
    title: o.title,
  });
}

/**
 * Figure 6: mean entropy per step with the 25th-75th percentile band, one colour per order
 * (values averaged over seeds), scale boundaries of the first order dashed.
 */
export function entropyPlot(
  orders: readonly { name: string; records: EntropyRecord[] }[],
  stepsPerScale: number,
): Png {
  const series: LineSeries[] = [];
  const bands = [];
  let boundaries: number[] = [];
  for (const [i, o] of orders.entries()) {
    const per = o.records.map((r) => r.byP.find((b) => b.stepsPerScale === stepsPerScale)!);
    const steps = per[0].steps;
    const avg = (f: (s: (typeof steps)[number]) => number) =>
      steps.map((_, j) => per.reduce((a, r) => a + f(r.steps[j]), 0) / per.length);
    const x = steps.map((s) => s.step);
    const color = PALETTE[i % PALETTE.length];
    series.push({ x, y: avg((s) => s.mean), color, label: o.name });
    bands.push({ x, lo: avg((s) => s.p25), hi: avg((s) => s.p75), color, alpha: 0.12 });
    if (i === 0) {
      boundaries = steps.slice(1).filter((s, j) => s.scale !== steps[j].scale).map((s) =>
        s.step - 0.5
      );
    }
  }
  return linePlot({
    width: 720,
    height: 420,
    x: [],
    series,
    bands,
    vlines: boundaries,
    integerX: true,
    xLabel: "step",
    yLabel: "entropy (bits)",
    title: `sampling entropy per step, ${stepsPerScale} steps per scale`,
  });
}

/** Blue (-1) through white (0) to red (+1). */
function diverging(v: number): Rgb {
  const t = Math.max(-1, Math.min(1, v));
  const white: Rgb = [255, 255, 255], blue: Rgb = [49, 54, 149], red: Rgb = [165, 0, 38];
  const end = t < 0 ? blue : red, f = Math.abs(t);
  return [0, 1, 2].map((c) => Math.round(white[c] + (end[c] - white[c]) * f)) as unknown as Rgb;
}

/**
 * Table 2(b): the key mixing weights of each model as a layers x heads grid, each cell coloured
 * by 2 alpha - 1 (blue: keys rotate by the sampled position, red: by the output position) and
 * labelled with alpha. The colours span the largest |2 alpha - 1| of the figure, so weights
 * that moved little from their start (0.5) still show which way they moved.
 */
export function mixingHeatMap(models: readonly { label: string; alpha: number[][] }[]): Png {
  const fs = 2, charH = GLYPH_H * fs, cell = 56, gap = 14;
  const rowLabelW = textWidth("LAYER 00", fs) + gap;
  const heads = Math.max(1, ...models.flatMap((m) => m.alpha.map((r) => r.length)));
  const blockH = (m: { alpha: number[][] }) =>
    charH + gap + Math.max(1, m.alpha.length) * cell + gap;
  const span = Math.max(
    1e-3,
    ...models.flatMap((m) => m.alpha.flat().map((a) => Math.abs(2 * a - 1))),
  );
  const caption = `colours: 2 alpha - 1 from -${span.toFixed(3)} to +${span.toFixed(3)}`;
  const width = Math.max(rowLabelW + heads * cell + gap, textWidth(caption, fs) + gap);
  const height = gap + models.reduce((a, m) => a + blockH(m), 0) + 2 * (charH + gap);
  const canvas = new Canvas(width, height);
  let y = gap;
  for (const m of models) {
    canvas.text(gap / 2, y, m.label, [0, 0, 0], fs);
    y += charH + gap;
    m.alpha.forEach((row, l) => {
      canvas.text(gap / 2, y + cell / 2 - charH / 2, `layer ${l}`, [0, 0, 0], fs);
      row.forEach((a, h) => {
        const x0 = rowLabelW + h * cell;
        const t = (2 * a - 1) / span;
        canvas.fillRect(x0, y, cell - 2, cell - 2, diverging(t));
        const text = a.toFixed(3);
        const ink: Rgb = Math.abs(t) > 0.6 ? [255, 255, 255] : [0, 0, 0];
        canvas.text(
          x0 + (cell - 2) / 2 - textWidth(text, fs) / 2,
          y + cell / 2 - charH / 2,
          text,
          ink,
          fs,
        );
      });
      y += cell;
    });
    if (m.alpha.length === 0) {
      canvas.text(rowLabelW, y + cell / 2 - charH / 2, "no mixing", [0, 0, 0], fs);
      y += cell;
    }
    y += gap;
  }
  const heads0 = rowLabelW;
  for (let h = 0; h < heads; h++) {
    const text = `head ${h}`;
    canvas.text(
      heads0 + h * cell + (cell - 2) / 2 - textWidth(text, fs) / 2,
      y,
      text,
      [0, 0, 0],
      fs,
    );
  }
  canvas.text(gap / 2, y + charH + gap, caption, [0, 0, 0], fs);
  return canvas;
}
