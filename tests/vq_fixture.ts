/**
 * The LlamaGen VQ-16 fixture (../shared/fixtures/llamagen-vq-small, README there): where it is,
 * whether it is present (CI has no ../shared), and its reference arrays. vq_small_ref.npz holds
 * float64 (`<f8`) and int64 (`<i8`) arrays beside float32 ones; src/data/npy.ts reads only the
 * dtypes this tool writes, so the wide ones are decoded here (the float32 ones through it).
 */
import { join } from "node:path";
import { decodeNpy, type NpyData } from "../src/data/npy.ts";
import { unzipStrict } from "../src/data/unzip.ts";
import { repoRoot } from "./helpers.ts";

export const VQ_FIXTURE = join(repoRoot, "..", "shared", "fixtures", "llamagen-vq-small");
/** The checkpoint (LlamaGen's state dict of the random-weight model). */
export const VQ_FIXTURE_PT = join(VQ_FIXTURE, "vq_small.pt");
export const haveVqFixture = await Deno.stat(join(VQ_FIXTURE, "vq_small_ref.npz")).then(
  () => Deno.stat(VQ_FIXTURE_PT).then(() => true, () => false),
  () => false,
);

/** The architecture of the fixture's model (vq_small.json's model_args, as derived from it). */
export const VQ_FIXTURE_ARCHITECTURE = {
  ch: 32,
  chMult: [1, 1, 2, 2, 4],
  zChannels: 64,
  codes: 512,
  codeDim: 8,
  encoderBlocks: 2,
  decoderBlocks: 3,
};

export interface RefArray {
  shape: number[];
  /** float32 as Float32Array, float64 as Float64Array, int64 narrowed to Int32Array, ... */
  data: NpyData | Float64Array;
}

/** One .npy of dtype <f8 or <i8 (format 1.0, C order), as the fixture stores them. */
function decodeWideNpy(bytes: Uint8Array, label: string): RefArray {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLen = view.getUint16(8, true);
  const header = new TextDecoder("latin1").decode(bytes.subarray(10, 10 + headerLen));
  const descr = /'descr':\s*'([^']*)'/.exec(header)?.[1];
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1] ?? "";
  if (bytes[6] !== 1 || !/'fortran_order':\s*False/.test(header)) {
    throw new Error(`${label}: expected a format 1.0 C-order array`);
  }
  const shape = shapeText.split(",").map((s) => s.trim()).filter((s) => s !== "").map(Number);
  const count = shape.reduce((a, b) => a * b, 1);
  const raw = bytes.slice(10 + headerLen);
  if (raw.byteLength !== count * 8) throw new Error(`${label}: ${raw.byteLength} data bytes`);
  if (descr === "<f8") return { shape, data: new Float64Array(raw.buffer) };
  if (descr === "<i8") {
    const wide = new BigInt64Array(raw.buffer);
    const data = Int32Array.from(wide, (v) => {
      if (v < -(2n ** 31n) || v >= 2n ** 31n) throw new Error(`${label}: ${v} overflows int32`);
      return Number(v);
    });
    return { shape, data };
  }
  throw new Error(`${label}: dtype ${descr} is not <f8 or <i8`);
}

/** Every array of vq_small_ref.npz by name. */
export async function readVqReference(): Promise<Record<string, RefArray>> {
  const path = join(VQ_FIXTURE, "vq_small_ref.npz");
  const files = unzipStrict(await Deno.readFile(path));
  const out: Record<string, RefArray> = {};
  for (const [name, bytes] of Object.entries(files)) {
    if (!name.endsWith(".npy")) continue;
    const label = `${path}:${name}`;
    const header = new TextDecoder("latin1").decode(bytes.subarray(10, 128));
    out[name.slice(0, -4)] = /'descr':\s*'<[fi]8'/.test(header)
      ? decodeWideNpy(bytes, label)
      : decodeNpy(bytes, label);
  }
  return out;
}
