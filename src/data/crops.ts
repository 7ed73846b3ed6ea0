/**
 * The crops `data` makes of each image (`--augment`):
 * - `none`: the shorter side resized to `side`, then the centre `side x side` square;
 * - `ten-crop`: LlamaGen's extract_codes_c2i.py (`--ten-crop`, crop_range 1.1): the centre
 *   square of floor(1.1 * side) pixels, then torchvision's TenCrop(side) of it: the four
 *   corners and the centre (top-left, top-right, bottom-left, bottom-right, centre), then the
 *   same five crops of the horizontally mirrored square. Each crop is its own example.
 * The resize is decode.ts's (lanczos3, flattened over white), not ADM's box-then-bicubic.
 */
export const AUGMENTS = ["none", "ten-crop"] as const;
export type Augment = typeof AUGMENTS[number];

/** LlamaGen's crop_range: the ten crops come from a centre square this much larger. */
export const TEN_CROP_RANGE = 1.1;

export function cropsPerImage(augment: Augment): number {
  return augment === "ten-crop" ? 10 : 1;
}

/** Side of the square an image is first resized and centre-cropped to. */
export function squareSideFor(side: number, augment: Augment): number {
  // Python's int(side * 1.1): the same float product, truncated.
  return augment === "ten-crop" ? Math.floor(side * TEN_CROP_RANGE) : side;
}

/** Python 3's round(): halves go to the even neighbour (torchvision's center_crop uses it). */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * Top-left corners (row, column) of torchvision's five_crop of a `big` square into `side`:
 * top-left, top-right, bottom-left, bottom-right, centre.
 */
export function fiveCropCorners(big: number, side: number): [number, number][] {
  const far = big - side;
  const centre = roundHalfEven(far / 2);
  return [[0, 0], [0, far], [far, 0], [far, far], [centre, centre]];
}

/** The square (big, big, 3) mirrored left to right. */
export function mirror(square: Uint8Array, big: number): Uint8Array {
  const out = new Uint8Array(square.length); // (big, big, 3)
  for (let y = 0; y < big; y++) {
    for (let x = 0; x < big; x++) {
      const from = (y * big + x) * 3, to = (y * big + big - 1 - x) * 3;
      out[to] = square[from];
      out[to + 1] = square[from + 1];
      out[to + 2] = square[from + 2];
    }
  }
  return out;
}

/** Copies the (side, side, 3) window at (top, left) of square (big, big, 3) into out at `at`. */
function copyWindow(
  square: Uint8Array,
  big: number,
  top: number,
  left: number,
  side: number,
  out: Uint8Array,
  at: number,
) {
  for (let y = 0; y < side; y++) {
    const from = ((top + y) * big + left) * 3;
    out.set(square.subarray(from, from + side * 3), at + y * side * 3);
  }
}

/** torchvision's TenCrop(side) of square (big, big, 3): returns (10, side, side, 3). */
export function tenCrop(square: Uint8Array, big: number, side: number): Uint8Array {
  if (big < side) throw new Error(`tenCrop: the square (${big}) is smaller than a crop (${side})`);
  const size = side * side * 3;
  const out = new Uint8Array(10 * size); // (10, side, side, 3)
  const corners = fiveCropCorners(big, side);
  const mirrored = mirror(square, big);
  [square, mirrored].forEach((image, half) => {
    corners.forEach(([top, left], k) => {
      copyWindow(image, big, top, left, side, out, (half * 5 + k) * size);
    });
  });
  return out;
}

/** The crops of one square image (big, big, 3) made by squareSideFor: (crops, side, side, 3). */
export function cropsOf(square: Uint8Array, big: number, side: number, augment: Augment) {
  return augment === "ten-crop" ? tenCrop(square, big, side) : square;
}
