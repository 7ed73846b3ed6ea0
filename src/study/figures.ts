/** The study's PNG figures, in the form of the paper's Figures 4(c), 5 and 6 and Table 2(b). */
import {
  type Band,
  Canvas,
  GLYPH_H,
  linePlot,
  type LineSeries,
  type Rgb,
  textWidth,
} from "../sample/plot.ts";
import { type Measure, type ModelSummary, stat } from "./aggregate.ts";
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

/**
 * One line per model (mean over seeds, with dots and error bars of one standard deviation over
 * seeds), x = steps per scale or total steps (log2). The models' bars are spread a few pixels
 * apart so that bars at the same x stay readable.
 */
export function nllPlot(
  models: readonly ModelSummary[],
  label: (m: ModelSummary) => string,
  o: { x: "stepsPerScale" | "totalSteps"; measure: Measure; title: string },
): Png {
  const spread = 5;
  const series: LineSeries[] = models.map((m, i) => ({
    x: m.points.map((p) => p[o.x]),
    y: m.points.map((p) => p[o.measure].mean),
    yErr: m.points.map((p) => p[o.measure].sd),
    xOffsetPx: (i - (models.length - 1) / 2) * spread,
    color: PALETTE[i % PALETTE.length],
    markers: true,
    label: label(m),
  }));
  return linePlot({
    width: 760,
    height: 460,
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
 * Figure 6: per order, the mean entropy per step (averaged over seeds) with error bars of one
 * standard deviation over seeds, and the 25th-75th percentile band over samples (averaged
 * over seeds); scale boundaries of the first order dashed.
 */
export function entropyPlot(
  orders: readonly { name: string; records: EntropyRecord[] }[],
  stepsPerScale: number,
): Png {
  const series: LineSeries[] = [];
  const bands: Band[] = [];
  let boundaries: number[] = [];
  for (const [i, o] of orders.entries()) {
    const per = o.records.map((r) => r.byP.find((b) => b.stepsPerScale === stepsPerScale)!);
    if (per.length === 0) continue;
    const steps = per[0].steps;
    const over = (f: (s: (typeof steps)[number]) => number) =>
      steps.map((_, j) => stat(per.map((r) => f(r.steps[j]))));
    const x = steps.map((s) => s.step);
    const color = PALETTE[i % PALETTE.length];
    const mean = over((s) => s.mean);
    series.push({
      x,
      y: mean.map((m) => m.mean),
      yErr: mean.map((m) => m.sd),
      xOffsetPx: (i - (orders.length - 1) / 2) * 3,
      color,
      label: o.name,
    });
    bands.push({
      x,
      lo: over((s) => s.p25).map((m) => m.mean),
      hi: over((s) => s.p75).map((m) => m.mean),
      color,
      alpha: 0.1,
    });
    if (boundaries.length === 0) {
      boundaries = steps.slice(1).filter((s, j) => s.scale !== steps[j].scale).map((s) =>
        s.step - 0.5
      );
    }
  }
  // A legend entry for the bands (drawn in each order's colour; the entry itself draws nothing).
  bands.push({ x: [], lo: [], hi: [], color: [120, 120, 120], alpha: 0.3, label: "25-75%" });
  return linePlot({
    width: 860,
    height: 460,
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
  const fs = 2, charH = GLYPH_H * fs, gap = 14;
  // Cells as wide as their widest text ("head 0" below, "0.000" inside), half as tall again.
  const cellW = Math.max(textWidth("head 00", fs), textWidth("0.000", fs)) + gap;
  const cell = charH + 2 * gap;
  const rowLabelW = textWidth("LAYER 00", fs) + gap;
  const heads = Math.max(1, ...models.flatMap((m) => m.alpha.map((r) => r.length)));
  const blockH = (m: { alpha: number[][] }) =>
    charH + gap + Math.max(1, m.alpha.length) * cell + gap;
  const span = Math.max(
    1e-3,
    ...models.flatMap((m) => m.alpha.flat().map((a) => Math.abs(2 * a - 1))),
  );
  const caption = `colours: 2 alpha - 1 from -${span.toFixed(3)} to +${span.toFixed(3)}`;
  const width = Math.max(rowLabelW + heads * cellW + gap, textWidth(caption, fs) + gap);
  const height = gap + models.reduce((a, m) => a + blockH(m), 0) + 2 * (charH + gap);
  const canvas = new Canvas(width, height);
  let y = gap;
  for (const m of models) {
    canvas.text(gap / 2, y, m.label, [0, 0, 0], fs);
    y += charH + gap;
    m.alpha.forEach((row, l) => {
      canvas.text(gap / 2, y + cell / 2 - charH / 2, `layer ${l}`, [0, 0, 0], fs);
      row.forEach((a, h) => {
        const x0 = rowLabelW + h * cellW;
        const t = (2 * a - 1) / span;
        canvas.fillRect(x0, y, cellW - 2, cell - 2, diverging(t));
        const text = a.toFixed(3);
        const ink: Rgb = Math.abs(t) > 0.6 ? [255, 255, 255] : [0, 0, 0];
        canvas.text(
          x0 + (cellW - 2) / 2 - textWidth(text, fs) / 2,
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
      heads0 + h * cellW + (cellW - 2) / 2 - textWidth(text, fs) / 2,
      y,
      text,
      [0, 0, 0],
      fs,
    );
  }
  canvas.text(gap / 2, y + charH + gap, caption, [0, 0, 0], fs);
  return canvas;
}
