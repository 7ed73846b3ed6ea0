/**
 * Reproducers of the training defects a fuzzer and a first-time user found (issue 12): each
 * asserts what the user sees (exit status, one clear error line, nothing half-written).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { expectOneLineError, mountTmpfs, runCli, tempDir } from "./helpers.ts";
import { makeData, smallTraining } from "./train_fixtures.ts";
import { readSafetensors, writeSafetensors } from "../src/util/safetensors.ts";
import { countNonFinite } from "../src/util/finite.ts";
import { type Manifest, readManifest } from "../src/data/shards.ts";
import { encodeNpz } from "../src/data/npy.ts";
import { evaluateNll, trainBatches } from "../src/train/loop.ts";
import { UserError } from "../src/errors.ts";
import { readCheckpointWithTokenizer } from "../src/model/load.ts";

const BAD_WORDS = /undefined|(?<!JSON )\bnull\b|\[object Object\]|NaN/;

/** `train` on `data` into `out` with a small model and quick validation. */
function trainArgs(data: string, out: string, ...more: string[]): string[] {
  return smallTraining(data, out, "--batch", "4", "--eval-batches", "1", ...more);
}

async function names(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) out.push(e.name);
  return out.sort();
}

async function editManifest(data: string, edit: (m: Manifest) => void) {
  const path = join(data, "manifest.json");
  const m = JSON.parse(await Deno.readTextFile(path));
  edit(m);
  await Deno.writeTextFile(path, JSON.stringify(m));
}

Deno.test("no batches in an epoch is an error, not an endless loop; no validation images is no NaN", async () => {
  await using dir = await tempDir();
  const { data } = await makeData(dir.path);
  const manifest = await readManifest(data);
  const empty = { ...manifest, shards: [] };
  await assert.rejects(
    () => trainBatches(data, empty, 4, 0, 0).next(),
    (e: Error) => e instanceof UserError && /larger than the 0 training images/.test(e.message),
  );
  const noVal = { ...manifest, shards: manifest.shards.filter((s) => s.split === "train") };
  await assert.rejects(
    // The model is never reached: the split is checked first.
    () =>
      evaluateNll(undefined as never, data, noVal, new Float32Array(0), {
        steps: 4,
        order: "checkerboard",
        batch: 4,
      }),
    /the validation split has no images/,
  );
  // No validation shard: refused before the first step, not "validation NaN" at the end.
  await editManifest(data, (m) => {
    m.shards = m.shards.filter((e) => e.split === "train");
    m.counts.val = 0;
  });
  await expectOneLineError(trainArgs(data, `${dir.path}/noval`, "--iters", "2"), /val/);
  assert.equal(await Deno.stat(`${dir.path}/noval`).then(() => true, () => false), false);
  // From the command line: `"shards": []` stops at once with one line, for train and eval.
  await editManifest(data, (m) => (m.shards = []));
  const t0 = performance.now();
  const r = await expectOneLineError(trainArgs(data, `${dir.path}/run`, "--iters", "5"), /shard/);
  assert.equal(r.code, 1);
  assert.ok(performance.now() - t0 < 20_000);
  assert.doesNotMatch(r.stderr, BAD_WORDS);
});

Deno.test("inputs are checked before the first step: a corrupt validation shard, a null-class label", async () => {
  await using dir = await tempDir();
  const { data } = await makeData(dir.path);
  const val = join(data, "val-00000.npz");
  const bytes = await Deno.readFile(val);
  await Deno.writeFile(val, bytes.subarray(0, bytes.length >> 1));
  const out = `${dir.path}/run`;
  const r = await expectOneLineError(trainArgs(data, out, "--iters", "3"), /val-00000\.npz/);
  assert.equal(r.code, 1);
  // Nothing was trained or written.
  assert.equal(await Deno.stat(out).then(() => true, () => false), false);

  // A label equal to the null-class index (2 for classes a, b) in a training shard.
  const other = await makeData(dir.path, { name: "labels" });
  const L = 21;
  await Deno.writeFile(
    join(other.data, "train-00000.npz"),
    encodeNpz({
      codes: { shape: [10, L], data: new Uint16Array(10 * L) },
      labels: { shape: [10], data: Int32Array.from({ length: 10 }, (_, i) => (i === 3 ? 2 : 0)) },
    }),
  );
  await expectOneLineError(
    trainArgs(other.data, `${dir.path}/run2`, "--iters", "3"),
    /train-00000\.npz: .*label 2/,
  );
});

Deno.test("divergence (--lr 1e10) stops with exit 1 and keeps only finite checkpoints", async () => {
  await using dir = await tempDir();
  const { data } = await makeData(dir.path);
  const out = `${dir.path}/run`;
  const r = await runCli(
    trainArgs(data, out, "--iters", "40", "--lr", "1e10", "--checkpoint-every", "1"),
  );
  assert.equal(r.code, 1, r.stderr);
  const line = r.stderr.trim().split("\n").pop()!;
  assert.match(
    line,
    /training diverged at step (\d+): .*; (the checkpoint of step \d+ .* is kept|no checkpoint was written) \(try a lower --lr or a warmup\)/,
  );
  assert.doesNotMatch(r.stdout, /validation/);
  const step = Number(line.match(/step (\d+)/)![1]);
  // Whatever was written is a whole, finite checkpoint of an earlier step.
  for (const file of ["model.safetensors", "train-state.safetensors"]) {
    const path = join(out, file);
    if (!(await Deno.stat(path).then(() => true, () => false))) continue;
    const { tensors, metadata } = await readSafetensors(path);
    assert.ok(Number(metadata.step) < step, `${file} at step ${metadata.step} < ${step}`);
    for (const [name, t] of Object.entries(tensors)) {
      assert.equal(countNonFinite(t.data as Float32Array).count, 0, `${file} ${name}`);
    }
  }
});

Deno.test("NaN weights and NaN moments are refused by eval, sample and --resume", async () => {
  await using dir = await tempDir();
  const { data } = await makeData(dir.path);
  const out = `${dir.path}/run`;
  const made = await runCli(trainArgs(data, out, "--iters", "4", "--stop-after", "2"));
  assert.equal(made.code, 0, made.stderr);

  // NaN in the optimizer's second moments: the resume refuses before any step.
  const statePath = join(out, "train-state.safetensors");
  const state = await readSafetensors(statePath);
  const vName = Object.keys(state.tensors).find((n) => n.startsWith("v."))!;
  (state.tensors[vName].data as Float32Array)[0] = NaN;
  await writeSafetensors(statePath, state.tensors, state.metadata);
  const resumed = await expectOneLineError(
    [...trainArgs(data, out), "--resume"],
    new RegExp(
      `train-state\\.safetensors: tensor '${vName.replace(/\./g, "\\.")}' holds 1 non-finite value`,
    ),
  );
  assert.equal(resumed.code, 1);
  assert.doesNotMatch(resumed.stderr, /lower --lr/);

  // Inf in a weight of model.safetensors: eval and sample refuse with one line.
  const modelPath = join(out, "model.safetensors");
  const model = await readSafetensors(modelPath);
  const name = Object.keys(model.tensors)[0];
  (model.tensors[name].data as Float32Array)[1] = Infinity;
  await writeSafetensors(modelPath, model.tensors, model.metadata);
  const finite = new RegExp(
    `model\\.safetensors: tensor '${name.replace(/\./g, "\\.")}' holds 1 non-finite value`,
  );
  await expectOneLineError(
    ["eval", "nll", "--model", out, "--data", data, "--device", "cpu"],
    finite,
  );
  await expectOneLineError(
    ["sample", "--model", out, "--count", "2", "--out", `${dir.path}/s`, "--device", "cpu"],
    finite,
  );
});

Deno.test("a resumed state with an extreme moment diverges: one line naming it, no file touched", async () => {
  await using dir = await tempDir();
  const { data } = await makeData(dir.path);
  const out = `${dir.path}/run`;
  const made = await runCli(trainArgs(data, out, "--iters", "3", "--stop-after", "2"));
  assert.equal(made.code, 0, made.stderr);
  // 3e38 in every first moment is finite, so it loads, and the next step overflows.
  const statePath = join(out, "train-state.safetensors");
  const state = await readSafetensors(statePath);
  for (const [name, t] of Object.entries(state.tensors)) {
    if (name.startsWith("m.")) (t.data as Float32Array).fill(3e38);
  }
  await writeSafetensors(statePath, state.tensors, state.metadata);
  const before = await Promise.all(
    ["train-state.safetensors", "model.safetensors", "metrics.jsonl"].map((f) =>
      Deno.readFile(join(out, f))
    ),
  );
  const r = await runCli([...trainArgs(data, out), "--resume"]);
  assert.equal(r.code, 1, r.stderr);
  assert.match(
    r.stderr.trim().split("\n").pop()!,
    /^checkerboard: error: training diverged at step 3: .*the checkpoint of step 2 .* is kept \(the resumed train state may be damaged/,
  );
  const after = await Promise.all(
    ["train-state.safetensors", "model.safetensors", "metrics.jsonl"].map((f) =>
      Deno.readFile(join(out, f))
    ),
  );
  assert.deepEqual(after, before, "the run folder is as it was");
});

Deno.test("sample refuses a model whose logits overflow (finite but extreme weights)", async () => {
  await using dir = await tempDir();
  const { data } = await makeData(dir.path);
  const out = `${dir.path}/run`;
  const made = await runCli(trainArgs(data, out, "--iters", "2"));
  assert.equal(made.code, 0, made.stderr);
  const modelPath = join(out, "model.safetensors");
  const model = await readSafetensors(modelPath);
  (model.tensors["head.w"].data as Float32Array).fill(3e38);
  await writeSafetensors(modelPath, model.tensors, model.metadata);
  await expectOneLineError(
    ["sample", "--model", out, "--count", "2", "--out", `${dir.path}/s`, "--device", "cpu"],
    /the model's logits are not finite \(NaN or Inf\) at sampling step 1 of \d+/,
  );
  assert.equal(await Deno.stat(`${dir.path}/s`).then(() => true, () => false), false);
});

Deno.test("eval nll and sample take the model file as well as its folder; ',' separates per-scale P", async () => {
  await using dir = await tempDir();
  const { data } = await makeData(dir.path);
  const out = `${dir.path}/run`;
  const made = await runCli(trainArgs(data, out, "--iters", "2"));
  assert.equal(made.code, 0, made.stderr);
  const file = join(out, "model.safetensors");
  const ev = await runCli([
    "eval",
    "nll",
    "--model",
    file,
    "--data",
    data,
    "--device",
    "cpu",
    "--steps-per-scale",
    "2",
    "--steps-per-scale",
    "1,2,4",
  ]);
  assert.equal(ev.code, 0, ev.stderr);
  assert.match(ev.stdout, /P=2 \(5 st\)\s+\d\.\d{4}/);
  assert.match(ev.stdout, /P=1,2,4 \(7 st\)\s+\d\.\d{4}/);
  // Progress lines name their P.
  assert.match(ev.stderr, /validate P=2/);
  assert.match(ev.stderr, /validate P=1,2,4/);
  await expectOneLineError(
    ["eval", "nll", "--model", file, "--data", data, "--steps-per-scale", "1:2:4"],
    /per-scale values are separated by ','/,
  );
  await expectOneLineError(
    ["eval", "nll", "--model", file, "--data", data, "--steps-per-scale", "1,2"],
    /'1,2' has 2 values for the 3 scales/,
  );
  const s = await runCli([
    "sample",
    "--model",
    file,
    "--count",
    "2",
    "--out",
    `${dir.path}/s`,
    "--device",
    "cpu",
  ]);
  assert.equal(s.code, 0, s.stderr);
  // A tokenizer "folder" that is a file (load.ts, which sample and the study load through).
  await assert.rejects(
    () => readCheckpointWithTokenizer(out, join(out, "model.safetensors")),
    (e: Error) => e instanceof UserError && /not a tokenizer folder/.test(e.message),
  );
});

Deno.test("train --out FILE, --tokenizer override, and a model file behind its train state", async () => {
  await using dir = await tempDir();
  const { data, tokenizer } = await makeData(dir.path);
  const file = `${dir.path}/a-file`;
  await Deno.writeTextFile(file, "x");
  const r = await expectOneLineError(
    trainArgs(data, file, "--iters", "2"),
    /--out .*a-file is a file, not a folder/,
  );
  assert.equal(r.code, 1);

  // The manifest's tokenizer moved: --tokenizer names it.
  const moved = `${dir.path}/moved-tok`;
  await Deno.rename(tokenizer, moved);
  const out = `${dir.path}/run`;
  await expectOneLineError(trainArgs(data, out, "--iters", "2"), /is missing.*--tokenizer DIR/);
  const straight = await runCli(
    trainArgs(data, `${dir.path}/straight`, "--iters", "6", "--tokenizer", moved),
  );
  assert.equal(straight.code, 0, straight.stderr);

  // A kill between the two renames of a checkpoint: the train state is at step 6, the model
  // file still at step 3. The resume finishes the run from the train state.
  const first = await runCli(
    trainArgs(data, out, "--iters", "6", "--tokenizer", moved, "--stop-after", "3"),
  );
  assert.equal(first.code, 0, first.stderr);
  const behind = await Deno.readFile(join(out, "model.safetensors"));
  const second = await runCli([
    ...trainArgs(data, out, "--tokenizer", moved),
    "--resume",
    "--stop-after",
    "3",
  ]);
  assert.equal(second.code, 0, second.stderr);
  await Deno.writeFile(join(out, "model.safetensors"), behind);
  await Deno.writeFile(join(out, "model.safetensors.tmp-999999-abcdef"), behind.subarray(0, 100));
  const third = await runCli([...trainArgs(data, out, "--tokenizer", moved), "--resume"]);
  assert.equal(third.code, 0, third.stderr);
  assert.match(third.stderr, /resuming at step 6/);
  const a = await Deno.readFile(join(out, "model.safetensors"));
  const b = await Deno.readFile(join(`${dir.path}/straight`, "model.safetensors"));
  assert.ok(a.length === b.length && a.every((x, i) => x === b[i]), "the finished model file");
  assert.deepEqual(await names(out), [
    "metrics.jsonl",
    "model.safetensors",
    "tokenizer",
    "train-state.safetensors",
  ]);
  // Now the run is finished.
  await expectOneLineError(
    [...trainArgs(data, out, "--tokenizer", moved), "--resume"],
    /already at step 6 of 6/,
  );
});

const canMount = await (async () => {
  const probe = await Deno.makeTempDir({ prefix: "checkerboard-mnt-" });
  const unmount = await mountTmpfs(probe, "size=64k");
  if (unmount) await unmount();
  await Deno.remove(probe);
  return unmount !== undefined;
})();

Deno.test({
  name: "a read-only output folder and a full disk are one clear error each",
  ignore: !canMount,
  async fn() {
    await using dir = await tempDir();
    const { data } = await makeData(dir.path);
    const ro = join(dir.path, "ro");
    const unmountRo = (await mountTmpfs(ro, "ro,size=1m"))!;
    try {
      const r = await expectOneLineError(
        trainArgs(data, `${ro}/run`, "--iters", "2"),
        /cannot make the (output )?folder .*run: Read-only file system/,
      );
      assert.equal(r.code, 1);
    } finally {
      await unmountRo();
    }
    // 300 KiB: the tokenizer copy fits, the train state (3 x a model of 0.8 MB) does not.
    const small = join(dir.path, "small");
    const unmountSmall = (await mountTmpfs(small, "size=300k"))!;
    try {
      const out = `${small}/run`;
      const r = await runCli(
        [
          "train",
          "--data",
          data,
          "--out",
          out,
          "--depth",
          "4",
          "--width",
          "64",
          "--heads",
          "2",
          "--device",
          "cpu",
          "--batch",
          "4",
          "--eval-batches",
          "1",
          "--iters",
          "4",
        ],
      );
      assert.equal(r.code, 1);
      // Progress lines, then the error as the last line.
      assert.match(
        r.stderr.trim().split("\n").pop()!,
        /^checkerboard: error: cannot write .*run\/train-state\.safetensors: No space left on device/,
      );
      assert.doesNotMatch(r.stderr, BAD_WORDS);
      // No temporary file is left, and nothing half-written under a real name.
      for (const name of await names(out)) assert.doesNotMatch(name, /\.tmp-/);
    } finally {
      await unmountSmall();
    }
  },
});

Deno.test("eval nll never prints NaN with exit 0: finite weights whose outputs overflow", async () => {
  await using dir = await tempDir();
  const { data } = await makeData(dir.path);
  const out = `${dir.path}/run`;
  const made = await runCli(trainArgs(data, out, "--iters", "1"));
  assert.equal(made.code, 0, made.stderr);
  const path = join(out, "model.safetensors");
  const model = await readSafetensors(path);
  for (const t of Object.values(model.tensors)) {
    const d = t.data as Float32Array;
    for (let i = 0; i < d.length; i++) d[i] = d[i] * 1e30 + 1e30; // finite, but overflowing
  }
  await writeSafetensors(path, model.tensors, model.metadata);
  const r = await expectOneLineError(
    ["eval", "nll", "--model", out, "--data", data, "--device", "cpu", "--json"],
    /model\.safetensors: the validation NLL at P=4 is not finite/,
  );
  assert.equal(r.code, 1);
  assert.equal(r.stdout, "");
});

Deno.test("a run made before the train state (model + optim.safetensors) resumes to the same bytes", async () => {
  await using dir = await tempDir();
  const { data } = await makeData(dir.path);
  const straight = await runCli(trainArgs(data, `${dir.path}/straight`, "--iters", "6"));
  assert.equal(straight.code, 0, straight.stderr);
  const out = `${dir.path}/old`;
  const first = await runCli(trainArgs(data, out, "--iters", "6", "--stop-after", "3"));
  assert.equal(first.code, 0, first.stderr);
  // Rewrite the folder as the older version left it: moments and data position in
  // optim.safetensors beside model.safetensors, no train state.
  const statePath = join(out, "train-state.safetensors");
  const state = await readSafetensors(statePath);
  const moments = Object.fromEntries(
    Object.entries(state.tensors).filter(([name]) => /^[mv]\./.test(name)),
  );
  const optimPath = join(out, "optim.safetensors");
  await writeSafetensors(optimPath, moments, {
    format: "checkerboard-adamw",
    step: state.metadata.step,
    data: state.metadata.data,
  });
  await Deno.remove(statePath);
  const resumed = await runCli([...trainArgs(data, out), "--resume"]);
  assert.equal(resumed.code, 0, resumed.stderr);
  assert.match(resumed.stderr, /resuming at step 3/);
  for (const file of ["model.safetensors", "train-state.safetensors"]) {
    const a = await Deno.readFile(join(out, file));
    const b = await Deno.readFile(join(`${dir.path}/straight`, file));
    assert.ok(a.length === b.length && a.every((x, i) => x === b[i]), file);
  }
  assert.ok(!(await names(out)).includes("optim.safetensors"), "the stale optim file is gone");

  // A pair at different steps is refused with one line.
  const broken = `${dir.path}/broken`;
  const again = await runCli(trainArgs(data, broken, "--iters", "6", "--stop-after", "3"));
  assert.equal(again.code, 0, again.stderr);
  await writeSafetensors(join(broken, "optim.safetensors"), moments, {
    format: "checkerboard-adamw",
    step: "2",
    data: state.metadata.data,
  });
  await Deno.remove(join(broken, "train-state.safetensors"));
  await expectOneLineError(
    [...trainArgs(data, broken), "--resume"],
    /optim\.safetensors is at step 2 but .*model\.safetensors is at step 3: .*cannot resume/,
  );
});
