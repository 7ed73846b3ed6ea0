/**
 * Fixture parity of the native VQ-16 network (src/tokenizer/vq_net.ts): the random-weight
 * LlamaGen model of ../shared/fixtures/llamagen-vq-small run on each backend, every array of
 * vq_small_ref.npz compared with the README's float32 tolerances against both the float32
 * PyTorch reference and the float64 ground truth; indices must be identical. `cpu-ref-f64`
 * (the reference loops in double) is held to 1e-9 against the float64 arrays. The worst error
 * per array and backend is printed as a table. Skipped where the fixture is absent (CI).
 */
import assert from "node:assert/strict";
import { readTorchCheckpoint } from "../src/tokenizer/torch_checkpoint.ts";
import { type VqBackend, VqNet } from "../src/tokenizer/vq_net.ts";
import { cudaStatus } from "../src/engine.ts";
import {
  haveVqFixture,
  readVqReference,
  type RefArray,
  VQ_FIXTURE_ARCHITECTURE,
  VQ_FIXTURE_PT,
} from "./vq_fixture.ts";

type Floats = Float32Array | Float64Array;

/** The README's suggested float32 bounds (max abs; rms rel where given). */
const F32_TOLERANCE: Record<string, { maxAbs: number; rmsRel?: number }> = {
  enc_out: { maxAbs: 2e-4 },
  h: { maxAbs: 1e-4 },
  quant: { maxAbs: 1e-6 },
  post_quant: { maxAbs: 1e-6 },
  dec_mid: { maxAbs: 2e-5 },
  dec: { maxAbs: 2e-4, rmsRel: 5e-5 },
  decode_codes_quant: { maxAbs: 1e-6 },
  decode_codes_out: { maxAbs: 2e-4, rmsRel: 5e-5 },
};
const F64_BOUND = 1e-9;

interface Row {
  backend: string;
  array: string;
  against: string;
  maxAbs: number;
  rmsRel: number;
  bound: string;
}

function errors(got: Floats, want: Floats): { maxAbs: number; rmsRel: number } {
  assert.equal(got.length, want.length, "lengths");
  let maxAbs = 0, diff2 = 0, ref2 = 0;
  for (let i = 0; i < got.length; i++) {
    const d = Math.abs(got[i] - want[i]);
    if (!(d <= maxAbs)) maxAbs = Number.isNaN(d) ? Infinity : d;
    diff2 += d * d;
    ref2 += want[i] * want[i];
  }
  return { maxAbs, rmsRel: Math.sqrt(diff2 / Math.max(ref2, 1e-300)) };
}

/** Compares got with want, records the row, and fails when a bound is exceeded. */
function check(
  rows: Row[],
  backend: string,
  array: string,
  got: Floats | undefined,
  want: RefArray,
  wantName: string,
  bound: { maxAbs: number; rmsRel?: number },
): void {
  assert.ok(got, `${backend}: ${array} was not returned`);
  const e = errors(got, want.data as Floats);
  rows.push({
    backend,
    array,
    against: wantName,
    ...e,
    bound: `${bound.maxAbs}${bound.rmsRel ? ` / rms ${bound.rmsRel}` : ""}`,
  });
  assert.ok(
    e.maxAbs <= bound.maxAbs,
    `${backend}: ${array} vs ${wantName}: max abs ${e.maxAbs} > ${bound.maxAbs}`,
  );
  if (bound.rmsRel !== undefined) {
    assert.ok(
      e.rmsRel <= bound.rmsRel,
      `${backend}: ${array} vs ${wantName}: rms rel ${e.rmsRel} > ${bound.rmsRel}`,
    );
  }
}

function printTable(rows: Row[]): void {
  const fmt = (x: number) => x.toExponential(2);
  console.log(
    ["backend", "array", "against", "max abs", "rms rel", "bound"].map((s) => s.padEnd(22)).join(
      "",
    ),
  );
  for (const r of rows) {
    console.log(
      [r.backend, r.array, r.against, fmt(r.maxAbs), fmt(r.rmsRel), r.bound]
        .map((s) => s.padEnd(22)).join(""),
    );
  }
}

async function fixture() {
  const tensors = await readTorchCheckpoint(VQ_FIXTURE_PT);
  const ref = await readVqReference();
  return { tensors, ref };
}

let loaded: ReturnType<typeof fixture> | undefined;
const once = () => (loaded ??= fixture());

async function parity(backend: VqBackend): Promise<void> {
  const { tensors, ref } = await once();
  const net = VqNet.fromTensors(backend, tensors, "vq_small.pt");
  const rows: Row[] = [];
  try {
    assert.deepEqual(net.arch, VQ_FIXTURE_ARCHITECTURE);
    const [B, , H, W] = ref.images_f32.shape, h = H / 16, w = W / 16;
    const enc = await net.encode(ref.images_f32.data as Float32Array, B, H, W, { encOut: true });
    assert.deepEqual([...enc.indices], [...ref.indices.data], `${backend}: indices`);
    rows.push({
      backend,
      array: "indices",
      against: "indices",
      maxAbs: 0,
      rmsRel: 0,
      bound: "identical",
    });
    // The encoder path's quant: the normalised rows at the chosen indices.
    const codes = await net.decodeCodes(enc.indices, B, h, w, { intermediates: true });
    // LlamaGen's decode(quant) on the reference's own quant, with the decoder's taps.
    const dec = await net.decodeLatents(ref.quant.data as Float32Array, B, h, w, {
      intermediates: true,
    });
    const fixed = await net.decodeCodes(ref.decode_codes_in.data as Int32Array, 1, h, w, {
      intermediates: true,
    });
    // [array, what the backend returned, the reference array it is held to, the bound]
    const comparisons: [string, Floats | undefined, string, { maxAbs: number; rmsRel?: number }][] =
      [];
    if (backend === "cpu-ref-f64") {
      const tight = { maxAbs: F64_BOUND };
      comparisons.push(
        ["h", enc.latent, "h_f64", tight],
        // dec_f64 decodes float64 normalised rows: here the rows at the (identical) indices.
        ["dec", codes.images, "dec_f64", tight],
        ["decode_codes_out", fixed.images, "decode_codes_out_f64", tight],
      );
    } else {
      const t = F32_TOLERANCE;
      comparisons.push(
        ["enc_out", enc.encOut, "enc_out", t.enc_out],
        ["h", enc.latent, "h", t.h],
        ["h", enc.latent, "h_f64", t.h],
        ["quant", codes.quant, "quant", t.quant],
        ["post_quant", dec.postQuant, "post_quant", t.post_quant],
        ["dec_mid", dec.decMid, "dec_mid", t.dec_mid],
        ["dec", dec.images, "dec", t.dec],
        ["dec", dec.images, "dec_f64", t.dec],
        ["decode_codes_quant", fixed.quant, "decode_codes_quant", t.decode_codes_quant],
        ["decode_codes_out", fixed.images, "decode_codes_out", t.decode_codes_out],
        ["decode_codes_out", fixed.images, "decode_codes_out_f64", t.decode_codes_out],
      );
    }
    for (const [array, got, wantName, bound] of comparisons) {
      check(rows, backend, array, got, ref[wantName], wantName, bound);
    }
    // The distances are those of normalised vectors: 2 - 2 cos, in [0, 4].
    assert.ok(enc.dist2.every((d) => d >= -1e-6 && d <= 4 + 1e-6), `${backend}: dist2 range`);
  } finally {
    printTable(rows);
    net.dispose();
  }
}

function cudaUsable(): boolean {
  try {
    return cudaStatus().available;
  } catch {
    return false; // addon not built: the other tests say so
  }
}

for (const backend of ["cpu-ref", "cpu", "cpu-ref-f64"] as const) {
  Deno.test({
    name: `VQ fixture parity on ${backend}: every reference array within the README's bounds`,
    ignore: !haveVqFixture,
    fn: () => parity(backend),
  });
}

Deno.test({
  name: "VQ fixture parity on cuda: every reference array within the README's bounds",
  ignore: !haveVqFixture || !cudaUsable(),
  fn: () => parity("cuda"),
});
