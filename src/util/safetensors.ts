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
      dtype: DTYPE_OF.get(data.constructor)!,
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
    const ctor = ARRAY_OF[info?.dtype];
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
    tensors[name] = { shape, data: new ctor(buf) };
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
