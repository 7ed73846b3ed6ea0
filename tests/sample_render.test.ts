/**
 * Pure tests of the sample outputs: grid rows by class, progressive masking, entropy statistics
 * against hand-computed values, heat maps and the line plot.
 */
import assert from "node:assert/strict";
import {
  classGrid,
  classRows,
  decodeFinal,
  heatColor,
  heatMapFigure,
  maskedScaleCanvas,
  maskPixel,
  panelRows,
  progressivePanels,
  progressiveSelection,
  resizeNearest,
  type ScaleDecoder,
} from "../src/sample/render.ts";
import { entropyMaps, percentile, scaleOfSteps, stepEntropyStats } from "../src/sample/entropy.ts";
import { Canvas, formatTick, linePlot, niceTicks, textWidth } from "../src/sample/plot.ts";
import { encodePng } from "../src/data/png.ts";

/** A decoder whose code c paints its p x p patch with the grey value 10 c + 5. */
function fakeDecoder(patch: number): ScaleDecoder {
  return {
    patch,
    decodeScale(codes, s) {
      const px = s * patch;
      const out = new Uint8Array(px * px * 3); // (px, px, 3)
      for (let y = 0; y < px; y++) {
        for (let x = 0; x < px; x++) {
          const c = codes[Math.floor(y / patch) * s + Math.floor(x / patch)];
          out.fill(10 * c + 5, (y * px + x) * 3, (y * px + x) * 3 + 3);
        }
      }
      return out;
    },
  };
}

const grey = (rgb: Uint8Array, width: number, x: number, y: number) => rgb[(y * width + x) * 3];

Deno.test("classRows: rows in the given class order, then the others ascending", () => {
  const labels = [2, 0, 2, 1, 0];
  assert.deepEqual(classRows(labels), { rowClasses: [0, 1, 2], cells: [[1, 4], [3], [0, 2]] });
  assert.deepEqual(classRows(labels, [2, 0]).rowClasses, [2, 0, 1]);
  assert.deepEqual(classRows(labels, [7, 1]).rowClasses, [1, 0, 2], "absent classes get no row");
  assert.deepEqual(progressiveSelection(labels, [2, 0, 1]), [0, 1, 3]);
  assert.deepEqual(progressiveSelection(labels, [], 2), [1, 3]);
});

Deno.test("classGrid: one row per class, images across, short rows padded", () => {
  const side = 4, gap = 2;
  const labels = [2, 0, 2, 1, 0];
  const images = labels.map((_, i) => new Uint8Array(side * side * 3).fill(10 * i)); // (4, 4, 3)
  const g = classGrid(images, side, labels, [], { gap });
  assert.equal(g.cols, 2);
  assert.deepEqual(g.rowClasses, [0, 1, 2]);
  assert.equal(g.width, 2 * side + 3 * gap);
  assert.equal(g.height, 3 * side + 4 * gap);
  assert.equal(g.rgb.length, g.width * g.height * 3);
  const cell = (r: number, c: number) =>
    grey(g.rgb, g.width, gap + c * (side + gap) + 1, gap + r * (side + gap) + 1);
  assert.deepEqual([cell(0, 0), cell(0, 1)], [10, 40], "class 0: images 1 and 4");
  assert.deepEqual([cell(1, 0), cell(1, 1)], [30, 255], "class 1: image 3, then padding");
  assert.deepEqual([cell(2, 0), cell(2, 1)], [0, 20], "class 2: images 0 and 2");
});

Deno.test("decodeFinal decodes the last scale of every row", () => {
  const scales = [1, 2], L = 5;
  const codes = Int32Array.from([9, 1, 2, 3, 4, 9, 5, 6, 7, 8]); // (2, L)
  const images = decodeFinal(fakeDecoder(1), codes, 2, scales);
  assert.equal(images.length, 2);
  assert.deepEqual(Array.from(images[1].filter((_, i) => i % 3 === 0)), [55, 65, 75, 85]);
  assert.equal(images[0].length, 2 * 2 * 3);
  assert.equal(codes.length, 2 * L);
});

Deno.test("resizeNearest repeats pixels", () => {
  const rgb = Uint8Array.from([1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4]); // (2, 2, 3)
  const big = resizeNearest(rgb, 2, 2, 4, 4);
  assert.deepEqual(
    Array.from(big.filter((_, i) => i % 3 === 0)),
    [1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4],
  );
});

Deno.test("maskedScaleCanvas masks the locations not sampled yet, at the output size", () => {
  const out = maskedScaleCanvas(fakeDecoder(2), [3, -1, -1, 7], 2, 8); // 2x2 grid of 2px -> 8px
  for (let y = 0; y < 8; y++) {
    for (let x = 0; x < 8; x++) {
      const loc = (y < 4 ? 0 : 2) + (x < 4 ? 0 : 1);
      const want = loc === 0 ? 35 : loc === 3 ? 75 : maskPixel(x, y);
      assert.equal(grey(out, 8, x, y), want, `pixel ${x},${y}`);
    }
  }
  // The mask has its thin pattern: two grey levels.
  const masked = new Set(Array.from({ length: 16 }, (_, i) => maskPixel(i % 4 + 4, i >> 2)));
  assert.equal(masked.size, 2);
});

Deno.test("progressivePanels: a panel per step, showing that step's scale", () => {
  // Scales [1, 2]: step 0 samples the 1x1 scale, step 1 locations 0 and 3, step 2 locations 1, 2.
  const scales = [1, 2], L = 5, steps = 3, n = 2;
  const stepOf = Int32Array.from([0, 1, 2, 2, 1, 0, 1, 2, 2, 1]); // (n, L)
  const final = Int32Array.from([4, 1, 2, 3, 5, 6, 7, 8, 9, 1]); // (n, L)
  assert.equal(final.length, n * L);
  assert.deepEqual(Array.from(scaleOfSteps(stepOf.subarray(0, L), scales, steps)), [0, 1, 1]);
  const panels = progressivePanels(fakeDecoder(1), final, stepOf, scales, steps, 1, 4);
  assert.equal(panels.length, 3);
  // Step 0: the 1x1 scale of image 1 (code 6) over the whole panel.
  assert.ok(panels[0].every((v) => v === 65));
  // Step 1: locations 0 and 3 of the 2x2 scale known (codes 7 and 1), 1 and 2 masked.
  assert.equal(grey(panels[1], 4, 0, 0), 75);
  assert.equal(grey(panels[1], 4, 3, 3), 15);
  assert.equal(grey(panels[1], 4, 3, 0), maskPixel(3, 0));
  assert.equal(grey(panels[1], 4, 0, 3), maskPixel(0, 3));
  // Step 2: everything known.
  assert.deepEqual(
    [grey(panels[2], 4, 0, 0), grey(panels[2], 4, 3, 0), grey(panels[2], 4, 0, 3)],
    [75, 85, 95],
  );
  const fig = panelRows([panels, panels.slice(0, 2)], 4, 3);
  assert.equal(fig.width, 3 * 4 + 4 * 2);
  assert.equal(fig.height, 2 * 4 + 3 * 2);
});

Deno.test("percentile interpolates like numpy", () => {
  assert.equal(percentile([1, 2, 3, 4], 0.25), 1.75);
  assert.equal(percentile([1, 2, 3, 4], 0.75), 3.25);
  assert.equal(percentile([5], 0.25), 5);
  assert.ok(Number.isNaN(percentile([], 0.5)));
});

Deno.test("stepEntropyStats: mean and quartiles over images of per-image step means", () => {
  const scales = [1, 2], L = 5, n = 4, steps = 3;
  const stepOf = new Int32Array(n * L); // (n, L)
  for (let i = 0; i < n; i++) stepOf.set([0, 1, 2, 2, 1], i * L);
  const entropy = Float32Array.from([
    // image 0: step 0 -> 4, step 1 -> (1 + 3) / 2 = 2, step 2 -> (0 + 1) / 2 = 0.5
    [4, 1, 0, 1, 3],
    [6, 2, 1, 1, 4], // 6, 3, 1
    [2, 0, 2, 2, 2], // 2, 1, 2
    [8, 4, 3, 3, 6], // 8, 5, 3
  ].flat()); // (n, L)
  const stats = stepEntropyStats(entropy, stepOf, n, scales, steps);
  assert.deepEqual(stats.map((s) => [s.step, s.scale, s.locations]), [[0, 0, 1], [1, 1, 2], [
    2,
    1,
    2,
  ]]);
  // Step 0 values 4, 6, 2, 8 -> sorted 2, 4, 6, 8: mean 5, p25 3.5, p75 6.5.
  assert.deepEqual([stats[0].mean, stats[0].p25, stats[0].p75], [5, 3.5, 6.5]);
  // Step 1 values 2, 3, 1, 5 -> sorted 1, 2, 3, 5: mean 2.75, p25 1.75, p75 3.5.
  assert.deepEqual([stats[1].mean, stats[1].p25, stats[1].p75], [2.75, 1.75, 3.5]);
  // Step 2 values 0.5, 1, 2, 3: mean 1.625, p25 0.875, p75 2.25.
  assert.deepEqual([stats[2].mean, stats[2].p25, stats[2].p75], [1.625, 0.875, 2.25]);

  const maps = entropyMaps(entropy, n, scales);
  assert.deepEqual(Array.from(maps[0]), [5]);
  assert.deepEqual(Array.from(maps[1]), [1.75, 1.5, 1.75, 3.75]);
  assert.deepEqual(Array.from(entropyMaps(entropy, n, scales, [2])[1]), [0, 2, 2, 2]);
});

Deno.test("heat map colours and figure", () => {
  assert.deepEqual(heatColor(0), [68, 1, 84]);
  assert.deepEqual(heatColor(1), [253, 231, 37]);
  assert.deepEqual(heatColor(2), heatColor(1), "clamped");
  const maps = [Float32Array.from([1]), Float32Array.from([0, 1, 2, 3])];
  const fig = heatMapFigure([{ label: "mean", maps }, { label: "img 0", maps }], [1, 2], {
    panel: 32,
  });
  assert.equal(fig.rgb.length, fig.width * fig.height * 3);
  assert.ok(fig.height >= 2 * 32 && fig.width >= 2 * 32);
  // The top-left pixel of the 2x2 panel of row 0 has the colour of value 0 (viridis start).
  let found = false;
  for (let i = 0; i < fig.width * fig.height && !found; i++) {
    found = fig.rgb[i * 3] === 68 && fig.rgb[i * 3 + 1] === 1 && fig.rgb[i * 3 + 2] === 84;
  }
  assert.ok(found, "a zero-entropy location is drawn");
});

Deno.test("ticks and labels", () => {
  assert.deepEqual(niceTicks(0, 3.3, 5), [0, 1, 2, 3]);
  assert.deepEqual(niceTicks(0, 3.3, 5, { extend: true }), [0, 1, 2, 3, 4]);
  assert.deepEqual(niceTicks(1, 17, 8, { integer: true }), [2, 4, 6, 8, 10, 12, 14, 16]);
  const fine = niceTicks(0.05, 0.9, 5, { extend: true });
  assert.deepEqual(fine.map((t) => formatTick(t, 0.2)), ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"]);
  assert.equal(textWidth("AB", 2), (2 * 4 - 1) * 2);
  const c = new Canvas(20, 12);
  c.text(1, 1, "0", [0, 0, 0], 2);
  assert.equal(grey(c.rgb, 20, 1, 1), 0, "ink at the glyph's corner");
  assert.equal(grey(c.rgb, 20, 3, 3), 255, "hole of the 0");
});

Deno.test("linePlot: a PNG of the asked size with ink", () => {
  const x = Array.from({ length: 17 }, (_, i) => i + 1);
  const mean = x.map((v) => 3 + Math.sin(v));
  const plot = linePlot({
    width: 320,
    height: 200,
    x,
    series: [{ y: mean, color: [20, 60, 170], label: "mean" }],
    bands: [{ lo: mean.map((v) => v - 0.5), hi: mean.map((v) => v + 0.5), color: [90, 120, 200] }],
    vlines: [1.5, 5.5],
    integerX: true,
    xLabel: "step",
    yLabel: "entropy (bits)",
    title: "test",
  });
  assert.equal(plot.width, 320);
  assert.equal(plot.height, 200);
  let ink = 0, blue = 0;
  for (let i = 0; i < 320 * 200; i++) {
    const [r, g, b] = plot.rgb.subarray(i * 3, i * 3 + 3);
    if (r !== 255 || g !== 255 || b !== 255) ink++;
    if (r === 20 && g === 60 && b === 170) blue++;
  }
  assert.ok(ink > 2000, `${ink} non-background pixels`);
  assert.ok(blue > 200, `${blue} pixels of the mean line`);
  const png = encodePng(plot.rgb, plot.width, plot.height);
  const view = new DataView(png.buffer, png.byteOffset);
  assert.deepEqual([view.getUint32(16), view.getUint32(20)], [320, 200], "IHDR width, height");
  assert.throws(() => linePlot({ width: 20, height: 20, x, series: [] }), RangeError);
});
