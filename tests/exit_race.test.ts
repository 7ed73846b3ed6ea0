/**
 * The process never exits while native work runs on another thread (issue 12, defect 4).
 * `tokenizer fit` on a folder holding a corrupt JPEG printed its error and then, about once in
 * 100 runs, died of SIGSEGV: Promise.all rejected at the first failed decode, cli/main.ts called
 * Deno.exit, and exit() ran the static destructors of sharp's library while its threads were
 * still decoding the other files (gdb: sharp::DetermineImageType under _dl_fini). Now a failed
 * decode is reported only once no decode runs, and settleNativeWork() waits for the addon's
 * async calls too.
 */
import assert from "node:assert/strict";
import sharp from "sharp";
import { join } from "node:path";
import { decodeImageFile } from "../src/data/decode.ts";
import { nativeAddon, nearestCodes, settleNativeWork } from "../src/engine.ts";
import { inFlightCount } from "../src/util/in_flight.ts";
import { repoRoot, runCli, tempDir } from "./helpers.ts";

const SIDE = 128;

/** A folder dataset of two classes of `perClass` JPEGs; returns the corrupt file's path. */
async function datasetWithCorruptJpeg(root: string, perClass: number): Promise<string> {
  for (const [c, name] of ["a", "b"].entries()) {
    await Deno.mkdir(join(root, name));
    for (let i = 0; i < perClass; i++) {
      const pixels = Uint8Array.from(
        { length: SIDE * SIDE * 3 },
        (_, j) => (j * (i + 3) + 77 * c) & 255,
      );
      await sharp(pixels, { raw: { width: SIDE, height: SIDE, channels: 3 } })
        .jpeg({ quality: 90 })
        .toFile(join(root, name, `img${String(i).padStart(3, "0")}.jpg`));
    }
  }
  // The third file of the first class: its SOF0 segment length is altered (0x13ff bytes).
  const corrupt = join(root, "a", "img002.jpg");
  const bytes = await Deno.readFile(corrupt);
  const sof = bytes.findIndex((b, i) => b === 0xff && bytes[i + 1] === 0xc0);
  assert.ok(sof > 0, "the JPEG has a SOF0 marker");
  bytes[sof + 2] = 0xff;
  bytes[sof + 3] = 0x13;
  await Deno.writeFile(corrupt, bytes);
  return corrupt;
}

async function allImages(root: string): Promise<string[]> {
  const files: string[] = [];
  for (const name of ["a", "b"]) {
    for await (const e of Deno.readDir(join(root, name))) files.push(join(root, name, e.name));
  }
  return files.sort();
}

Deno.test("a failed decode is reported only once no other decode runs", async () => {
  await using dir = await tempDir();
  const corrupt = await datasetWithCorruptJpeg(dir.path, 12);
  const others = (await allImages(dir.path)).filter((f) => f !== corrupt);
  // The corrupt file first, so that it fails while the others are queued or decoding.
  const decodes = [corrupt, ...others].map((f) => decodeImageFile(f, 32));
  const settled = decodes.map(() => false);
  decodes.forEach((d, i) => d.then(() => settled[i] = true, () => settled[i] = true));
  let runningAtFailure = -1, othersSettledAtFailure = -1;
  await assert.rejects(
    decodes[0].catch((err) => {
      runningAtFailure = inFlightCount();
      othersSettledAtFailure = settled.slice(1).filter((s) => s).length;
      throw err;
    }),
    (err: Error) => err.message.startsWith(`${corrupt}: cannot decode image (`),
  );
  assert.equal(othersSettledAtFailure, others.length, "decodes still running at the failure");
  assert.equal(runningAtFailure, 0, "tracked work still running at the failure");
  await Promise.allSettled(decodes);
});

Deno.test("settleNativeWork waits for the addon's async calls", async () => {
  const n = 40_000, d = 48, k = 256;
  const points = Float32Array.from({ length: n * d }, (_, i) => Math.sin(i));
  const codebook = Float32Array.from({ length: k * d }, (_, i) => Math.cos(i));
  await nearestCodes("cpu", points.subarray(0, d), 1, d, codebook, k); // loads the addon
  let done = false;
  // The addon's own promise: it settles before the addon counts the call as finished.
  const search = nativeAddon().nearestCodes("cpu-ref", points, n, d, codebook, k).then(() => {
    done = true;
  });
  await settleNativeWork();
  assert.ok(done, "nearestCodes still running after settleNativeWork()");
  await search;
  // Idle: both resolve at once.
  await nativeAddon().whenIdle();
  await settleNativeWork();
});

Deno.test("a decode failure never ends in a signal (reproducer, repeated)", async () => {
  await using dir = await tempDir();
  const corrupt = await datasetWithCorruptJpeg(dir.path, 24);
  const files = [corrupt, ...(await allImages(dir.path)).filter((f) => f !== corrupt)];
  await using outDir = await tempDir();
  const out = join(outDir.path, "tok");
  const outcomes = new Map<string, number>();
  const count = (key: string) => outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
  const runs = 20;
  for (let i = 0; i < runs; i++) {
    // The CLI as a user runs it ...
    const cli = await runCli([
      "tokenizer",
      "fit",
      "--dataset",
      `folder:${dir.path}`,
      "--out",
      out,
      "--codes",
      "16",
      "--side",
      "32",
    ]);
    count(`cli exit ${cli.code}`);
    const lines = cli.stderr.trim().split("\n").filter((l) =>
      !l.startsWith("checkerboard: notice:")
    );
    assert.equal(lines.length, 1, cli.stderr);
    assert.match(lines[0], /^checkerboard: error: .*img002\.jpg: cannot decode image \(.+\)$/);
    // ... and a child that starts every decode at once and exits at the first failure (the
    // race's widest window: 2 runs in 50 crashed before the fix, against 3 in 314 for the CLI).
    const child = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", `${repoRoot}tests/exit_race_child.ts`, "32", ...files],
      cwd: repoRoot,
      stdout: "null",
      stderr: "piped",
    }).output();
    count(`child exit ${child.code}${child.signal ? ` signal ${child.signal}` : ""}`);
  }
  assert.deepEqual(
    Object.fromEntries(outcomes),
    { "cli exit 1": runs, "child exit 1": runs },
    "every run exits 1 with its error, none by a signal",
  );
});
