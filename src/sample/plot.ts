/**
 * A small raster plotting helper in pure TypeScript: an RGB canvas, a built-in 5x7 bitmap font
 * (printable ASCII with lower case and descenders, drawn at 2x by default: 10x14-pixel capitals),
 * and a line plot with error bars, shaded bands, ticks, axis labels and a legend beside the
 * plot area (never over the data). Enough for the sampling and study figures without a
 * plotting stack.
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

  /**
   * Text with its top-left corner at (x, y), each font pixel drawn as `scale` x `scale`. A line
   * is GLYPH_H * scale pixels high (descenders included).
   */
  text(x: number, y: number, text: string, color: Rgb = [0, 0, 0], scale = 2) {
    this.drawText(text, scale, (gx, gy) => this.fillRect(x + gx, y + gy, scale, scale, color));
  }

  /** Text read bottom to top (turned a quarter left), its glyphs' tops at column x. */
  verticalText(x: number, yBottom: number, text: string, color: Rgb = [0, 0, 0], scale = 2) {
    this.drawText(
      text,
      scale,
      (gx, gy) => this.fillRect(x + gy, yBottom - gx - scale, scale, scale, color),
    );
  }

  /** Calls `ink(dx, dy)` at the offset of every inked font pixel of `text` from its corner. */
  private drawText(text: string, scale: number, ink: (dx: number, dy: number) => void) {
    let cx = 0;
    for (const ch of text) {
      const glyph = FONT[ch] ?? FONT["?"];
      for (let gy = 0; gy < GLYPH_H; gy++) {
        for (let gx = 0; gx < GLYPH_W; gx++) {
          if (glyph[gy][gx]) ink(cx + gx * scale, gy * scale);
        }
      }
      cx += ADVANCE * scale;
    }
  }
}

export const GLYPH_W = 5;
/** Rows of a text line: 7 above the baseline, 2 for descenders (g, j, p, q, y, comma). */
export const GLYPH_H = 9;
/** Glyph width plus one column of space. */
const ADVANCE = GLYPH_W + 1;

/** Width in pixels of `text` drawn at `scale` (no trailing gap). */
export function textWidth(text: string, scale = 2): number {
  const n = [...text].length;
  return n === 0 ? 0 : (n * ADVANCE - 1) * scale;
}

/**
 * A 5x7 font with descenders (the classic LCD shapes), "#" = ink, rows top to bottom; rows
 * missing at the bottom are blank. Characters it lacks draw as "?".
 */
const FONT_ROWS: Record<string, string> = {
  "0": ".###. #...# #..## #.#.# ##..# #...# .###.",
  "1": "..#.. .##.. ..#.. ..#.. ..#.. ..#.. .###.",
  "2": ".###. #...# ....# ...#. ..#.. .#... #####",
  "3": "##### ...#. ..#.. ...#. ....# #...# .###.",
  "4": "...#. ..##. .#.#. #..#. ##### ...#. ...#.",
  "5": "##### #.... ####. ....# ....# #...# .###.",
  "6": "..##. .#... #.... ####. #...# #...# .###.",
  "7": "##### ....# ...#. ..#.. .#... .#... .#...",
  "8": ".###. #...# #...# .###. #...# #...# .###.",
  "9": ".###. #...# #...# .#### ....# ...#. .##..",
  A: ".###. #...# #...# ##### #...# #...# #...#",
  B: "####. #...# #...# ####. #...# #...# ####.",
  C: ".###. #...# #.... #.... #.... #...# .###.",
  D: "###.. #..#. #...# #...# #...# #..#. ###..",
  E: "##### #.... #.... ####. #.... #.... #####",
  F: "##### #.... #.... ####. #.... #.... #....",
  G: ".###. #...# #.... #.### #...# #...# .####",
  H: "#...# #...# #...# ##### #...# #...# #...#",
  I: ".###. ..#.. ..#.. ..#.. ..#.. ..#.. .###.",
  J: "..### ...#. ...#. ...#. ...#. #..#. .##..",
  K: "#...# #..#. #.#.. ##... #.#.. #..#. #...#",
  L: "#.... #.... #.... #.... #.... #.... #####",
  M: "#...# ##.## #.#.# #.#.# #...# #...# #...#",
  N: "#...# #...# ##..# #.#.# #..## #...# #...#",
  O: ".###. #...# #...# #...# #...# #...# .###.",
  P: "####. #...# #...# ####. #.... #.... #....",
  Q: ".###. #...# #...# #...# #.#.# #..#. .##.#",
  R: "####. #...# #...# ####. #.#.. #..#. #...#",
  S: ".#### #.... #.... .###. ....# ....# ####.",
  T: "##### ..#.. ..#.. ..#.. ..#.. ..#.. ..#..",
  U: "#...# #...# #...# #...# #...# #...# .###.",
  V: "#...# #...# #...# #...# #...# .#.#. ..#..",
  W: "#...# #...# #...# #.#.# #.#.# #.#.# .#.#.",
  X: "#...# #...# .#.#. ..#.. .#.#. #...# #...#",
  Y: "#...# #...# .#.#. ..#.. ..#.. ..#.. ..#..",
  Z: "##### ....# ...#. ..#.. .#... #.... #####",
  a: "..... ..... .###. ....# .#### #...# .####",
  b: "#.... #.... #.##. ##..# #...# #...# ####.",
  c: "..... ..... .###. #.... #.... #...# .###.",
  d: "....# ....# .##.# #..## #...# #...# .####",
  e: "..... ..... .###. #...# ##### #.... .###.",
  f: "..##. .#..# .#... ###.. .#... .#... .#...",
  g: "..... ..... .#### #...# #...# #...# .#### ....# .###.",
  h: "#.... #.... #.##. ##..# #...# #...# #...#",
  i: "..#.. ..... .##.. ..#.. ..#.. ..#.. .###.",
  j: "...#. ..... ..##. ...#. ...#. ...#. ...#. #..#. .##..",
  k: "#.... #.... #..#. #.#.. ##... #.#.. #..#.",
  l: ".##.. ..#.. ..#.. ..#.. ..#.. ..#.. .###.",
  m: "..... ..... ##.#. #.#.# #.#.# #.#.# #.#.#",
  n: "..... ..... #.##. ##..# #...# #...# #...#",
  o: "..... ..... .###. #...# #...# #...# .###.",
  p: "..... ..... ####. #...# #...# #...# ####. #.... #....",
  q: "..... ..... .#### #...# #...# #...# .#### ....# ....#",
  r: "..... ..... #.##. ##..# #.... #.... #....",
  s: "..... ..... .###. #.... .###. ....# ####.",
  t: ".#... .#... ###.. .#... .#... .#..# ..##.",
  u: "..... ..... #...# #...# #...# #..## .##.#",
  v: "..... ..... #...# #...# #...# .#.#. ..#..",
  w: "..... ..... #...# #...# #.#.# #.#.# .#.#.",
  x: "..... ..... #...# .#.#. ..#.. .#.#. #...#",
  y: "..... ..... #...# #...# #...# #...# .#### ....# .###.",
  z: "..... ..... ##### ...#. ..#.. .#... #####",
  " ": "",
  ".": "..... ..... ..... ..... ..... .##.. .##..",
  ",": "..... ..... ..... ..... ..... .##.. ..#.. .#...",
  ":": "..... .##.. .##.. ..... .##.. .##..",
  ";": "..... .##.. .##.. ..... .##.. .##.. ..#.. .#...",
  "-": "..... ..... ..... .###.",
  "_": "..... ..... ..... ..... ..... ..... #####",
  "+": "..... ..#.. ..#.. ##### ..#.. ..#..",
  "=": "..... ..... ##### ..... #####",
  "±": "..#.. ..#.. ##### ..#.. ..#.. ..... #####",
  "/": "....# ...#. ...#. ..#.. .#... .#... #....",
  "\\": "#.... .#... .#... ..#.. ...#. ...#. ....#",
  "%": "##..# ##..# ...#. ..#.. .#... #..## #..##",
  "(": "...#. ..#.. .#... .#... .#... ..#.. ...#.",
  ")": ".#... ..#.. ...#. ...#. ...#. ..#.. .#...",
  "[": ".###. .#... .#... .#... .#... .#... .###.",
  "]": ".###. ...#. ...#. ...#. ...#. ...#. .###.",
  "<": "...#. ..#.. .#... #.... .#... ..#.. ...#.",
  ">": ".#... ..#.. ...#. ....# ...#. ..#.. .#...",
  "?": ".###. #...# ....# ...#. ..#.. ..... ..#..",
  "!": "..#.. ..#.. ..#.. ..#.. ..#.. ..... ..#..",
  "'": "..#.. ..#.. .#...",
  '"': ".#.#. .#.#.",
  "*": "..... ..#.. #.#.# .###. #.#.# ..#..",
  "#": ".#.#. .#.#. ##### .#.#. ##### .#.#. .#.#.",
  "|": "..#.. ..#.. ..#.. ..#.. ..#.. ..#.. ..#..",
};

/** Per character, its GLYPH_H rows of GLYPH_W booleans. */
const FONT: Record<string, boolean[][]> = Object.fromEntries(
  Object.entries(FONT_ROWS).map(([ch, rows]) => {
    const given = rows.split(" ").filter((r) => r.length > 0);
    return [
      ch,
      Array.from(
        { length: GLYPH_H },
        (_, y) => Array.from({ length: GLYPH_W }, (_, x) => given[y]?.[x] === "#"),
      ),
    ];
  }),
);

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
  /** Error bars: y +- yErr[i] at every point (e.g. one standard deviation over seeds). */
  yErr?: readonly number[];
  /** Shift of the whole series in pixels along x, so error bars of close series stay apart. */
  xOffsetPx?: number;
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
  /** Font scale (default 2: 10x14-pixel capitals). */
  fontScale?: number;
}

interface LegendEntry {
  label: string;
  series?: LineSeries;
  band?: Band;
}

/**
 * Draws a line plot into a new canvas of exactly `width` x `height` pixels: the title above,
 * the y label turned along the left edge, the legend in a column to the right of the plot area.
 */
export function linePlot(o: LinePlotOptions): Canvas {
  const canvas = new Canvas(o.width, o.height);
  const fs = o.fontScale ?? 2;
  const charH = GLYPH_H * fs;
  const errEdges = o.series.flatMap((s) =>
    (s.yErr ?? []).flatMap((e, i) => [s.y[i] - e, s.y[i] + e])
  );
  const finite = [
    ...o.series.flatMap((s) => s.y),
    ...errEdges,
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

  const legend: LegendEntry[] = [
    ...o.series.filter((s) => s.label).map((s) => ({ label: s.label!, series: s })),
    ...(o.bands ?? []).filter((b) => b.label).map((b) => ({ label: b.label!, band: b })),
  ];
  const swatch = 10 * fs;
  const legendW = legend.length
    ? 6 * fs + swatch + 3 * fs + Math.max(...legend.map((e) => textWidth(e.label, fs)))
    : 0;

  // Margins: the y label and tick labels on the left, the x ticks and label below, the title
  // above, the legend on the right; the x axis' last tick label may reach past the plot area.
  const yTickW = Math.max(...yTicks.map((t) => textWidth(formatTick(t, yStep), fs)));
  const left = (o.yLabel ? charH + 4 * fs : 0) + yTickW + 5 * fs;
  const top = o.title ? charH + 6 * fs : 4 * fs;
  const bottom = charH * (o.xLabel ? 2 : 1) + 8 * fs;
  const lastTickHalf = textWidth(xTickLabel(xTicks[xTicks.length - 1] ?? 0), fs) / 2;
  const right = legend.length ? legendW + 4 * fs : Math.max(4 * fs, lastTickHalf + fs);
  const pw = o.width - left - right, ph = o.height - top - bottom;
  if (pw < 8 || ph < 8) {
    throw new RangeError(`plot size ${o.width}x${o.height} leaves no room for the plot area`);
  }
  // Series shifted sideways, and their error bars' caps, stay inside the plot area.
  const inset = Math.min(
    Math.floor(pw / 4),
    Math.max(
      0,
      ...o.series.map((s) => Math.abs(s.xOffsetPx ?? 0) + (s.yErr || s.markers ? 2 * fs : 0)),
    ),
  );
  const xAt = (t: number) => left + inset + ((t - xLo) / (xHi - xLo)) * (pw - 1 - 2 * inset);
  const px = (x: number) => xAt(tx(x));
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
      const xv = xLo + ((col - inset) / Math.max(1, pw - 1 - 2 * inset)) * (xHi - xLo);
      const lo = interpolate(bx, band.lo, xv), hi = interpolate(bx, band.hi, xv);
      if (!Number.isFinite(lo) || !Number.isFinite(hi)) continue;
      const y0 = Math.round(py(Math.max(lo, hi))), y1 = Math.round(py(Math.min(lo, hi)));
      for (let y = y0; y <= y1; y++) canvas.blend(left + col, y, band.color, alpha);
    }
  }
  for (const s of o.series) {
    const xs = s.x ?? o.x;
    const sx = (x: number) => px(x) + (s.xOffsetPx ?? 0);
    let phase = 0;
    for (let i = 1; i < xs.length; i++) {
      if (!Number.isFinite(s.y[i - 1]) || !Number.isFinite(s.y[i])) continue;
      phase = canvas.line(sx(xs[i - 1]), py(s.y[i - 1]), sx(xs[i]), py(s.y[i]), s.color, {
        thickness: s.thickness ?? 2,
        dash: s.dash,
        phase,
      });
    }
    xs.forEach((x, i) => {
      if (!Number.isFinite(s.y[i])) return;
      const err = s.yErr?.[i];
      if (err !== undefined && Number.isFinite(err) && err > 0) {
        const cx = sx(x), cap = 2 * fs;
        const yTop = py(s.y[i] + err), yBottom = py(s.y[i] - err);
        canvas.line(cx, yTop, cx, yBottom, s.color, { thickness: 2 });
        canvas.line(cx - cap, yTop, cx + cap, yTop, s.color, { thickness: 2 });
        canvas.line(cx - cap, yBottom, cx + cap, yBottom, s.color, { thickness: 2 });
      }
      if (s.markers || xs.length === 1) {
        canvas.fillRect(sx(x) - 1.5 * fs, py(s.y[i]) - 1.5 * fs, 3 * fs + 1, 3 * fs + 1, s.color);
      }
    });
  }
  canvas.line(left, top, left, top + ph - 1, black);
  canvas.line(left, top + ph - 1, left + pw - 1, top + ph - 1, black);
  for (const t of yTicks) {
    const y = py(t);
    canvas.line(left - 2 * fs, y, left, y, black);
    const label = formatTick(t, yStep);
    canvas.text(left - 3 * fs - textWidth(label, fs), y - (7 * fs) / 2, label, black, fs);
  }
  for (const t of xTicks) {
    const x = xAt(t);
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
  if (o.yLabel) {
    const along = Math.min(ph, o.height - 2 * fs);
    canvas.verticalText(
      2 * fs,
      top + ph / 2 + Math.min(along, textWidth(o.yLabel, fs)) / 2,
      o.yLabel,
      black,
      fs,
    );
  }
  if (o.title) {
    canvas.text(left + pw / 2 - textWidth(o.title, fs) / 2, 3 * fs, o.title, black, fs);
  }
  drawLegend(canvas, legend, left + pw + 6 * fs, top, fs, swatch);
  return canvas;
}

/** The legend: one row per entry (a line or band swatch, then its label) from (x, y) down. */
function drawLegend(
  canvas: Canvas,
  entries: readonly LegendEntry[],
  x: number,
  y: number,
  fs: number,
  swatch: number,
) {
  const charH = GLYPH_H * fs, rowH = charH + 3 * fs;
  entries.forEach((e, i) => {
    const cy = y + i * rowH, mid = cy + (7 * fs) / 2;
    if (e.series) {
      canvas.line(x, mid, x + swatch, mid, e.series.color, {
        thickness: e.series.thickness ?? 2,
        dash: e.series.dash,
      });
      if (e.series.markers) {
        canvas.fillRect(
          x + swatch / 2 - 1.5 * fs,
          mid - 1.5 * fs,
          3 * fs + 1,
          3 * fs + 1,
          e.series.color,
        );
      }
    } else {
      canvas.fillRect(x, cy, swatch, 7 * fs, e.band!.color, e.band!.alpha ?? 0.25);
    }
    canvas.text(x + swatch + 3 * fs, cy, e.label, [0, 0, 0], fs);
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
