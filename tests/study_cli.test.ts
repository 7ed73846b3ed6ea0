/**
 * `checkerboard study` end to end on a small folder dataset: the report and its files, a study
 * killed part-way and started again (finished runs reused, the same numbers), and its errors.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { expectOneLineError, repoRoot, runCli, tempDir } from "./helpers.ts";
import { writeShapesFolder } from "./fixtures.ts";
import { SAMPLE_DEFAULTS, TRAIN_DEFAULTS } from "../src/train/defaults.ts";
import { readNpz } from "../src/data/npy.ts";

/** A folder dataset, its tokenizer and ratio-2 shards; returns the shard folder. */
async function makeShards(dir: string): Promise<string> {
  const images = await writeShapesFolder(`${dir}/images`, 24, 16);
  const steps = [
    ["tokenizer", "fit", "--dataset", `folder:${images}`, "--side", "16", "--patch", "4"],
    ["--codes", "16", "--iterations", "4", "--out", `${dir}/tok`],
  ].flat();
  for (
    const args of [steps, [
      "data",
      "--tokenizer",
      `${dir}/tok`,
      "--ratio",
      "2",
      "--out",
      `${dir}/shards`,
    ]]
  ) {
    const r = await runCli(args);
    assert.equal(r.code, 0, r.stderr);
  }
  return `${dir}/shards`;
}

/** A very small study, by default of the order part: 2 models x 2 seeds. */
const studyArgs = (data: string, out: string, parts = "order,samples") => [
  "study",
  "--data",
  data,
  "--out",
  out,
  "--parts",
  parts,
  "--iters",
  "6",
  "--model",
  "tiny",
  "--depth",
  "2",
  "--width",
  "32",
  "--heads",
  "2",
  "--batch",
  "8",
  "--eval-images",
  "8",
  "--per-class",
  "2",
  "--device",
  "cpu",
];

/** report.md without the lines that carry timings (they name seconds or minutes). */
async function reportNumbers(out: string): Promise<string> {
  const text = await Deno.readTextFile(join(out, "report", "report.md"));
  return text.split("\n").filter((l) => !/seconds|minutes/.test(l)).join("\n");
}

const RUNS = [
  "r2-checkerboard-mix-none-s0",
  "r2-checkerboard-mix-none-s1",
  "r2-random-mix-none-s0",
  "r2-random-mix-none-s1",
];

Deno.test("study: a killed study started again reuses finished runs and reports the same numbers", async () => {
  await using dir = await tempDir();
  const data = await makeShards(dir.path);

  const straight = await runCli(studyArgs(data, `${dir.path}/a`));
  assert.equal(straight.code, 0, straight.stderr);
  const a = `${dir.path}/a`;
  const report = await Deno.readTextFile(join(a, "report", "report.md"));
  assert.match(report, /## Figure 4\(c\)/);
  assert.match(report, /\| checkerboard \| \d\.\d{3} ± \d\.\d{3} \(\d+\)/);
  assert.match(report, /the checkerboard beats random order: (reproduced|NOT reproduced)/);
  for (const run of RUNS) {
    for (
      const f of [
        "train.json",
        "nll.json",
        "samples.json",
        "model.safetensors",
        "samples/P4/grid.png",
        "samples/P16/samples.npz",
      ]
    ) {
      await Deno.stat(join(a, "runs", run, f)); // throws when missing
    }
    // The optimizer state serves only a resumed training, which a study never does.
    for (const f of ["train-state.safetensors", "optim.safetensors"]) {
      const there = await Deno.stat(join(a, "runs", run, f)).then(() => true, () => false);
      assert.equal(there, false, `${run}/${f} kept`);
    }
  }
  await Deno.stat(join(a, "report", "figures", "fig4c-order.png"));
  await Deno.stat(join(a, "report", "grids", "r2-random-mix-none-s0-P1.png"));

  // train's recipe and sample's guidance, not literals of the study's own.
  const study = JSON.parse(await Deno.readTextFile(join(a, "study.json")));
  assert.equal(study.version, 2);
  assert.equal(study.settings.model, "tiny");
  assert.equal(study.settings.lr, TRAIN_DEFAULTS.lr);
  assert.equal(study.settings.warmup, TRAIN_DEFAULTS.warmup);
  assert.deepEqual(study.settings.lrDrops, TRAIN_DEFAULTS.lrDrops);
  assert.equal(study.settings.classDropout, TRAIN_DEFAULTS.classDropout);
  assert.deepEqual(study.settings.stepsPerScaleTrain, TRAIN_DEFAULTS.stepsPerScaleTrain);
  assert.equal(study.settings.guidanceStart, SAMPLE_DEFAULTS.cfgStart);
  assert.match(
    report,
    new RegExp(`AdamW lr ${TRAIN_DEFAULTS.lr} with ${TRAIN_DEFAULTS.warmup} warmup`),
  );
  assert.match(report, /CFG weight 2 from step 6 \(off for the first 5 steps/);
  // The study samples as `sample` does by default: the same images from the same model and
  // seed. (A model of 6 steps barely uses its class, so guidance from the first step would
  // draw the same images too; the guidance start is checked in study.json above.)
  const baseRun = join(a, "runs", RUNS[0]);
  const out = `${dir.path}/sampled`;
  const args = ["sample", "--model", baseRun, "--per-class", "2", "--steps-per-scale", "4"];
  const sampled = await runCli([...args, "--seed", "0", "--device", "cpu", "--out", out]);
  assert.equal(sampled.code, 0, sampled.stderr);
  assert.deepEqual(
    (await readNpz(join(out, "samples.npz"))).arr_0.data,
    (await readNpz(join(baseRun, "samples", "P4", "samples.npz"))).arr_0.data,
  );

  // 6 steps of 8 images are about an epoch: the report says so before anything else.
  const lines = report.split("\n");
  assert.match(lines[2], /^> \*\*Warning: these models are undertrained\*\*/);
  assert.match(lines[2], /saw \d+\.\d\d epochs of the training split \(under 5\)/);
  assert.match(lines[2], /findings about conditioning within a scale/);

  // The report drawn again from results.json alone, in the study folder or the report folder.
  await Deno.remove(join(a, "report", "figures"), { recursive: true });
  const redrawn = await runCli(["study", "--report-only", "--out", a]);
  assert.equal(redrawn.code, 0, redrawn.stderr);
  assert.equal(await Deno.readTextFile(join(a, "report", "report.md")), report);
  await Deno.stat(join(a, "report", "figures", "fig4c-order.png"));
  const copy = `${dir.path}/published`;
  await Deno.mkdir(copy);
  for (const f of ["report.md", "results.json", "timings.json"]) {
    await Deno.copyFile(join(a, "report", f), join(copy, f));
  }
  await Deno.mkdir(join(copy, "grids"));
  for await (const e of Deno.readDir(join(a, "report", "grids"))) {
    await Deno.copyFile(join(a, "report", "grids", e.name), join(copy, "grids", e.name));
  }
  const again0 = await runCli(["study", "--report-only", "--out", copy]);
  assert.equal(again0.code, 0, again0.stderr);
  assert.equal(await Deno.readTextFile(join(copy, "report.md")), report);
  await expectOneLineError(
    ["study", "--report-only", "--out", a, "--data", data],
    /--report-only takes only --out .*not --data/,
  );
  await expectOneLineError(
    ["study", "--report-only", "--out", `${dir.path}/nothing`],
    /no results\.json in .*nothing or .*nothing\/report/,
  );
  // A results.json of version 1 (before --report-only): the model was 'preset', the recipe
  // and the guidance (from the first step) were not stored, nor the parts and grids.
  const v2 = JSON.parse(await Deno.readTextFile(join(copy, "results.json")));
  const {
    model,
    lrDrops: _d,
    classDropout: _c,
    stepsPerScaleTrain: _s,
    accum: _a,
    guidanceStart: _g,
    ...rest
  } = v2.facts.settings;
  const v1 = {
    findings: v2.findings,
    order: v2.order.map(({ mixAlpha: _m, ...m }: Record<string, unknown>) => m),
    facts: { ...v2.facts, settings: { preset: model, ...rest } },
  };
  await Deno.writeTextFile(join(copy, "results.json"), JSON.stringify(v1));
  const old = await runCli(["study", "--report-only", "--out", copy]);
  assert.equal(old.code, 0, old.stderr);
  const oldReport = await Deno.readTextFile(join(copy, "report.md"));
  assert.match(oldReport, /CFG weight 2 from the first step/);
  const table = (text: string) => text.split("\n").filter((l) => l.startsWith("| "));
  assert.deepEqual(table(oldReport), table(report));
  for (
    const [text, pattern] of [
      ["[]", /results\.json: the file must be a JSON object, got a list of 0/],
      [
        '{"format": "checkerboard-study-results", "version": 2, "facts": 3}',
        /results\.json: 'facts' must be an object, got 3/,
      ],
      ['{"format": "checkerboard-study-results", "version": 9}', /'version' must be 2, got 9/],
    ] as const
  ) {
    await Deno.writeTextFile(join(copy, "results.json"), text);
    await expectOneLineError(["study", "--report-only", "--out", copy], pattern);
  }

  // Kill the second study once its second run is trained, before the end.
  const b = `${dir.path}/b`;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${repoRoot}cli/main.ts`, ...studyArgs(data, b)],
    cwd: repoRoot,
    stdout: "null",
    stderr: "null",
  }).spawn();
  const marker = join(b, "runs", RUNS[1], "train.json");
  const deadline = Date.now() + 120_000;
  for (;;) {
    const there = await Deno.stat(marker).then(() => true, () => false);
    if (there || Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 5));
  }
  child.kill("SIGKILL");
  await child.status;
  const finished = await Deno.stat(join(b, "report", "report.md")).then(() => true, () => false);
  assert.equal(
    finished,
    false,
    "the study ended before it was killed; the test needs a slower study",
  );
  const firstRun = join(b, "runs", RUNS[0], "model.safetensors");
  const before = (await Deno.stat(firstRun)).mtime!.getTime();

  const again = await runCli(studyArgs(data, b));
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stderr, /continuing/);
  assert.equal(
    (await Deno.stat(firstRun)).mtime!.getTime(),
    before,
    "the finished run was trained again",
  );
  assert.equal(await reportNumbers(b), await reportNumbers(a));
  const results = (out: string) => Deno.readTextFile(join(out, "report", "results.json"));
  assert.equal(await results(b), await results(a));

  // A different setting on the same folder is refused.
  await expectOneLineError(
    [...studyArgs(data, b), "--lr", "0.01", "--cfg-start", "0"],
    /study\.json was started with other settings: --lr 0\.01 \(study: 0\.0001\), --cfg-start 0 \(study: 5\)/,
  );
});

Deno.test("study: impossible options and budgets are refused with one line", async () => {
  await using dir = await tempDir();
  const data = await makeShards(dir.path);
  const out = `${dir.path}/s`;
  await expectOneLineError(
    ["study", "--data", data, "--out", out, "--parts", "ratio"],
    /unknown part 'ratio'/,
  );
  await expectOneLineError(
    ["study", "--data", data, "--out", out, "--seeds", "1"],
    /--seeds must be at least 2/,
  );
  await expectOneLineError(
    ["study", "--data", data, "--out", out, "--iters", "5", "--budget-minutes", "3"],
    /--budget-minutes or --iters, not both/,
  );
  await expectOneLineError(["study", "--data", `${dir.path}/none`, "--out", out], /none/);
  // The model is chosen with --model, as in train; --preset is gone.
  await expectOneLineError(
    ["study", "--data", data, "--out", out, "--preset", "tiny"],
    /unknown option '--preset'/,
  );
  await expectOneLineError(
    ["study", "--data", data, "--out", out, "--model", "huge"],
    /--model must be one of tiny, S, L, got 'huge'/,
  );
  await Deno.writeTextFile(`${dir.path}/file`, "");
  await expectOneLineError(
    ["study", "--data", data, "--out", `${dir.path}/file/study`],
    /cannot create the study folder .*file\/study: Not a directory/,
  );
  // A damaged or foreign study.json is named, not trusted.
  for (
    const [text, pattern] of [
      ["{", /study\.json: not valid JSON/],
      ['{"format": "other"}', /study\.json is not a study file of 'checkerboard study'/],
      ['{"format": "checkerboard-study", "version": 2}', /study\.json: 'data' is missing/],
      [
        '{"format": "checkerboard-study", "version": 1, "data": "d", "seeds": 2, "settings": {}}',
        /study\.json: 'settings\.preset' is missing/,
      ],
    ] as const
  ) {
    const broken = `${dir.path}/broken`;
    await Deno.mkdir(broken, { recursive: true });
    await Deno.writeTextFile(`${broken}/study.json`, text);
    await expectOneLineError(studyArgs(data, broken), pattern);
  }
  // 6 ms: less than reading the data and timing a model take on any machine. The budget check
  // comes after timing the models (a progress line), so not one line alone.
  const small = await runCli([
    ...studyArgs(data, out).filter((a) => a !== "--iters" && a !== "6"),
    "--budget-minutes",
    "0.0001",
  ]);
  assert.equal(small.code, 1);
  assert.match(
    small.stderr,
    /a budget of 0\.0001 minutes leaves 0 steps per model for 4 models .*give --budget-minutes \d+ or more/,
  );
  const planned = await Deno.stat(join(out, "study.json")).then(() => true, () => false);
  assert.equal(planned, false, "study.json written for a refused budget");
});

Deno.test("study: the ratios part encodes every ratio with the manifest's tokenizer, from any folder", async () => {
  await using dir = await tempDir();
  await makeShards(dir.path);
  // Relative paths from another working folder: the tokenizer is found from the manifest.
  const r = await runCli(studyArgs("shards", "study", "ratios"), { cwd: dir.path });
  assert.equal(r.code, 0, r.stderr);
  for (const ratio of ["sqrt2", "3", "4", "single"]) {
    const m = JSON.parse(
      await Deno.readTextFile(join(dir.path, "study", "data", `ratio-${ratio}`, "manifest.json")),
    );
    assert.equal(m.ratio, ratio);
  }
  const report = await Deno.readTextFile(join(dir.path, "study", "report", "report.md"));
  assert.match(report, /\| ratio sqrt2 \(1,2,3,4\) \|/);
  assert.match(report, /\| single-scale \(4\) \|/);
});
