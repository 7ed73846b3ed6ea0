/**
 * `checkerboard bench`: the sampling benchmark's JSON line holds a measured point per batch
 * size, with its FLOP rate beside sgemm's; bad options are usage errors.
 */
import assert from "node:assert/strict";
import { expectOneLineError, runCli } from "./helpers.ts";

Deno.test("bench sample --json prints one line with a point per batch size", async () => {
  const r = await runCli([
    "bench",
    "sample",
    "--model",
    "tiny",
    "--batches",
    "1,3",
    "--repeats",
    "1",
    "--steps-per-scale",
    "2",
    "--device",
    "cpu",
    "--json",
  ]);
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.trim().split("\n");
  assert.equal(lines.length, 1);
  const j = JSON.parse(lines[0]);
  assert.equal(j.bench, "sample");
  assert.deepEqual(j.scales, [1, 2, 4, 8]);
  assert.equal(j.totalSteps, 1 + 2 + 2 + 2); // P = 2 clamped to 1 on the 1x1 scale
  assert.deepEqual(j.points.map((p: { batch: number }) => p.batch), [1, 3]);
  for (const p of j.points) {
    assert.ok(p.secondsPerImage > 0 && p.minSecondsPerImage <= p.maxSecondsPerImage);
    assert.ok(p.modelGflops > 0 && p.sgemmGflops > 0);
    assert.ok(Math.abs(p.fractionOfSgemm - p.modelGflops / p.sgemmGflops) < 1e-9);
    assert.ok(Math.abs(p.slotsPerSec * p.secondsPerImage - 85) < 1e-6); // 1 + 4 + 16 + 64 tokens
  }
});

Deno.test("bench vq-train --json: a step at every scale's size, its FLOP rate beside sgemm's", async () => {
  const r = await runCli([
    "bench",
    "vq-train",
    ...["--ch", "32", "--ch-mult", "1,2", "--z-channels", "4", "--codes", "16", "--code-dim", "4"],
    ...["--side", "8", "--scales", "1,2,4", "--batch", "2", "--repeats", "1"],
    ...["--device", "cpu", "--json"],
  ]);
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.trim().split("\n");
  assert.equal(lines.length, 1);
  const j = JSON.parse(lines[0]);
  assert.equal(j.bench, "vq-train");
  assert.deepEqual(j.scales, [1, 2, 4]);
  assert.ok(j.secondsPerStep > 0 && j.sgemmGflops > 0 && j.gflopsPerImage > 0);
  assert.ok(Math.abs(j.imagesPerSec * j.secondsPerStep - 2) < 1e-6); // the batch, per step
  assert.ok(Math.abs(j.modelGflops - j.gflopsPerImage * j.imagesPerSec) < 1e-6 * j.modelGflops);
  assert.ok(Math.abs(j.fractionOfSgemm - j.modelGflops / j.sgemmGflops) < 1e-9);
});

Deno.test("bench vq-train: scales that miss the final grid and bad sizes are usage errors", async () => {
  await expectOneLineError(
    ["bench", "vq-train", "--side", "32", "--scales", "1,2,4"],
    /--scales must end at side \/ 4 = 8 \(the final token grid\), got 1,2,4/,
  );
  await expectOneLineError(["bench", "vq-train", "--batch", "0"], /--batch must be at least 1/);
  await expectOneLineError(["bench", "vq-train", "--ch-mult", "1,,2"], /--ch-mult/);
});

Deno.test("bench: unknown presets and subcommands are usage errors", async () => {
  await expectOneLineError(["bench", "train", "--models", "XL"], /unknown preset 'XL'/);
  await expectOneLineError(["bench", "sample", "--batches", "0"], /--batches must be at least 1/);
  const missing = await expectOneLineError(
    ["bench", "sample", "--model", "/nonexistent/ckpt", "--device", "cpu"],
    /\/nonexistent\/ckpt.*not found/,
  );
  assert.equal(missing.code, 1);
  await expectOneLineError(["bench", "sample", "--cfg", "-1"], /--cfg must be at least 0, got -1/);
  await expectOneLineError(
    ["bench", "sample", "--batches", "1:16"],
    /separate the entries with commas/,
  );
  await expectOneLineError(["bench", "train", "--models", "tiny,,S"], /unknown preset ''/);
  const help = await runCli(["bench", "train", "--help"]);
  assert.match(help.stdout, /^Usage: checkerboard bench train \[--models/m);
  const r = await runCli(["bench", "--help"]);
  assert.equal(r.code, 0);
  assert.match(r.stdout, /train .*\n.*sample .*\n.*all /);
});

Deno.test("bench limits --json: every fp32 path's rate, the peak among them, bf16 or why not, bandwidth", async () => {
  const r = await runCli(["bench", "limits", "--size", "256", "--seconds", "0.05", "--json"]);
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout.trim());
  assert.equal(j.bench, "limits");
  assert.equal(j.size, 256);
  assert.ok(j.fp32.length >= 1 && j.fp32.every((p: { gflops: number }) => p.gflops > 0));
  const best = Math.max(...j.fp32.map((p: { gflops: number }) => p.gflops));
  assert.equal(j.fp32Peak.gflops, best);
  assert.ok(j.bf16 === null ? j.bf16Unavailable.length > 0 : j.bf16.gflops > 0);
  assert.ok(j.readGBps > 0);
});

Deno.test("bench: --precision takes fp32 or bf16 only", async () => {
  await expectOneLineError(
    ["bench", "sample", "--precision", "fp16"],
    /--precision must be one of fp32, bf16, got 'fp16'/,
  );
  await expectOneLineError(["bench", "limits", "--size", "8"], /--size must be at least 16/);
  await expectOneLineError(
    ["bench", "limits", "--seconds", "0"],
    /--seconds must be in \[0\.01, 60\], got 0/,
  );
});
