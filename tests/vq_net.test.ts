/**
 * The native VQ network's TypeScript wrapper (src/tokenizer/vq_net.ts) on small random
 * architectures: the checks that turn bad arguments into UserErrors, determinism, the backends
 * agreeing, non-square images, the float64 backend's arrays, setCodebook; and the bench's
 * convolution list (src/bench/vq_bench.ts) against the ds16 figures. The fixture parity is in
 * vq_parity.test.ts.
 */
import assert from "node:assert/strict";
import { UserError } from "../src/errors.ts";
import { type VqArchitecture, VqNet } from "../src/tokenizer/vq_net.ts";
import { vqConvGemms } from "../src/bench/vq_bench.ts";
import { Rng } from "../src/util/rng.ts";
import { expectOneLineError } from "./helpers.ts";

/** Two levels (patch 2), attention at the 2nd; a nin_shortcut in both directions. */
const SMALL: VqArchitecture = {
  ch: 32,
  chMult: [1, 2],
  zChannels: 16,
  codes: 24,
  codeDim: 4,
  encoderBlocks: 1,
  decoderBlocks: 2,
};

function images(B: number, H: number, W: number, seed: number): Float32Array {
  const rng = new Rng(seed);
  return Float32Array.from({ length: B * 3 * H * W }, () => 2 * rng.next() - 1);
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

Deno.test("VqNet: random weights are deterministic, and cpu, cpu-ref and cpu-ref-f64 agree on a non-square batch", async () => {
  const [B, H, W] = [3, 6, 10]; // patch 2: a 3 x 5 latent grid
  const x = images(B, H, W, 1);
  const ref = VqNet.random("cpu-ref", SMALL, 7);
  const cpu = VqNet.random("cpu", SMALL, 7);
  const f64 = VqNet.random("cpu-ref-f64", SMALL, 7);
  try {
    assert.equal(ref.patch, 2);
    assert.deepEqual(ref.arch, SMALL);
    const a = await ref.encode(x, B, H, W, { encOut: true });
    const again = await ref.encode(x, B, H, W, { encOut: true });
    assert.deepEqual(a.latent, again.latent, "same input, same latent");
    assert.equal(a.latent.length, B * 4 * 3 * 5);
    assert.equal(a.encOut!.length, B * 16 * 3 * 5);
    assert.equal(a.indices.length, B * 15);
    assert.ok(a.indices.every((i) => i >= 0 && i < SMALL.codes));
    const b = await cpu.encode(x, B, H, W);
    const c = await f64.encode(x, B, H, W);
    assert.ok(c.latent instanceof Float64Array && c.dist2 instanceof Float64Array);
    assert.ok(maxAbsDiff(a.latent, c.latent) < 1e-5, "cpu-ref vs f64 latent");
    assert.ok(maxAbsDiff(b.latent, c.latent) < 1e-5, "cpu vs f64 latent");
    assert.equal(b.encOut, undefined, "encOut only when asked for");
    const da = await ref.decodeCodes(a.indices, B, 3, 5, { intermediates: true });
    const db = await cpu.decodeCodes(a.indices, B, 3, 5);
    const dc = await f64.decodeCodes(a.indices, B, 3, 5);
    assert.equal(da.images.length, B * 3 * H * W);
    assert.ok(dc.images instanceof Float64Array);
    assert.ok(maxAbsDiff(da.images, dc.images) < 1e-4, "cpu-ref vs f64 images");
    assert.ok(maxAbsDiff(db.images, dc.images) < 1e-4, "cpu vs f64 images");
    // decodeLatents of the quantised rows is decodeCodes.
    const dl = await ref.decodeLatents(da.quant!, B, 3, 5, { intermediates: true });
    assert.deepEqual(dl.images, da.images);
    assert.deepEqual(dl.postQuant, da.postQuant);
    assert.equal(dl.decMid!.length, B * 64 * 15);
    // A different seed is a different network.
    const other = VqNet.random("cpu-ref", SMALL, 8);
    const o = await other.encode(x, B, H, W);
    other.dispose();
    assert.ok(maxAbsDiff(o.latent, a.latent) > 1e-3);
  } finally {
    ref.dispose();
    cpu.dispose();
    f64.dispose();
  }
});

Deno.test("VqNet: setCodebook replaces the codes (normalised), and the quantiser picks among them", async () => {
  const net = VqNet.random("cpu", SMALL, 3);
  try {
    const x = images(2, 8, 8, 2);
    const before = await net.encode(x, 2, 8, 8);
    // Two codes: the first latent's own direction (scaled), and its opposite.
    const d0 = Array.from({ length: 4 }, (_, d) => before.latent[d * 16]);
    const book = Float32Array.from([...d0.map((v) => 5 * v), ...d0.map((v) => -v)]);
    net.setCodebook(book);
    assert.equal(net.arch.codes, 2);
    const after = await net.encode(x, 2, 8, 8);
    assert.deepEqual(after.latent, before.latent, "the encoder is unchanged");
    assert.ok(after.indices.every((i) => i === 0 || i === 1));
    assert.equal(after.indices[0], 0);
    assert.ok(Math.abs(after.dist2[0]) < 1e-5, "its own direction: distance 0");
    const decoded = await net.decodeCodes(Int32Array.from([1, 0, 1, 0]), 1, 2, 2, {
      intermediates: true,
    });
    const norm = Math.hypot(...d0);
    for (let d = 0; d < 4; d++) {
      assert.ok(Math.abs(decoded.quant![d * 4] + d0[d] / norm) < 1e-6, "row 1, normalised");
    }
    await assert.rejects(() => net.decodeCodes(Int32Array.from([2, 0, 0, 0]), 1, 2, 2), UserError);
  } finally {
    net.dispose();
  }
});

Deno.test("VqNet: bad arguments are UserErrors naming the problem", async () => {
  const net = VqNet.random("cpu-ref", SMALL, 1);
  const rejects = (p: () => Promise<unknown>, pattern: RegExp) =>
    assert.rejects(p, (e: Error) => e instanceof UserError && pattern.test(e.message));
  await rejects(() => net.encode(new Float32Array(3 * 6 * 6), 1, 6, 7), /multiples of 2/);
  await rejects(() => net.encode(new Float32Array(5), 1, 6, 6), /B \* 3 \* H \* W = 108/);
  await rejects(() => net.decodeCodes(new Int32Array(4), 1, 2, 3), /B \* h \* w = 6/);
  await rejects(
    () => net.decodeCodes(Int32Array.from([0, 24, 0, 0]), 1, 2, 2),
    /code 24 at position 1 is outside the codebook \[0, 24\)/,
  );
  await rejects(() => net.decodeLatents(new Float32Array(3), 1, 2, 2), /= 16 values/);
  assert.throws(() => net.setCodebook(new Float32Array(6)), /K \* 4 values/);
  assert.throws(() => net.setCodebook(Float32Array.from([1, 2, NaN, 4])), /non-finite/);
  net.dispose();
  await rejects(() => net.encode(new Float32Array(108), 1, 6, 6), /already disposed/);
  assert.throws(() => VqNet.random("cpu", { ...SMALL, ch: 24 }, 1), /multiple of GroupNorm/);
  assert.throws(() => VqNet.random("gpu" as "cpu", SMALL, 1), /unknown VQ backend 'gpu'/);
  const tensors = { "encoder.conv_in.weight": { shape: [32, 3, 3, 3], data: new Float32Array(5) } };
  assert.throws(() => VqNet.fromTensors("cpu", tensors, "x.pt"), /x\.pt: tensor .* needs 864/);
});

Deno.test("bench vq: the ds16 convolution list (45 and 59 convs, 138.0 and 252.2 GFLOP at 256 px, as cb_engine_bench records them)", async () => {
  const { encoder, decoder } = vqConvGemms(VqNet.ds16(), 256, 256);
  const gflop = (list: typeof encoder) =>
    list.reduce((a, c) => a + 2 * c.rows * c.in * c.out, 0) / 1e9;
  assert.equal(encoder.length, 45);
  assert.equal(decoder.length, 59);
  assert.equal(gflop(encoder).toFixed(1), "138.0");
  assert.equal(gflop(decoder).toFixed(1), "252.2");
  assert.deepEqual(encoder[0], { rows: 65536, in: 27, out: 128 });
  assert.deepEqual(decoder[decoder.length - 1], { rows: 65536, in: 1152, out: 3 });
  await expectOneLineError(
    ["bench", "vq", "--size", "40"],
    /--size must be a multiple of 16, got 40/,
  );
});
