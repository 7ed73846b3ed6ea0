/**
 * Mutations of PNG and JPEG files: PNG chunk lengths, IHDR size and depth fields, CRCs and
 * chunk order; JPEG segment lengths (the SIGSEGV of the issue came from one), SOF sizes and
 * cut scans. Folder-level changes (empty class, dangling link) live in formats.ts.
 */
import { byteMutation, concat, type Mutated } from "./bytes.ts";
import type { FuzzRng } from "./rng.ts";
import { crc32 } from "../../src/util/crc32.ts";

interface Chunk {
  at: number; // offset of the length field
  length: number;
  type: string;
}

function pngChunks(bytes: Uint8Array): Chunk[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const chunks: Chunk[] = [];
  let at = 8;
  while (at + 12 <= bytes.length) {
    const length = view.getUint32(at);
    const type = new TextDecoder().decode(bytes.subarray(at + 4, at + 8));
    chunks.push({ at, length, type });
    at += 12 + length;
  }
  return chunks;
}

function mutatePng(rng: FuzzRng, bytes: Uint8Array): Mutated {
  const chunks = pngChunks(bytes);
  if (chunks.length === 0) return byteMutation(rng, bytes);
  const out = bytes.slice();
  const view = new DataView(out.buffer);
  const op = rng.int(5);
  if (op === 0) {
    const c = rng.pick(chunks);
    const value = rng.pick([0xffffffff, 0x7fffffff, 0, c.length + 1, c.length - 1]) >>> 0;
    view.setUint32(c.at, value);
    return { data: out, what: `PNG ${c.type} chunk length ${c.length} -> ${value}` };
  }
  const ihdr = chunks.find((c) => c.type === "IHDR");
  if (op === 1 && ihdr) {
    const field = rng.pick(
      [
        ["width", 8, 4],
        ["height", 12, 4],
        ["bit depth", 16, 1],
        ["colour type", 17, 1],
        ["compression", 18, 1],
        ["interlace", 20, 1],
      ] as const,
    );
    const [name, off, width] = field;
    const value = width === 4
      ? rng.pick([0, 0x7fffffff, 100000, 1, 65536])
      : rng.pick([0, 3, 7, 16, 255, 1]);
    if (width === 4) view.setUint32(ihdr.at + off, value);
    else out[ihdr.at + off] = value;
    // Keep the CRC right half of the time, so the decoder reaches the field itself.
    const fixCrc = rng.chance(0.5);
    if (fixCrc) {
      view.setUint32(
        ihdr.at + 8 + ihdr.length,
        crc32(out.subarray(ihdr.at + 4, ihdr.at + 8 + ihdr.length)),
      );
    }
    return { data: out, what: `PNG IHDR ${name} -> ${value}${fixCrc ? " (CRC fixed)" : ""}` };
  }
  if (op === 2) {
    const c = rng.pick(chunks);
    view.setUint32(c.at + 8 + c.length, view.getUint32(c.at + 8 + c.length) ^ 1);
    return { data: out, what: `PNG ${c.type} CRC wrong` };
  }
  if (op === 3) {
    const c = rng.pick(chunks);
    const cut = concat(bytes.subarray(0, c.at), bytes.subarray(c.at + 12 + c.length));
    return { data: cut, what: `PNG ${c.type} chunk removed` };
  }
  const idat = chunks.find((c) => c.type === "IDAT");
  if (idat) {
    const n = idat.at + 8 + rng.int(Math.max(1, idat.length));
    return { data: bytes.slice(0, n), what: `PNG cut inside IDAT at ${n} of ${bytes.length}` };
  }
  return byteMutation(rng, bytes);
}

/** Offsets of the JPEG markers that carry a 2-byte length (APPn, DQT, SOF, DHT, SOS, ...). */
function jpegSegments(bytes: Uint8Array): { at: number; marker: number; length: number }[] {
  const segs: { at: number; marker: number; length: number }[] = [];
  let at = 2;
  while (at + 4 <= bytes.length && bytes[at] === 0xff) {
    const marker = bytes[at + 1];
    const length = (bytes[at + 2] << 8) | bytes[at + 3];
    segs.push({ at, marker, length });
    if (marker === 0xda) break; // start of scan: entropy-coded data follows
    at += 2 + length;
  }
  return segs;
}

function mutateJpeg(rng: FuzzRng, bytes: Uint8Array): Mutated {
  const segs = jpegSegments(bytes);
  if (segs.length === 0) return byteMutation(rng, bytes);
  const out = bytes.slice();
  const op = rng.int(4);
  if (op <= 1) {
    const s = rng.pick(segs);
    const value = rng.pick([0, 1, 2, 0xffff, s.length + 1, s.length - 1, s.length + 100]) & 0xffff;
    out[s.at + 2] = value >> 8;
    out[s.at + 3] = value & 0xff;
    return {
      data: out,
      what: `JPEG segment FF${s.marker.toString(16).toUpperCase()} length ${s.length} -> ${value}`,
    };
  }
  const sof = segs.find((s) => s.marker === 0xc0 || s.marker === 0xc2);
  if (op === 2 && sof) {
    const field = rng.pick([["height", 5], ["width", 7]] as const);
    const value = rng.pick([0, 1, 0xffff, 60000]);
    out[sof.at + field[1]] = value >> 8;
    out[sof.at + field[1] + 1] = value & 0xff;
    return { data: out, what: `JPEG SOF ${field[0]} -> ${value}` };
  }
  const sos = segs.find((s) => s.marker === 0xda);
  if (sos) {
    const start = sos.at + 2 + sos.length;
    const n = start + rng.int(Math.max(1, bytes.length - start));
    return { data: bytes.slice(0, n), what: `JPEG cut inside the scan at ${n} of ${bytes.length}` };
  }
  return byteMutation(rng, bytes);
}

/** One mutation of an image file (structure-aware half the time). */
export function mutateImage(rng: FuzzRng, bytes: Uint8Array): Mutated {
  if (rng.chance(0.4)) return byteMutation(rng, bytes);
  if (bytes[0] === 0x89 && bytes[1] === 0x50) return mutatePng(rng, bytes);
  if (bytes[0] === 0xff && bytes[1] === 0xd8) return mutateJpeg(rng, bytes);
  return byteMutation(rng, bytes);
}
