/**
 * The fuzzer's seeded random numbers. A case's mutation is a pure function of (seed, format,
 * case number), so `--case ID` regenerates exactly the mutation a full run applied.
 */

/** FNV-1a of a text, for mixing names into seeds. */
function hashText(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** Mulberry32 with a few helpers for picking mutations. */
export class FuzzRng {
  private state: number;

  constructor(...keys: (number | string)[]) {
    let s = 0x9e3779b9;
    for (const k of keys) {
      const v = typeof k === "string" ? hashText(k) : k >>> 0;
      s = Math.imul(s ^ v, 0x85ebca6b) >>> 0;
      s = (s ^ (s >>> 13)) >>> 0;
    }
    this.state = s;
    for (let i = 0; i < 4; i++) this.u32(); // spread nearby seeds apart
  }

  u32(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  /** Uniform in [0, 1). */
  next(): number {
    return this.u32() / 4294967296;
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** Uniform integer in [lo, hi]. */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error("pick from an empty list");
    return items[this.int(items.length)];
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  /** Picks by weight: `[[weight, value], ...]`. */
  weighted<T>(items: readonly (readonly [number, T])[]): T {
    const total = items.reduce((a, [w]) => a + w, 0);
    let r = this.next() * total;
    for (const [w, v] of items) {
      if ((r -= w) < 0) return v;
    }
    return items[items.length - 1][1];
  }

  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.u32() & 0xff;
    return out;
  }
}
