/**
 * Our sampler against the PyTorch-eager reference (scripts/torch_reference.py) in one run, on
 * the same preset (random weights in both), plan and settings (issue 14, "Comparison"):
 *
 *   deno run -A scripts/torch-compare.ts [--model S] [--batches 1,16] [--steps-per-scale 4]
 *     [--cfg 2] [--cfg-start 5] [--threads 2] [--repeats 5] [--rounds 2] [--precisions fp32,bf16]
 *     [--attention matmul|sdpa] [--if-torch]
 *
 * Each round runs `checkerboard bench sample --json` and `torch_reference.py bench --json` for
 * every precision, in alternating order (ours first in even rounds, torch first in odd ones), so
 * a load that comes and goes on a shared machine falls on both. Each engine times one warm-up
 * call and then the median of --repeats calls per batch size; the table gives, per engine,
 * precision and batch, the best of the rounds' medians (the least disturbed) and every round's.
 * ratio = torch's seconds per image / ours at the same precision and batch (> 1: ours faster).
 * Our CLI gets --precision only where `bench sample --help` lists it; bf16 is "n/a" where it
 * does not, or where the engine refuses it (the refusal is printed). --if-torch: where no python3
 * imports torch, say so and exit 0 (`deno task bench` ends with this comparison).
 */
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const reference = `${root}scripts/torch_reference.py`;

/** A python that imports torch and numpy (Debian's python3-torch lives in /usr/bin/python3's
 * packages; a python3 of pyenv or a venv that comes first on PATH does not see them). */
export async function findTorchPython(): Promise<string | undefined> {
  for (const python of ["python3", "/usr/bin/python3"]) {
    const ok = await new Deno.Command(python, {
      args: ["-c", "import torch, numpy"],
      stdout: "null",
      stderr: "null",
    }).output().then((r) => r.success, () => false);
    if (ok) return python;
  }
  return undefined;
}

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

async function run(command: string, args: string[]): Promise<Run> {
  const out = await new Deno.Command(command, {
    args,
    cwd: root,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const text = new TextDecoder();
  return { code: out.code, stdout: text.decode(out.stdout), stderr: text.decode(out.stderr) };
}

/** The JSON line of a --json run's stdout (notices may come before it). */
function jsonLine(r: Run, what: string): any {
  const line = r.stdout.trim().split("\n").reverse().find((l) => l.startsWith("{"));
  if (r.code !== 0 || line === undefined) {
    throw new Error(`${what} failed (status ${r.code}):\n${r.stderr}${r.stdout}`);
  }
  return JSON.parse(line);
}

type Times = Map<string, number>; // `${precision}/${batch}` -> seconds per image

const key = (precision: string, batch: number) => `${precision}/${batch}`;

async function main() {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      model: { type: "string", default: "S" },
      batches: { type: "string", default: "1,16" },
      "steps-per-scale": { type: "string", default: "4" },
      cfg: { type: "string", default: "2" },
      "cfg-start": { type: "string", default: "5" },
      threads: { type: "string", default: "2" },
      repeats: { type: "string", default: "5" },
      rounds: { type: "string", default: "2" },
      precisions: { type: "string", default: "fp32,bf16" },
      attention: { type: "string", default: "matmul" },
      "if-torch": { type: "boolean", default: false },
    },
  });
  const python = await findTorchPython();
  if (python === undefined) {
    console.error("torch-compare: no python3 imports torch; apt-get install python3-torch");
    Deno.exit(values["if-torch"] ? 0 : 1);
  }
  const batches = values.batches!.split(",").map(Number);
  const precisions = values.precisions!.split(",");
  const common = [
    "--steps-per-scale",
    values["steps-per-scale"]!,
    "--cfg",
    values.cfg!,
    "--cfg-start",
    values["cfg-start"]!,
    "--batches",
    values.batches!,
  ];
  const cli = [Deno.execPath(), "run", "-A", `${root}cli/main.ts`];
  const help = await run(cli[0], [...cli.slice(1), "bench", "sample", "--help"]);
  const takesPrecision = /--precision\b/.test(help.stdout + help.stderr);
  const refused = new Map<string, string>(); // precision -> why ours has no figure

  const ours = async (precision: string, into: Times) => {
    if (!takesPrecision && precision !== "fp32") {
      refused.set(precision, "`bench sample` has no --precision");
      return;
    }
    const r = await run(cli[0], [
      ...cli.slice(1),
      "bench",
      "sample",
      "--model",
      values.model!,
      "--threads",
      values.threads!,
      "--repeats",
      values.repeats!,
      "--json",
      ...common,
      ...(takesPrecision ? ["--precision", precision] : []),
    ]);
    if (r.code !== 0 && precision !== "fp32") {
      refused.set(precision, r.stderr.trim().split("\n").pop() ?? `status ${r.code}`);
      return;
    }
    for (const p of jsonLine(r, `bench sample (${precision})`).points) {
      into.set(key(precision, p.batch), p.secondsPerImage);
    }
  };
  const torch = async (into: Times) => {
    const r = await run(python, [
      reference,
      "--threads",
      values.threads!,
      "bench",
      "--preset",
      values.model!,
      "--precision",
      precisions.join(","),
      "--repeats",
      values.repeats!,
      "--attention",
      values.attention!,
      "--json",
      ...common,
    ]);
    const out = jsonLine(r, "torch_reference.py bench");
    for (const p of out.results) into.set(key(p.precision, p.batch), p.secondsPerImage);
    return out.torch as string;
  };

  const rounds: { ours: Times; torch: Times }[] = [];
  let torchVersion = "";
  for (let round = 0; round < Number(values.rounds); round++) {
    const times = { ours: new Map(), torch: new Map() } as { ours: Times; torch: Times };
    const oursAll = async () => {
      for (const p of precisions) await ours(p, times.ours);
    };
    if (round % 2 === 0) {
      await oursAll();
      torchVersion = await torch(times.torch);
    } else {
      torchVersion = await torch(times.torch);
      await oursAll();
    }
    rounds.push(times);
    // Each round's figures as it ends, so that a run cut short still reports.
    const figures = (t: Times) =>
      [...t].map(([k, v]) => `${k} ${v.toFixed(3)}`).join(", ") || "none";
    console.error(
      `round ${round + 1} of ${values.rounds}: checkerboard ${figures(times.ours)}; ` +
        `torch ${figures(times.torch)} (s/image by precision/batch)`,
    );
  }

  const best = (engine: "ours" | "torch", k: string) => {
    const xs = rounds.map((r) => r[engine].get(k)).filter((x): x is number => x !== undefined);
    return xs.length ? Math.min(...xs) : undefined;
  };
  const each = (engine: "ours" | "torch", k: string) =>
    rounds.map((r) => r[engine].get(k)?.toFixed(3) ?? "n/a").join(" ");
  console.log(
    `sampling ${values.model} (random weights), ${values["steps-per-scale"]} steps per scale, ` +
      `cfg ${values.cfg} after ${values["cfg-start"]} steps, ${values.threads} threads; ` +
      `torch ${torchVersion} eager (${values.attention} attention); ` +
      `${values.repeats} repeats x ${values.rounds} rounds`,
  );
  const header = ["engine", "precision", "batch", "s/image", "ratio", "rounds"];
  const rows: string[][] = [];
  for (const precision of precisions) {
    for (const batch of batches) {
      const k = key(precision, batch);
      const t = best("torch", k), o = best("ours", k);
      rows.push([
        "checkerboard",
        precision,
        String(batch),
        o?.toFixed(3) ?? "n/a",
        o !== undefined && t !== undefined ? (t / o).toFixed(2) : "n/a",
        each("ours", k),
      ]);
      rows.push([
        "torch",
        precision,
        String(batch),
        t?.toFixed(3) ?? "n/a",
        "1.00",
        each("torch", k),
      ]);
    }
  }
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  for (const r of [header, ...rows]) console.log(r.map((c, i) => c.padEnd(widths[i])).join("  "));
  for (const [precision, why] of refused) console.log(`checkerboard ${precision}: n/a (${why})`);
}

if (import.meta.main) await main();
