/**
 * Pure tests of the sample outputs: grid rows by class, progressive masking, entropy statistics
 * against hand-computed values, heat maps and the line plot.
 */
import assert from "node:assert/strict";
import {
  classGrid,
  classRows,
  decodeFinal,
  fitText,
  heatColor,
  heatMapFigure,
  labelledTiles,
  maskedScaleCanvas,
  maskPixel,
  panelRows,
  progressivePanels,
  progressivePanelSide,
  progressiveSelection,
  resizeNearest,
  type ScaleDecoder,
  stepLabels,
  textBlockHeight,
} from "../src/sample/render.ts";
import { entropyMaps, percentile, scaleOfSteps, stepEntropyStats } from "../src/sample/entropy.ts";
import { Canvas, formatTick, GLYPH_W, linePlot, niceTicks, textWidth } from "../src/sample/plot.ts";
import { encodePng } from "../src/data/png.ts";

/** A decoder whose code c paints its p x p patch with the grey value 10 c + 5. */
function fakeDecoder(patch: number): ScaleDecoder {
  return {
    patch,
    decodeGrids(codes, n, s) {
      const px = s * patch;
      const out = new Uint8Array(n * px * px * 3); // (n, px, px, 3)
      for (let i = 0; i < n; i++) {
        for (let y = 0; y < px; y++) {
          for (let x = 0; x < px; x++) {
            const c = codes[i * s * s + Math.floor(y / patch) * s + Math.floor(x / patch)];
            const at = ((i * px + y) * px + x) * 3;
            out.fill(10 * c + 5, at, at + 3);
          }
        }
      }
      return Promise.resolve(out);
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

Deno.test("classGrid: one row per class, images across, short rows padded, names on the left", () => {
  const side = 4, gap = 2;
  const labels = [2, 0, 2, 1, 0];
  const images = labels.map((_, i) => new Uint8Array(side * side * 3).fill(10 * i)); // (4, 4, 3)
  const g = classGrid(images, side, labels, [], { gap, classNames: ["zero", "one", "two"] });
  assert.equal(g.cols, 2);
  assert.deepEqual(g.rowClasses, [0, 1, 2]);
  // A label column as wide as the longest name (at font scale 1, 3 px padding each side).
  const labelW = textWidth("zero", 1) + 6;
  const rowH = Math.max(side, textBlockHeight(1, 1)); // a row holds a line of text
  assert.equal(g.width, labelW + 2 * side + 3 * gap);
  assert.equal(g.height, 3 * rowH + 4 * gap);
  assert.equal(g.rgb.length, g.width * g.height * 3);
  const cell = (r: number, c: number) =>
    grey(g.rgb, g.width, labelW + gap + c * (side + gap) + 1, gap + r * (rowH + gap) + 1);
  assert.deepEqual([cell(0, 0), cell(0, 1)], [10, 40], "class 0: images 1 and 4");
  assert.deepEqual([cell(1, 0), cell(1, 1)], [30, 255], "class 1: image 3, then padding");
  assert.deepEqual([cell(2, 0), cell(2, 1)], [0, 20], "class 2: images 0 and 2");
  // Each row's label is drawn in black in the label column.
  for (let r = 0; r < 3; r++) {
    let ink = 0;
    for (let y = gap + r * (rowH + gap); y < gap + r * (rowH + gap) + rowH; y++) {
      for (let x = 0; x < labelW; x++) ink += grey(g.rgb, g.width, x, y) === 0 ? 1 : 0;
    }
    assert.ok(ink > 5, `row ${r} has its name drawn (${ink} px)`);
  }
  // Without names the class index is the label.
  const plain = classGrid(images, side, labels, [], { gap });
  assert.equal(plain.width, textWidth("0", 1) + 6 + 2 * side + 3 * gap);
});

Deno.test("labelledTiles: long names are shortened, column labels sit above their column", () => {
  const side = 128, tile = new Uint8Array(side * side * 3).fill(128);
  const long = "Smileys & Emotion and a great many other things";
  const fig = labelledTiles([tile, tile], side, side, 2, {
    rowLabels: [long],
    columnLabels: [["step 1/2", "scale 1x1"], ["step 2/2", "scale 2x2"]],
  });
  const labelW = fig.width - (2 * side + 3 * 2);
  assert.ok(labelW < textWidth(long, 2), "the row label was shortened");
  assert.equal(fitText(long, textWidth("Smileys..", 2), 2), "Smileys..");
  assert.equal(fitText("short", 1000, 1), "short");
  // The header holds two lines at font scale 2 above the first row.
  const header = textBlockHeight(2, 2) + 2 * 6;
  assert.equal(fig.height, header + side + 2 * 2);
  let ink = 0;
  for (let y = 0; y < header; y++) {
    for (let x = labelW; x < fig.width; x++) ink += grey(fig.rgb, fig.width, x, y) === 0 ? 1 : 0;
  }
  assert.ok(ink > 50, `header text drawn (${ink} px)`);
  // Labels too wide for their tiles drop to font scale 1.
  const small = labelledTiles([tile.subarray(0, 32 * 32 * 3)], 32, 32, 1, {
    columnLabels: [["step 1/2", "scale 1x1"]],
  });
  assert.equal(small.height, textBlockHeight(2, 1) + 2 * 6 + 32 + 2 * 2);
});

Deno.test("stepLabels: step and scale of every column of the progressive view", () => {
  const stepOf = Int32Array.from([0, 1, 2, 2, 1]); // scales [1, 2], 3 steps
  assert.deepEqual(stepLabels(stepOf, [1, 2], 3), [
    ["step 1/3", "scale 1x1"],
    ["step 2/3", "scale 2x2"],
    ["step 3/3", "scale 2x2"],
  ]);
  assert.equal(progressivePanelSide(32), 128);
  assert.equal(progressivePanelSide(8), 128);
  assert.equal(progressivePanelSide(200), 200);
});

Deno.test("decodeFinal decodes the last scale of every row", async () => {
  const scales = [1, 2], L = 5;
  const codes = Int32Array.from([9, 1, 2, 3, 4, 9, 5, 6, 7, 8]); // (2, L)
  const images = await decodeFinal(fakeDecoder(1), codes, 2, scales, "cpu");
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

Deno.test("maskedScaleCanvas masks the locations not sampled yet, at the output size", async () => {
  const out = await maskedScaleCanvas(fakeDecoder(2), [3, -1, -1, 7], 2, 8, "cpu"); // 2x2 grid of 2px -> 8px
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

Deno.test("progressivePanels: a panel per step, showing that step's scale", async () => {
  // Scales [1, 2]: step 0 samples the 1x1 scale, step 1 locations 0 and 3, step 2 locations 1, 2.
  const scales = [1, 2], L = 5, steps = 3, n = 2;
  const stepOf = Int32Array.from([0, 1, 2, 2, 1, 0, 1, 2, 2, 1]); // (n, L)
  const final = Int32Array.from([4, 1, 2, 3, 5, 6, 7, 8, 9, 1]); // (n, L)
  assert.equal(final.length, n * L);
  assert.deepEqual(Array.from(scaleOfSteps(stepOf.subarray(0, L), scales, steps)), [0, 1, 1]);
  const panels = await progressivePanels(fakeDecoder(1), final, stepOf, scales, steps, 1, 4, "cpu");
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
  const labelled = panelRows([panels], 4, 3, { columnLabels: [["a"], ["b"], ["c"]] });
  assert.equal(labelled.height, textBlockHeight(1, 1) + 2 * 3 + 4 + 2 * 2, "a header line above");
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
  assert.equal(textWidth("AB", 2), (2 * (GLYPH_W + 1) - 1) * 2);
  // A glyph inks part of its box, whatever the font (plot.ts's own tests check its shapes).
  const c = new Canvas(40, 40);
  c.text(1, 1, "0", [0, 0, 0], 2);
  const inked = Array.from({ length: 40 * 40 }, (_, i) => c.rgb[i * 3] === 0).filter((v) => v);
  assert.ok(inked.length > 4 && inked.length < 40 * 40 / 2, `${inked.length} inked pixels`);
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
