/**
 * Training end to end: a tiny model memorises a few sequences; a resumed run repeats an
 * uninterrupted one to the bit; eval nll; bad checkpoints and configs give one-line errors.
 */
import assert from "node:assert/strict";
import { NativeModel } from "../src/model/native_model.ts";
import { buildModelConfig } from "../src/model/config.ts";
import { buildModelBatch } from "../src/train/inputs.ts";
import { ADAMW } from "../src/train/loop.ts";
import { Rng } from "../src/util/rng.ts";
import { readSafetensors } from "../src/util/safetensors.ts";
import { expectOneLineError, runCli, tempDir } from "./helpers.ts";
import { makeData, SMALL } from "./train_fixtures.ts";

function losses(metrics: string): number[] {
  return metrics.trim().split("\n").map((l) => JSON.parse(l)).filter((e) => "loss" in e)
    .map((e) => e.loss);
}

Deno.test("a tiny model memorises 8 sequences", async () => {
  const scales = [1, 2, 4];
  const L = 21, K = 16, D = 12, B = 8;
  const config = buildModelConfig({
    preset: "tiny",
    depth: 2,
    width: 32,
    heads: 2,
    vocab: K,
    latentDim: D,
    classes: B,
    scales,
  });
  const rng = new Rng(5);
  const codes = new Uint16Array(B * L).map(() => rng.int(K));
  const codebook = Float32Array.from({ length: K * D }, () => rng.next() - 0.5);
  const labels = Int32Array.from({ length: B }, (_, i) => i); // one class per sequence
  const model = NativeModel.create(config, "cpu", 0);
  model.setCodebook(codebook);
  try {
    let loss = Infinity;
    const start = performance.now();
    for (let step = 0; step < 400 && loss >= 0.05; step++) {
      const { batch } = buildModelBatch(codes, labels, {
        scales,
        vocab: K,
        steps: [1, 2, 2][step % 3],
        order: "checkerboard",
      });
      model.zeroGrad();
      const r = await model.forward(batch, { backward: true });
      await model.backward();
      await model.step({ ...ADAMW, lr: 3e-3 });
      loss = r.loss;
    }
    assert.ok(loss < 0.05, `loss ${loss} after memorising`);
    assert.ok(performance.now() - start < 30_000);
  } finally {
    model.dispose();
  }
});

Deno.test("train: 20 steps straight equal 10 steps + checkpoint + 10 resumed, bit for bit", async () => {
  await using dir = await tempDir();
  const { data } = await makeData(dir.path);
  const common = [
    "train",
    "--data",
    data,
    ...SMALL,
    "--batch",
    "4",
    "--iters",
    "20",
    "--lr",
    "1e-3",
    "--warmup",
    "3",
    "--order",
    "random",
    "--accum",
    "2",
    "--log-every",
    "1",
    "--eval-every",
    "0",
    "--eval-batches",
    "1",
    "--checkpoint-every",
    "0",
  ];
  const straight = await runCli([...common, "--out", `${dir.path}/a`]);
  assert.equal(straight.code, 0, straight.stderr);
  assert.match(straight.stdout, /step 20: loss \d/);
  const first = await runCli([...common, "--out", `${dir.path}/b`, "--stop-after", "10"]);
  assert.equal(first.code, 0, first.stderr);
  assert.match(first.stdout, /stopped at step 10 of 20/);
  const resumed = await runCli([...common, "--out", `${dir.path}/b`, "--resume"]);
  assert.equal(resumed.code, 0, resumed.stderr);

  const a = losses(await Deno.readTextFile(`${dir.path}/a/metrics.jsonl`));
  const b = losses(await Deno.readTextFile(`${dir.path}/b/metrics.jsonl`));
  assert.equal(a.length, 20);
  assert.deepEqual(b, a);
  const wa = await Deno.readFile(`${dir.path}/a/model.safetensors`);
  const wb = await Deno.readFile(`${dir.path}/b/model.safetensors`);
  assert.ok(wa.length === wb.length && wa.every((x, i) => x === wb[i]), "same final weights");

  // A changed training option is refused on resume; a finished run says so.
  const changed = await runCli([...common, "--out", `${dir.path}/b`, "--resume", "--lr", "2e-3"]);
  assert.equal(changed.code, 2);
  assert.match(changed.stderr, /--lr differs from the checkpoint's/);
  const done = await runCli([...common, "--out", `${dir.path}/b`, "--resume"]);
  assert.notEqual(done.code, 0);
  assert.match(done.stderr, /already at step 20 of 20/);
  const again = await runCli([...common, "--out", `${dir.path}/b`]);
  assert.match(again.stderr, /already exists \(use --resume/);

  // eval nll on the result: one JSON object with a result per P and the unigram floor.
  const ev = await runCli([
    "eval",
    "nll",
    "--model",
    `${dir.path}/a`,
    "--data",
    data,
    "--steps-per-scale",
    "1",
    "--steps-per-scale",
    "4",
    "--steps-per-scale",
    "1,2,3",
    "--json",
    "--device",
    "cpu",
  ]);
  assert.equal(ev.code, 0, ev.stderr);
  const report = JSON.parse(ev.stdout);
  assert.equal(report.step, 20);
  assert.equal(report.images, 8);
  assert.deepEqual(report.results.map((r: { totalSteps: number }) => r.totalSteps), [3, 9, 6]);
  assert.equal(report.unigramBits.perScale.length, 3);
  for (const r of report.results) {
    assert.ok(r.bitsPerToken > 0 && r.bitsPerToken < 8, `${r.bitsPerToken} bits`);
    assert.equal(r.perScaleBits.length, 3);
  }
  const text = await runCli([
    "eval",
    "nll",
    "--model",
    `${dir.path}/a`,
    "--data",
    data,
    "--device",
    "cpu",
  ]);
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /P=4 \(9 st\)\s+\d\.\d{4}/);
  assert.match(text.stdout, /unigram floor/);
});

Deno.test("train and eval: bad checkpoints and impossible configs give one-line errors", async () => {
  await using dir = await tempDir();
  const { data } = await makeData(dir.path);
  const other = await makeData(dir.path, { codes: 8, name: "k8" });
  const otherScales = await makeData(dir.path, { scales: [2, 4], name: "s24" });
  const ckpt = `${dir.path}/ckpt`;
  const made = await runCli([
    "train",
    "--data",
    data,
    "--out",
    ckpt,
    ...SMALL,
    "--batch",
    "8",
    "--iters",
    "1",
    "--eval-batches",
    "1",
  ]);
  assert.equal(made.code, 0, made.stderr);
  const truncated = `${dir.path}/trunc`;
  await Deno.mkdir(truncated);
  const bytes = await Deno.readFile(`${ckpt}/model.safetensors`);
  await Deno.writeFile(`${truncated}/model.safetensors`, bytes.subarray(0, bytes.length - 64));

  const evalArgs = (model: string, d: string) => ["eval", "nll", "--model", model, "--data", d];
  const cases: [string[], RegExp][] = [
    [evalArgs(ckpt, other.data), /does not fit .*manifest\.json: codebook size 16 vs 8/],
    [evalArgs(ckpt, otherScales.data), /does not fit .*: scales 1,2,4 vs 2,4/],
    [evalArgs(truncated, data), /trunc\/model\.safetensors: .*truncated/],
    [evalArgs(`${dir.path}/none`, data), /none: not found \(give a checkpoint folder/],
    [
      ["train", "--data", data, "--out", `${dir.path}/x1`, "--width", "30", "--heads", "4"],
      /width 30 is not divisible by heads 4/,
    ],
    [
      ["train", "--data", data, "--out", `${dir.path}/x2`, "--width", "30", "--heads", "2"],
      /head dimension .* 15 must be even/,
    ],
    [
      ["train", "--data", data, "--out", `${dir.path}/x3`, "--scales", "1,2,8"],
      /--scales must end at the final grid side 4/,
    ],
    [
      ["train", "--data", data, "--out", `${dir.path}/x4`, "--ratio", "4"],
      /scales 1,4 but .* has 1,2,4/,
    ],
    [
      ["train", "--data", data, "--out", `${dir.path}/x5`, "--batch", "100"],
      /--batch 100 is larger than the 24 training images/,
    ],
    [["train", "--data", data, "--out", `${dir.path}/x6`, "--resume"], /nothing to resume/],
    [
      ["train", "--data", data, "--out", ckpt, "--resume", "--width", "64"],
      /--width 64 differs from the checkpoint's \(32\)/,
    ],
  ];
  for (const [args, pattern] of cases) await expectOneLineError(args, pattern);
  // A missing tokenizer named by the manifest.
  await Deno.remove(other.tokenizer, { recursive: true });
  const r = await runCli(["train", "--data", other.data, "--out", `${dir.path}/x7`]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /k8-tok' named by .*manifest\.json is missing/);
});

Deno.test("Ctrl-C stops at a step boundary with a checkpoint (exit 130)", async () => {
  await using dir = await tempDir();
  const { data } = await makeData(dir.path);
  const out = `${dir.path}/run`;
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL("../cli/main.ts", import.meta.url).pathname,
      "train",
      "--data",
      data,
      "--out",
      out,
      ...SMALL,
      "--batch",
      "4",
      "--iters",
      "100000",
      "--log-every",
      "1",
      "--eval-batches",
      "1",
    ],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  // Wait for a few logged steps, then interrupt.
  const deadline = Date.now() + 30_000;
  for (;;) {
    const text = await Deno.readTextFile(`${out}/metrics.jsonl`).catch(() => "");
    if (text.split("\n").length > 3 || Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  child.kill("SIGINT");
  const status = await child.output();
  const stderr = new TextDecoder().decode(status.stderr);
  assert.equal(status.code, 130, stderr);
  assert.match(stderr, /interrupted at step (\d+) of 100000; checkpoint written/);
  const step = Number(stderr.match(/interrupted at step (\d+)/)![1]);
  const { metadata: meta } = await readSafetensors(`${out}/model.safetensors`);
  assert.equal(Number(meta.step), step);
});
