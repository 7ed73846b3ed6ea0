/**
 * Scale test of `checkerboard data` on a generated folder dataset:
 *   deno run -A scripts/data-scale.ts [--images 1000] [--tokenizer DIR] [--side 64] ...
 *
 * 1. Generates --images JPEGs (sides 64-500 px drawn independently, so any aspect; 10 classes;
 *    seeded) from random shapes and noise into WORK/images (kept between runs of the same
 *    --images and --seed).
 * 2. Without --tokenizer, fits a patch tokenizer on that folder at --side (`tokenizer fit`).
 * 3. Runs `data` once uninterrupted under `/usr/bin/time -v`: peak RSS, wall time, images/s.
 * 4. The kill test: runs the same command into another folder, kills it with SIGKILL when
 *    about half of the shards exist, runs it again, and compares the sha256 of every output
 *    file with the uninterrupted run's.
 * Exit status 0 when the kill test passes.
 */
import { createHash } from "node:crypto";
import { join } from "node:path";
import { exists } from "../src/util/files.ts";
import { generateImages } from "./generated_images.ts";

const repo = new URL("..", import.meta.url).pathname;

interface Settings {
  images: number;
  seed: number;
  tokenizer?: string;
  side: number;
  ratio?: string;
  scales?: string;
  augment: string;
  shardSize?: number;
  batch?: number;
  device: string;
  work?: string;
  keep: boolean;
}

function usage(why: string): never {
  console.error(
    `data-scale: ${why}\nusage: deno run -A scripts/data-scale.ts [--images N] [--seed S] ` +
      `[--tokenizer DIR] [--side PX] [--ratio R | --scales LIST] [--augment none|ten-crop] ` +
      `[--shard-size N] [--batch N] [--device D] [--work DIR] [--keep]`,
  );
  Deno.exit(2);
}

function parseArgs(args: string[]): Settings {
  const s: Settings = {
    images: 1000,
    seed: 1,
    side: 64,
    augment: "none",
    device: "cpu",
    keep: false,
  };
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    const value = () => args[++i] ?? usage(`${a} needs a value`);
    const int = () => {
      const v = value();
      if (!/^\d+$/.test(v) || Number(v) < 1) usage(`${a} must be a positive integer, got '${v}'`);
      return Number(v);
    };
    if (a === "--images") s.images = int();
    else if (a === "--seed") s.seed = int();
    else if (a === "--tokenizer") s.tokenizer = value();
    else if (a === "--side") s.side = int();
    else if (a === "--ratio") s.ratio = value();
    else if (a === "--scales") s.scales = value();
    else if (a === "--augment") s.augment = value();
    else if (a === "--shard-size") s.shardSize = int();
    else if (a === "--batch") s.batch = int();
    else if (a === "--device") s.device = value();
    else if (a === "--work") s.work = value();
    else if (a === "--keep") s.keep = true;
    else usage(`unknown argument '${a}'`);
  }
  return s;
}

function cli(args: string[]): Deno.Command {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", join(repo, "cli/main.ts"), ...args],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1", MALLOC_ARENA_MAX: "1" }, // as `deno task cli` runs it
  });
}

async function mustRun(what: string, command: Deno.Command): Promise<string> {
  const r = await command.output();
  const stdout = new TextDecoder().decode(r.stdout), stderr = new TextDecoder().decode(r.stderr);
  if (r.code !== 0) {
    console.error(`data-scale: ${what} failed (status ${r.code})\n${stdout}\n${stderr}`);
    Deno.exit(1);
  }
  return stdout + stderr;
}

/** sha256 of every file of `dir`, by name. */
async function hashes(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for await (const e of Deno.readDir(dir)) {
    out.set(
      e.name,
      createHash("sha256").update(await Deno.readFile(join(dir, e.name))).digest("hex"),
    );
  }
  return new Map([...out].sort(([a], [b]) => (a < b ? -1 : 1)));
}

async function countShards(dir: string): Promise<number> {
  let n = 0;
  try {
    for await (const e of Deno.readDir(dir)) if (/^(train|val)-\d+\.npz$/.test(e.name)) n++;
  } catch { /* not made yet */ }
  return n;
}

const s = parseArgs(Deno.args);
if (!(await exists("/usr/bin/time"))) {
  usage("/usr/bin/time is missing (apt-get install -y time; scripts/setup.sh installs it)");
}
const work = s.work ?? join(repo, "out", "data-scale");
const images = join(work, `images-${s.images}-seed${s.seed}`);
await Deno.mkdir(work, { recursive: true });
await generateImages(images, s.images, s.seed);

let tokenizer = s.tokenizer;
if (tokenizer === undefined) {
  tokenizer = join(work, `tok-${s.images}-seed${s.seed}-side${s.side}`);
  if (!(await exists(join(tokenizer, "tokenizer.json")))) {
    await mustRun(
      "tokenizer fit",
      cli([
        "tokenizer",
        "fit",
        "--dataset",
        `folder:${images}`,
        "--side",
        String(s.side),
        "--patch",
        "4",
        "--codes",
        "256",
        "--iterations",
        "4",
        "--out",
        tokenizer,
        "--device",
        s.device,
      ]),
    );
  }
  console.log(`tokenizer: patch VQ fitted on the folder at ${s.side} px: ${tokenizer}`);
}

// About 20 shards by default, so that the kill lands between shards.
const crops = s.augment === "ten-crop" ? 10 : 1;
const shardSize = s.shardSize ?? Math.max(1, Math.ceil((s.images * 0.9 * crops) / 20));
const dataArgs = (out: string) => [
  "data",
  "--dataset",
  `folder:${images}`,
  "--tokenizer",
  tokenizer!,
  "--out",
  out,
  "--side",
  String(s.side),
  "--augment",
  s.augment,
  "--shard-size",
  String(shardSize),
  "--device",
  s.device,
  "--force",
  ...(s.scales ? ["--scales", s.scales] : s.ratio ? ["--ratio", s.ratio] : []),
  ...(s.batch ? ["--batch", String(s.batch)] : []),
];

// 1. Uninterrupted, under /usr/bin/time -v.
const whole = join(work, "shards-whole");
await Deno.remove(`${whole}.partial`, { recursive: true }).catch(() => {});
const timed = await mustRun(
  "data",
  new Deno.Command("/usr/bin/time", {
    args: ["-v", Deno.execPath(), "run", "-A", join(repo, "cli/main.ts"), ...dataArgs(whole)],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1", MALLOC_ARENA_MAX: "1" }, // as `deno task cli` runs it
  }),
);
const rssKb = Number(timed.match(/Maximum resident set size \(kbytes\): (\d+)/)?.[1]);
const wall = timed.match(/Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)/)?.[1] ?? "";
const wallS = wall.split(":").reduce((a, p) => a * 60 + Number(p), 0);
const wrote = timed.match(/^wrote .*$/m)?.[0] ?? "";
const shards = (await hashes(whole)).size - 1;
console.log(`data: ${wrote}`);
console.log(
  `data: ${s.images} images (augment ${s.augment}, side ${s.side}) in ${wallS.toFixed(1)} s: ` +
    `${(s.images / wallS).toFixed(1)} images/s; peak RSS ${(rssKb / 1024).toFixed(0)} MiB; ` +
    `${shards} shards of ${shardSize} rows`,
);

// 2. Killed with SIGKILL when about half the shards exist, then run again.
const killed = join(work, "shards-killed");
await Deno.remove(killed, { recursive: true }).catch(() => {});
await Deno.remove(`${killed}.partial`, { recursive: true }).catch(() => {});
const child = new Deno.Command(Deno.execPath(), {
  args: ["run", "-A", join(repo, "cli/main.ts"), ...dataArgs(killed)],
  stdout: "null",
  stderr: "null",
  env: { NO_COLOR: "1", MALLOC_ARENA_MAX: "1" }, // as `deno task cli` runs it
}).spawn();
const half = Math.max(1, Math.floor(shards / 2));
let finished = false;
child.status.then(() => (finished = true));
while (!finished && (await countShards(`${killed}.partial`)) < half) {
  await new Promise((r) => setTimeout(r, 20));
}
let verdict: string;
if (finished) {
  verdict = "FAIL (the run ended before it could be killed; use more --images)";
} else {
  child.kill("SIGKILL");
  await child.status;
  const atKill = await countShards(`${killed}.partial`);
  const again = await mustRun("data (after the kill)", cli(dataArgs(killed)));
  const resumedLine = again.match(/^data: continuing .*$/m)?.[0] ?? "(no resume line)";
  const [a, b] = [await hashes(whole), await hashes(killed)];
  const differing = [...new Set([...a.keys(), ...b.keys()])].filter((f) => a.get(f) !== b.get(f));
  console.log(`kill: SIGKILL with ${atKill} of ${shards} shards written; ${resumedLine}`);
  verdict = differing.length === 0
    ? `PASS (${a.size} files, sha256 identical)`
    : `FAIL (${differing.length} files differ: ${differing.slice(0, 5).join(", ")})`;
}
console.log(`kill test: ${verdict}`);
if (!s.keep) {
  for (const dir of [whole, killed]) await Deno.remove(dir, { recursive: true }).catch(() => {});
}
Deno.exit(verdict.startsWith("PASS") ? 0 : 1);
