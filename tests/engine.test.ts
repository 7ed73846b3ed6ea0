/**
 * src/engine.ts over the built addon: nearestCodes on cpu and cpu-ref against a brute-force
 * TypeScript search, shape checks, native errors with their file and line, and CUDA requests
 * on a machine without a usable GPU. Needs the addon: run scripts/build-addon.sh first.
 */
import assert from "node:assert/strict";
import {
  cudaStatus,
  DEVICES,
  engineInfo,
  gemm,
  isNativeError,
  linearSeconds,
  nativeAddon,
  nearestCodes,
  resolveDevice,
} from "../src/engine.ts";
import { UserError } from "../src/errors.ts";
import { repoRoot } from "./helpers.ts";

/** A small seeded generator (mulberry32), so failures reproduce. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function uniform(count: number, seed: number): Float32Array {
  const next = rng(seed);
  return Float32Array.from({ length: count }, () => next() * 2 - 1);
}

function ints(count: number, seed: number, lo: number, hi: number): Float32Array {
  const next = rng(seed);
  return Float32Array.from({ length: count }, () => lo + Math.floor(next() * (hi - lo + 1)));
}

/** Squared distance in double between row i of x (.., d) and row j of e (.., d). */
function d2(x: Float32Array, i: number, e: Float32Array, j: number, d: number): number {
  let s = 0;
  for (let l = 0; l < d; l++) s += (x[i * d + l] - e[j * d + l]) ** 2;
  return s;
}

/** Brute force: for each point the first code at the smallest distance, in double. */
function bruteNearest(x: Float32Array, n: number, d: number, e: Float32Array, k: number) {
  const index = new Int32Array(n), dist2 = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let best = 0, bestD = d2(x, i, e, 0, d);
    for (let j = 1; j < k; j++) {
      const v = d2(x, i, e, j, d);
      if (v < bestD) [best, bestD] = [j, v];
    }
    index[i] = best;
    dist2[i] = bestD;
  }
  return { index, dist2 };
}

const FLOAT_EPS = 2 ** -23;

for (const backend of ["cpu", "cpu-ref"] as const) {
  Deno.test(`nearestCodes on ${backend} matches a brute-force search on random data`, async () => {
    for (
      const [n, d, k, chunkRows] of [[1, 1, 1, undefined], [523, 7, 33, 50], [300, 19, 130, 64], [
        97,
        3,
        5,
        undefined,
      ]] as const
    ) {
      const x = uniform(n * d, n + d), e = uniform(k * d, 7 * k + 1);
      const got = await nearestCodes(backend, x, n, d, e, k, { chunkRows });
      const ref = bruteNearest(x, n, d, e, k);
      assert.equal(got.index.length, n);
      assert.equal(got.dist2.length, n);
      let emax = 0;
      for (let j = 0; j < k; j++) {
        emax = Math.max(emax, Math.sqrt(d2(e, j, new Float32Array(d), 0, d)));
      }
      for (let i = 0; i < n; i++) {
        // The float computation may pick a different code only at a near-tie (rounding bound).
        const xnorm = Math.sqrt(d2(x, i, new Float32Array(d), 0, d));
        const tol = 4 * (d + 4) * FLOAT_EPS * (xnorm + emax) ** 2;
        const chosen = d2(x, i, e, got.index[i], d);
        assert.ok(
          chosen - ref.dist2[i] <= tol,
          `n=${n} d=${d} k=${k}: point ${i} got code ${got.index[i]}, ${ref.index[i]} is nearer`,
        );
        assert.ok(
          Math.abs(got.dist2[i] - chosen) <= tol,
          `point ${i}: dist2 ${got.dist2[i]} vs ${chosen}`,
        );
      }
    }
  });

  Deno.test(`nearestCodes on ${backend}: exact on integer data, first index wins ties`, async () => {
    const n = 211, d = 4, base = 6, k = 30;
    const rows = ints(base * d, 3, -2, 2);
    const e = new Float32Array(k * d);
    for (let j = 0; j < k; j++) e.set(rows.subarray((j % base) * d, (j % base + 1) * d), j * d); // repeats
    const x = ints(n * d, 4, -3, 3);
    const got = await nearestCodes(backend, x, n, d, e, k, { chunkRows: 16 });
    const ref = bruteNearest(x, n, d, e, k);
    assert.deepEqual(Array.from(got.index), Array.from(ref.index));
    assert.deepEqual(Array.from(got.dist2), Array.from(ref.dist2));
    for (const j of got.index) assert.ok(j < base, "a repeated code must lose to its first copy");
  });
}

Deno.test("nearestCodes: n = 0 gives empty results", async () => {
  const got = await nearestCodes("cpu", new Float32Array(0), 0, 3, new Float32Array(6), 2);
  assert.equal(got.index.length, 0);
  assert.equal(got.dist2.length, 0);
});

Deno.test("nearestCodes: shape mismatches are UserErrors naming the sizes", async () => {
  const e = new Float32Array(6);
  await assert.rejects(
    nearestCodes("cpu", new Float32Array(5), 2, 3, e, 2),
    (err: unknown) =>
      err instanceof UserError &&
      /points has 5 values, expected n \* d = 2 \* 3 = 6/.test(err.message),
  );
  await assert.rejects(
    nearestCodes("cpu", new Float32Array(6), 2, 3, e, 3),
    (err: unknown) => err instanceof UserError && /codebook has 6 values/.test(err.message),
  );
  await assert.rejects(
    nearestCodes("cpu", new Float32Array(0), 0, 3, new Float32Array(0), 0),
    (err: unknown) => err instanceof UserError && /k \(codebook size\)/.test(err.message),
  );
  await assert.rejects(
    nearestCodes("cpu", new Float32Array(4), 2, 2.5, e, 2),
    (err: unknown) => err instanceof UserError && /d must be an integer/.test(err.message),
  );
});

Deno.test("native errors carry the native file and line", async () => {
  // Bypass the TypeScript checks so that the engine itself rejects the empty codebook.
  const addon = nativeAddon();
  await assert.rejects(
    addon.nearestCodes("cpu", new Float32Array(2), 1, 2, new Float32Array(0), 0),
    (err: unknown) => {
      assert.ok(isNativeError(err), `not a native error: ${err}`);
      assert.equal(err.nativeFile, "native/engine/ops.cc");
      assert.ok(Number.isInteger(err.nativeLine) && err.nativeLine > 0);
      assert.ok(err.message.startsWith("nearest_codes: the codebook is empty"), err.message);
      assert.ok(err.message.endsWith(` (native/engine/ops.cc:${err.nativeLine})`), err.message);
      return true;
    },
  );
  // Argument checks in the binding throw synchronously, with the binding's file.
  assert.throws(
    () =>
      addon.nearestCodes("cpu", [1, 2] as unknown as Float32Array, 1, 2, new Float32Array(2), 1),
    (err: unknown) =>
      isNativeError(err) && err.nativeFile.startsWith("native/addon/") &&
      /points must be a Float32Array/.test(err.message),
  );
  // gemm with a too-small leading dimension: the engine's check.
  assert.throws(
    () =>
      gemm("cpu", {
        m: 2,
        n: 2,
        k: 3,
        a: new Float32Array(6),
        lda: 2,
        b: new Float32Array(6),
        c: new Float32Array(4),
      }),
    (err: unknown) => isNativeError(err) && err.nativeFile === "native/engine/ops.cc",
  );
});

Deno.test("gemm on cpu and cpu-ref matches a naive product, with transposes", () => {
  const m = 5, n = 7, k = 3;
  for (const backend of ["cpu", "cpu-ref"] as const) {
    for (const transA of [false, true]) {
      for (const transB of [false, true]) {
        const a = uniform(m * k, 1), b = uniform(k * n, 2), c0 = uniform(m * n, 3);
        const c = c0.slice();
        gemm(backend, { transA, transB, m, n, k, alpha: 2, a, b, beta: 0.5, c });
        for (let i = 0; i < m; i++) {
          for (let j = 0; j < n; j++) {
            let s = 0;
            for (let p = 0; p < k; p++) {
              s += (transA ? a[p * m + i] : a[i * k + p]) * (transB ? b[j * k + p] : b[p * n + j]);
            }
            const want = 2 * s + 0.5 * c0[i * n + j];
            assert.ok(Math.abs(c[i * n + j] - want) < 1e-5, `${backend} (${i}, ${j})`);
          }
        }
      }
    }
  }
});

Deno.test("engineInfo describes the build", () => {
  const info = engineInfo();
  assert.ok(info.addonVersion.length > 0);
  assert.ok(info.blas.name === "openblas" || info.blas.name === "blocked");
  assert.ok(info.blas.threads >= 1);
  assert.deepEqual(info.backends, ["cpu-ref", "cpu", "cuda"]);
  assert.equal(typeof info.cuda.compiled, "boolean");
  assert.deepEqual([...DEVICES], ["auto", "cpu", "cuda"]);
});

Deno.test("CUDA without a usable GPU: clear errors, auto falls back to the CPU", async () => {
  const status = cudaStatus();
  if (status.available) {
    assert.equal(resolveDevice("cuda"), "cuda");
    assert.equal(resolveDevice("auto"), "cuda");
    return;
  }
  assert.ok(status.reason && status.reason.length > 0, "an unavailable CUDA must say why");
  assert.equal(resolveDevice("cpu"), "cpu");
  assert.throws(
    () => resolveDevice("cuda"),
    (err: unknown) =>
      err instanceof UserError && err.message.includes("CUDA is not available") &&
      err.message.includes(status.reason!),
  );
  await assert.rejects(
    nearestCodes("cuda", new Float32Array(2), 1, 2, new Float32Array(2), 1),
    (err: unknown) =>
      isNativeError(err) && err.message.includes(`CUDA is not available: ${status.reason}`),
  );
  // "auto" prints one notice (only when CUDA was compiled) and picks the CPU.
  const script = `import { resolveDevice } from "${repoRoot}src/engine.ts";
console.log(resolveDevice("auto"), resolveDevice("auto"));`;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", script],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  assert.equal(out.code, 0, dec.decode(out.stderr));
  assert.equal(dec.decode(out.stdout).trim(), "cpu cpu");
  const notices = dec.decode(out.stderr).trim().split("\n").filter((l) => l.length > 0);
  if (status.compiled) {
    assert.deepEqual(notices, [
      `checkerboard: notice: no CUDA device (${status.reason}); using the CPU`,
    ]);
  } else {
    assert.deepEqual(notices, []);
  }
});

Deno.test("nearestCodes runs off the JS thread", async () => {
  // If the search blocked the JS thread, the interval could only start after it and the
  // promise would settle before the first tick.
  const n = 40000, d = 16, k = 256;
  const pending = nearestCodes("cpu-ref", uniform(n * d, 9), n, d, uniform(k * d, 10), k);
  let ticks = 0;
  const timer = setInterval(() => ticks++, 1);
  try {
    await pending;
    assert.ok(ticks > 0, "timers must fire while the native search runs");
  } finally {
    clearInterval(timer);
  }
});

/** Calls `fn` (sync or async) and returns the message of the Error it throws or rejects with. */
async function nativeMessage(fn: () => unknown): Promise<string> {
  try {
    await fn();
  } catch (err) {
    assert.ok(err instanceof Error, `an Error, got ${String(err)}`);
    assert.doesNotMatch(err.message, /undefined|null|\[object Object\]/, err.message);
    return err.message;
  }
  throw new assert.AssertionError({ message: "no error thrown" });
}

Deno.test("addon arguments of the wrong type, NaN, negative or huge get clear messages", async () => {
  const addon = nativeAddon() as unknown as Record<string, (...args: unknown[]) => unknown>;
  const points = new Float32Array(6), codebook = new Float32Array(6);
  const cases: [unknown[], RegExp][] = [
    [["cpu", points, "3", 2, codebook, 3], /nearestCodes: n must be an integer in .*got a string/],
    [
      ["cpu", points, NaN, 2, codebook, 3],
      /nearestCodes: n must be an integer in .*got the number NaN/,
    ],
    [
      ["cpu", points, -1, 2, codebook, 3],
      /nearestCodes: n must be an integer in .*got the number -1/,
    ],
    [
      ["cpu", points, 2 ** 60, 2, codebook, 3],
      /nearestCodes: n must be .*got the number 1\.15292150460685e\+18/,
    ],
    [
      ["cpu", points, 3, undefined, codebook, 3],
      /nearestCodes: d must be an integer .*got no value/,
    ],
    [["cpu", {}, 3, 2, codebook, 3], /nearestCodes: points must be a Float32Array, got an object/],
    // n * d = 2^64 wraps to 0 in 64 bits: still refused.
    [
      ["cpu", new Float32Array(0), 2 ** 40, 2 ** 24, codebook, 3],
      /points has 0 values, expected n \* d/,
    ],
  ];
  for (const [args, pattern] of cases) {
    assert.match(await nativeMessage(() => addon.nearestCodes(...args)), pattern);
  }
  const c = new Float32Array(1);
  const gemmArgs = ["cpu", false, false, 1, 1, 1, 1, c, 1, c, 1, 0, c, 1];
  const withArg = (i: number, v: unknown) => gemmArgs.map((a, j) => (j === i ? v : a));
  assert.match(
    await nativeMessage(() => addon.gemm(...withArg(6, NaN))),
    /gemm: alpha must be a finite number, got the number NaN/,
  );
  assert.match(
    await nativeMessage(() => addon.gemm(...withArg(3, 1e300))),
    /gemm: m must be an integer in \[0, 2147483647\], got the number 1e\+300/,
  );
  assert.match(
    await nativeMessage(() => addon.gemm(...withArg(1, 1))),
    /gemm: transA must be a boolean, got the number 1/,
  );
  const Model = (nativeAddon() as unknown as { Model: new (...a: unknown[]) => unknown }).Model;
  const config = {
    vocab: 5,
    latentDim: 3,
    classes: 2,
    depth: 1,
    width: 8,
    heads: 2,
    mlpRatio: 2,
    scales: [1, 2],
    ropeMixLayers: 0,
  };
  assert.match(
    await nativeMessage(() => new Model({ ...config, width: "8" }, "cpu", 0)),
    /field 'width' must be an integer in .*got a string/,
  );
  assert.match(
    await nativeMessage(() => new Model({ ...config, scales: [1, NaN] }, "cpu", 0)),
    /field 'scales' must hold integers in \[1, 2147483647\], got the number NaN at index 1/,
  );
  assert.match(
    await nativeMessage(() => new Model(null, "cpu", 0)),
    /model config must be an object, got no value/,
  );
  assert.match(
    await nativeMessage(() => new Model(config, "cpu", -5)),
    /Model: seed must be an integer in \[0, 9007199254740992\], got the number -5/,
  );
  const model = new Model(config, "cpu", 0) as { step(...a: unknown[]): Promise<void> };
  assert.match(
    await nativeMessage(() => model.step(NaN, 0.9, 0.95, 1e-8, 0)),
    /step: lr must be a finite number, got the number NaN/,
  );
  assert.match(
    await nativeMessage(() => model.step(1e-3, 1, 0.95, 1e-8, 0)),
    /step: beta1 must be in \[0, 1\), got 1 /,
  );
});

Deno.test("linearSeconds times the model's own linear; modelBackends lists cuda-fp32", async () => {
  for (const device of ["cpu", "cpu-ref"] as const) {
    const r = await linearSeconds(device, { rows: 64, in: 32, out: 48 }, 3);
    assert.equal(r.seconds.length, 3);
    assert.ok(r.seconds.every((s) => Number.isFinite(s) && s >= 0), String(r.seconds));
    assert.equal(r.precision, "fp32");
  }
  await assert.rejects(() => linearSeconds("cpu", { rows: 0, in: 1, out: 1 }, 1), /rows must be/);
  await assert.rejects(
    () => linearSeconds("cpu", { rows: 1, in: 1, out: undefined as unknown as number }, 1),
    /linearSeconds: out must be an integer in \[1, 2147483647\], got no value/,
  );
  if (!cudaStatus().available) {
    await assert.rejects(() => linearSeconds("cuda", { rows: 1, in: 1, out: 1 }, 1), /cuda/);
  }
  assert.deepEqual(engineInfo().modelBackends, ["cpu-ref", "cpu", "cuda", "cuda-fp32"]);
});
