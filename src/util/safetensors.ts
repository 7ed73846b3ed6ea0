/**
 * The safetensors format: an 8-byte little-endian header length, a JSON header
 * (tensor name -> dtype, shape, byte offsets; plus string `__metadata__`), then
 * the raw little-endian tensor bytes. PyTorch and Hugging Face read it.
 */
import { UserError } from "../errors.ts";
import { readFileOrFail, writeFileAtomic } from "./files.ts";

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

export function decodeSafetensors(
  bytes: Uint8Array,
  fileName: string,
): { tensors: Record<string, Tensor>; metadata: Record<string, string> } {
  const fail = (why: string): never => {
    throw new UserError(`${fileName}: not a valid safetensors file (${why})`);
  };
  if (bytes.length < 8) fail("too short");
  const headerLen = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  if (headerLen > bytes.length - 8) fail("header length past end of file");
  let header: Record<string, any>;
  try {
    header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + headerLen)));
  } catch {
    return fail("header is not JSON");
  }
  const dataStart = 8 + headerLen;
  const tensors: Record<string, Tensor> = {};
  for (const [name, info] of Object.entries(header)) {
    if (name === "__metadata__") continue;
    const half = info?.dtype === "F16";
    const ctor = half ? Uint16Array : ARRAY_OF[info?.dtype];
    if (!ctor) fail(`tensor ${name} has unsupported dtype ${info?.dtype}`);
    const [begin, end] = info.data_offsets ?? [];
    const shape: number[] = info.shape;
    const count = shape.reduce((a: number, b: number) => a * b, 1);
    if (!(begin >= 0 && end >= begin && dataStart + end <= bytes.length)) {
      fail(`tensor ${name} lies past the end of the file (truncated?)`);
    }
    if (end - begin !== count * ctor.BYTES_PER_ELEMENT) fail(`tensor ${name} size mismatch`);
    // Copy so the view is aligned regardless of the header length.
    const buf = bytes.slice(dataStart + begin, dataStart + end).buffer;
    // Half floats are widened to float32 on reading.
    tensors[name] = { shape, data: half ? fromFloat16(new Uint16Array(buf)) : new ctor(buf) };
  }
  return { tensors, metadata: header.__metadata__ ?? {} };
}

export async function writeSafetensors(
  path: string,
  tensors: Record<string, Tensor>,
  metadata: Record<string, string> = {},
): Promise<void> {
  await writeFileAtomic(path, encodeSafetensors(tensors, metadata));
}

export async function readSafetensors(path: string) {
  return decodeSafetensors(await readFileOrFail(path), path);
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
