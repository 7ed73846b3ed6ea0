/**
 * Several ranks under mpirun (src/dist/world.ts, native/engine/dist/): data-parallel training
 * matches one process with the same global batch, ZeRO-1 matches plain data parallel, sharded
 * sampling writes the single process's samples.npz, and a rank killed with SIGKILL ends the
 * job on every rank while the checkpoint stays whole for --resume. Over loopback on this
 * machine (`--oversubscribe`: more ranks than cores). Ignored where mpirun is missing.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { repoRoot, runCli, tempDir } from "./helpers.ts";
import { makeData, SMALL, smallTraining } from "./train_fixtures.ts";
import { readSafetensors } from "../src/util/safetensors.ts";
import { readTrainStateFile } from "../src/model/checkpoint.ts";

const mpirun = (() => {
  try {
    return new Deno.Command("mpirun", { args: ["--version"], stdout: "null", stderr: "null" })
      .outputSync().success;
  } catch {
    return false;
  }
})();
const ignore = !mpirun;
const why = mpirun ? "" : " (ignored: mpirun not found; scripts/setup.sh installs OpenMPI)";

/** mpirun's arguments for `ranks` local ranks (OpenMPI refuses root without the flag). */
function mpiArgs(ranks: number): string[] {
  return [
    "--oversubscribe",
    ...(Deno.uid() === 0 ? ["--allow-run-as-root"] : []),
    "-np",
    String(ranks),
  ];
}

function mpiCommand(ranks: number, args: string[], mpiExtra: string[] = []): Deno.Command {
  return new Deno.Command("mpirun", {
    args: [
      ...mpiArgs(ranks),
      ...mpiExtra,
      Deno.execPath(),
      "run",
      "-A",
      `${repoRoot}cli/main.ts`,
      ...args,
    ],
    cwd: repoRoot,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  });
}

/** A training run long enough to be stopped or killed in the middle, checkpointing often. */
function longTraining(data: string, out: string): string[] {
  return smallTraining(
    data,
    out,
    "--iters",
    "3000",
    "--batch",
    "16",
    "--checkpoint-every",
    "20",
    "--eval-every",
    "0",
  );
}

async function runRanks(ranks: number, args: string[]) {
  const out = await mpiCommand(ranks, args).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** Every float tensor of a train state (parameters and both AdamW moments). */
async function trainState(dir: string): Promise<Map<string, Float32Array>> {
  const { tensors } = await readSafetensors(join(dir, "train-state.safetensors"));
  const out = new Map<string, Float32Array>();
  for (const [name, t] of Object.entries(tensors)) {
    if (t.data instanceof Float32Array) out.set(name, t.data);
  }
  return out;
}

/** The largest |a - b| / max|a| over the tensors of two train states (0: identical). */
async function stateDifference(a: string, b: string): Promise<number> {
  const [x, y] = [await trainState(a), await trainState(b)];
  assert.deepEqual([...x.keys()].sort(), [...y.keys()].sort());
  let worst = 0;
  for (const [name, u] of x) {
    const v = y.get(name)!;
    let scale = 0, diff = 0;
    for (let i = 0; i < u.length; i++) {
      scale = Math.max(scale, Math.abs(u[i]));
      diff = Math.max(diff, Math.abs(u[i] - v[i]));
    }
    worst = Math.max(worst, scale > 0 ? diff / scale : diff);
  }
  return worst;
}

async function losses(dir: string): Promise<number[]> {
  return (await Deno.readTextFile(join(dir, "metrics.jsonl"))).trim().split("\n")
    .map((l) => JSON.parse(l)).filter((e) => e.loss !== undefined).map((e) => e.loss);
}

const TRAIN = [
  ...SMALL,
  "--iters",
  "20",
  "--batch",
  "16",
  "--log-every",
  "1",
  "--eval-every",
  "0",
  "--seed",
  "4",
];

Deno.test({
  name: `train over 2 and 4 ranks matches one process; ZeRO-1 and buckets match plain${why}`,
  ignore,
  async fn() {
    await using tmp = await tempDir();
    const { data } = await makeData(tmp.path, { train: 128, val: 16 });
    const run = (
      name: string,
    ) => ["train", "--data", data, "--out", join(tmp.path, name), ...TRAIN];
    const one = await runCli(run("one"));
    assert.equal(one.code, 0, one.stderr);
    const two = await runRanks(2, run("two"));
    assert.equal(two.code, 0, two.stderr);
    assert.match(two.stderr, /2 ranks of 8 images, gradients over mpi/);
    const four = await runRanks(4, [...run("four"), "--zero1"]);
    assert.equal(four.code, 0, four.stderr);
    assert.match(four.stderr, /4 ranks of 4 images.*ZeRO-1/);
    const twoZero = await runRanks(2, [...run("two-zero1"), "--zero1"]);
    assert.equal(twoZero.code, 0, twoZero.stderr);
    // Buckets of 10 kB all-reduced during the backward, with and without accumulation.
    const bucketed = await runRanks(2, [...run("two-bucketed"), "--bucket-mb", "0.01"]);
    assert.equal(bucketed.code, 0, bucketed.stderr);
    assert.match(bucketed.stderr, /all-reduced during the backward in buckets of 0.01 MB/);
    for (
      const [name, extra] of [["two-accum", []], ["two-accum-bucketed", ["--bucket-mb", "0.01"]]]
    ) {
      const r = await runRanks(2, [...run(name as string), "--accum", "2", ...extra]);
      assert.equal(r.code, 0, r.stderr);
    }
    // Stopped at step 10 on 2 ranks with ZeRO-1, resumed on 4: the sharded moments were
    // gathered into the checkpoint and scattered again.
    const half = await runRanks(2, [...run("resumed"), "--zero1", "--stop-after", "10"]);
    assert.equal(half.code, 0, half.stderr);
    const rest = await runRanks(4, [
      "train",
      "--data",
      data,
      "--out",
      join(tmp.path, "resumed"),
      "--resume",
      "--zero1",
      "--log-every",
      "1",
    ]);
    assert.equal(rest.code, 0, rest.stderr);

    // Only the summation order of the gradient sums differs (see README): float32 noise.
    const base = await losses(join(tmp.path, "one"));
    assert.equal(base.length, 20);
    for (const name of ["two", "four", "resumed"]) {
      const l = await losses(join(tmp.path, name));
      const rel = Math.max(...l.map((x, i) => Math.abs(x - base[i]) / base[i]));
      assert.ok(rel < 1e-6, `${name}: loss differs by ${rel} (relative)`);
      const d = await stateDifference(join(tmp.path, "one"), join(tmp.path, name));
      assert.ok(d < 1e-5, `${name}: train state differs by ${d} (of its largest value)`);
    }
    // ZeRO-1 runs the same arithmetic as plain data parallel, value for value.
    assert.equal(await stateDifference(join(tmp.path, "two"), join(tmp.path, "two-zero1")), 0);
    // Two ranks' sums do not depend on how the buffer is cut: buckets change no value.
    assert.equal(await stateDifference(join(tmp.path, "two"), join(tmp.path, "two-bucketed")), 0);
    assert.equal(
      await stateDifference(join(tmp.path, "two-accum"), join(tmp.path, "two-accum-bucketed")),
      0,
    );
    // Only rank 0 wrote: one metrics line per step.
    assert.equal((await losses(join(tmp.path, "four"))).length, 20);
  },
});

Deno.test({
  name: `train over ranks refuses a batch that does not split, --zero1 or --bucket-mb alone${why}`,
  ignore,
  async fn() {
    await using tmp = await tempDir();
    const { data } = await makeData(tmp.path, { train: 64, val: 8 });
    const train = (name: string, ...extra: string[]) =>
      smallTraining(data, join(tmp.path, name), ...extra);
    const r = await runRanks(2, train("o", "--batch", "7"));
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /--batch 7 does not split over 2 ranks/);
    const single = await runCli(train("p", "--zero1"));
    assert.equal(single.code, 2);
    assert.match(single.stderr, /--zero1 shards the optimizer over several ranks/);
    const alone = await runCli(train("b", "--bucket-mb", "1"));
    assert.equal(alone.code, 2);
    assert.match(alone.stderr, /--bucket-mb buckets the all-reduce between ranks/);
    const both = await runRanks(2, train("z", "--zero1", "--bucket-mb", "1"));
    assert.notEqual(both.code, 0);
    assert.match(both.stderr, /--bucket-mb overlaps plain data parallel's all-reduce/);
    const data2 = await runRanks(2, ["order", "--side", "4"]);
    assert.notEqual(data2.code, 0);
    assert.match(data2.stderr, /'order' runs in one process/);
  },
});

Deno.test({
  name: `a rank killed with SIGKILL ends every rank; the checkpoint resumes${why}`,
  ignore,
  async fn() {
    await using tmp = await tempDir();
    const { data } = await makeData(tmp.path, { train: 128, val: 16 });
    const out = join(tmp.path, "run");
    const child = mpiCommand(2, longTraining(data, out)).spawn();
    const stderr = new Response(child.stderr).text();
    void new Response(child.stdout).text();
    // Wait for a checkpoint, then kill rank 1 (found by its OpenMPI rank variable).
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline) {
      try {
        await Deno.stat(join(out, "train-state.safetensors"));
        break;
      } catch {
        await new Promise((r) => setTimeout(r, 200));
      }
    }
    const rank1 = await rankPid(child.pid, 1);
    const rank0 = await rankPid(child.pid, 0);
    assert.ok(rank1 !== null && rank0 !== null, "both ranks are running");
    const killedAt = performance.now();
    Deno.kill(rank1, "SIGKILL");
    const status = await child.status;
    const seconds = (performance.now() - killedAt) / 1000;
    assert.notEqual(status.code, 0, await stderr);
    assert.ok(seconds < 60, `the job took ${seconds} s to end after the kill`);
    assert.ok(!(await alive(rank0)), "rank 0 is gone too");
    // The checkpoint is whole: --resume (in one process, another world size) finishes the run.
    const step = (await readTrainStateFile(out)).info.step;
    assert.ok(step >= 20 && step % 20 === 0, `checkpoint at step ${step}`);
    const end = String(step + 20);
    const resumed = await runCli([
      "train",
      "--data",
      data,
      "--out",
      out,
      "--resume",
      "--iters",
      end,
    ]);
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.match(resumed.stdout, new RegExp(`^step ${end}: `, "m"));
  },
});

Deno.test({
  name: `a rank that stops answering ends the job after CB_DIST_TIMEOUT${why}`,
  ignore,
  async fn() {
    await using tmp = await tempDir();
    const { data } = await makeData(tmp.path, { train: 128, val: 16 });
    const out = join(tmp.path, "run");
    const command = mpiCommand(2, longTraining(data, out), ["-x", "CB_DIST_TIMEOUT=3"]);
    const child = command.spawn();
    const stderr = new Response(child.stderr).text();
    void new Response(child.stdout).text();
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline && (await rankPid(child.pid, 1)) === null) {
      await new Promise((r) => setTimeout(r, 200));
    }
    await new Promise((r) => setTimeout(r, 3000)); // into the training steps
    const rank1 = await rankPid(child.pid, 1);
    assert.ok(rank1 !== null, "rank 1 is running");
    const stoppedAt = performance.now();
    Deno.kill(rank1, "SIGSTOP"); // alive, but never reaches its next collective
    const status = await child.status;
    const seconds = (performance.now() - stoppedAt) / 1000;
    const text = await stderr;
    assert.notEqual(status.code, 0, text);
    assert.ok(seconds < 30, `the job took ${seconds} s to end`);
    assert.match(text, /rank 0 waited 3 s in all-reduce for the other ranks/);
    if (await alive(rank1)) Deno.kill(rank1, "SIGKILL");
  },
});

/** True while process `pid` runs (a zombie counts as gone). */
async function alive(pid: number): Promise<boolean> {
  try {
    const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

/** The pid of the process of `rank` among mpirun's descendants, or null. */
async function rankPid(mpirunPid: number, rank: number): Promise<number | null> {
  const children = new Map<number, number[]>();
  for await (const e of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      const stat = await Deno.readTextFile(`/proc/${e.name}/stat`);
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(e.name)]);
    } catch {
      // gone
    }
  }
  const queue = [...(children.get(mpirunPid) ?? [])];
  while (queue.length) {
    const pid = queue.shift()!;
    queue.push(...(children.get(pid) ?? []));
    try {
      const env = await Deno.readTextFile(`/proc/${pid}/environ`);
      if (env.split("\0").includes(`OMPI_COMM_WORLD_RANK=${rank}`)) return pid;
    } catch {
      // gone
    }
  }
  return null;
}

Deno.test({
  name: `sample over 2 ranks writes the single process's samples.npz${why}`,
  ignore,
  async fn() {
    await using tmp = await tempDir();
    // Default threads: one process runs 2 on this machine, each rank 1, and every product is
    // cut for the machine's threads in both (setThreads' splitThreads), so the bits agree.
    const args = (
      name: string,
    ) => [
      "sample",
      "--classes",
      "random",
      "--count",
      "200",
      "--batch",
      "50",
      "--seed",
      "9",
      "--device",
      "cpu",
      "--out",
      join(tmp.path, name),
    ];
    const one = await runCli(args("one"));
    assert.equal(one.code, 0, one.stderr);
    const two = await runRanks(2, args("two"));
    assert.equal(two.code, 0, two.stderr);
    assert.match(two.stdout, /over 2 ranks/);
    const [a, b] = await Promise.all(
      ["one", "two"].map((n) => Deno.readFile(join(tmp.path, n, "samples.npz"))),
    );
    assert.ok(a.length > 1000);
    assert.deepEqual(b, a);
  },
});
