/**
 * Mutations of safetensors files (model, resume state, tokenizer codebook): the 8-byte header
 * length, the JSON header (tensor entries: dtype, shape, data_offsets), the `__metadata__`
 * strings and the JSON inside them, the tensor bytes (NaN, Inf, huge values), and the tensor
 * table (missing, extra, overlapping tensors, trailing bytes). Also a tolerant reader that
 * finds non-finite values, for judging inputs and written outputs.
 */
import { byteMutation, concat, type Mutated } from "./bytes.ts";
import { editJson, type Json, type TargetedEdit } from "./json.ts";
import type { FuzzRng } from "./rng.ts";

interface Entry {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}

interface Parsed {
  header: Record<string, Json>;
  data: Uint8Array;
}

const FLOAT_BYTES: Record<string, number> = { F32: 4, F16: 2, BF16: 2, F64: 8 };

/** The header and the data after it, or null when the file is not safetensors. */
export function parseSafetensors(bytes: Uint8Array): Parsed | null {
  if (bytes.length < 8) return null;
  const n = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getBigUint64(0, true);
  if (n > BigInt(bytes.length - 8)) return null;
  try {
    const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + Number(n))));
    if (header === null || typeof header !== "object" || Array.isArray(header)) return null;
    return { header, data: bytes.subarray(8 + Number(n)) };
  } catch {
    return null;
  }
}

/** A file with `headerText` as its header (padded to 8 bytes, as the tool writes) and `data`. */
export function encodeWithHeader(headerText: string, data: Uint8Array): Uint8Array {
  let text = headerText;
  text += " ".repeat((8 - ((8 + new TextEncoder().encode(text).length) % 8)) % 8);
  const header = new TextEncoder().encode(text);
  const len = new Uint8Array(8);
  new DataView(len.buffer).setBigUint64(0, BigInt(header.length), true);
  return concat(len, header, data);
}

function tensorNames(header: Record<string, Json>): string[] {
  return Object.keys(header).filter((k) => k !== "__metadata__");
}

function entryOf(header: Record<string, Json>, name: string): Entry {
  return header[name] as unknown as Entry;
}

function isNonFinite(dtype: string, view: DataView, at: number): boolean {
  if (dtype === "F32") return !Number.isFinite(view.getFloat32(at, true));
  if (dtype === "F64") return !Number.isFinite(view.getFloat64(at, true));
  const bits = view.getUint16(at, true);
  if (dtype === "F16") return (bits & 0x7c00) === 0x7c00;
  return (bits & 0x7f80) === 0x7f80; // BF16
}

/** Names of float tensors holding NaN or Inf (tensors with unreadable entries are skipped). */
export function nonFiniteTensors(bytes: Uint8Array): string[] | null {
  const parsed = parseSafetensors(bytes);
  if (!parsed) return null;
  const found: string[] = [];
  const view = new DataView(parsed.data.buffer, parsed.data.byteOffset, parsed.data.byteLength);
  for (const name of tensorNames(parsed.header)) {
    const e = entryOf(parsed.header, name) as Partial<Entry> | null;
    const size = FLOAT_BYTES[e?.dtype as string];
    const [begin, end] = Array.isArray(e?.data_offsets) ? e!.data_offsets! : [NaN, NaN];
    if (!size || !(Number.isSafeInteger(begin) && Number.isSafeInteger(end))) continue;
    if (begin < 0 || end > parsed.data.length || end < begin) continue;
    for (let at = begin; at + size <= end; at += size) {
      if (isNonFinite(e!.dtype!, view, at)) {
        found.push(name);
        break;
      }
    }
  }
  return found;
}

/** The 8-byte header length set to a huge, zero or off-by-some value. */
function headerLength(rng: FuzzRng, bytes: Uint8Array): Mutated {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = view.getBigUint64(0, true);
  const value = rng.pick([
    0xffffffffffffffffn,
    0x8000000000000000n,
    2n ** 53n + 1n,
    2n ** 32n,
    BigInt(bytes.length),
    0n,
    1n,
    n + 1n,
    n - 1n,
    n + 8n,
    n - 8n,
  ]);
  const out = bytes.slice();
  new DataView(out.buffer).setBigUint64(0, value, true);
  return { data: out, what: `header length ${n} -> ${value}` };
}

/** Known pitfalls of a tensor entry. */
function tensorEdits(name: string, e: Entry, fileDataLength: number): TargetedEdit[] {
  const [b, end] = e.data_offsets;
  const count = e.shape.reduce((x, y) => x * y, 1);
  return [
    { path: [], value: null },
    { path: [], value: [] },
    { path: [name], value: null },
    { path: [name], value: 7 },
    { path: [name, "shape"], value: null },
    { path: [name, "shape"], value: "x" },
    { path: [name, "shape"], value: [] },
    { path: [name, "shape"], value: [-1, ...e.shape.slice(1)] },
    { path: [name, "shape"], value: [2 ** 53, ...e.shape.slice(1)] },
    { path: [name, "shape"], value: [count * 2] },
    { path: [name, "shape"], value: [1.5] },
    { path: [name, "shape"], value: [...e.shape].reverse() },
    { path: [name, "shape"], value: [count] },
    { path: [name, "shape"], value: [...e.shape, 1] },
    { path: [name, "shape"], value: ["2"] },
    { path: [name, "shape"], delete: true },
    { path: [name, "data_offsets"], value: b },
    { path: [name, "data_offsets"], value: [b] },
    { path: [name, "data_offsets"], value: [end, b] },
    { path: [name, "data_offsets"], value: [b, 1e20] },
    { path: [name, "data_offsets"], value: [-8, end - 8] },
    { path: [name, "data_offsets"], value: [b + 0.5, end + 0.5] },
    { path: [name, "data_offsets"], value: [fileDataLength, fileDataLength + end - b] },
    { path: [name, "data_offsets"], value: null },
    { path: [name, "data_offsets"], delete: true },
    { path: [name, "dtype"], value: "BF16" },
    { path: [name, "dtype"], value: "F64" },
    { path: [name, "dtype"], value: "I64" },
    { path: [name, "dtype"], value: "U8" },
    { path: [name, "dtype"], value: "f32" },
    { path: [name, "dtype"], value: null },
    { path: [name, "dtype"], value: 5 },
    { path: [name, "dtype"], delete: true },
    { path: ["__metadata__"], value: null },
    { path: ["__metadata__"], value: [] },
    { path: ["__metadata__"], value: "x" },
  ];
}

function headerEdit(rng: FuzzRng, p: Parsed): Mutated {
  const names = tensorNames(p.header);
  const name = rng.pick(names);
  const targeted = tensorEdits(name, entryOf(p.header, name), p.data.length);
  const edit = editJson(rng, p.header, { targeted });
  return {
    data: encodeWithHeader(edit.text, p.data),
    what: `header: ${edit.what}`,
    mustRefuse: edit.mustRefuse,
  };
}

/** An edit of `__metadata__`, or of the JSON held in one of its strings. */
function metadataEdit(rng: FuzzRng, p: Parsed): Mutated {
  const meta = p.header.__metadata__ as Record<string, Json> | undefined;
  const header = structuredClone(p.header);
  if (!meta || typeof meta !== "object") return headerEdit(rng, p);
  const keys = Object.keys(meta);
  const jsonKeys = keys.filter((k) => {
    try {
      const v = JSON.parse(meta[k] as string);
      return v !== null && typeof v === "object";
    } catch {
      return false;
    }
  });
  if (jsonKeys.length > 0 && rng.chance(0.6)) {
    const key = rng.pick(jsonKeys);
    const edit = editJson(rng, JSON.parse(meta[key] as string));
    (header.__metadata__ as Record<string, Json>)[key] = edit.text;
    return {
      data: encodeWithHeader(JSON.stringify(header), p.data),
      what: `metadata '${key}' JSON: ${edit.what}`,
      mustRefuse: edit.mustRefuse,
    };
  }
  const targeted: TargetedEdit[] = keys.flatMap((k) => [
    { path: [k], delete: true, refuse: false },
    { path: [k], value: 3, refuse: false },
    { path: [k], value: null, refuse: false },
    { path: [k], value: { a: 1 }, refuse: false },
    { path: [k], value: "", refuse: false },
    { path: [k], value: "-1", refuse: false },
    { path: [k], value: "1e30", refuse: false },
    { path: [k], value: "4.5", refuse: false },
    { path: [k], value: "x", refuse: false },
  ]);
  const edit = editJson(rng, meta, { targeted, textLevel: false });
  // Spliced in as text: parsing it back would drop a duplicated key.
  const marker = "\u0000metadata\u0000";
  const text = JSON.stringify({ ...header, __metadata__: marker })
    .replace(JSON.stringify(marker), () => edit.text);
  return {
    data: encodeWithHeader(text, p.data),
    what: `metadata: ${edit.what}`,
    mustRefuse: edit.mustRefuse,
  };
}

/** NaN, Inf or an extreme finite value written into a float tensor. */
function nonFiniteValues(rng: FuzzRng, p: Parsed): Mutated | null {
  const floats = tensorNames(p.header).filter((n) => FLOAT_BYTES[entryOf(p.header, n).dtype]);
  if (floats.length === 0) return null;
  const name = rng.pick(floats);
  const e = entryOf(p.header, name);
  const size = FLOAT_BYTES[e.dtype];
  const count = (e.data_offsets[1] - e.data_offsets[0]) / size;
  const kind = rng.pick(["NaN", "Infinity", "-Infinity", "NaN", "3e38", "1e-45"] as const);
  const all = rng.chance(0.3);
  const out = p.data.slice();
  const view = new DataView(out.buffer);
  const index = rng.int(count);
  for (let i = all ? 0 : index; i < (all ? count : index + 1); i++) {
    const at = e.data_offsets[0] + i * size;
    const v = Number(kind);
    if (e.dtype === "F32") view.setFloat32(at, v, true);
    else if (e.dtype === "F64") view.setFloat64(at, v, true);
    else {
      const f = new Float32Array([v]);
      const bits = new Uint32Array(f.buffer)[0];
      // BF16 is the top half of a float32; F16 gets a NaN/Inf/max pattern of its own.
      const half = e.dtype === "BF16"
        ? bits >>> 16
        : Number.isNaN(v)
        ? 0x7e00
        : !Number.isFinite(v) || Math.abs(v) > 65504
        ? (v < 0 ? 0xfc00 : 0x7c00)
        : 0x0001;
      view.setUint16(at, half, true);
    }
  }
  const finite = Number.isFinite(Number(kind)) && (e.dtype !== "F16" || Number(kind) < 1);
  return {
    data: encodeWithHeader(JSON.stringify(p.header), out),
    what: `${kind} written into ${
      all ? "every value" : `value ${index}`
    } of ${e.dtype} tensor ${name}`,
    injectsNonFinite: !finite,
  };
}

/** The tensor table: a tensor missing, an unknown one, two overlapping, bytes after the last. */
function tableEdit(rng: FuzzRng, p: Parsed): Mutated {
  const header = structuredClone(p.header) as Record<string, any>;
  const names = tensorNames(header);
  const name = rng.pick(names);
  const op = rng.int(6);
  let data = p.data;
  let what: string;
  if (op === 0) {
    delete header[name];
    what = `tensor ${name} removed from the header`;
  } else if (op === 1) {
    header[`${name}.extra`] = structuredClone(header[name]);
    what = `unknown tensor ${name}.extra (a copy of ${name}'s entry, overlapping it)`;
  } else if (op === 2 && names.length > 1) {
    const other = rng.pick(names.filter((n) => n !== name));
    const a = header[name].data_offsets, b = header[other].data_offsets;
    header[other].data_offsets = [a[0], a[0] + (b[1] - b[0])];
    what = `tensor ${other} moved to overlap ${name}`;
  } else if (op === 3) {
    data = concat(p.data, new Uint8Array(rng.pick([1, 8, 4096])));
    what = `${data.length - p.data.length} trailing byte(s) after the last tensor`;
  } else if (op === 4 && names.length > 1) {
    const other = rng.pick(names.filter((n) => n !== name));
    [header[name].shape, header[other].shape] = [header[other].shape, header[name].shape];
    what = `shapes of ${name} and ${other} swapped`;
  } else {
    header[`${name}_renamed`] = header[name];
    delete header[name];
    what = `tensor ${name} renamed ${name}_renamed`;
  }
  // Every table edit leaves a file the tool must refuse (overlap, unknown, missing, trailing).
  return { data: encodeWithHeader(JSON.stringify(header), data), what, mustRefuse: true };
}

/** One mutation of a safetensors file. */
export function mutateSafetensors(rng: FuzzRng, bytes: Uint8Array): Mutated {
  const p = parseSafetensors(bytes);
  if (!p) return byteMutation(rng, bytes);
  const kind = rng.weighted(
    [
      [3, "bytes"],
      [1, "length"],
      [3, "header"],
      [2, "metadata"],
      [3, "values"],
      [1, "table"],
    ] as const,
  );
  if (kind === "length") return headerLength(rng, bytes);
  if (kind === "header") return headerEdit(rng, p);
  if (kind === "metadata") return metadataEdit(rng, p);
  if (kind === "values") return nonFiniteValues(rng, p) ?? byteMutation(rng, bytes);
  if (kind === "table") return tableEdit(rng, p);
  return byteMutation(rng, bytes);
}
