/**
 * Format-blind mutations of a file's bytes: bit flips, truncation, inserted, deleted and
 * overwritten bytes, trailing garbage. Every format uses these beside its own structured ones.
 */
import type { FuzzRng } from "./rng.ts";

/** One mutated file: its new bytes and a line saying what was done (for the report). */
export interface Mutated {
  data: Uint8Array;
  what: string;
  /** The mutation wrote NaN or Inf into a float tensor the command reads. */
  injectsNonFinite?: boolean;
  /** The mutated file is invalid in a way the tool must refuse or warn about (not pass silently). */
  mustRefuse?: boolean;
}

export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** A position in [0, n), biased towards the start where headers live. */
export function position(rng: FuzzRng, n: number): number {
  if (n <= 1) return 0;
  return rng.chance(0.5) ? rng.int(Math.min(n, 64)) : rng.int(n);
}

export function bitFlips(rng: FuzzRng, data: Uint8Array): Mutated {
  const out = data.slice();
  const flips = rng.pick([1, 1, 2, 4, 8, 32]);
  const at: number[] = [];
  for (let i = 0; i < flips && out.length > 0; i++) {
    const p = position(rng, out.length);
    const bit = rng.int(8);
    out[p] ^= 1 << bit;
    at.push(p * 8 + bit);
  }
  return { data: out, what: `flip ${flips} bit(s) at bit offsets ${at.join(",")}` };
}

export function truncate(rng: FuzzRng, data: Uint8Array): Mutated {
  const choices = [0, 1, 7, 8, 9, data.length >> 1, data.length - 1, rng.int(data.length)];
  const n = Math.max(0, Math.min(data.length - 1, rng.pick(choices)));
  return { data: data.slice(0, n), what: `truncate to ${n} of ${data.length} bytes` };
}

export function insertBytes(rng: FuzzRng, data: Uint8Array): Mutated {
  const p = position(rng, data.length + 1);
  const n = rng.pick([1, 3, 8, 64, 1000]);
  const fill = rng.chance(0.3)
    ? new Uint8Array(n).fill(rng.pick([0, 0xff, 0x7b, 0x22]))
    : rng.bytes(n);
  return {
    data: concat(data.subarray(0, p), fill, data.subarray(p)),
    what: `insert ${n} byte(s) at offset ${p}`,
  };
}

export function deleteBytes(rng: FuzzRng, data: Uint8Array): Mutated {
  const p = position(rng, data.length);
  const n = Math.min(data.length - p, rng.pick([1, 2, 8, 100]));
  return {
    data: concat(data.subarray(0, p), data.subarray(p + n)),
    what: `delete ${n} byte(s) at offset ${p}`,
  };
}

export function overwriteBytes(rng: FuzzRng, data: Uint8Array): Mutated {
  const out = data.slice();
  const p = position(rng, out.length);
  const n = Math.min(out.length - p, rng.pick([1, 4, 8, 16]));
  const value = rng.pick([0x00, 0xff, 0x7f, 0x80, -1]);
  for (let i = 0; i < n; i++) out[p + i] = value < 0 ? rng.u32() & 0xff : value;
  return {
    data: out,
    what: `overwrite ${n} byte(s) at offset ${p} with ${value < 0 ? "random bytes" : value}`,
  };
}

export function appendBytes(rng: FuzzRng, data: Uint8Array): Mutated {
  const n = rng.pick([1, 8, 100, 4096]);
  return { data: concat(data, rng.bytes(n)), what: `append ${n} trailing byte(s)` };
}

/** One format-blind mutation, picked at random. */
export function byteMutation(rng: FuzzRng, data: Uint8Array): Mutated {
  return rng.weighted<(r: FuzzRng, d: Uint8Array) => Mutated>([
    [4, bitFlips],
    [3, truncate],
    [2, insertBytes],
    [1, deleteBytes],
    [2, overwriteBytes],
    [1, appendBytes],
  ])(rng, data);
}
