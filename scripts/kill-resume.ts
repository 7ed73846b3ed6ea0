/**
 * Kill -9 test of training: `deno run -A scripts/kill-resume.ts [--kills 30] [--iters 200]`.
 *
 * Makes small MNIST shards (`tokenizer fit` with 16 codes, then `data`), trains a shrunk tiny
 * model once without interruption (the reference), then trains the same run again, killing it
 * with SIGKILL at `--kills` random moments of its training (a checkpoint every 2 steps, so many
 * kills land inside a checkpoint write), each followed by `--resume` (or a fresh start when no
 * train state was written yet) until the run finishes. Prints, per kill, the step it was killed
 * at and whether the resume that followed started from the train state; then a summary. The
 * final model.safetensors and train-state.safetensors must be byte-identical to the
 * reference's. Exit status 0 when every resume succeeded and the bytes agree, 1 otherwise.
 */
import { join } from "node:path";
import { readSafetensors } from "../src/util/safetensors.ts";
import { MODEL_FILE, TRAIN_STATE_FILE } from "../src/model/checkpoint.ts";
import { Rng } from "../src/util/rng.ts";
import { exists } from "../src/util/files.ts";

const repo = new URL("..", import.meta.url).pathname;

interface Settings {
  kills: number;
  iters: number;
  seed: number;
  work?: string;
  keep: boolean;
}

function parseArgs(args: string[]): Settings {
  const s: Settings = { kills: 30, iters: 200, seed: 1, keep: false };
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    const value = () => {
      const v = args[++i];
      if (v === undefined) usage(`${a} needs a value`);
      return v;
    };
    const int = () => {
      const v = value();
      if (!/^\d+$/.test(v)) usage(`${a} must be a non-negative integer, got '${v}'`);
      return Number(v);
    };
    if (a === "--kills") s.kills = int();
    else if (a === "--iters") s.iters = Math.max(int(), 2);
    else if (a === "--seed") s.seed = int();
    else if (a === "--work") s.work = value();
    else if (a === "--keep") s.keep = true;
    else usage(`unknown argument '${a}'`);
  }
  return s;
}

function usage(why: string): never {
  console.error(
    `kill-resume: ${why}\nusage: deno run -A scripts/kill-resume.ts [--kills N] [--iters N] ` +
      `[--seed S] [--work DIR] [--keep]`,
  );
  Deno.exit(2);
}

/** Runs `checkerboard ARGS` to completion; throws with its stderr on failure. */
async function cli(args: string[]): Promise<void> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", join(repo, "cli/main.ts"), ...args],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  if (out.code !== 0) {
    throw new Error(
      `checkerboard ${args.join(" ")} failed:\n${new TextDecoder().decode(out.stderr)}`,
    );
  }
}

/** A `train` process whose stderr is read line by line. */
class TrainProcess {
  readonly child: Deno.ChildProcess;
  private stderr = "";
  private readonly reading: Promise<void>;
  /** Resolves with the first line saying training began ("training: ..." or "resuming at step N"). */
  readonly started: Promise<string | undefined>;

  constructor(args: string[]) {
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", join(repo, "cli/main.ts"), "train", ...args],
      stdout: "null",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).spawn();
    this.child = child;
    let resolveStart: (line: string | undefined) => void = () => {};
    this.started = new Promise((r) => (resolveStart = r));
    this.reading = (async () => {
      const decoder = new TextDecoder();
      for await (const chunk of child.stderr) {
        this.stderr += decoder.decode(chunk, { stream: true });
        const line = this.stderr.split("\n").find((l) =>
          /^(training|resuming at step \d+):/.test(l)
        );
        if (line) resolveStart(line);
      }
      resolveStart(undefined);
    })();
  }

  async finish(): Promise<{ code: number; signal: string | null; stderr: string }> {
    const status = await this.child.status;
    await this.reading;
    return { code: status.code, signal: status.signal, stderr: this.stderr };
  }
}

/** The step recorded in a safetensors file's metadata, or undefined when it is missing or unreadable. */
async function stepOf(path: string): Promise<number | undefined> {
  try {
    return Number((await readSafetensors(path)).metadata.step);
  } catch {
    return undefined;
  }
}

/** The last step in metrics.jsonl (the last step done before the kill, with --log-every 1). */
async function lastLoggedStep(dir: string): Promise<number> {
  const text = await Deno.readTextFile(join(dir, "metrics.jsonl")).catch(() => "");
  let step = 0;
  for (const line of text.split("\n")) {
    try {
      const s = JSON.parse(line).step;
      if (typeof s === "number") step = Math.max(step, s);
    } catch {
      // a line cut by the kill
    }
  }
  return step;
}

async function sameBytes(a: string, b: string): Promise<boolean> {
  const [x, y] = await Promise.all([Deno.readFile(a), Deno.readFile(b)]);
  return x.length === y.length && x.every((v, i) => v === y[i]);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function main() {
  const s = parseArgs(Deno.args);
  const work = s.work ?? await Deno.makeTempDir({ prefix: "checkerboard-kill-resume-" });
  await Deno.mkdir(work, { recursive: true });
  try {
    const ok = await killResume(s, work);
    Deno.exit(ok ? 0 : 1);
  } finally {
    if (!s.keep && s.work === undefined) await Deno.remove(work, { recursive: true });
  }
}

async function killResume(s: Settings, work: string): Promise<boolean> {
  const tok = join(work, "tok"), data = join(work, "data");
  if (!(await exists(join(data, "manifest.json")))) {
    console.log("making MNIST shards (16 codes)...");
    await cli([
      "tokenizer",
      "fit",
      "--dataset",
      "mnist",
      "--codes",
      "16",
      "--iterations",
      "2",
      "--max-patches",
      "4000",
      "--device",
      "cpu",
      "--out",
      tok,
    ]);
    await cli(["data", "--tokenizer", tok, "--out", data, "--device", "cpu"]);
  }
  const trainArgs = (out: string) => [
    "--data",
    data,
    "--out",
    out,
    "--depth",
    "1",
    "--width",
    "32",
    "--heads",
    "2",
    "--batch",
    "8",
    "--accum",
    "2",
    "--order",
    "random",
    "--lr",
    "1e-3",
    "--warmup",
    "5",
    "--iters",
    String(s.iters),
    "--checkpoint-every",
    "2",
    "--log-every",
    "1",
    "--eval-every",
    "0",
    "--eval-batches",
    "1",
    "--device",
    "cpu",
  ];

  // The reference: one uninterrupted run; its training time sets the kill delays.
  const reference = join(work, "reference");
  await Deno.remove(reference, { recursive: true }).catch(() => {});
  const ref = new TrainProcess(trainArgs(reference));
  await ref.started;
  const t0 = performance.now();
  const refEnd = await ref.finish();
  const trainMs = performance.now() - t0;
  if (refEnd.code !== 0) throw new Error(`the reference run failed:\n${refEnd.stderr}`);
  console.log(`reference: ${s.iters} steps in ${(trainMs / 1000).toFixed(1)} s of training`);

  // The killed run. Each kill aims at a random step after the one training (re)starts from:
  // uniform in (0, 2 R / k] steps further, R the steps left and k the kills left (at most 2
  // before the end), so the kills spread over the whole run. Once that step is logged, the kill
  // comes a random fraction of a step later: anywhere in a step, or in a checkpoint write.
  const out = join(work, "killed");
  await Deno.remove(out, { recursive: true }).catch(() => {});
  const rng = new Rng(s.seed);
  const stepMs = trainMs / s.iters;
  const targetStep = async (killsLeft: number) => {
    const from = (await stepOf(join(out, TRAIN_STATE_FILE))) ?? 0;
    const ahead = Math.ceil(rng.next() * ((2 * (s.iters - from)) / killsLeft));
    return Math.max(from, Math.min(from + Math.max(1, ahead), s.iters - 2));
  };
  /** Waits until `step` is logged or the process ends; false when it ended. */
  const reach = async (p: TrainProcess, step: number) => {
    let ended = false;
    p.child.status.then(() => (ended = true));
    while (!ended && (await lastLoggedStep(out)) < step) await sleep(2);
    return !ended;
  };

  let failures = 0, kills = 0, resumes = 0, inWrite = 0, fresh = 0;
  let proc = new TrainProcess(trainArgs(out));
  let pending: string | undefined; // the report of the last kill, completed by the next start
  for (;;) {
    const line = await proc.started;
    if (pending !== undefined) {
      const state = await stepOf(join(out, TRAIN_STATE_FILE));
      const expect = state === undefined ? "training:" : `resuming at step ${state}:`;
      const good = line !== undefined && line.startsWith(expect);
      if (!good) failures++;
      console.log(
        `${pending}; ${good ? "resume ok" : `RESUME FAILED: ${line ?? "no start line"}`}`,
      );
      pending = undefined;
    }
    if (line === undefined || kills >= s.kills) {
      const end = await proc.finish();
      if (end.code === 0) break;
      failures++;
      console.log(`run ended with status ${end.code}: ${end.stderr.trim().split("\n").pop()}`);
      if (line === undefined) break;
      continue;
    }
    if (await reach(proc, await targetStep(s.kills - kills))) {
      await sleep(rng.next() * stepMs);
      try {
        proc.child.kill("SIGKILL");
      } catch {
        // It ended between the check and the kill: handled below.
      }
    }
    const end = await proc.finish();
    if (end.signal !== "SIGKILL") {
      // It finished (or failed) before the kill landed.
      if (end.code === 0) break;
      failures++;
      console.log(`run ended with status ${end.code}: ${end.stderr.trim().split("\n").pop()}`);
      break;
    }
    kills++;
    const logged = await lastLoggedStep(out);
    const state = await stepOf(join(out, TRAIN_STATE_FILE));
    const model = await stepOf(join(out, MODEL_FILE));
    let temporaries = 0;
    for await (const e of Deno.readDir(out)) if (e.name.includes(".tmp-")) temporaries++;
    if (temporaries > 0) inWrite++;
    const done = state === s.iters && model === s.iters;
    pending = `kill ${String(kills).padStart(2)}/${s.kills}: after step ${logged}, train state ` +
      `at step ${state ?? "none"}, model file at step ${model ?? "none"}` +
      (temporaries ? ", during a file write" : "");
    if (done) {
      console.log(`${pending}; the run had finished`);
      pending = undefined;
      break;
    }
    if (state === undefined) fresh++;
    else resumes++;
    proc = new TrainProcess(state === undefined ? trainArgs(out) : [...trainArgs(out), "--resume"]);
  }

  const sameModel = await sameBytes(join(out, MODEL_FILE), join(reference, MODEL_FILE));
  const sameState = await sameBytes(join(out, TRAIN_STATE_FILE), join(reference, TRAIN_STATE_FILE));
  const ok = failures === 0 && sameModel && sameState && kills === s.kills;
  console.log(
    `summary: ${kills} kills (${inWrite} during a file write), ${resumes} resumes, ${fresh} fresh ` +
      `starts before the first checkpoint, ${failures} failures; final ${MODEL_FILE} ` +
      `${sameModel ? "identical to" : "DIFFERS from"} the uninterrupted run's, ` +
      `${TRAIN_STATE_FILE} ${sameState ? "identical" : "DIFFERS"}` +
      (kills < s.kills
        ? `; only ${kills} of ${s.kills} kills landed before the run finished`
        : "") +
      `: ${ok ? "PASS" : "FAIL"}`,
  );
  return ok;
}

if (import.meta.main) await main();
