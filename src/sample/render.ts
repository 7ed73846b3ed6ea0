/**
 * Pictures of sampled codes: the final images decoded by the tokenizer, a grid with one row per
 * class labelled with the class name, the progressive view of paper Figure 1 (the canvas after
 * every step, locations not yet sampled masked, each column labelled with its step and scale),
 * and per-scale entropy heat maps (paper Figure 7).
 *
 * Codes are laid out like SampledCodes: (n, L) with L = sum s^2, scales concatenated, raster
 * order inside a scale. Images are (side, side, 3) uint8 RGB.
 */
import { encodeNpz } from "../data/npy.ts";
import type { Device } from "../engine.ts";
import type { ImageTokenizer } from "../tokenizer/tokenizer.ts";
import { scaleOfSteps } from "./entropy.ts";
import { scaleOffsets } from "../plan/layout.ts";
import { Canvas, GLYPH_H, type Rgb, textWidth } from "./plot.ts";

/** What rendering needs of a tokenizer (either kind of ImageTokenizer fits). */
export type ScaleDecoder = Pick<ImageTokenizer, "patch" | "decodeGrids">;

/** Each image decoded at the final scale: n images of (sK*p, sK*p, 3). */
export async function decodeFinal(
  decoder: ScaleDecoder,
  codes: Int32Array, // (n, L)
  n: number,
  scales: readonly number[],
  device: Device,
): Promise<Uint8Array[]> {
  const L = scales.reduce((a, s) => a + s * s, 0);
  const sK = scales[scales.length - 1], start = L - sK * sK;
  const grids = new Int32Array(n * sK * sK); // (n, sK*sK)
  for (let i = 0; i < n; i++) grids.set(codes.subarray(i * L + start, (i + 1) * L), i * sK * sK);
  const size = (sK * decoder.patch) ** 2 * 3;
  const images: Uint8Array[] = [];
  // A bounded number of grids per call: the VQ decoder's activations grow with the batch.
  const chunk = 8;
  for (let i = 0; i < n; i += chunk) {
    const m = Math.min(chunk, n - i);
    const rgb = await decoder.decodeGrids(grids.subarray(i * sK * sK, (i + m) * sK * sK), m, sK, device);
    for (let j = 0; j < m; j++) images.push(rgb.slice(j * size, (j + 1) * size));
  }
  return images;
}

/**
 * Grid rows by class: `rowClasses` lists each row's class (the classes of `order` that occur in
 * `labels`, then any others ascending); `cells[r]` the image indices of that class, in order.
 */
export function classRows(
  labels: ArrayLike<number>, // (n)
  order: readonly number[] = [],
): { rowClasses: number[]; cells: number[][] } {
  const byClass = new Map<number, number[]>();
  for (let i = 0; i < labels.length; i++) {
    const list = byClass.get(labels[i]) ?? [];
    list.push(i);
    byClass.set(labels[i], list);
  }
  const rowClasses = [...new Set(order)].filter((c) => byClass.has(c));
  const rest = [...byClass.keys()].filter((c) => !rowClasses.includes(c)).sort((a, b) => a - b);
  rowClasses.push(...rest);
  return { rowClasses, cells: rowClasses.map((c) => byClass.get(c)!) };
}

export interface TileLayout {
  /** One label per row, drawn left of the row (vertically centred). */
  rowLabels?: readonly string[];
  /** Lines of text per column, drawn above the first row (centred). */
  columnLabels?: readonly (readonly string[])[];
  gap?: number;
  background?: number;
  /** Font pixel size of the labels (default: 2 where tiles are at least 24 pixels, else 1). */
  fontScale?: number;
}

/** Longest row label, in characters, before it is shortened with '..'. */
const MAX_LABEL_CHARS = 24;

/** Height in pixels of `lines` lines of label text at font scale `fs` (plot.ts's font). */
export function textBlockHeight(lines: number, fs: number): number {
  return lines <= 0 ? 0 : lines * GLYPH_H * fs + (lines - 1) * 2 * fs;
}

/** `text` shortened with '..' to fit `maxWidth` pixels at font scale `fs` (whole when it fits). */
export function fitText(text: string, maxWidth: number, fs: number): string {
  if (textWidth(text, fs) <= maxWidth) return text;
  const chars = [...text];
  while (chars.length > 1 && textWidth(chars.join("") + "..", fs) > maxWidth) chars.pop();
  return chars.join("").trimEnd() + "..";
}

/**
 * Tiles of (tileW, tileH, 3) in rows of `cols`, with an optional label column on the left and a
 * header of column labels on top. A row is at least as tall as one line of label text.
 */
export function labelledTiles(
  tiles: readonly Uint8Array[],
  tileW: number,
  tileH: number,
  cols: number,
  { rowLabels, columnLabels, gap = 2, background = 255, fontScale }: TileLayout = {},
): Canvas {
  const fs = fontScale ?? (Math.min(tileW, tileH) >= 24 ? 2 : 1);
  const rows = Math.max(1, Math.ceil(tiles.length / cols));
  const pad = 3 * fs; // between labels and tiles
  const maxLabel = textWidth("M".repeat(MAX_LABEL_CHARS), fs);
  const shownRows = rowLabels?.map((l) => fitText(l, maxLabel, fs));
  const labelW = shownRows?.length
    ? Math.max(...shownRows.map((l) => textWidth(l, fs))) + 2 * pad
    : 0;
  const headerLines = Math.max(0, ...(columnLabels ?? []).map((c) => c.length));
  // Column labels drop to the smallest font where a line would be wider than its tile.
  const fits = (columnLabels ?? []).every((c) => c.every((l) => textWidth(l, fs) <= tileW));
  const headFs = fits ? fs : 1;
  const headerH = headerLines ? textBlockHeight(headerLines, headFs) + 2 * pad : 0;
  const rowH = Math.max(tileH, shownRows?.length ? textBlockHeight(1, fs) : 0);
  const width = labelW + cols * tileW + (cols + 1) * gap;
  const height = headerH + rows * rowH + (rows + 1) * gap;
  const bg = [background, background, background] as const;
  const canvas = new Canvas(width, height, bg);
  tiles.forEach((tile, i) => {
    const x0 = labelW + gap + (i % cols) * (tileW + gap);
    const y0 = headerH + gap + Math.floor(i / cols) * (rowH + gap);
    for (let y = 0; y < tileH; y++) {
      canvas.rgb.set(
        tile.subarray(y * tileW * 3, (y + 1) * tileW * 3),
        ((y0 + y) * width + x0) * 3,
      );
    }
  });
  shownRows?.forEach((label, r) => {
    const y0 = headerH + gap + r * (rowH + gap);
    const y = y0 + Math.floor((Math.min(rowH, tileH) - textBlockHeight(1, fs)) / 2);
    canvas.text(labelW - pad - textWidth(label, fs), Math.max(y0, y), label, [0, 0, 0], fs);
  });
  columnLabels?.forEach((lines, c) => {
    const x0 = labelW + gap + c * (tileW + gap);
    lines.forEach((line, j) => {
      const x = x0 + Math.floor((tileW - textWidth(line, headFs)) / 2);
      canvas.text(x, pad + j * (GLYPH_H + 2) * headFs, line, [0, 0, 0], headFs);
    });
  });
  return canvas;
}

/**
 * One row per class, that class's images across, the class's name left of its row
 * (`classNames[c]`, or the index where the checkpoint has no names); short rows are padded
 * with background. Returns the picture and its layout.
 */
export function classGrid(
  images: readonly Uint8Array[], // n x (side, side, 3)
  side: number,
  labels: ArrayLike<number>, // (n)
  order: readonly number[] = [],
  { gap = 2, background = 255, classNames = [] as readonly string[] } = {},
): Canvas & { rowClasses: number[]; cols: number } {
  const { rowClasses, cells } = classRows(labels, order);
  const cols = Math.max(1, ...cells.map((c) => c.length));
  const blank = new Uint8Array(side * side * 3).fill(background);
  const tiles = cells.flatMap((row) =>
    Array.from({ length: cols }, (_, j) => (j < row.length ? images[row[j]] : blank))
  );
  if (tiles.length === 0) tiles.push(blank);
  const rowLabels = rowClasses.map((c) => classNames[c] ?? String(c));
  const canvas = labelledTiles(tiles, side, side, cols, { rowLabels, gap, background });
  return Object.assign(canvas, { rowClasses, cols });
}

/** Nearest-neighbour resize of a (srcH, srcW, 3) image to (dstH, dstW, 3). */
export function resizeNearest(
  rgb: Uint8Array,
  srcW: number,
  srcH: number,
  dstW: number,
  dstH: number,
): Uint8Array {
  const out = new Uint8Array(dstW * dstH * 3);
  for (let y = 0; y < dstH; y++) {
    const sy = Math.floor((y * srcH) / dstH);
    for (let x = 0; x < dstW; x++) {
      const sx = Math.floor((x * srcW) / dstW);
      out.set(rgb.subarray((sy * srcW + sx) * 3, (sy * srcW + sx) * 3 + 3), (y * dstW + x) * 3);
    }
  }
  return out;
}

/** Mask colour of pixel (x, y) of a location not sampled yet: mid grey with thin diagonals. */
export function maskPixel(x: number, y: number): number {
  return (x + y) % 6 === 0 ? 176 : 128;
}

/**
 * One scale's canvas: the known codes decoded, the others (code < 0) masked, resized (nearest)
 * to (outSide, outSide, 3). Masking is applied at the output resolution, so the pattern stays
 * thin at every scale.
 */
export async function maskedScaleCanvas(
  decoder: ScaleDecoder,
  codes: ArrayLike<number>, // (s*s) raster, -1 where not sampled
  s: number,
  outSide: number,
  device: Device,
): Promise<Uint8Array> {
  const safe = Int32Array.from(codes, (c) => Math.max(0, c));
  const px = s * decoder.patch;
  const decoded = await decoder.decodeGrids(safe, 1, s, device);
  const image = resizeNearest(decoded, px, px, outSide, outSide);
  for (let y = 0; y < outSide; y++) {
    const ty = Math.floor((y * s) / outSide);
    for (let x = 0; x < outSide; x++) {
      const tx = Math.floor((x * s) / outSide);
      if (codes[ty * s + tx] >= 0) continue;
      image.fill(maskPixel(x, y), (y * outSide + x) * 3, (y * outSide + x) * 3 + 3);
    }
  }
  return image;
}

/**
 * The progressive view of image `img`: after each step, that step's scale's codes sampled so far
 * (those with stepOf <= step) decoded and the rest masked, each panel (outSide, outSide, 3).
 * Returns totalSteps panels.
 */
export async function progressivePanels(
  decoder: ScaleDecoder,
  codes: Int32Array, // (n, L) final codes
  stepOf: Int32Array, // (n, L)
  scales: readonly number[],
  totalSteps: number,
  img: number,
  outSide: number,
  device: Device,
): Promise<Uint8Array[]> {
  const L = scales.reduce((a, s) => a + s * s, 0);
  const starts = scaleOffsets(scales);
  const scaleOf = scaleOfSteps(stepOf.subarray(img * L, (img + 1) * L), scales, totalSteps);
  const panels: Uint8Array[] = [];
  for (let step = 0; step < totalSteps; step++) {
    const k = scaleOf[step], s = scales[k];
    const at = img * L + starts[k];
    const known = Int32Array.from(
      { length: s * s },
      (_, p) => stepOf[at + p] <= step ? codes[at + p] : -1,
    );
    panels.push(await maskedScaleCanvas(decoder, known, s, outSide, device));
  }
  return panels;
}

/**
 * Rows of panels (each (side, side, 3)) into one picture, `cols` panels per row, with
 * `columnLabels[j]` (lines of text) above column j and `rowLabels[i]` left of row i.
 */
export function panelRows(
  rows: Uint8Array[][],
  side: number,
  cols: number,
  { columnLabels, rowLabels }: Pick<TileLayout, "columnLabels" | "rowLabels"> = {},
): Canvas {
  const blank = new Uint8Array(side * side * 3).fill(255);
  const tiles = rows.flatMap((r) => Array.from({ length: cols }, (_, j) => r[j] ?? blank));
  return labelledTiles(tiles, side, side, cols, {
    columnLabels,
    rowLabels,
    gap: 2,
    background: 255,
  });
}

/** The label lines of each step of a plan: "step 3/13" and "scale 4x4". */
export function stepLabels(
  stepOfRow: ArrayLike<number>, // (L) of any one image: every image has the same blocks
  scales: readonly number[],
  totalSteps: number,
): string[][] {
  const scaleOf = scaleOfSteps(stepOfRow, scales, totalSteps);
  return Array.from(
    scaleOf,
    (k, t) => [`step ${t + 1}/${totalSteps}`, `scale ${scales[k]}x${scales[k]}`],
  );
}

/**
 * The panel side of the progressive view: the image side enlarged by a whole factor to at least
 * `min` pixels, so the step labels above each panel fit in a readable size.
 */
export function progressivePanelSide(side: number, min = 128): number {
  return side * Math.max(1, Math.ceil(min / side));
}

/** Images for the progressive view: the first image of each class in row order, at most `max`. */
export function progressiveSelection(
  labels: ArrayLike<number>,
  order: readonly number[] = [],
  max = 10,
): number[] {
  return classRows(labels, order).cells.map((c) => c[0]).slice(0, max);
}

const VIRIDIS: [number, Rgb][] = [
  [0, [68, 1, 84]],
  [0.25, [59, 82, 139]],
  [0.5, [33, 145, 140]],
  [0.75, [94, 201, 98]],
  [1, [253, 231, 37]],
];

/** A viridis-like colour for t in [0, 1] (clamped). */
export function heatColor(t: number): Rgb {
  t = Number.isFinite(t) ? Math.min(1, Math.max(0, t)) : 0;
  for (let i = 1; i < VIRIDIS.length; i++) {
    const [t1, c1] = VIRIDIS[i], [t0, c0] = VIRIDIS[i - 1];
    if (t <= t1) {
      const f = (t - t0) / (t1 - t0);
      return [0, 1, 2].map((c) => Math.round(c0[c] + (c1[c] - c0[c]) * f)) as unknown as Rgb;
    }
  }
  return VIRIDIS[VIRIDIS.length - 1][1];
}

export interface HeatMapRow {
  label: string;
  /** One (s*s) raster map per scale. */
  maps: Float32Array[];
}

/**
 * Entropy heat maps: one row per entry of `rows`, scales side by side, each map resized
 * (nearest) to `panel` pixels; one colour scale [0, vmax] for all, shown by a colour bar.
 */
export function heatMapFigure(
  rows: HeatMapRow[],
  scales: readonly number[],
  { panel = 96, vmax, unit = "bits" }: { panel?: number; vmax?: number; unit?: string } = {},
): Canvas {
  const fs = 2, charH = GLYPH_H * fs, gap = 6;
  const top = charH + 3 * fs + gap;
  const labelW = Math.max(0, ...rows.map((r) => textWidth(r.label, fs))) + gap;
  const barW = 12, barLabelW = Math.max(textWidth("00.00", fs), textWidth(unit, fs));
  const width = labelW + scales.length * (panel + gap) + gap + barW + 2 * fs + barLabelW + gap;
  const height = top + rows.length * (panel + gap) + gap;
  const canvas = new Canvas(width, height);
  const max = vmax ?? Math.max(1e-9, ...rows.flatMap((r) => r.maps.flatMap((m) => [...m])));
  scales.forEach((s, k) => {
    const x0 = labelW + gap + k * (panel + gap);
    const title = `${s}X${s}`;
    canvas.text(x0 + panel / 2 - textWidth(title, fs) / 2, gap, title, [0, 0, 0], fs);
  });
  rows.forEach((row, r) => {
    const y0 = top + r * (panel + gap);
    canvas.text(gap / 2, y0 + panel / 2 - charH / 2, row.label, [0, 0, 0], fs);
    scales.forEach((s, k) => {
      const x0 = labelW + gap + k * (panel + gap);
      for (let y = 0; y < panel; y++) {
        const ty = Math.floor((y * s) / panel);
        for (let x = 0; x < panel; x++) {
          const tx = Math.floor((x * s) / panel);
          canvas.blend(x0 + x, y0 + y, heatColor(row.maps[k][ty * s + tx] / max));
        }
      }
    });
  });
  // Colour bar: vmax at the top, 0 at the bottom, beside the first row (or all rows).
  const bx = labelW + gap + scales.length * (panel + gap) + gap;
  const by = top, bh = Math.max(panel, height - top - gap) - charH;
  for (let y = 0; y < bh; y++) canvas.fillRect(bx, by + y, barW, 1, heatColor(1 - y / (bh - 1)));
  canvas.text(bx + barW + 2 * fs, by, max.toFixed(2), [0, 0, 0], fs);
  canvas.text(bx + barW + 2 * fs, by + bh - charH, "0", [0, 0, 0], fs);
  canvas.text(bx, by + bh + fs, unit, [0, 0, 0], fs);
  return canvas;
}

/** The FID-tool file of sampled images: arr_0 uint8 (n, side, side, 3) and labels int32 (n). */
export function samplesNpz(
  images: readonly Uint8Array[], // n x (side, side, 3)
  side: number,
  labels: Int32Array, // (n)
): Uint8Array {
  const n = images.length;
  const arr0 = new Uint8Array(n * side * side * 3); // (n, H, W, 3)
  images.forEach((img, i) => arr0.set(img, i * side * side * 3));
  return encodeNpz({
    arr_0: { shape: [n, side, side, 3], data: arr0 },
    labels: { shape: [n], data: labels },
  });
}
