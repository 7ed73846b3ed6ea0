/**
 * The strict .npz reader: damaged zip directories, checksums, huge declared sizes and bad .npy
 * headers are UserErrors naming the file; numpy's own files (savez, savez_compressed) read.
 */
import assert from "node:assert/strict";
import { deflateSync } from "fflate";
import { decodeNpy, decodeNpz, encodeNpy, encodeNpz, writeNpzAtomic } from "../src/data/npy.ts";
import { createHash } from "node:crypto";
import { crc32 } from "../src/util/crc32.ts";
import { UserError } from "../src/errors.ts";
import { Rng } from "../src/util/rng.ts";
import { tempDir } from "./helpers.ts";

function shardBytes(): Uint8Array {
  const rng = new Rng(5);
  return encodeNpz({
    codes: { shape: [20, 21], data: Uint16Array.from({ length: 420 }, () => rng.int(16)) },
    labels: { shape: [20], data: Int32Array.from({ length: 20 }, (_, i) => i % 2) },
  });
}

function isCleanError(err: unknown, label: string): boolean {
  assert.ok(err instanceof UserError, `${label}: ${(err as Error)?.stack ?? err}`);
  assert.match(err.message, /^x\.npz/, label);
  assert.doesNotMatch(err.message, /undefined|(?<!JSON )null|\[object Object\]/, label);
  assert.equal(err.message.split("\n").length, 1, label);
  return true;
}

Deno.test("every bit flip in a shard is an error naming the file, or leaves it intact", () => {
  const good = shardBytes();
  const original = decodeNpz(good, "x.npz");
  let refused = 0;
  for (let byte = 0; byte < good.length; byte++) {
    const bytes = good.slice();
    bytes[byte] ^= 1 << (byte % 8);
    let back;
    try {
      back = decodeNpz(bytes, "x.npz");
    } catch (err) {
      isCleanError(err, `flip at ${byte}`);
      refused++;
      continue;
    }
    // A flip the format cannot see (a time stamp, the zip's version fields) leaves the arrays
    // intact; one in a file name renames an array, which readShard then misses by name.
    for (const name of ["codes", "labels"]) {
      if (back[name]) assert.deepEqual(back[name], original[name], `flip at ${byte}`);
    }
  }
  assert.ok(refused > good.length / 2, `${refused} of ${good.length} flips refused`);
});

Deno.test("every truncation and inserted bytes are errors naming the file", () => {
  const good = shardBytes();
  for (let n = 0; n < good.length; n++) {
    assert.throws(
      () => decodeNpz(good.subarray(0, n), "x.npz"),
      (e) => isCleanError(e, `cut ${n}`),
    );
  }
  for (const at of [0, 10, 40, good.length >> 1, good.length - 30, good.length - 22]) {
    const bytes = new Uint8Array(good.length + 3);
    bytes.set(good.subarray(0, at));
    bytes.set([1, 2, 3], at);
    bytes.set(good.subarray(at), at + 3);
    assert.throws(() => decodeNpz(bytes, "x.npz"), (e) => isCleanError(e, `insert at ${at}`));
  }
});

Deno.test("a huge declared size is refused before anything is allocated", () => {
  const good = shardBytes();
  const view = new DataView(good.buffer);
  // The central directory entries: signature 0x02014b50; uncompressed size at +24.
  for (let at = 0; at + 4 <= good.length; at++) {
    if (view.getUint32(at, true) !== 0x02014b50) continue;
    const bytes = good.slice();
    new DataView(bytes.buffer).setUint32(at + 24, 0xfffffff0, true);
    assert.throws(() => decodeNpz(bytes, "x.npz"), (e) => {
      isCleanError(e, "huge size");
      assert.match((e as Error).message, /declares 4294967280 bytes/);
      return true;
    });
  }
});

/** An .npy file with header dict text `dict` and `data`. */
function npy(dict: string, data = new Uint8Array(0)): Uint8Array {
  const header = dict + " ".repeat((64 - ((10 + dict.length + 1) % 64)) % 64) + "\n";
  const out = new Uint8Array(10 + header.length + data.length);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]);
  new DataView(out.buffer).setUint16(8, header.length, true);
  out.set(new TextEncoder().encode(header), 10);
  out.set(data, 10 + header.length);
  return out;
}

Deno.test(".npy headers: dtype, fortran order, shape and sizes are checked", () => {
  const d = (descr: string, shape: string, fortran = "False") =>
    `{'descr': '${descr}', 'fortran_order': ${fortran}, 'shape': ${shape}, }`;
  const cases: [Uint8Array, RegExp][] = [
    [npy(d(">u2", "(2,)"), new Uint8Array(4)), /dtype '>u2' is not supported/],
    [npy(d("<f8", "(1,)"), new Uint8Array(8)), /dtype '<f8' is not supported/],
    [npy(d("<u2", "(2,)", "True"), new Uint8Array(4)), /fortran order/],
    [npy(d("<u2", "(-2,)"), new Uint8Array(4)), /must list non-negative integers/],
    [npy(d("<u2", "(2.5,)"), new Uint8Array(4)), /must list non-negative integers/],
    [npy(d("<u2", "(a,)"), new Uint8Array(4)), /must list non-negative integers/],
    [npy(d("<u2", "(99999999999, 99999999999, 9999999999)"), new Uint8Array(4)), /found 4/],
    [npy(d("<u2", "(3,)"), new Uint8Array(4)), /needs 6 data bytes, found 4/],
    [npy("nonsense"), /unreadable header/],
    [npy(d("<u2", "(2,)")).subarray(0, 20), /header runs past the end/],
    [Uint8Array.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 9, 0, 0, 0]), /version 9\.0/],
    [new Uint8Array(4), /bad magic/],
  ];
  for (const [bytes, pattern] of cases) {
    assert.throws(() => decodeNpy(bytes, "x.npz:a.npy"), (err) => {
      isCleanError(err, String(pattern));
      assert.match((err as Error).message, pattern);
      return true;
    });
  }
  // Scalars and empty arrays are legal.
  assert.deepEqual(decodeNpy(npy(d("<i4", "()"), new Uint8Array(4)), "s").shape, []);
  assert.deepEqual(decodeNpy(npy(d("<i4", "(0, 5)")), "e").shape, [0, 5]);
  assert.deepEqual(decodeNpy(encodeNpy({ shape: [2], data: Int32Array.from([1, 2]) }), "r").shape, [
    2,
  ]);
});

Deno.test("a stored (uncompressed) entry with a wrong checksum is refused", () => {
  const bytes = encodeNpz({ a: { shape: [4], data: Int32Array.from([1, 2, 3, 4]) } }, 0);
  const view = new DataView(bytes.buffer);
  // Flip a data byte of the array (the last 16 bytes before the directory hold it).
  const dir = bytes.findLastIndex((_, i) =>
    i + 4 <= bytes.length && view.getUint32(i, true) === 0x02014b50
  );
  bytes[dir - 1] ^= 0x40;
  assert.throws(() => decodeNpz(bytes, "x.npz"), /checksum mismatch/);
  assert.equal(crc32(new TextEncoder().encode("123456789")), 0xcbf43926);
  assert.ok(deflateSync); // fflate's deflate is what encodeNpz uses
});

const hasNumpy =
  (await new Deno.Command("python3", { args: ["-c", "import numpy"], stderr: "null" })
    .output().catch(() => null))?.success ?? false;

Deno.test(
  { name: "numpy's savez and savez_compressed files read", ignore: !hasNumpy },
  async () => {
    await using dir = await tempDir();
    const script = `import numpy as np
np.savez("${dir.path}/a.npz", codes=np.arange(12, dtype=np.uint16).reshape(3, 4), labels=np.array([1, 0, 1], dtype=np.int32))
np.savez_compressed("${dir.path}/b.npz", codes=np.arange(12, dtype=np.uint16).reshape(3, 4), labels=np.array([1, 0, 1], dtype=np.int32))`;
    const r = await new Deno.Command("python3", { args: ["-c", script] }).output();
    assert.ok(r.success, new TextDecoder().decode(r.stderr));
    for (const name of ["a.npz", "b.npz"]) {
      const z = decodeNpz(await Deno.readFile(`${dir.path}/${name}`), name);
      assert.deepEqual(z.codes.shape, [3, 4]);
      assert.deepEqual(Array.from(z.codes.data), Array.from({ length: 12 }, (_, i) => i));
      assert.deepEqual(Array.from(z.labels.data), [1, 0, 1]);
    }
  },
);

/** A shard bigger than writeNpzAtomic's 1 MiB chunk, so that it is deflated in several pushes. */
function bigShard() {
  const rng = new Rng(9);
  const rows = 1500, L = 341;
  return {
    codes: { shape: [rows, L], data: Uint16Array.from({ length: rows * L }, () => rng.int(4096)) },
    labels: { shape: [rows], data: Int32Array.from({ length: rows }, () => rng.int(1000)) },
  };
}

Deno.test("a streamed shard (writeNpzAtomic) reads back as written, with its size and hash", async () => {
  await using dir = await tempDir();
  const arrays = bigShard();
  const path = `${dir.path}/sub/train-00000.npz`;
  const { bytes, sha256 } = await writeNpzAtomic(path, arrays);
  const file = await Deno.readFile(path);
  assert.equal(bytes, file.length);
  assert.equal(sha256, createHash("sha256").update(file).digest("hex"));
  const back = decodeNpz(file, "train-00000.npz");
  assert.deepEqual(back.codes.shape, arrays.codes.shape);
  assert.deepEqual(back.codes.data, arrays.codes.data);
  assert.deepEqual(back.labels.data, arrays.labels.data);
  // Nothing but the file itself is left in the folder (the temporary name was renamed).
  assert.deepEqual([...Deno.readDirSync(`${dir.path}/sub`)].map((e) => e.name), ["train-00000.npz"]);
});

Deno.test("a streamed shard into a folder that cannot be made is an error naming it", async () => {
  await using dir = await tempDir();
  await Deno.writeTextFile(`${dir.path}/file`, "x");
  await assert.rejects(
    () => writeNpzAtomic(`${dir.path}/file/train-00000.npz`, bigShard()),
    (err: unknown) => err instanceof UserError && /file\/train-00000\.npz/.test(err.message),
  );
});

Deno.test(
  { name: "numpy reads a streamed shard (data descriptors)", ignore: !hasNumpy },
  async () => {
    await using dir = await tempDir();
    const arrays = bigShard();
    await writeNpzAtomic(`${dir.path}/s.npz`, arrays);
    const script = `import numpy as np
z = np.load("${dir.path}/s.npz")
print(z["codes"].shape, int(z["codes"].astype(np.int64).sum()), int(z["labels"].astype(np.int64).sum()))`;
    const r = await new Deno.Command("python3", { args: ["-c", script] }).output();
    assert.ok(r.success, new TextDecoder().decode(r.stderr));
    const sum = (a: ArrayLike<number>) => Array.from(a).reduce((x, y) => x + y, 0);
    assert.equal(
      new TextDecoder().decode(r.stdout).trim(),
      `(1500, 341) ${sum(arrays.codes.data)} ${sum(arrays.labels.data)}`,
    );
  },
);
