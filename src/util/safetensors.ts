/**
 * The safetensors format: an 8-byte little-endian header length, a JSON header
 * (tensor name -> dtype, shape, byte offsets; plus string `__metadata__`), then
 * the raw little-endian tensor bytes. PyTorch and Hugging Face read it.
 */
import { UserError } from "../errors.ts";
import { fileSystemError, readFileOrFail, writeFileAtomic } from "./files.ts";
import { parseJsonStrict } from "./json.ts";
import { describeValue } from "./schema.ts";

export type TensorData = Float32Array | Int32Array | Uint16Array | Uint8Array | Float64Array;

export interface Tensor {
  shape: number[];
  data: TensorData;
  /** Write a Uint16Array as IEEE half floats (see toFloat16) rather than as U16. */
  dtype?: "F16";
}

const DTYPE_OF = new Map<unknown, string>([
  [Float32Array, "F32"],
  [Float64Array, "F64"],
  [Int32Array, "I32"],
  [Uint16Array, "U16"],
  [Uint8Array, "U8"],
]);

const ARRAY_OF: Record<string, { new (buf: ArrayBuffer): TensorData; BYTES_PER_ELEMENT: number }> =
  {
    F32: Float32Array,
    F64: Float64Array,
    I32: Int32Array,
    U16: Uint16Array,
    U8: Uint8Array,
  };

export function encodeSafetensors(
  tensors: Record<string, Tensor>,
  metadata: Record<string, string> = {},
): Uint8Array {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  const names = Object.keys(tensors);
  for (const name of names) {
    const { shape, data } = tensors[name];
    const count = shape.reduce((a, b) => a * b, 1);
    if (count !== data.length) {
      throw new Error(`tensor ${name}: shape [${shape}] needs ${count} values, got ${data.length}`);
    }
    header[name] = {
      dtype: tensors[name].dtype ?? DTYPE_OF.get(data.constructor)!,
      shape,
      data_offsets: [offset, offset + data.byteLength],
    };
    offset += data.byteLength;
  }
  let json = JSON.stringify(header);
  // Pad the header with spaces so tensor data starts 8-byte aligned.
  json += " ".repeat((8 - ((8 + json.length) % 8)) % 8);
  const headerBytes = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + headerBytes.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerBytes.length), true);
  out.set(headerBytes, 8);
  let pos = 8 + headerBytes.length;
  for (const name of names) {
    const { data } = tensors[name];
    out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), pos);
    pos += data.byteLength;
  }
  return out;
}

/** Header lengths above this are refused before anything is allocated (as Hugging Face's reader). */
export const MAX_HEADER_BYTES = 100_000_000;

/** Bytes per element of every dtype the reader accepts (F16 and BF16 are widened to float32). */
const ELEMENT_BYTES: Record<string, number> = {
  F32: 4,
  F64: 8,
  I32: 4,
  U16: 2,
  U8: 1,
  F16: 2,
  BF16: 2,
};

interface Entry {
  name: string;
  dtype: string;
  shape: number[];
  begin: number;
  end: number;
}

/**
 * Decodes a safetensors file strictly: the header must be a JSON object without duplicate keys,
 * `__metadata__` (optional) an object of texts, and every tensor an object with a known dtype,
 * a shape of non-negative integers and `data_offsets` [begin, end] whose length matches; the
 * tensors must tile the data area exactly (no overlap, no gap, no trailing bytes), as Hugging
 * Face's reader requires. Header padding with spaces (8-byte alignment) is legal. Every failure
 * is a UserError `FILE: not a valid safetensors file (...)`.
 */
export function decodeSafetensors(
  bytes: Uint8Array,
  fileName: string,
): { tensors: Record<string, Tensor>; metadata: Record<string, string> } {
  const fail = (why: string): never => {
    throw new UserError(`${fileName}: not a valid safetensors file (${why})`);
  };
  if (bytes.length < 8) fail(`${bytes.length} bytes, too short for the header length`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLength = view.getBigUint64(0, true);
  if (headerLength > BigInt(MAX_HEADER_BYTES)) {
    fail(`header length ${headerLength} is over the limit of ${MAX_HEADER_BYTES} bytes`);
  }
  const headerLen = Number(headerLength);
  if (headerLen > bytes.length - 8) {
    fail(
      `header length ${headerLen} runs past the end of the file (${bytes.length} bytes; truncated?)`,
    );
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(8, 8 + headerLen));
  } catch {
    return fail("header is not UTF-8 text");
  }
  let header: unknown;
  try {
    header = parseJsonStrict(text, "header");
  } catch (err) {
    return fail(
      (err as Error).message.replace(/^header: not valid JSON/, "header is not valid JSON"),
    );
  }
  if (header === null || typeof header !== "object" || Array.isArray(header)) {
    fail(`header must be a JSON object, got ${describeValue(header)}`);
  }
  const record = header as Record<string, unknown>;
  const metadata = readMetadata(record.__metadata__, fail);
  const dataLength = bytes.length - 8 - headerLen;
  const entries: Entry[] = [];
  for (const [name, info] of Object.entries(record)) {
    if (name !== "__metadata__") entries.push(readEntry(name, info, dataLength, fail));
  }
  checkTiling(entries, dataLength, fail);
  const dataStart = 8 + headerLen;
  const tensors: Record<string, Tensor> = {};
  for (const { name, dtype, shape, begin, end } of entries) {
    // Copy so the view is aligned regardless of the header length.
    const buf = bytes.slice(dataStart + begin, dataStart + end).buffer;
    setOwn(tensors, name, { shape, data: typedArray(dtype, buf) });
  }
  return { tensors, metadata };
}

/** `record[key] = value`, also for the key "__proto__" (an ordinary name in a file). */
function setOwn<T>(record: Record<string, T>, key: string, value: T) {
  Object.defineProperty(record, key, {
    value,
    enumerable: true,
    writable: true,
    configurable: true,
  });
}

function readMetadata(value: unknown, fail: (why: string) => never): Record<string, string> {
  if (value === undefined) return {};
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    fail(`'__metadata__' must be an object of texts, got ${describeValue(value)}`);
  }
  const out: Record<string, string> = {};
  for (const [key, v] of Object.entries(value as Record<string, unknown>)) {
    if (typeof v !== "string") {
      fail(`'__metadata__.${key}' must be a text, got ${describeValue(v)}`);
    }
    setOwn(out, key, v as string);
  }
  return out;
}

function readEntry(
  name: string,
  info: unknown,
  dataLength: number,
  fail: (why: string) => never,
): Entry {
  const what = `tensor '${name.length > 60 ? name.slice(0, 60) + "..." : name}'`;
  if (info === null || typeof info !== "object" || Array.isArray(info)) {
    fail(`${what} must be an object, got ${describeValue(info)}`);
  }
  const { dtype, shape, data_offsets: offsets } = info as Record<string, unknown>;
  if (typeof dtype !== "string") {
    fail(`${what}: 'dtype' must be a text, got ${describeValue(dtype)}`);
  }
  const size = ELEMENT_BYTES[dtype as string];
  if (size === undefined) {
    fail(
      `${what} has unsupported dtype ${describeValue(dtype)} (supported: ${
        Object.keys(ELEMENT_BYTES).join(", ")
      })`,
    );
  }
  if (!Array.isArray(shape)) {
    fail(`${what}: 'shape' must be a list of integers, got ${describeValue(shape)}`);
  }
  const dims = shape as unknown[];
  if (!dims.every((d) => typeof d === "number" && Number.isSafeInteger(d) && d >= 0)) {
    fail(`${what}: 'shape' [${dims.map(describeValue)}] must hold non-negative integers`);
  }
  let count = (dims as number[]).includes(0) ? 0 : 1;
  for (const d of dims as number[]) {
    count *= d;
    // Past the data area already: stop before the product overflows.
    if (count * size > dataLength) {
      fail(
        `${what}: shape [${dims}] needs more bytes than the file's ${dataLength} data bytes (truncated?)`,
      );
    }
  }
  if (
    !Array.isArray(offsets) || offsets.length !== 2 ||
    !offsets.every((o) => typeof o === "number" && Number.isSafeInteger(o) && o >= 0)
  ) {
    fail(
      `${what}: 'data_offsets' must be a list of two non-negative integers, got ${
        describeValue(offsets)
      }`,
    );
  }
  const [begin, end] = offsets as number[];
  if (end < begin) fail(`${what}: data_offsets [${begin}, ${end}] end before they begin`);
  if (end > dataLength) {
    fail(
      `${what}: data_offsets [${begin}, ${end}] lie past the end of the data (${dataLength} bytes; truncated?)`,
    );
  }
  if (end - begin !== count * size) {
    fail(
      `${what}: data_offsets [${begin}, ${end}] hold ${
        end - begin
      } bytes, its shape [${shape}] of ${dtype} needs ${count * size}`,
    );
  }
  return { name, dtype: dtype as string, shape: shape as number[], begin, end };
}

/** The tensors, in offset order, must cover [0, dataLength) exactly once. */
function checkTiling(entries: Entry[], dataLength: number, fail: (why: string) => never) {
  const sorted = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let at = 0;
  let previous: Entry | undefined;
  for (const e of sorted) {
    if (e.begin < at) fail(`tensors '${previous!.name}' and '${e.name}' overlap`);
    if (e.begin > at) fail(`${e.begin - at} bytes before tensor '${e.name}' belong to no tensor`);
    at = e.end;
    previous = e;
  }
  if (at !== dataLength) fail(`${dataLength - at} trailing bytes after the last tensor`);
}

function typedArray(dtype: string, buf: ArrayBuffer): TensorData {
  // Half floats are widened to float32 on reading.
  if (dtype === "F16") return fromFloat16(new Uint16Array(buf));
  if (dtype === "BF16") {
    const bits = new Uint16Array(buf), out = new Uint32Array(bits.length);
    for (let i = 0; i < bits.length; i++) out[i] = bits[i] << 16;
    return new Float32Array(out.buffer);
  }
  return new ARRAY_OF[dtype](buf);
}

export async function writeSafetensors(
  path: string,
  tensors: Record<string, Tensor>,
  metadata: Record<string, string> = {},
): Promise<void> {
  await writeFileAtomic(path, encodeSafetensors(tensors, metadata));
}

export async function readSafetensors(path: string) {
  let bytes: Uint8Array;
  try {
    bytes = await readFileOrFail(path);
  } catch (err) {
    throw fileSystemError(err, `cannot read ${path}`);
  }
  return decodeSafetensors(bytes, path);
}

/** float32 -> IEEE 754 half (binary16) bits, rounding to nearest even; overflow gives inf. */
export function toFloat16(values: Float32Array): Uint16Array {
  const out = new Uint16Array(values.length);
  const f = new Float32Array(1), u = new Uint32Array(f.buffer);
  for (let i = 0; i < values.length; i++) {
    f[0] = values[i];
    const x = u[0];
    const sign = (x >>> 16) & 0x8000;
    const exp = (x >>> 23) & 0xff, mant = x & 0x7fffff;
    if (exp === 0xff) { // inf or NaN
      out[i] = sign | 0x7c00 | (mant ? 0x200 : 0);
      continue;
    }
    const e = exp - 127 + 15;
    if (e >= 0x1f) {
      out[i] = sign | 0x7c00;
    } else if (e <= 0) { // subnormal half (or zero)
      if (e < -10) {
        out[i] = sign;
        continue;
      }
      const m = mant | 0x800000, shift = 14 - e;
      let h = m >>> shift;
      const rest = m & ((1 << shift) - 1), halfway = 1 << (shift - 1);
      if (rest > halfway || (rest === halfway && (h & 1))) h++;
      out[i] = sign | h;
    } else {
      let h = (e << 10) | (mant >>> 13);
      const rest = mant & 0x1fff;
      if (rest > 0x1000 || (rest === 0x1000 && (h & 1))) h++; // may carry into the exponent
      out[i] = sign | h;
    }
  }
  return out;
}

/** IEEE 754 half bits -> float32. */
export function fromFloat16(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) {
    const h = bits[i];
    const sign = h & 0x8000 ? -1 : 1, exp = (h >>> 10) & 0x1f, mant = h & 0x3ff;
    out[i] = exp === 0
      ? sign * mant * 2 ** -24
      : exp === 0x1f
      ? (mant ? NaN : sign * Infinity)
      : sign * (1 + mant / 1024) * 2 ** (exp - 15);
  }
  return out;
}
