/**
 * Reading torch.save checkpoints (src/tokenizer/torch_checkpoint.ts) on the random-weight
 * LlamaGen VQ-16 fixture (../shared/fixtures/llamagen-vq-small) and on damaged or hostile files.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { zipSync } from "fflate";
import { decodeTorchCheckpoint, readTorchCheckpoint } from "../src/tokenizer/torch_checkpoint.ts";
import { UserError } from "../src/errors.ts";
import { repoRoot } from "./helpers.ts";

const FIXTURE = join(repoRoot, "..", "shared", "fixtures", "llamagen-vq-small");
const haveFixture = await Deno.stat(join(FIXTURE, "vq_small.pt")).then(() => true, () => false);

Deno.test({
  name: "the LlamaGen VQ fixture reads with every key, shape and value count of vq_small.json",
  ignore: !haveFixture,
  async fn() {
    const tensors = await readTorchCheckpoint(join(FIXTURE, "vq_small.pt"));
    const spec = JSON.parse(await Deno.readTextFile(join(FIXTURE, "vq_small.json")));
    const want = spec.state_dict as { key: string; shape: number[] }[];
    assert.deepEqual(Object.keys(tensors), want.map((t) => t.key), "keys, in the file's order");
    for (const { key, shape } of want) assert.deepEqual(tensors[key].shape, shape, key);
    const values = Object.values(tensors).reduce((a, t) => a + t.data.length, 0);
    assert.equal(values, spec.checkpoint.values);
    // The codebook is stored un-normalised, row norms in [0.5, 2) (the fixture's README).
    const book = tensors["quantize.embedding.weight"];
    const [K, D] = book.shape;
    for (let k = 0; k < K; k++) {
      let n = 0;
      for (let d = 0; d < D; d++) n += book.data[k * D + d] ** 2;
      assert.ok(Math.sqrt(n) >= 0.5 && Math.sqrt(n) < 2, `codebook row ${k} norm ${Math.sqrt(n)}`);
    }
    for (const [key, t] of Object.entries(tensors)) {
      assert.ok(t.data.every(Number.isFinite), `${key} is finite`);
    }
  },
});

function torchZip(pickle: number[], storages: Record<string, Uint8Array> = {}): Uint8Array {
  const files: Record<string, Uint8Array> = { "archive/data.pkl": new Uint8Array(pickle) };
  for (const [key, raw] of Object.entries(storages)) files[`archive/data/${key}`] = raw;
  return zipSync(files, { level: 0 });
}

const ascii = (s: string) => [...new TextEncoder().encode(s)];
/** GLOBAL module\nname\n */
const global = (module: string, name: string) => [0x63, ...ascii(`${module}\n${name}\n`)];
const unicode = (s: string) => [0x8c, s.length, ...ascii(s)];

/** A pickle of {"w": tensor of `size`/`stride` over a 4-value float storage "0"}. */
function onePickle(size: number[], stride: number[]): number[] {
  const tuple = (xs: number[]) => [0x28, ...xs.flatMap((x) => [0x4b, x]), 0x74];
  return [
    0x80,
    2,
    0x7d, // {}
    ...unicode("w"),
    ...global("torch._utils", "_rebuild_tensor_v2"),
    0x28, // MARK of the argument tuple
    0x28,
    ...unicode("storage"),
    ...global("torch", "FloatStorage"),
    ...unicode("0"),
    ...unicode("cpu"),
    0x4b,
    4,
    0x74,
    0x51, // BINPERSID
    0x4b,
    0,
    ...tuple(size),
    ...tuple(stride),
    0x89,
    0x4e,
    0x74, // offset, size, stride, False, None
    0x52,
    0x73,
    0x2e, // REDUCE, SETITEM, STOP
  ];
}

const storage4 = new Uint8Array(new Float32Array([1, 2, 3, 4]).buffer);

Deno.test("a transposed (non-contiguous) tensor is read in row-major order", () => {
  const t = decodeTorchCheckpoint(torchZip(onePickle([2, 2], [1, 2]), { "0": storage4 }), "t.pt");
  assert.deepEqual(t.w.shape, [2, 2]);
  assert.deepEqual([...t.w.data], [1, 3, 2, 4]);
});

Deno.test("damaged and hostile checkpoints are one UserError naming the file", () => {
  const refused = (bytes: Uint8Array, why: RegExp) =>
    assert.throws(
      () => decodeTorchCheckpoint(bytes, "m.pt"),
      (e: unknown) =>
        e instanceof UserError && /^m\.pt: not a readable PyTorch checkpoint/.test(e.message) &&
        why.test(e.message),
    );
  refused(new TextEncoder().encode("not a zip"), /zip/);
  refused(zipSync({ "x/other.bin": new Uint8Array(3) }), /data\.pkl/);
  // Code a pickle could run is never called: only torch.save's globals are known.
  refused(torchZip([0x80, 2, ...global("os", "system"), 0x2e]), /os\.system/);
  refused(torchZip(onePickle([2, 2], [2, 1])), /storage data\/0 is missing/);
  refused(torchZip(onePickle([3, 2], [2, 1]), { "0": storage4 }), /reaches past its storage/);
  refused(torchZip(onePickle([2, 2], [2, 1]).slice(0, 40), { "0": storage4 }), /ends early/);
  refused(torchZip(onePickle([2, 2], [2, 1]), { "0": storage4.slice(0, 12) }), /12 bytes/);
});
