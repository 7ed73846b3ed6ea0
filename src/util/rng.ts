/**
 * Small seeded random generators for everything in TypeScript that must be
 * reproducible: dataset splits, k-means++ seeding, random orders, shuffles.
 */

/** SplitMix64 mixing of a 64-bit value given as a BigInt; returns 64 bits. */
function splitmix64(x: bigint): bigint {
  x = (x + 0x9e3779b97f4a7c15n) & 0xffffffffffffffffn;
  x = ((x ^ (x >> 30n)) * 0xbf58476d1ce4e5b9n) & 0xffffffffffffffffn;
  x = ((x ^ (x >> 27n)) * 0x94d049bb133111ebn) & 0xffffffffffffffffn;
  return x ^ (x >> 31n);
}

/** A 32-bit seed derived from any number of integer keys (order matters). */
export function deriveSeed(...keys: number[]): number {
  let h = 0x243f6a8885a308d3n;
  for (const k of keys) h = splitmix64(h ^ BigInt.asUintN(64, BigInt(Math.trunc(k))));
  return Number(h & 0xffffffffn);
}

/** Mulberry32: fast, seeded, good enough for shuffles and sampling (not crypto). */
export class Rng {
  private state: number;
  constructor(seed: number) {
    this.state = deriveSeed(seed) >>> 0;
  }
  /** Uniform 32-bit unsigned integer. */
  nextU32(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }
  /** Uniform in [0, 1). */
  next(): number {
    return this.nextU32() / 4294967296;
  }
  /** Uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  /** Fisher-Yates shuffle in place; returns the array. */
  shuffle<T>(a: T[] | Int32Array | Uint32Array): typeof a {
    for (let i = a.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const t = a[i];
      a[i] = a[j];
      a[j] = t;
    }
    return a;
  }
}

/** A seeded permutation of 0..n-1. */
export function permutation(n: number, seed: number): Int32Array {
  const p = new Int32Array(n);
  for (let i = 0; i < n; i++) p[i] = i;
  new Rng(seed).shuffle(p);
  return p;
}
