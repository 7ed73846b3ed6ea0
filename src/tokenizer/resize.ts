/**
 * Area-filter resizing (each output pixel is the coverage-weighted mean of the
 * source pixels under it), as the patch tokenizer uses to make each scale.
 */

/** Per output index, the source indices and weights of an area filter from `from` to `to`. */
function areaWeights(from: number, to: number): { index: Int32Array; weight: Float32Array }[] {
  const out = [];
  const step = from / to; // source pixels per output pixel
  for (let i = 0; i < to; i++) {
    const lo = i * step, hi = (i + 1) * step;
    const index: number[] = [], weight: number[] = [];
    for (let j = Math.floor(lo); j < Math.min(from, Math.ceil(hi)); j++) {
      const overlap = Math.min(hi, j + 1) - Math.max(lo, j);
      if (overlap > 1e-9) {
        index.push(j);
        weight.push(overlap / step);
      }
    }
    out.push({ index: Int32Array.from(index), weight: Float32Array.from(weight) });
  }
  return out;
}

const weightCache = new Map<string, ReturnType<typeof areaWeights>>();
function cachedWeights(from: number, to: number) {
  const key = `${from}>${to}`;
  let w = weightCache.get(key);
  if (!w) weightCache.set(key, w = areaWeights(from, to));
  return w;
}

/**
 * Resizes a (side, side, 3) uint8 image to (to, to, 3) float32 values in [0, 1]
 * with a separable area filter (rows first, then columns).
 */
export function resizeArea(rgb: Uint8Array, side: number, to: number): Float32Array {
  const wx = cachedWeights(side, to);
  // (side, to, 3): horizontal pass.
  const rows = new Float32Array(side * to * 3);
  for (let y = 0; y < side; y++) {
    for (let x = 0; x < to; x++) {
      const { index, weight } = wx[x];
      for (let c = 0; c < 3; c++) {
        let acc = 0;
        for (let t = 0; t < index.length; t++) {
          acc += weight[t] * rgb[(y * side + index[t]) * 3 + c];
        }
        rows[(y * to + x) * 3 + c] = acc / 255;
      }
    }
  }
  // (to, to, 3): vertical pass.
  const out = new Float32Array(to * to * 3);
  for (let y = 0; y < to; y++) {
    const { index, weight } = wx[y];
    for (let x = 0; x < to; x++) {
      for (let c = 0; c < 3; c++) {
        let acc = 0;
        for (let t = 0; t < index.length; t++) acc += weight[t] * rows[(index[t] * to + x) * 3 + c];
        out[(y * to + x) * 3 + c] = acc;
      }
    }
  }
  return out;
}

/** Nearest-neighbour upscale of a (from, from, 3) uint8 image to (to, to, 3), for display. */
export function upscaleNearest(rgb: Uint8Array, from: number, to: number): Uint8Array {
  const out = new Uint8Array(to * to * 3);
  for (let y = 0; y < to; y++) {
    const sy = Math.floor((y * from) / to);
    for (let x = 0; x < to; x++) {
      const sx = Math.floor((x * from) / to);
      out.set(rgb.subarray((sy * from + sx) * 3, (sy * from + sx) * 3 + 3), (y * to + x) * 3);
    }
  }
  return out;
}
