/**
 * The plots of the study and of `sample --entropy`: the legend beside the plot area (never over
 * the data), error bars, and a font large enough to read, with lower case.
 */
import assert from "node:assert/strict";
import { Canvas, GLYPH_H, linePlot, type Rgb, textWidth } from "../src/sample/plot.ts";

const pixel = (c: Canvas, x: number, y: number) =>
  Array.from(c.rgb.subarray((y * c.width + x) * 3, (y * c.width + x) * 3 + 3));
const isColor = (c: Canvas, x: number, y: number, rgb: Rgb) => {
  const [r, g, b] = pixel(c, x, y);
  return r === rgb[0] && g === rgb[1] && b === rgb[2];
};

/** The x axis: the row with the longest run of black pixels (the lowest of equals). */
function xAxis(c: Canvas): { y: number; left: number; right: number } {
  let best = { y: 0, left: 0, right: -1 };
  for (let y = 0; y < c.height; y++) {
    let run = 0;
    for (let x = 0; x < c.width; x++) {
      run = isColor(c, x, y, [0, 0, 0]) ? run + 1 : 0;
      if (run > 0 && run >= best.right - best.left + 1) best = { y, left: x - run + 1, right: x };
    }
  }
  return best;
}

Deno.test("linePlot: the legend lies beside the plot area and covers no data", () => {
  const blue: Rgb = [20, 60, 170];
  const x = Array.from({ length: 9 }, (_, i) => i);
  // A line along the top of the plot area, where a legend inside the plot used to be drawn.
  const plot = linePlot({
    width: 480,
    height: 300,
    x,
    series: [
      { y: x.map(() => 1), color: blue, label: "first label" },
      { y: x.map(() => 0.5), color: [200, 30, 30], label: "second" },
    ],
    xLabel: "step",
    yLabel: "value",
    title: "title",
  });
  const axis = xAxis(plot);
  assert.ok(axis.right - axis.left > 200, `x axis found: ${JSON.stringify(axis)}`);
  // The axis row also holds the y axis' bottom tick mark (4 pixels left of the plot area).
  for (let col = axis.left + 5; col < axis.right; col++) {
    let seen = false;
    for (let y = 0; y < axis.y && !seen; y++) seen = isColor(plot, col, y, blue);
    assert.ok(seen, `the top line is visible in column ${col}`);
  }
  // The legend's text: dark pixels right of the plot area, above the x axis.
  let legendInk = 0;
  for (let y = 0; y < axis.y; y++) {
    for (let col = axis.right + 2; col < plot.width; col++) {
      const [r, g, b] = pixel(plot, col, y);
      if (r < 80 && g < 80 && b < 80) legendInk++;
    }
  }
  assert.ok(legendInk > 100, `${legendInk} legend pixels right of the plot area`);
});

Deno.test("linePlot: error bars span mean +- error and widen the y range", () => {
  const red: Rgb = [214, 39, 40];
  const x = [1, 2, 4, 8];
  const extent = (yErr?: number[]) => {
    const plot = linePlot({
      width: 400,
      height: 300,
      x,
      series: [{ y: [2, 2, 2, 2], yErr, color: red, markers: true }],
      yFromZero: false,
      logX: true,
    });
    const rows: number[] = [];
    for (let y = 0; y < plot.height; y++) {
      for (let col = 0; col < plot.width; col++) if (isColor(plot, col, y, red)) rows.push(y);
    }
    return Math.max(...rows) - Math.min(...rows);
  };
  const flat = extent(), bars = extent([0.5, 0.5, 0.5, 0.5]);
  assert.ok(flat < 15, `a flat line with markers is ${flat} pixels high`);
  assert.ok(bars > 100, `the error bars span ${bars} pixels`);
});

Deno.test("font: 5x7 glyphs at 2x, lower case distinct from capitals, every label character drawn", () => {
  assert.equal(GLYPH_H, 9);
  assert.equal(textWidth("AB", 2), (2 * 6 - 1) * 2);
  const draw = (text: string) => {
    const c = new Canvas(40, 2 * GLYPH_H + 4);
    c.text(2, 2, text, [0, 0, 0], 2);
    return c.rgb.join(",");
  };
  const unknown = draw("?");
  for (
    const ch of "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,:;-+=/%()[]±'"
  ) {
    assert.notEqual(draw(ch), unknown, `'${ch}' has a glyph`);
    assert.notEqual(draw(ch), draw(" "), `'${ch}' has ink`);
  }
  for (const ch of "aegnrst") assert.notEqual(draw(ch), draw(ch.toUpperCase()), ch);
  // Descenders reach below the capitals' baseline (row 7 of 9).
  const g = new Canvas(12, 2 * GLYPH_H);
  g.text(0, 0, "g", [0, 0, 0], 2);
  let below = 0;
  for (let y = 14; y < 18; y++) for (let x = 0; x < 12; x++) if (pixel(g, x, y)[0] === 0) below++;
  assert.ok(below > 0, "g has a descender");
});
