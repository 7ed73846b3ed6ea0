/**
 * A strict reader of the zip files behind .npz: the central directory is read and checked
 * (entry count, offsets and sizes inside the file, stored or deflated data, not encrypted), each
 * entry is inflated into a buffer of exactly its declared size, and its length and CRC-32 are
 * checked, so bit flips, truncation and huge declared lengths are clean errors (thrown as
 * ZipError, which the caller turns into a UserError naming the file), never a giant allocation.
 * Zip64 sizes (numpy writes them for large arrays) are read.
 */
import { inflateSync } from "fflate";
import { crc32 } from "../util/crc32.ts";

export class ZipError extends Error {}

/** Deflate expands at most about 1032:1; declared sizes beyond that cannot be true. */
const MAX_DEFLATE_RATIO = 1032;
const MAX_ENTRY_BYTES = 2 ** 31 - 1;

interface Entry {
  name: string;
  method: number;
  crc: number;
  compressedSize: number;
  size: number;
  localOffset: number;
}

function fail(why: string): never {
  throw new ZipError(why);
}

/** The entries of the zip file `bytes`, by name, decompressed and checked. */
export function unzipStrict(bytes: Uint8Array): Record<string, Uint8Array> {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const u16 = (at: number) => view.getUint16(at, true);
  const u32 = (at: number) => view.getUint32(at, true);
  const u64 = (at: number) => {
    const v = view.getBigUint64(at, true);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) fail("a zip64 size or offset is out of range");
    return Number(v);
  };
  const inFile = (at: number, length: number) =>
    at >= 0 && length >= 0 && at + length <= bytes.length;

  // The end-of-central-directory record: 22 bytes plus a comment of up to 65535 bytes.
  let eocd = -1;
  for (let at = bytes.length - 22; at >= Math.max(0, bytes.length - 22 - 65535); at--) {
    if (u32(at) === 0x06054b50 && at + 22 + u16(at + 20) === bytes.length) {
      eocd = at;
      break;
    }
  }
  if (eocd < 0) fail("no zip directory at the end (truncated?)");
  let directoryEnd = eocd;
  let count = u16(eocd + 10);
  let dirSize = u32(eocd + 12);
  let dirOffset = u32(eocd + 16);
  // A zip64 end record (numpy writes one for large arrays; torch.save always) sits between the
  // directory and the end record; its values count when the 32-bit ones are saturated.
  const saturated = count === 0xffff || dirSize === 0xffffffff || dirOffset === 0xffffffff;
  const locator = eocd - 20;
  if (locator >= 0 && u32(locator) === 0x07064b50) {
    const at = u64(locator + 8);
    if (!inFile(at, 56) || u32(at) !== 0x06064b50) fail("zip64 directory record missing");
    directoryEnd = at;
    if (saturated) {
      count = u64(at + 32);
      dirSize = u64(at + 40);
      dirOffset = u64(at + 48);
    }
  } else if (saturated) {
    fail("zip64 directory locator missing");
  }
  if (!inFile(dirOffset, dirSize)) fail("the zip directory lies outside the file");
  // The directory ends where the end record starts: nothing inserted, nothing cut.
  if (dirOffset + dirSize !== directoryEnd) fail("the zip directory is damaged (bytes inserted?)");
  if (count > dirSize / 46) fail(`the zip directory cannot hold ${count} entries`);

  const entries: Entry[] = [];
  let at = dirOffset;
  for (let i = 0; i < count; i++) {
    if (!inFile(at, 46) || u32(at) !== 0x02014b50) fail(`zip directory entry ${i} is damaged`);
    const flags = u16(at + 8);
    const nameLength = u16(at + 28), extraLength = u16(at + 30), commentLength = u16(at + 32);
    if (!inFile(at + 46, nameLength + extraLength + commentLength)) {
      fail(`zip directory entry ${i} runs past the directory`);
    }
    const name = new TextDecoder().decode(bytes.subarray(at + 46, at + 46 + nameLength));
    if (flags & 1) fail(`'${name}' is encrypted`);
    const entry: Entry = {
      name,
      method: u16(at + 10),
      crc: u32(at + 16),
      compressedSize: u32(at + 20),
      size: u32(at + 24),
      localOffset: u32(at + 42),
    };
    readZip64Extra(view, at + 46 + nameLength, extraLength, entry);
    entries.push(entry);
    at += 46 + nameLength + extraLength + commentLength;
  }

  const out: Record<string, Uint8Array> = {};
  for (const e of entries) {
    if (e.name in out) fail(`'${e.name}' is in the zip twice`);
    out[e.name] = readEntry(bytes, view, e, inFile);
  }
  return out;
}

/** Sizes and offset set to 0xffffffff in a directory entry come from its zip64 extra field. */
function readZip64Extra(view: DataView, start: number, length: number, e: Entry) {
  const wants = [e.size, e.compressedSize, e.localOffset].some((v) => v === 0xffffffff);
  if (!wants) return;
  for (let at = start; at + 4 <= start + length;) {
    const id = view.getUint16(at, true), size = view.getUint16(at + 2, true);
    if (id === 0x0001) {
      let p = at + 4;
      const next = (): number => {
        if (p + 8 > at + 4 + size) fail(`'${e.name}': zip64 field too short`);
        const v = view.getBigUint64(p, true);
        p += 8;
        if (v > BigInt(Number.MAX_SAFE_INTEGER)) fail(`'${e.name}': zip64 size out of range`);
        return Number(v);
      };
      if (e.size === 0xffffffff) e.size = next();
      if (e.compressedSize === 0xffffffff) e.compressedSize = next();
      if (e.localOffset === 0xffffffff) e.localOffset = next();
      return;
    }
    at += 4 + size;
  }
  fail(`'${e.name}': zip64 sizes missing`);
}

function readEntry(
  bytes: Uint8Array,
  view: DataView,
  e: Entry,
  inFile: (at: number, length: number) => boolean,
): Uint8Array {
  const at = e.localOffset;
  if (!inFile(at, 30) || view.getUint32(at, true) !== 0x04034b50) {
    fail(`'${e.name}': local header damaged`);
  }
  const dataStart = at + 30 + view.getUint16(at + 26, true) + view.getUint16(at + 28, true);
  if (!inFile(dataStart, e.compressedSize)) fail(`'${e.name}' runs past the end (truncated?)`);
  const raw = bytes.subarray(dataStart, dataStart + e.compressedSize);
  let data: Uint8Array;
  if (e.method === 0) {
    if (e.size !== e.compressedSize) fail(`'${e.name}': stored sizes disagree`);
    data = raw.slice();
  } else if (e.method === 8) {
    if (e.size > MAX_ENTRY_BYTES || e.size > e.compressedSize * MAX_DEFLATE_RATIO + 1024) {
      fail(`'${e.name}' declares ${e.size} bytes from ${e.compressedSize} compressed`);
    }
    try {
      data = inflateSync(raw, { out: new Uint8Array(e.size) });
    } catch (err) {
      fail(`'${e.name}': damaged compressed data (${(err as Error)?.message ?? err})`);
    }
  } else {
    fail(`'${e.name}': compression method ${e.method} is not supported`);
  }
  if (data.length !== e.size) {
    fail(`'${e.name}': ${data.length} bytes after decompression, the directory says ${e.size}`);
  }
  if (crc32(data) !== e.crc) fail(`'${e.name}': checksum mismatch (damaged data)`);
  return data;
}
