/**
 * NumPy's .npy (format 1.0) and .npz (a zip of .npy files) for the arrays this
 * tool writes: shards of codes and labels, and samples for FID tools.
 */
import { unzipSync, zipSync } from "fflate";
import { UserError } from "../errors.ts";
import { readFileOrFail } from "../util/files.ts";

export type NpyData = Uint8Array | Uint16Array | Int32Array | Float32Array;

export interface NpyArray {
  shape: number[];
  data: NpyData;
}

const DESCR_OF = new Map<unknown, string>([
  [Uint8Array, "|u1"],
  [Uint16Array, "<u2"],
  [Int32Array, "<i4"],
  [Float32Array, "<f4"],
]);

const ARRAY_OF: Record<string, { new (buf: ArrayBuffer): NpyData; BYTES_PER_ELEMENT: number }> = {
  "|u1": Uint8Array,
  "<u2": Uint16Array,
  "<i4": Int32Array,
  "<f4": Float32Array,
};

export function encodeNpy({ shape, data }: NpyArray): Uint8Array {
  const count = shape.reduce((a, b) => a * b, 1);
  if (count !== data.length) throw new Error(`npy: shape [${shape}] needs ${count} values`);
  const shapeText = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(", ")})`;
  let header = `{'descr': '${
    DESCR_OF.get(data.constructor)
  }', 'fortran_order': False, 'shape': ${shapeText}, }`;
  // Magic (6) + version (2) + length (2) + header + '\n' is padded to 64 bytes.
  const unpadded = 10 + header.length + 1;
  header += " ".repeat((64 - (unpadded % 64)) % 64) + "\n";
  const out = new Uint8Array(10 + header.length + data.byteLength);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]);
  new DataView(out.buffer).setUint16(8, header.length, true);
  out.set(new TextEncoder().encode(header), 10);
  out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), 10 + header.length);
  return out;
}

export function decodeNpy(bytes: Uint8Array, label: string): NpyArray {
  const fail = (why: string): never => {
    throw new UserError(`${label}: not a valid .npy array (${why})`);
  };
  const magic = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59];
  if (bytes.length < 10 || magic.some((b, i) => bytes[i] !== b)) fail("bad magic");
  const major = bytes[6];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLen = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const headerStart = major === 1 ? 10 : 12;
  const header = new TextDecoder().decode(bytes.subarray(headerStart, headerStart + headerLen));
  const descr = /'descr':\s*'([^']+)'/.exec(header)?.[1];
  const fortran = /'fortran_order':\s*(True|False)/.exec(header)?.[1];
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1];
  if (!descr || !fortran || shapeText === undefined) fail("unreadable header");
  if (fortran === "True") fail("fortran order is not supported");
  const ctor = ARRAY_OF[descr!] ?? fail(`dtype ${descr} is not supported`);
  const shape = shapeText!.split(",").map((s) => s.trim()).filter((s) => s).map(Number);
  const count = shape.reduce((a, b) => a * b, 1);
  const start = headerStart + headerLen;
  if (bytes.length - start !== count * ctor.BYTES_PER_ELEMENT) {
    fail(`expected ${count * ctor.BYTES_PER_ELEMENT} data bytes, found ${bytes.length - start}`);
  }
  return { shape, data: new ctor(bytes.slice(start).buffer) };
}

/** Encodes named arrays as an .npz (deflated, as numpy.savez_compressed). */
export function encodeNpz(arrays: Record<string, NpyArray>, level: 0 | 6 = 6): Uint8Array {
  const files: Record<string, Uint8Array> = {};
  for (const [name, arr] of Object.entries(arrays)) files[`${name}.npy`] = encodeNpy(arr);
  return zipSync(files, { level });
}

export function decodeNpz(bytes: Uint8Array, label: string): Record<string, NpyArray> {
  let files: Record<string, Uint8Array>;
  try {
    files = unzipSync(bytes);
  } catch (err) {
    throw new UserError(
      `${label}: not a readable .npz file (${(err as Error).message}; truncated?)`,
    );
  }
  const out: Record<string, NpyArray> = {};
  for (const [name, data] of Object.entries(files)) {
    if (!name.endsWith(".npy")) continue;
    out[name.slice(0, -4)] = decodeNpy(data, `${label}:${name}`);
  }
  return out;
}

export async function readNpz(path: string): Promise<Record<string, NpyArray>> {
  return decodeNpz(await readFileOrFail(path), path);
}
