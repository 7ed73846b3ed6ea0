/**
 * The paper's pipeline end to end on a LlamaGen VQ-16 checkpoint (by default the random-weight
 * fixture), with checks of shapes and determinism:
 *   deno run -A scripts/vq-pipeline.ts [--checkpoint FILE.pt] [--work DIR] [--images 2000]
 *     [--data-images 400] [--iters 300] [--codes 4096] [--side 64] [--device cpu]
 *
 * 1. generates --images JPEGs of mixed sizes (64-500 px, 10 classes) into WORK/images, and
 *    --data-images others into WORK/images-data (ten-crop makes 10 rows of each: a smaller
 *    folder keeps the CPU run short);
 * 2. `tokenizer import --llamagen` the checkpoint;
 * 3. `tokenizer retrain-codebook` (--codes) on that folder; checks that the latent error with the
 *    new codebook is at or below the imported one's;
 * 4. `data` on WORK/images-data at --side with ten-crop; checks 10 rows per training image;
 * 5. `train --model tiny --iters N`;
 * 6. `sample` twice with one seed: PNGs decoded by the VQ decoder; checks the image shape and
 *    that both runs wrote the same bytes.
 * With random weights the images have no meaning: this checks the machinery, not quality.
 * Exit status 0 when every check holds.
 */
import { createHash } from "node:crypto";
import { join } from "node:path";
import { generateImages } from "./generated_images.ts";
import { readNpz } from "../src/data/npy.ts";

const repo = new URL("..", import.meta.url).pathname;

interface Settings {
  checkpoint: string;
  work: string;
  images: number;
  dataImages: number;
  iters: number;
  codes: number;
  side: number;
  device: string;
}

function parse(args: string[]): Settings {
  const s: Settings = {
    checkpoint: join(repo, "../shared/fixtures/llamagen-vq-small/vq_small.pt"),
    work: join(repo, "out/vq-pipeline"),
    images: 2000,
    dataImages: 400,
    iters: 300,
    codes: 4096,
    side: 64,
    device: "cpu",
  };
  for (let i = 0; i < args.length; i++) {
    const name = args[i].replace(/^--/, "").replace("data-images", "dataImages");
    const value = args[++i];
    if (value === undefined) fail(`--${name} needs a value`);
    if (name === "checkpoint" || name === "work" || name === "device") s[name] = value;
    else if (
      name === "images" || name === "dataImages" || name === "iters" || name === "codes" ||
      name === "side"
    ) {
      s[name] = Number(value);
      if (!Number.isInteger(s[name]) || s[name] < 1) fail(`--${name} must be a positive integer`);
    } else fail(`unknown option ${args[i - 1]}`);
  }
  return s;
}

function fail(why: string): never {
  console.error(`vq-pipeline: ${why}`);
  Deno.exit(1);
}

/** Runs `checkerboard ARGS`, echoing its output; returns stdout and the seconds it took. */
async function checkerboard(args: string[]): Promise<{ stdout: string; seconds: number }> {
  console.log(`\n$ checkerboard ${args.join(" ")}`);
  const t0 = performance.now();
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", join(repo, "cli/main.ts"), ...args],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  const seconds = (performance.now() - t0) / 1000;
  const stdout = new TextDecoder().decode(out.stdout);
  console.log(stdout.trimEnd());
  if (!out.success) fail(`checkerboard ${args[0]} ${args[1] ?? ""} exited with ${out.code}`);
  console.log(`(${seconds.toFixed(1)} s)`);
  return { stdout, seconds };
}

async function sha256(path: string): Promise<string> {
  return createHash("sha256").update(await Deno.readFile(path)).digest("hex");
}

function check(ok: boolean, what: string) {
  console.log(`${ok ? "PASS" : "FAIL"} ${what}`);
  if (!ok) failures++;
}
let failures = 0;

const s = parse(Deno.args);
const w = s.work;
await Deno.remove(w, { recursive: true }).catch(() => {});
await Deno.mkdir(w, { recursive: true });
const images = join(w, "images");
console.log(`generating ${s.images} JPEGs (64-500 px, 10 classes) in ${images}`);
await generateImages(images, s.images, 1);
const dataImages = join(w, "images-data");
await generateImages(dataImages, s.dataImages, 2);

const times: Record<string, number> = {};
times.import = (await checkerboard([
  "tokenizer",
  "import",
  "--llamagen",
  s.checkpoint,
  "--out",
  join(w, "vq"),
])).seconds;

const retrain = await checkerboard([
  "tokenizer",
  "retrain-codebook",
  "--tokenizer",
  join(w, "vq"),
  "--dataset",
  `folder:${images}`,
  "--out",
  join(w, "vq-retrained"),
  "--codes",
  String(s.codes),
  "--images",
  String(s.images),
  "--device",
  s.device,
]);
times.retrain = retrain.seconds;
const { codebook } = JSON.parse(await Deno.readTextFile(join(w, "vq-retrained", "tokenizer.json")));
check(
  codebook.latentErrorAfter <= codebook.latentErrorBefore,
  `retrained codebook's latent error ${codebook.latentErrorAfter.toFixed(5)} <= the imported ` +
    `one's ${codebook.latentErrorBefore.toFixed(5)}`,
);

const shards = join(w, "shards");
times.data = (await checkerboard([
  "data",
  "--tokenizer",
  join(w, "vq-retrained"),
  "--dataset",
  `folder:${dataImages}`,
  "--side",
  String(s.side),
  "--augment",
  "ten-crop",
  "--out",
  shards,
  "--device",
  s.device,
])).seconds;
const manifest = JSON.parse(await Deno.readTextFile(join(shards, "manifest.json")));
const trainImages = s.dataImages - Math.ceil(s.dataImages * 0.1);
check(
  manifest.counts.train === 10 * trainImages && manifest.counts.val === s.dataImages - trainImages,
  `ten-crop rows: ${manifest.counts.train} train (10 x ${trainImages}), ${manifest.counts.val} val`,
);

const run = join(w, "run");
times.train = (await checkerboard([
  "train",
  "--data",
  shards,
  "--out",
  run,
  "--model",
  "tiny",
  "--iters",
  String(s.iters),
  "--lr",
  "1e-3",
  "--warmup",
  "20",
  "--eval-batches",
  "4",
  "--device",
  s.device,
])).seconds;

const samples = [join(w, "samples-a"), join(w, "samples-b")];
for (const out of samples) {
  times.sample = (await checkerboard([
    "sample",
    "--model",
    run,
    "--per-class",
    "2",
    "--individual",
    "--seed",
    "7",
    "--out",
    out,
    "--device",
    s.device,
  ])).seconds;
}
const npz = await readNpz(join(samples[0], "samples.npz"));
const shape = npz.arr_0.shape;
check(
  shape.length === 4 && shape[0] === 20 && shape[1] === s.side && shape[2] === s.side &&
    shape[3] === 3,
  `samples.npz arr_0 is [20, ${s.side}, ${s.side}, 3] (got [${shape}])`,
);
const [a, b] = [
  await sha256(join(samples[0], "samples.npz")),
  await sha256(join(samples[1], "samples.npz")),
];
check(a === b, `two runs with one seed wrote the same samples.npz (${a.slice(0, 16)})`);
const pixels = npz.arr_0.data as Uint8Array;
const distinct = new Set(pixels.subarray(0, s.side * s.side * 3)).size;
check(distinct > 16, `decoded images are not flat (${distinct} distinct values in image 0)`);

console.log(
  `\ntimes (s): ${Object.entries(times).map(([k, v]) => `${k} ${v.toFixed(1)}`).join(", ")}`,
);
console.log(failures === 0 ? "vq-pipeline: PASS" : `vq-pipeline: FAIL (${failures} checks)`);
Deno.exit(failures === 0 ? 0 : 1);
