/**
 * `checkerboard tokenizer train`: a run is a tokenizer folder that the other commands load;
 * 20 steps straight and 10 steps, a checkpoint and 10 more give byte-identical files; bad input
 * (impossible sizes, a downsampling that does not divide the side, a damaged train state) is one
 * clear line and a non-zero exit.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { expectOneLineError, runCli, tempDir } from "./helpers.ts";
import { writeMixedImages } from "./mixed_images.ts";
import { VqTokenizer } from "../src/tokenizer/vq_tokenizer.ts";

/** A small network (2 levels: downsampling 2) on 16 px images: 8 x 8 tokens, scales 1-8. */
const SMALL = [
  "--side",
  "16",
  "--ch",
  "32",
  "--ch-mult",
  "1,2",
  "--z-channels",
  "32",
  "--codes",
  "64",
  "--code-dim",
  "4",
  "--batch",
  "4",
  "--lr",
  "2e-3",
  "--warmup",
  "2",
  "--dead-after",
  "3",
  "--eval-images",
  "8",
  "--log-every",
  "2",
  "--device",
  "cpu",
  "--quiet",
];

async function sha256(path: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", await Deno.readFile(path));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

Deno.test("tokenizer train: a tokenizer folder, resumed bit for bit", async () => {
  await using tmp = await tempDir();
  const images = join(tmp.path, "images");
  await writeMixedImages(images, 48, 3);
  const dataset = `folder:${images}`;
  const straight = join(tmp.path, "straight"), split = join(tmp.path, "split");
  const base = ["tokenizer", "train", "--dataset", dataset, ...SMALL, "--steps", "20"];
  const a = await runCli([...base, "--out", straight]);
  assert.equal(a.code, 0, a.stderr);
  assert.match(
    a.stdout,
    /step 20: wrote the tokenizer .*validation PSNR per scale \(5 images\): 2px .* dB, 4px .*16px .* dB/,
  );

  const first = await runCli([...base, "--out", split, "--stop-after", "10"]);
  assert.equal(first.code, 0, first.stderr);
  const halfway = await VqTokenizer.load(split);
  assert.equal(halfway.config.source.kind, "trained");
  assert.equal(halfway.config.source.kind === "trained" && halfway.config.source.steps, 10);
  // The per-invocation options (logging, validation) are not part of the run's state.
  const rest = await runCli([
    "tokenizer",
    "train",
    "--out",
    split,
    "--resume",
    "--quiet",
    "--device",
    "cpu",
    "--log-every",
    "2",
    "--eval-images",
    "8",
  ]);
  assert.equal(rest.code, 0, rest.stderr);
  for (const file of ["tokenizer.safetensors", "tokenizer.json", "vq-train-state.safetensors"]) {
    assert.equal(await sha256(join(split, file)), await sha256(join(straight, file)), file);
  }

  // metrics.jsonl: a line every 2 steps (the resumed run's first half kept), then validation.
  const lines = (await Deno.readTextFile(join(split, "metrics.jsonl"))).trim().split("\n")
    .map((l) => JSON.parse(l));
  assert.deepEqual(lines.filter((l) => l.trainPsnrPerScale).map((l) => l.step), [
    2,
    4,
    6,
    8,
    10,
    12,
    14,
    16,
    18,
    20,
  ]);
  const line = lines.find((l) => l.step === 20 && l.trainPsnrPerScale);
  assert.equal(line.trainPsnrPerScale.length, 4);
  for (const key of ["codesUsed", "perplexity", "codesLive", "reinitialised", "imagesPerSec"]) {
    assert.equal(typeof line[key], "number", key);
  }
  assert.ok(line.perplexity >= 1 && line.perplexity <= 64);
  const val = lines[lines.length - 1];
  assert.equal(val.valPsnrPerScale.length, 4);
  assert.ok(val.valPsnrPerScale.every((s: { psnrDb: number }) => Number.isFinite(s.psnrDb)));

  // The folder is a tokenizer: recon reads it.
  const recon = await runCli([
    "tokenizer",
    "recon",
    "--tokenizer",
    straight,
    "--dataset",
    dataset,
    "--side",
    "16",
    "--scales",
    "1,2,4,8",
    "--out",
    join(tmp.path, "recon.png"),
    "--device",
    "cpu",
    "--json",
  ]);
  assert.equal(recon.code, 0, recon.stderr);
  const r = JSON.parse(recon.stdout);
  assert.equal(r.kind, "vq");
  assert.equal(r.scales.length, 4);
});

Deno.test("tokenizer train: impossible settings and damaged states are one clear line", async () => {
  await using tmp = await tempDir();
  const images = join(tmp.path, "images");
  await writeMixedImages(images, 12, 5);
  const dataset = `folder:${images}`;
  const out = join(tmp.path, "run");
  const train = (...args: string[]) => [
    "tokenizer",
    "train",
    "--dataset",
    dataset,
    "--out",
    out,
    "--device",
    "cpu",
    "--quiet",
    ...args,
  ];
  await expectOneLineError(
    train("--side", "30", "--ch-mult", "1,2,2"),
    /downsampling factor 4 \(3 levels\) does not divide the image side 30/,
  );
  await expectOneLineError(train("--side", "16", "--ch", "20"), /32/);
  await expectOneLineError(
    train("--side", "16", "--ch-mult", "1,2", "--scales", "1,2,4"),
    /--scales must end at the final grid side 8/,
  );
  await expectOneLineError(
    train("--side", "16", "--ch-mult", "1,2", "--batch", "64"),
    /10 training images, fewer than --batch 64/,
  );
  await expectOneLineError(
    ["tokenizer", "train", "--out", join(tmp.path, "none"), "--resume"],
    /--resume: .*vq-train-state\.safetensors not found/,
  );

  // A run, then its state truncated: the resume names the file.
  const ok = await runCli(train(...SMALL, "--steps", "2"));
  assert.equal(ok.code, 0, ok.stderr);
  await expectOneLineError(train(...SMALL, "--steps", "2"), /already exists \(use --resume/);
  await expectOneLineError(
    ["tokenizer", "train", "--out", out, "--resume", "--batch", "8"],
    /--resume continues the run with the options it was started with; drop --batch/,
  );
  const state = join(out, "vq-train-state.safetensors");
  const bytes = await Deno.readFile(state);
  await Deno.writeFile(state, bytes.subarray(0, bytes.length - 100));
  await expectOneLineError(
    ["tokenizer", "train", "--out", out, "--resume", "--device", "cpu"],
    /vq-train-state\.safetensors: not a valid safetensors file/,
  );
});

Deno.test("tokenizer train: Ctrl-C stops at a step boundary with a checkpoint (exit 130)", async () => {
  await using tmp = await tempDir();
  const images = join(tmp.path, "images");
  await writeMixedImages(images, 24, 7);
  const out = join(tmp.path, "run");
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL("../cli/main.ts", import.meta.url).pathname,
      "tokenizer",
      "train",
      "--dataset",
      `folder:${images}`,
      "--out",
      out,
      ...SMALL,
      "--steps",
      "100000",
      "--log-every",
      "1",
    ],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  const deadline = Date.now() + 30_000;
  for (;;) {
    const text = await Deno.readTextFile(join(out, "metrics.jsonl")).catch(() => "");
    if (text.split("\n").length > 3 || Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  child.kill("SIGINT");
  const status = await child.output();
  const stderr = new TextDecoder().decode(status.stderr);
  assert.equal(status.code, 130, stderr);
  const m = stderr.match(/interrupted at step (\d+) of 100000; checkpoint written/);
  assert.ok(m, stderr);
  const tokenizer = await VqTokenizer.load(out);
  assert.equal(
    tokenizer.config.source.kind === "trained" && tokenizer.config.source.steps,
    Number(m[1]),
  );
});
