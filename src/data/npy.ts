/**
 * NumPy's .npy (format 1.0) and .npz (a zip of .npy files) for the arrays this
 * tool writes: shards of codes and labels, and samples for FID tools.
 */
import { Zip, ZipDeflate, zipSync } from "fflate";
import { createHash } from "node:crypto";
import { dirname } from "node:path";
import { UserError } from "../errors.ts";
import { fileSystemError, readFileOrFail, tempNameFor } from "../util/files.ts";
import { unzipStrict, ZipError } from "./unzip.ts";

export type NpyData = Uint8Array | Uint16Array | Int32Array | Float32Array;

export interface NpyArray {
  shape: number[];
  data: NpyData;
}

/**
 * An array written from a stream of its bytes (writeNpzAtomic), for data that is not held in
 * memory: `chunks(n)` yields the data bytes in order, in pieces of n bytes (the last shorter).
 */
export interface NpyStream {
  shape: number[];
  /** The element type, as the typed array that would hold the data. */
  type: typeof Uint8Array | typeof Uint16Array | typeof Int32Array | typeof Float32Array;
  chunks: (chunkBytes: number) => AsyncIterable<Uint8Array>;
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

export function encodeNpy(array: NpyArray): Uint8Array {
  const { data } = array;
  const header = npyHeader(array.shape, data.constructor, data.length);
  const out = new Uint8Array(header.length + data.byteLength);
  out.set(header);
  out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), header.length);
  return out;
}

/** The .npy bytes before the data: magic, version, header length and the padded header. */
function npyHeader(shape: number[], type: unknown, values: number): Uint8Array {
  const count = shape.reduce((a, b) => a * b, 1);
  if (count !== values) throw new Error(`npy: shape [${shape}] needs ${count} values`);
  const shapeText = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(", ")})`;
  let header = `{'descr': '${
    DESCR_OF.get(type)
  }', 'fortran_order': False, 'shape': ${shapeText}, }`;
  // Magic (6) + version (2) + length (2) + header + '\n' is padded to 64 bytes.
  const unpadded = 10 + header.length + 1;
  header += " ".repeat((64 - (unpadded % 64)) % 64) + "\n";
  const out = new Uint8Array(10 + header.length);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]);
  new DataView(out.buffer).setUint16(8, header.length, true);
  out.set(new TextEncoder().encode(header), 10);
  return out;
}

/**
 * Decodes one .npy array (format 1.0, 2.0 or 3.0) strictly: the magic, a header dict with
 * 'descr' (one of the dtypes this tool uses), 'fortran_order' False and a 'shape' of
 * non-negative integers, and exactly the data bytes the shape needs.
 */
export function decodeNpy(bytes: Uint8Array, label: string): NpyArray {
  const fail = (why: string): never => {
    throw new UserError(`${label}: not a valid .npy array (${why})`);
  };
  const magic = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59];
  if (bytes.length < 10 || magic.some((b, i) => bytes[i] !== b)) fail("bad magic");
  const major = bytes[6];
  if (major < 1 || major > 3) fail(`format version ${major}.${bytes[7]} is not supported`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (major > 1 && bytes.length < 12) fail("truncated header");
  const headerLen = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const headerStart = major === 1 ? 10 : 12;
  if (headerStart + headerLen > bytes.length) fail("header runs past the end (truncated?)");
  let header: string;
  try {
    header = new TextDecoder(major === 3 ? "utf-8" : "latin1", { fatal: true })
      .decode(bytes.subarray(headerStart, headerStart + headerLen));
  } catch {
    return fail("header is not text");
  }
  const descr = /'descr':\s*'([^']*)'/.exec(header)?.[1];
  const fortran = /'fortran_order':\s*(True|False)/.exec(header)?.[1];
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1];
  if (
    !header.trimStart().startsWith("{") || descr === undefined || !fortran ||
    shapeText === undefined
  ) {
    fail("unreadable header");
  }
  if (fortran === "True") fail("fortran order is not supported");
  const ctor = ARRAY_OF[descr!] ??
    fail(`dtype '${descr}' is not supported (${Object.keys(ARRAY_OF).join(", ")})`);
  const parts = shapeText!.split(",").map((s) => s.trim());
  // "(3,)" and "()" leave one empty part at the end.
  if (parts[parts.length - 1] === "") parts.pop();
  if (parts.some((p) => !/^\d+$/.test(p))) {
    fail(`shape (${shapeText}) must list non-negative integers`);
  }
  const shape = parts.map(Number);
  const dataBytes = bytes.length - headerStart - headerLen;
  let count = shape.includes(0) ? 0 : 1;
  for (const d of shape) {
    count *= d;
    if (count * ctor.BYTES_PER_ELEMENT > dataBytes) break; // cannot match: stop before overflow
  }
  if (dataBytes !== count * ctor.BYTES_PER_ELEMENT) {
    fail(
      `shape (${shape.join(", ")}) needs ${
        shape.reduce((a, b) => a * b, 1) * ctor.BYTES_PER_ELEMENT
      } data bytes, found ${dataBytes}`,
    );
  }
  const start = headerStart + headerLen;
  return { shape, data: new ctor(bytes.slice(start).buffer) };
}

/**
 * The time stamp of every zip entry: fixed (the zip format's first date), so the same arrays
 * always give the same bytes (fflate's default is the time of writing).
 */
const NPZ_ENTRY_TIME = new Date(1980, 0, 1);

/** Encodes named arrays as an .npz (deflated, as numpy.savez_compressed). */
export function encodeNpz(arrays: Record<string, NpyArray>, level: 0 | 6 = 6): Uint8Array {
  const files: Record<string, Uint8Array> = {};
  for (const [name, arr] of Object.entries(arrays)) files[`${name}.npy`] = encodeNpy(arr);
  return zipSync(files, { level, mtime: NPZ_ENTRY_TIME });
}

/** Bytes of array data deflated per push in writeNpzAtomic. */
const NPZ_STREAM_CHUNK = 1 << 20;

/**
 * Writes `arrays` as a .npz file at `path` (through a temporary file, renamed when complete),
 * deflating and writing as it goes: the arrays are read in place (or, for an NpyStream, as
 * they are streamed) and only about a chunk of compressed bytes is held at a time, so writing a
 * shard costs no copy of it (a streaming
 * `data` run's peak memory is then the same whatever its shards' row counts). Returns the
 * file's size and SHA-256. The zip entries carry data descriptors (sizes after the data), which
 * decodeNpz and numpy read alike.
 */
export async function writeNpzAtomic(
  path: string,
  arrays: Record<string, NpyArray | NpyStream>,
): Promise<{ bytes: number; sha256: string }> {
  const tmp = tempNameFor(path);
  const hash = createHash("sha256");
  let bytes = 0, failure: Error | null = null;
  const pending: Uint8Array[] = [];
  const zip = new Zip((err, chunk) => {
    if (err) failure = err;
    else pending.push(chunk);
  });
  let file: Deno.FsFile | null = null;
  const flush = async () => {
    if (failure) throw failure;
    for (const chunk of pending.splice(0)) {
      hash.update(chunk);
      bytes += chunk.length;
      for (let at = 0; at < chunk.length;) at += await file!.write(chunk.subarray(at));
    }
  };
  try {
    await Deno.mkdir(dirname(path), { recursive: true });
    file = await Deno.open(tmp, { write: true, create: true, truncate: true });
    for (const [name, array] of Object.entries(arrays)) {
      const entry = new ZipDeflate(`${name}.npy`, { level: 6 });
      entry.mtime = NPZ_ENTRY_TIME;
      zip.add(entry);
      const values = array.shape.reduce((a, b) => a * b, 1);
      if ("data" in array) {
        entry.push(npyHeader(array.shape, array.data.constructor, array.data.length));
        const { buffer, byteOffset, byteLength } = array.data;
        const data = new Uint8Array(buffer, byteOffset, byteLength);
        for (let at = 0; at < data.length; at += NPZ_STREAM_CHUNK) {
          entry.push(data.subarray(at, Math.min(data.length, at + NPZ_STREAM_CHUNK)));
          await flush();
        }
      } else {
        entry.push(npyHeader(array.shape, array.type, values));
        let streamed = 0;
        for await (const chunk of array.chunks(NPZ_STREAM_CHUNK)) {
          entry.push(chunk);
          streamed += chunk.length;
          await flush();
        }
        const want = values * array.type.BYTES_PER_ELEMENT;
        if (streamed !== want) {
          throw new Error(`${path}: '${name}' streamed ${streamed} bytes, its shape needs ${want}`);
        }
      }
      entry.push(new Uint8Array(0), true);
      await flush();
    }
    zip.end();
    await flush();
    file.close();
    file = null;
    await Deno.rename(tmp, path);
  } catch (err) {
    file?.close();
    await Deno.remove(tmp).catch(() => {});
    throw fileSystemError(err, `cannot write ${path}`);
  }
  return { bytes, sha256: hash.digest("hex") };
}

export function decodeNpz(bytes: Uint8Array, label: string): Record<string, NpyArray> {
  let files: Record<string, Uint8Array>;
  try {
    files = unzipStrict(bytes);
  } catch (err) {
    if (!(err instanceof ZipError)) throw err;
    throw new UserError(`${label}: not a readable .npz file (${err.message})`);
  }
  const out: Record<string, NpyArray> = {};
  for (const [name, data] of Object.entries(files)) {
    if (!name.endsWith(".npy")) continue;
    out[name.slice(0, -4)] = decodeNpy(data, `${label}:${name}`);
  }
  return out;
}

export async function readNpz(path: string): Promise<Record<string, NpyArray>> {
  let bytes: Uint8Array;
  try {
    bytes = await readFileOrFail(path);
  } catch (err) {
    throw fileSystemError(err, `cannot read ${path}`);
  }
  return decodeNpz(bytes, path);
}
