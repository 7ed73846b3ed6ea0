/**
 * Mutations of token shards (.npz: a zip of .npy arrays `codes` uint16 [n, L] and `labels`
 * int32 [n]): the zip's size, offset and method fields (huge lengths), the .npy headers
 * (dtype, shape, order, version, header length), the values (codes past the codebook, labels
 * past the classes or equal to the null class), and the members (missing, renamed, extra).
 */
import { unzipSync, zipSync } from "fflate";
import { byteMutation, concat, type Mutated } from "./bytes.ts";
import { CLASSES, CORPUS_CODES } from "./corpus.ts";
import type { FuzzRng } from "./rng.ts";

const LOCAL = 0x04034b50, CENTRAL = 0x02014b50, END = 0x06054b50;

/** Offsets of every 32-bit size/offset field and 16-bit method/count field of the zip. */
function zipFields(bytes: Uint8Array): { at: number; width: 2 | 4; name: string }[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const fields: { at: number; width: 2 | 4; name: string }[] = [];
  for (let i = 0; i + 4 <= bytes.length; i++) {
    const sig = view.getUint32(i, true);
    if (sig === LOCAL && i + 30 <= bytes.length) {
      fields.push({ at: i + 8, width: 2, name: "local method" });
      fields.push({ at: i + 18, width: 4, name: "local compressed size" });
      fields.push({ at: i + 22, width: 4, name: "local uncompressed size" });
      fields.push({ at: i + 26, width: 2, name: "local name length" });
    } else if (sig === CENTRAL && i + 46 <= bytes.length) {
      fields.push({ at: i + 10, width: 2, name: "central method" });
      fields.push({ at: i + 16, width: 4, name: "central crc" });
      fields.push({ at: i + 20, width: 4, name: "central compressed size" });
      fields.push({ at: i + 24, width: 4, name: "central uncompressed size" });
      fields.push({ at: i + 28, width: 2, name: "central name length" });
      fields.push({ at: i + 42, width: 4, name: "central local-header offset" });
    } else if (sig === END && i + 22 <= bytes.length) {
      fields.push({ at: i + 8, width: 2, name: "entries on disk" });
      fields.push({ at: i + 10, width: 2, name: "total entries" });
      fields.push({ at: i + 12, width: 4, name: "central directory size" });
      fields.push({ at: i + 16, width: 4, name: "central directory offset" });
    }
  }
  return fields;
}

function zipFieldEdit(rng: FuzzRng, bytes: Uint8Array): Mutated {
  const fields = zipFields(bytes);
  if (fields.length === 0) return byteMutation(rng, bytes);
  const f = rng.pick(fields);
  const out = bytes.slice();
  const view = new DataView(out.buffer);
  const old = f.width === 4 ? view.getUint32(f.at, true) : view.getUint16(f.at, true);
  const max = f.width === 4 ? 0xffffffff : 0xffff;
  const value = rng.pick([max, max >>> 1, 0, old + 1, old - 1 < 0 ? max : old - 1, 99]);
  if (f.width === 4) view.setUint32(f.at, value >>> 0, true);
  else view.setUint16(f.at, value & 0xffff, true);
  return { data: out, what: `zip ${f.name} at offset ${f.at}: ${old} -> ${value}` };
}

interface Npy {
  major: number;
  header: string;
  data: Uint8Array;
}

function parseNpy(bytes: Uint8Array): Npy | null {
  if (bytes.length < 10 || bytes[0] !== 0x93) return null;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const major = bytes[6];
  const len = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const start = major === 1 ? 10 : 12;
  return {
    major,
    header: new TextDecoder().decode(bytes.subarray(start, start + len)),
    data: bytes.subarray(start + len),
  };
}

/** An .npy with `header` (padded to 64 bytes as numpy does) in format `major`. */
function encodeNpy(header: string, data: Uint8Array, major = 1): Uint8Array {
  const pre = major === 1 ? 10 : 12;
  let text = header.trimEnd();
  text += " ".repeat((64 - ((pre + text.length + 1) % 64)) % 64) + "\n";
  const head = new Uint8Array(pre);
  head.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, major, 0]);
  const view = new DataView(head.buffer);
  if (major === 1) view.setUint16(8, text.length, true);
  else view.setUint32(8, text.length, true);
  return concat(head, new TextEncoder().encode(text), data);
}

function shapeOf(header: string): number[] {
  const text = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1] ?? "";
  return text.split(",").map((s) => s.trim()).filter((s) => s).map(Number);
}

function withShape(header: string, shape: string): string {
  return header.replace(/'shape':\s*\([^)]*\)/, `'shape': ${shape}`);
}

/** An edit of one .npy member; `codes` says which array it is (for value edits). */
function npyEdit(rng: FuzzRng, bytes: Uint8Array, member: string): Mutated {
  const npy = parseNpy(bytes);
  if (!npy) return byteMutation(rng, bytes);
  const shape = shapeOf(npy.header);
  const op = rng.int(6);
  if (op === 0) {
    const s = rng.pick([
      `(${2 ** 40}, ${shape[1] ?? 1})`,
      `(99999999999,)`,
      `(-1, ${shape[1] ?? 1})`,
      `(${shape[0]}, ${(shape[1] ?? 1) - 1})`,
      `(${shape[0]}, ${(shape[1] ?? 1) + 1})`,
      `(${shape.join(", ")}, 1)`,
      `()`,
      `(${shape[1] ?? 1}, ${shape[0]})`,
      `(${(shape[0] ?? 1) * (shape[1] ?? 1)},)`,
      `(0, ${shape[1] ?? 0})`,
      `(1.5,)`,
      `(x,)`,
    ]);
    return {
      data: encodeNpy(withShape(npy.header, s), npy.data),
      what: `${member}: shape -> ${s}`,
    };
  }
  if (op === 1) {
    const d = rng.pick(["<u4", "<f4", "|u1", "<i8", ">u2", ">i4", "<f8", "|b1", "x", "<U4"]);
    return {
      data: encodeNpy(npy.header.replace(/'descr':\s*'[^']*'/, `'descr': '${d}'`), npy.data),
      what: `${member}: dtype -> ${d}`,
    };
  }
  if (op === 2) {
    const h = rng.pick([
      npy.header.replace("False", "True"),
      npy.header.replace(/'shape':\s*\([^)]*\),?/, ""),
      npy.header.replace(/'descr':\s*'[^']*',?/, ""),
      "{}",
      "not a dict",
      npy.header.replace("{", "{'descr': '<f4', "),
    ]);
    return { data: encodeNpy(h, npy.data), what: `${member}: header -> ${h.trim()}` };
  }
  if (op === 3) {
    const out = bytes.slice();
    const view = new DataView(out.buffer);
    const edit = rng.int(3);
    if (edit === 0) {
      out[6] = rng.pick([2, 3, 0, 9]);
      return {
        data: out,
        what: `${member}: format version ${out[6]} (header length read differently)`,
      };
    }
    const value = rng.pick([0xffff, 0, npy.header.length + 1, 1]);
    view.setUint16(8, value, true);
    return { data: out, what: `${member}: header length -> ${value}` };
  }
  // Values: codes past the codebook, labels past the classes or the null class.
  const out = npy.data.slice();
  const view = new DataView(out.buffer);
  const isCodes = member.startsWith("codes");
  const width = isCodes ? 2 : 4;
  const n = Math.floor(out.length / width);
  if (n === 0) return { data: bytes.slice(0, bytes.length - 1), what: `${member}: one byte short` };
  const all = rng.chance(0.2);
  const value = isCodes
    ? rng.pick([65535, CORPUS_CODES, CORPUS_CODES + 1, 4096, 32768])
    : rng.pick([-1, CLASSES.length, CLASSES.length + 1, 2 ** 31 - 1, -(2 ** 31), 1000]); // C: the null class
  const index = rng.int(n);
  for (let i = all ? 0 : index; i < (all ? n : index + 1); i++) {
    if (isCodes) view.setUint16(i * 2, value, true);
    else view.setInt32(i * 4, value, true);
  }
  if (op === 5 && rng.chance(0.5)) {
    return {
      data: encodeNpy(npy.header, out.subarray(0, out.length - width), npy.major),
      what: `${member}: last value dropped`,
    };
  }
  return {
    data: encodeNpy(npy.header, out, npy.major),
    what: `${member}: ${all ? "every value" : `value ${index}`} = ${value}`,
    mustRefuse: true,
  };
}

function memberEdit(
  rng: FuzzRng,
  files: Record<string, Uint8Array>,
): { files: Record<string, Uint8Array>; what: string } {
  const names = Object.keys(files);
  const name = rng.pick(names);
  const out = { ...files };
  const op = rng.int(4);
  if (op === 0) {
    delete out[name];
    return { files: out, what: `member ${name} removed` };
  }
  if (op === 1) {
    out[`x${name}`] = out[name];
    delete out[name];
    return { files: out, what: `member ${name} renamed x${name}` };
  }
  if (op === 2) {
    out["extra.npy"] = out[name];
    return { files: out, what: `extra member extra.npy (a copy of ${name})` };
  }
  const other = names.find((n) => n !== name) ?? name;
  [out[name], out[other]] = [files[other], files[name]];
  return { files: out, what: `members ${name} and ${other} swapped` };
}

/** One mutation of an .npz shard. */
export function mutateNpz(rng: FuzzRng, bytes: Uint8Array): Mutated {
  let files: Record<string, Uint8Array>;
  try {
    files = unzipSync(bytes);
  } catch {
    return byteMutation(rng, bytes);
  }
  const kind = rng.weighted(
    [
      [3, "bytes"],
      [2, "zip"],
      [4, "npy"],
      [1, "members"],
    ] as const,
  );
  if (kind === "bytes") return byteMutation(rng, bytes);
  if (kind === "zip") return zipFieldEdit(rng, bytes);
  const level = rng.pick([0, 6] as const);
  if (kind === "members") {
    const m = memberEdit(rng, files);
    return { data: zipSync(m.files, { level }), what: m.what };
  }
  const name = rng.pick(Object.keys(files));
  const edit = npyEdit(rng, files[name], name);
  return { ...edit, data: zipSync({ ...files, [name]: edit.data }, { level }) };
}
