/** File formats: .npy/.npz, PNG, safetensors, atomic writes. */
import assert from "node:assert/strict";
import sharp from "sharp";
import { decodeNpz, encodeNpz, readNpz } from "../src/data/npy.ts";
import { encodePng, tileGrid } from "../src/data/png.ts";
import {
  decodeSafetensors,
  encodeSafetensors,
  fromFloat16,
  readSafetensors,
  toFloat16,
  writeSafetensors,
} from "../src/util/safetensors.ts";
import { Rng } from "../src/util/rng.ts";
import { UserError } from "../src/errors.ts";
import { tempDir } from "./helpers.ts";

Deno.test("npz round-trips uint16, int32, uint8 and float32 arrays", () => {
  const codes = Uint16Array.from({ length: 6 * 5 }, (_, i) => (i * 977) % 65536);
  const labels = Int32Array.from([3, -1, 7, 0, 2, 9]);
  const img = Uint8Array.from({ length: 2 * 2 * 2 * 3 }, (_, i) => i * 5);
  const f = Float32Array.from([0.5, -2, 1e-8]);
  const bytes = encodeNpz({
    codes: { shape: [6, 5], data: codes },
    labels: { shape: [6], data: labels },
    arr_0: { shape: [2, 2, 2, 3], data: img },
    f: { shape: [3], data: f },
  });
  const back = decodeNpz(bytes, "mem");
  assert.deepEqual(back.codes.shape, [6, 5]);
  assert.deepEqual(back.codes.data, codes);
  assert.deepEqual(back.labels.shape, [6]);
  assert.deepEqual(back.labels.data, labels);
  assert.deepEqual(back.arr_0.shape, [2, 2, 2, 3]);
  assert.deepEqual(back.arr_0.data, img);
  assert.deepEqual(back.f.data, f);
});

// numpy is optional on a user's machine; the round-trip test above runs everywhere.
const hasNumpy =
  (await new Deno.Command("python3", { args: ["-c", "import numpy"], stderr: "null" })
    .output().catch(() => null))?.success ?? false;

Deno.test({
  name: "numpy reads our npz with the shapes and dtypes we wrote",
  ignore: !hasNumpy,
}, async () => {
  await using dir = await tempDir();
  const path = `${dir.path}/x.npz`;
  await Deno.writeFile(
    path,
    encodeNpz({
      codes: { shape: [3, 4], data: Uint16Array.from({ length: 12 }, (_, i) => i * 1000) },
      labels: { shape: [3], data: Int32Array.from([1, 2, 3]) },
    }),
  );
  const script = `import numpy as np; z = np.load("${path}"); ` +
    `print(z["codes"].dtype, z["codes"].shape, int(z["codes"][2, 3]), z["labels"].dtype, z["labels"].tolist())`;
  const out = await new Deno.Command("python3", { args: ["-c", script] }).output();
  assert.equal(new TextDecoder().decode(out.stdout).trim(), "uint16 (3, 4) 11000 int32 [1, 2, 3]");
});

Deno.test("a truncated npz is a UserError naming the file", async () => {
  await using dir = await tempDir();
  const bytes = encodeNpz({ codes: { shape: [100, 10], data: new Uint16Array(1000).fill(7) } });
  const path = `${dir.path}/bad.npz`;
  await Deno.writeFile(path, bytes.subarray(0, Math.floor(bytes.length / 2)));
  await assert.rejects(() => readNpz(path), (err: Error) => {
    assert.ok(err instanceof UserError);
    assert.match(err.message, /bad\.npz/);
    return true;
  });
});

Deno.test("PNG encoder output decodes to the same pixels", async () => {
  const w = 7, h = 5;
  const rgb = Uint8Array.from({ length: w * h * 3 }, (_, i) => (i * 37) % 256);
  const png = encodePng(rgb, w, h);
  const { data, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
  assert.equal(info.width, w);
  assert.equal(info.height, h);
  assert.equal(info.channels, 3);
  assert.deepEqual(new Uint8Array(data), rgb);
});

Deno.test("tileGrid places tiles with gaps", () => {
  const red = new Uint8Array(2 * 2 * 3).fill(0);
  for (let i = 0; i < 4; i++) red[i * 3] = 200;
  const grid = tileGrid([red, red, red], 2, 2, 2, { gap: 1 });
  assert.equal(grid.width, 2 * 2 + 3);
  assert.equal(grid.height, 2 * 2 + 3);
  const at = (x: number, y: number) =>
    Array.from(grid.rgb.subarray((y * grid.width + x) * 3, (y * grid.width + x) * 3 + 3));
  assert.deepEqual(at(0, 0), [255, 255, 255]);
  assert.deepEqual(at(1, 1), [200, 0, 0]);
  assert.deepEqual(at(4, 4), [255, 255, 255]); // the missing fourth tile stays background
});

Deno.test("safetensors round-trips tensors and metadata, and rejects truncation", async () => {
  const w = Float32Array.from({ length: 12 }, (_, i) => i / 3);
  const bytes = encodeSafetensors({ w: { shape: [3, 4], data: w } }, { config: '{"a":1}' });
  const back = decodeSafetensors(bytes, "mem");
  assert.deepEqual(back.tensors.w.shape, [3, 4]);
  assert.deepEqual(back.tensors.w.data, w);
  assert.equal(back.metadata.config, '{"a":1}');
  // Header length is a multiple of 8 so data is aligned.
  const headerLen = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  assert.equal((8 + headerLen) % 8, 0);
  assert.throws(
    () => decodeSafetensors(bytes.subarray(0, bytes.length - 4), "cut.safetensors"),
    /cut\.safetensors.*truncated/,
  );
  await using dir = await tempDir();
  await writeSafetensors(`${dir.path}/m.safetensors`, { w: { shape: [12], data: w } });
  const names = [...Deno.readDirSync(dir.path)].map((e) => e.name);
  assert.deepEqual(names, ["m.safetensors"]); // no temporary left behind
  assert.deepEqual((await readSafetensors(`${dir.path}/m.safetensors`)).tensors.w.data, w);
});

Deno.test("float16 conversion: exact values, rounding to nearest even, subnormals, inf", () => {
  const cases: [number, number][] = [
    [1, 0x3c00],
    [-2, 0xc000],
    [0.1, 0x2e66],
    [65504, 0x7bff],
    [65520, 0x7c00], // rounds up past the largest half: inf
    [1 + 2 ** -11, 0x3c00], // halfway, rounds to the even neighbour
    [1 + 3 * 2 ** -11, 0x3c02],
    [2 ** -24, 0x0001], // the smallest subnormal
    [2 ** -26, 0x0000],
    [-0, 0x8000],
  ];
  const bits = toFloat16(Float32Array.from(cases.map(([v]) => v)));
  cases.forEach(([v, h], i) => assert.equal(bits[i], h, `${v}`));
  const back = fromFloat16(Uint16Array.from([0x3c00, 0xc000, 0x0001, 0x7c00, 0x7bff]));
  assert.deepEqual(Array.from(back), [1, -2, 2 ** -24, Infinity, 65504]);
});

Deno.test({
  name: "numpy agrees with our float16 conversion and reads F16 safetensors bytes",
  ignore: !hasNumpy,
}, async () => {
  const rng = new Rng(3);
  const values = Float32Array.from(
    { length: 2000 },
    () => (rng.next() - 0.5) * 2 ** Math.floor(rng.next() * 40 - 28),
  );
  const ours = toFloat16(values);
  await using dir = await tempDir();
  const path = `${dir.path}/v.f32`;
  await Deno.writeFile(path, new Uint8Array(values.buffer));
  const script = `import numpy as np, sys; ` +
    `sys.stdout.buffer.write(np.fromfile("${path}", dtype=np.float32).astype(np.float16).tobytes())`;
  const out = await new Deno.Command("python3", { args: ["-c", script] }).output();
  assert.deepEqual(new Uint16Array(out.stdout.slice().buffer), ours);
  // A checkpoint tensor written as F16 reads back widened to float32.
  const file = encodeSafetensors({ w: { shape: [2000], data: ours, dtype: "F16" } });
  const read = decodeSafetensors(file, "w.safetensors").tensors.w;
  assert.ok(read.data instanceof Float32Array);
  assert.deepEqual(read.data, fromFloat16(ours));
});
