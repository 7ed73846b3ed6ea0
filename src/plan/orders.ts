/**
 * Within-scale sampling orders: permutations of the positions of an s x s grid
 * (DESIGN.md "Orders and blocks"). A position is [x, y] with x the column.
 * Orders are frozen arrays so the memoised ones can be shared safely.
 */
import { UsageError } from "../errors.ts";
import { permutation } from "../util/rng.ts";

/** A grid position: x is the column, y the row. */
export type Position = readonly [x: number, y: number];
/** A permutation of all positions of a grid, first sampled first. */
export type Order = readonly Position[];

export const ORDER_NAMES = ["checkerboard", "raster", "random", "quadrant"] as const;
export type OrderName = (typeof ORDER_NAMES)[number];

function checkSize(size: number): void {
  if (!Number.isSafeInteger(size) || size < 1) {
    throw new UsageError(`grid size must be a positive integer, got ${size}`);
  }
}

function freezeOrder(positions: [number, number][]): Order {
  for (const p of positions) Object.freeze(p);
  return Object.freeze(positions);
}

function nextPowerOfTwo(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}

/**
 * Paper Algorithm 1 for a power-of-two side: the order of each quadrant is
 * built recursively, then the four are merged round-robin TL, BR, TR, BL.
 */
function progressiveCheckerboard(side: number, x0: number, y0: number): [number, number][] {
  if (side === 1) return [[x0, y0]];
  const d = side / 2;
  const quadrants = [
    progressiveCheckerboard(d, x0, y0), // TL
    progressiveCheckerboard(d, x0 + d, y0 + d), // BR
    progressiveCheckerboard(d, x0 + d, y0), // TR
    progressiveCheckerboard(d, x0, y0 + d), // BL
  ];
  const merged: [number, number][] = [];
  for (let i = 0; i < d * d; i++) for (const q of quadrants) merged.push(q[i]);
  return merged;
}

const checkerboardCache = new Map<number, Order>();

/**
 * The progressive checkerboard order. A side that is not a power of two uses
 * the order of the next power of two restricted to the grid (paper Sec. 3.2).
 * Memoised per size; the result is frozen.
 */
export function checkerboardOrder(size: number): Order {
  checkSize(size);
  let order = checkerboardCache.get(size);
  if (!order) {
    const full = progressiveCheckerboard(nextPowerOfTwo(size), 0, 0);
    order = freezeOrder(full.filter(([x, y]) => x < size && y < size));
    checkerboardCache.set(size, order);
  }
  return order;
}

/** Row by row, left to right (LlamaGen-like). */
export function rasterOrder(size: number): Order {
  checkSize(size);
  const positions: [number, number][] = [];
  for (let y = 0; y < size; y++) for (let x = 0; x < size; x++) positions.push([x, y]);
  return freezeOrder(positions);
}

/** A seeded uniformly random permutation of the grid (RandAR-like). */
export function randomOrder(size: number, seed: number): Order {
  checkSize(size);
  const perm = permutation(size * size, seed);
  return freezeOrder(Array.from(perm, (i): [number, number] => [i % size, Math.floor(i / size)]));
}

/**
 * PAR-like order: the grid is split into four quadrants (for odd sides the
 * first half along each axis gets the extra row/column), each scanned in
 * raster order; step t takes the t-th position of each quadrant in the order
 * TL, TR, BL, BR, skipping quadrants that have run out.
 */
export function quadrantOrder(size: number): Order {
  checkSize(size);
  const half = Math.ceil(size / 2);
  const spans = [[0, half], [half, size]] as const; // [start, end) along one axis
  const regions: [number, number][][] = [];
  for (const [y0, y1] of spans) {
    for (const [x0, x1] of spans) {
      const region: [number, number][] = [];
      for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) region.push([x, y]);
      regions.push(region); // pushed TL, TR, BL, BR
    }
  }
  const positions: [number, number][] = [];
  const longest = Math.max(...regions.map((r) => r.length));
  for (let t = 0; t < longest; t++) {
    for (const region of regions) if (t < region.length) positions.push(region[t]);
  }
  return freezeOrder(positions);
}

/** The order called `name` on a size x size grid; `seed` is used by "random" only. */
export function makeOrder(name: OrderName, size: number, seed = 0): Order {
  switch (name) {
    case "checkerboard":
      return checkerboardOrder(size);
    case "raster":
      return rasterOrder(size);
    case "random":
      return randomOrder(size, seed);
    case "quadrant":
      return quadrantOrder(size);
    default:
      throw new UsageError(`order must be one of ${ORDER_NAMES.join(", ")}, got '${name}'`);
  }
}

/** Checks the name of an order, e.g. from a config file. */
export function parseOrderName(text: string): OrderName {
  if (!(ORDER_NAMES as readonly string[]).includes(text)) {
    throw new UsageError(`order must be one of ${ORDER_NAMES.join(", ")}, got '${text}'`);
  }
  return text as OrderName;
}

/** rank[y][x] = index of (x, y) in `order`. Throws if `order` is not a permutation of the grid. */
export function rankGrid(order: Order, size: number): number[][] {
  checkSize(size);
  if (order.length !== size * size) {
    throw new RangeError(`order has ${order.length} positions, expected ${size * size}`);
  }
  const rank = Array.from({ length: size }, () => new Array<number>(size).fill(-1));
  order.forEach(([x, y], i) => {
    if (!(x >= 0 && x < size && y >= 0 && y < size) || rank[y][x] !== -1) {
      throw new RangeError(
        `order is not a permutation of the ${size}x${size} grid at (${x}, ${y})`,
      );
    }
    rank[y][x] = i;
  });
  return rank;
}
