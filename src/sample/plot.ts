/**
 * A small raster plotting helper in pure TypeScript: an RGB canvas, a built-in 3x5 bitmap font
 * (digits, capitals, a little punctuation; lower case is drawn as capitals), and a line plot
 * with shaded bands, ticks and axis labels. Enough for the entropy figure (paper Figure 6)
 * without a plotting stack.
 */

export type Rgb = readonly [number, number, number];

/** An (height, width, 3) uint8 image with drawing primitives. Coordinates outside are clipped. */
export class Canvas {
  readonly rgb: Uint8Array; // (height, width, 3)
  constructor(readonly width: number, readonly height: number, background: Rgb = [255, 255, 255]) {
    if (!(Number.isInteger(width) && Number.isInteger(height) && width > 0 && height > 0)) {
      throw new RangeError(`canvas size must be positive integers, got ${width}x${height}`);
    }
    this.rgb = new Uint8Array(width * height * 3);
    for (let i = 0; i < width * height; i++) this.rgb.set(background, i * 3);
  }

  /** Blends `color` over pixel (x, y) with opacity `alpha` in [0, 1]. */
  blend(x: number, y: number, color: Rgb, alpha = 1) {
    x = Math.round(x);
    y = Math.round(y);
    if (x < 0 || y < 0 || x >= this.width || y >= this.height) return;
    const at = (y * this.width + x) * 3;
    for (let c = 0; c < 3; c++) {
      this.rgb[at + c] = Math.round(this.rgb[at + c] * (1 - alpha) + color[c] * alpha);
    }
  }

  fillRect(x0: number, y0: number, w: number, h: number, color: Rgb, alpha = 1) {
    for (let y = Math.max(0, Math.round(y0)); y < Math.min(this.height, Math.round(y0 + h)); y++) {
      for (let x = Math.max(0, Math.round(x0)); x < Math.min(this.width, Math.round(x0 + w)); x++) {
        this.blend(x, y, color, alpha);
      }
    }
  }

  /**
   * A line of `thickness` pixels from (x0, y0) to (x1, y1). `dash` = [on, off] lengths in pixels
   * makes it dashed; `phase` is where along the dash pattern it starts (returned at the end,
   * so a polyline keeps its pattern across segments).
   */
  line(
    x0: number,
    y0: number,
    x1: number,
    y1: number,
    color: Rgb,
    { thickness = 1, dash, phase = 0 }: {
      thickness?: number;
      dash?: [number, number];
      phase?: number;
    } = {},
  ): number {
    const length = Math.hypot(x1 - x0, y1 - y0);
    const steps = Math.max(1, Math.ceil(length * 2));
    const r = (thickness - 1) / 2;
    for (let i = 0; i <= steps; i++) {
      const t = i / steps;
      const along = phase + t * length;
      if (dash && along % (dash[0] + dash[1]) >= dash[0]) continue;
      const x = x0 + (x1 - x0) * t, y = y0 + (y1 - y0) * t;
      for (let dy = -Math.floor(r); dy <= Math.ceil(r); dy++) {
        for (let dx = -Math.floor(r); dx <= Math.ceil(r); dx++) this.blend(x + dx, y + dy, color);
      }
    }
    return phase + length;
  }

  /** Text with its top-left corner at (x, y), each font pixel drawn as `scale` x `scale`. */
  text(x: number, y: number, text: string, color: Rgb = [0, 0, 0], scale = 2) {
    let cx = Math.round(x);
    for (const ch of text.toUpperCase()) {
      const glyph = FONT[ch] ?? FONT["?"];
      for (let gy = 0; gy < GLYPH_H; gy++) {
        for (let gx = 0; gx < GLYPH_W; gx++) {
          if (glyph[gy][gx] === "1") {
            this.fillRect(cx + gx * scale, Math.round(y) + gy * scale, scale, scale, color);
          }
        }
      }
      cx += (GLYPH_W + 1) * scale;
    }
  }
}

export const GLYPH_W = 3, GLYPH_H = 5;

/** Width in pixels of `text` drawn at `scale` (no trailing gap). */
export function textWidth(text: string, scale = 2): number {
  return text.length === 0 ? 0 : (text.length * (GLYPH_W + 1) - 1) * scale;
}

/** 3x5 glyphs, rows top to bottom, "1" = ink. */
const FONT: Record<string, string[]> = {
  "0": ["111", "101", "101", "101", "111"],
  "1": ["010", "110", "010", "010", "111"],
  "2": ["111", "001", "111", "100", "111"],
  "3": ["111", "001", "111", "001", "111"],
  "4": ["101", "101", "111", "001", "001"],
  "5": ["111", "100", "111", "001", "111"],
  "6": ["111", "100", "111", "101", "111"],
  "7": ["111", "001", "001", "010", "010"],
  "8": ["111", "101", "111", "101", "111"],
  "9": ["111", "101", "111", "001", "111"],
  A: ["010", "101", "111", "101", "101"],
  B: ["110", "101", "110", "101", "110"],
  C: ["011", "100", "100", "100", "011"],
  D: ["110", "101", "101", "101", "110"],
  E: ["111", "100", "110", "100", "111"],
  F: ["111", "100", "110", "100", "100"],
  G: ["011", "100", "101", "101", "011"],
  H: ["101", "101", "111", "101", "101"],
  I: ["111", "010", "010", "010", "111"],
  J: ["001", "001", "001", "101", "010"],
  K: ["101", "101", "110", "101", "101"],
  L: ["100", "100", "100", "100", "111"],
  M: ["101", "111", "111", "101", "101"],
  N: ["110", "101", "101", "101", "101"],
  O: ["010", "101", "101", "101", "010"],
  P: ["110", "101", "110", "100", "100"],
  Q: ["010", "101", "101", "110", "011"],
  R: ["110", "101", "110", "101", "101"],
  S: ["011", "100", "010", "001", "110"],
  T: ["111", "010", "010", "010", "010"],
  U: ["101", "101", "101", "101", "111"],
  V: ["101", "101", "101", "101", "010"],
  W: ["101", "101", "111", "111", "101"],
  X: ["101", "101", "010", "101", "101"],
  Y: ["101", "101", "010", "010", "010"],
  Z: ["111", "001", "010", "100", "111"],
  " ": ["000", "000", "000", "000", "000"],
  ".": ["000", "000", "000", "000", "010"],
  ",": ["000", "000", "000", "010", "100"],
  "-": ["000", "000", "111", "000", "000"],
  "+": ["000", "010", "111", "010", "000"],
  "=": ["000", "111", "000", "111", "000"],
  ":": ["000", "010", "000", "010", "000"],
  "/": ["001", "001", "010", "100", "100"],
  "%": ["101", "001", "010", "100", "101"],
  "(": ["001", "010", "010", "010", "001"],
  ")": ["100", "010", "010", "010", "100"],
  "?": ["111", "001", "010", "000", "010"],
};

/**
 * About `count` round tick values (1, 2 or 5 times a power of ten) inside [lo, hi], or, with
 * `extend`, from the tick at or below lo to the tick at or above hi.
 */
export function niceTicks(
  lo: number,
  hi: number,
  count = 5,
  { integer = false, extend = false } = {},
): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / Math.max(1, count);
  const mag = 10 ** Math.floor(Math.log10(raw));
  let step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw * (1 - 1e-9)) ?? 10 * mag;
  if (integer) step = Math.max(1, Math.round(step));
  const first = extend ? Math.floor(lo / step + 1e-9) : Math.ceil(lo / step - 1e-9);
  const last = extend ? Math.ceil(hi / step - 1e-9) : Math.floor(hi / step + 1e-9);
  const ticks: number[] = [];
  for (let i = first; i <= last; i++) ticks.push(i === 0 ? 0 : i * step);
  return ticks;
}

/** A tick label with no more decimals than the tick step needs. */
export function formatTick(value: number, step: number): string {
  const decimals = step >= 1 ? 0 : Math.min(6, Math.ceil(-Math.log10(step) - 1e-9));
  return value.toFixed(decimals);
}

export interface LineSeries {
  /** (x.length) values; NaN leaves a gap. */
  y: readonly number[];
  /** This series' own x values (ascending, y.length of them) instead of the plot's x. */
  x?: readonly number[];
  /** A dot at every point. */
  markers?: boolean;
  color: Rgb;
  thickness?: number;
  dash?: [number, number];
  label?: string;
}

export interface Band {
  /** (x.length) lower and upper edges. */
  lo: readonly number[];
  hi: readonly number[];
  /** This band's own x values instead of the plot's x. */
  x?: readonly number[];
  color: Rgb;
  /** Opacity of the fill. */
  alpha?: number;
  label?: string;
}

export interface LinePlotOptions {
  width: number;
  height: number;
  /** Shared x values of every series and band, ascending. */
  x: readonly number[];
  series: LineSeries[];
  bands?: Band[];
  xLabel?: string;
  yLabel?: string;
  title?: string;
  /** Dashed grey vertical lines at these x values (e.g. scale boundaries). */
  vlines?: readonly number[];
  /** Integer ticks on the x axis. */
  integerX?: boolean;
  /** A log2 x axis with ticks at powers of 2 (x values must be positive). */
  logX?: boolean;
  /** The y range starts at 0 (default true). */
  yFromZero?: boolean;
  /** Font scale (default 2: 6x10-pixel characters). */
  fontScale?: number;
}

/** Draws a line plot into a new canvas of exactly `width` x `height` pixels. */
export function linePlot(o: LinePlotOptions): Canvas {
  const canvas = new Canvas(o.width, o.height);
  const fs = o.fontScale ?? 2;
  const charH = GLYPH_H * fs;
  const finite = [
    ...o.series.flatMap((s) => s.y),
    ...(o.bands ?? []).flatMap((b) => [...b.lo, ...b.hi]),
  ].filter(Number.isFinite);
  let yLo = finite.length ? Math.min(...finite) : 0;
  let yHi = finite.length ? Math.max(...finite) : 1;
  if (o.yFromZero ?? true) yLo = Math.min(0, yLo);
  if (!(yHi > yLo)) yHi = yLo + 1;
  // x positions are log2(x) on a log axis; ticks are placed and labelled in those units.
  const tx = (x: number) => (o.logX ? Math.log2(x) : x);
  const allX = [o.x, ...o.series.map((s) => s.x ?? []), ...(o.bands ?? []).map((b) => b.x ?? [])]
    .flat().filter(Number.isFinite).map(tx);
  const xLo = allX.length ? Math.min(...allX) : 0;
  const xHi = allX.length && Math.max(...allX) > xLo ? Math.max(...allX) : xLo + 1;
  const yTicks = niceTicks(yLo, yHi, 5, { extend: true });
  yLo = yTicks[0];
  yHi = yTicks[yTicks.length - 1];
  const yStep = yTicks.length > 1 ? yTicks[1] - yTicks[0] : 1;
  const xTicks = niceTicks(xLo, xHi, 8, { integer: o.integerX || o.logX });
  const xStep = xTicks.length > 1 ? xTicks[1] - xTicks[0] : 1;
  const xTickLabel = (t: number) => (o.logX ? String(2 ** t) : formatTick(t, xStep));

  // Margins: y tick labels on the left, x tick labels and the x label below, title/y label above.
  const yLabelW = Math.max(...yTicks.map((t) => textWidth(formatTick(t, yStep), fs)));
  const left = yLabelW + 4 * fs + 6;
  const top = (o.title || o.yLabel ? charH + 4 * fs : 2 * fs) + 4;
  const bottom = charH * (o.xLabel ? 2 : 1) + 6 * fs + 4;
  const right = 6 * fs;
  const pw = o.width - left - right, ph = o.height - top - bottom;
  if (pw < 8 || ph < 8) {
    throw new RangeError(`plot size ${o.width}x${o.height} leaves no room for the plot area`);
  }
  const px = (x: number) => left + ((tx(x) - xLo) / (xHi - xLo)) * (pw - 1);
  const py = (y: number) => top + (1 - (y - yLo) / (yHi - yLo)) * (ph - 1);
  const black: Rgb = [0, 0, 0], grid: Rgb = [225, 225, 225];

  // Grid lines, then vertical markers, then bands, then series, then axes on top.
  for (const t of yTicks) canvas.line(left, py(t), left + pw - 1, py(t), grid);
  for (const v of o.vlines ?? []) {
    canvas.line(px(v), top, px(v), top + ph - 1, [150, 150, 150], { dash: [3, 3] });
  }
  for (const band of o.bands ?? []) {
    const alpha = band.alpha ?? 0.25;
    const bx = (band.x ?? o.x).map(tx);
    for (let col = 0; col < pw; col++) {
      const xv = xLo + (col / Math.max(1, pw - 1)) * (xHi - xLo);
      const lo = interpolate(bx, band.lo, xv), hi = interpolate(bx, band.hi, xv);
      if (!Number.isFinite(lo) || !Number.isFinite(hi)) continue;
      const y0 = Math.round(py(Math.max(lo, hi))), y1 = Math.round(py(Math.min(lo, hi)));
      for (let y = y0; y <= y1; y++) canvas.blend(left + col, y, band.color, alpha);
    }
  }
  for (const s of o.series) {
    const xs = s.x ?? o.x;
    let phase = 0;
    for (let i = 1; i < xs.length; i++) {
      if (!Number.isFinite(s.y[i - 1]) || !Number.isFinite(s.y[i])) continue;
      phase = canvas.line(px(xs[i - 1]), py(s.y[i - 1]), px(xs[i]), py(s.y[i]), s.color, {
        thickness: s.thickness ?? 2,
        dash: s.dash,
        phase,
      });
    }
    xs.forEach((x, i) => {
      if ((s.markers || xs.length === 1) && Number.isFinite(s.y[i])) {
        canvas.fillRect(px(x) - 2, py(s.y[i]) - 2, 5, 5, s.color);
      }
    });
  }
  canvas.line(left, top, left, top + ph - 1, black);
  canvas.line(left, top + ph - 1, left + pw - 1, top + ph - 1, black);
  for (const t of yTicks) {
    const y = py(t);
    canvas.line(left - 2 * fs, y, left, y, black);
    const label = formatTick(t, yStep);
    canvas.text(left - 3 * fs - textWidth(label, fs), y - charH / 2, label, black, fs);
  }
  for (const t of xTicks) {
    const x = left + ((t - xLo) / (xHi - xLo)) * (pw - 1);
    canvas.line(x, top + ph - 1, x, top + ph - 1 + 2 * fs, black);
    const label = xTickLabel(t);
    canvas.text(x - textWidth(label, fs) / 2, top + ph + 3 * fs, label, black, fs);
  }
  if (o.xLabel) {
    canvas.text(
      left + pw / 2 - textWidth(o.xLabel, fs) / 2,
      top + ph + 3 * fs + charH + 2 * fs,
      o.xLabel,
      black,
      fs,
    );
  }
  if (o.yLabel) canvas.text(2, 2 * fs, o.yLabel, black, fs);
  if (o.title) {
    canvas.text(left + pw / 2 - textWidth(o.title, fs) / 2, 2 * fs, o.title, black, fs);
  }
  drawLegend(canvas, o, left + pw - 1, top + 2 * fs, fs);
  return canvas;
}

/** Legend entries for labelled series and bands, right-aligned at `right`. */
function drawLegend(canvas: Canvas, o: LinePlotOptions, right: number, y: number, fs: number) {
  const entries = [
    ...o.series.filter((s) => s.label).map((s) => ({ label: s.label!, series: s, band: null })),
    ...(o.bands ?? []).filter((b) => b.label).map((b) => ({
      label: b.label!,
      series: null,
      band: b,
    })),
  ];
  if (!entries.length) return;
  const sample = 8 * fs, charH = GLYPH_H * fs;
  const width = sample + 2 * fs + Math.max(...entries.map((e) => textWidth(e.label, fs)));
  const x0 = right - width - 2 * fs;
  canvas.fillRect(x0 - fs, y - fs, width + 2 * fs, entries.length * (charH + 2 * fs) + fs, [
    255,
    255,
    255,
  ], 0.85);
  entries.forEach((e, i) => {
    const cy = y + i * (charH + 2 * fs);
    if (e.series) {
      canvas.line(x0, cy + charH / 2, x0 + sample, cy + charH / 2, e.series.color, {
        thickness: e.series.thickness ?? 2,
        dash: e.series.dash,
      });
    } else {
      canvas.fillRect(x0, cy, sample, charH, e.band!.color, e.band!.alpha ?? 0.25);
    }
    canvas.text(x0 + sample + 2 * fs, cy, e.label, [0, 0, 0], fs);
  });
}

/** Piecewise-linear value of (xs, ys) at x; NaN outside [xs[0], xs[last]] or next to a NaN. */
function interpolate(xs: readonly number[], ys: readonly number[], x: number): number {
  if (xs.length === 0) return NaN;
  if (xs.length === 1) return x === xs[0] ? ys[0] : NaN;
  if (x < xs[0] || x > xs[xs.length - 1]) return NaN;
  let i = 1;
  while (i < xs.length - 1 && xs[i] < x) i++;
  const t = (x - xs[i - 1]) / (xs[i] - xs[i - 1]);
  return ys[i - 1] + (ys[i] - ys[i - 1]) * t;
}
