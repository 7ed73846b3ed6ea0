/**
 * The command-line parser (cli/command.ts): negative numbers are values, unknown options get the
 * nearest valid one suggested, stray arguments are usage errors, help names each command once,
 * and no text of node's parseArgs reaches the user.
 */
import assert from "node:assert/strict";
import { type Command, formatHelp, nearestNames, parseCommandArgs } from "../cli/command.ts";
import { UsageError } from "../src/errors.ts";
import { runCli } from "./helpers.ts";

const demo: Command = {
  name: "demo",
  summary: "a demo",
  usage: "demo [options]",
  options: {
    seed: { type: "string", valueName: "S", default: "0", description: "seed" },
    cfg: { type: "string", valueName: "W", description: "guidance" },
    "steps-per-scale": { type: "string", valueName: "P", description: "steps" },
    json: { type: "boolean", description: "json" },
    tag: { type: "string", multiple: true, description: "tags" },
  },
  run: () => Promise.resolve(),
};

function usageMessage(argv: string[]): string {
  try {
    parseCommandArgs(demo, argv);
  } catch (err) {
    assert.ok(err instanceof UsageError, `${argv.join(" ")}: ${err}`);
    return err.message;
  }
  assert.fail(`${argv.join(" ")} was accepted`);
}

Deno.test("a negative number is an option's value, spaced or with '='", () => {
  const r = parseCommandArgs(demo, ["--seed", "-1", "--cfg", "-2.5"])!;
  assert.equal(r.values.seed, "-1");
  assert.equal(r.values.cfg, "-2.5");
  assert.equal(parseCommandArgs(demo, ["--cfg=-1e3"])!.values.cfg, "-1e3");
  assert.equal(parseCommandArgs(demo, ["--cfg", "-.5"])!.values.cfg, "-.5");
});

Deno.test("defaults, switches, repeated options and '--'", () => {
  const r = parseCommandArgs(demo, ["--json", "--tag", "a", "--tag=b"])!;
  assert.deepEqual(r.values, { seed: "0", json: true, tag: ["a", "b"] });
  assert.deepEqual(r.positionals, []);
  assert.equal(parseCommandArgs(demo, ["--seed", "1", "--seed", "2"])!.values.seed, "2");
  assert.equal(parseCommandArgs(demo, ["--cfg", ""])!.values.cfg, "");
});

Deno.test("an unknown option names the nearest valid one", () => {
  assert.equal(
    usageMessage(["--step", "4"]),
    "demo: unknown option '--step'; did you mean '--steps-per-scale'?",
  );
  assert.equal(
    usageMessage(["--sede", "4"]),
    "demo: unknown option '--sede'; did you mean '--seed'?",
  );
  assert.equal(usageMessage(["--jsn"]), "demo: unknown option '--jsn'; did you mean '--json'?");
  assert.equal(
    usageMessage(["--zzzzzzzz"]),
    "demo: unknown option '--zzzzzzzz'; see 'checkerboard demo --help'",
  );
  assert.equal(usageMessage(["-q"]), "demo: unknown option '-q'; see 'checkerboard demo --help'");
  assert.deepEqual(nearestNames("step", ["seed", "steps-per-scale"]), ["steps-per-scale"]);
});

Deno.test("a stray argument is a usage error, with a hint after a list option", () => {
  assert.equal(
    usageMessage(["extra"]),
    "demo: unexpected argument 'extra'; 'demo' takes no arguments besides options (--name VALUE)",
  );
  assert.equal(
    usageMessage(["--steps-per-scale", "1", "2"]),
    "demo: unexpected argument '2' (--steps-per-scale takes one value; write a list with commas, " +
      "e.g. --steps-per-scale 1,2)",
  );
  assert.match(usageMessage(["--", "x"]), /unexpected argument 'x'/);
  const takes: Command = { ...demo, positionals: true };
  assert.deepEqual(parseCommandArgs(takes, ["a", "--json", "--", "-b"])!.positionals, ["a", "-b"]);
});

Deno.test("missing values and values given to switches", () => {
  assert.equal(usageMessage(["--seed"]), "demo: --seed needs a value (--seed S)");
  assert.equal(
    usageMessage(["--seed", "--json"]),
    "demo: --seed needs a value (--seed S), got the option '--json'",
  );
  assert.equal(
    usageMessage(["--json=yes"]),
    "demo: --json is a switch and takes no value (got 'yes')",
  );
});

Deno.test("help names a sub-command's path once, whatever its usage line starts with", () => {
  const sub = (usage: string): Command => ({ ...demo, name: "sample", usage });
  for (const usage of ["bench sample [--x]", "sample [--x]", "[--x]"]) {
    assert.match(
      formatHelp(sub(usage), "checkerboard bench"),
      /^Usage: checkerboard bench sample \[--x\]$/m,
      usage,
    );
  }
});

Deno.test("help keeps a usage's further lines as written", () => {
  const two: Command = { ...demo, usage: "demo --a\n       checkerboard demo --b" };
  assert.match(formatHelp(two), /^Usage: checkerboard demo --a\n {7}checkerboard demo --b$/m);
});

Deno.test("through the CLI: bench sample --help, --seed -1, and no parseArgs text", async () => {
  const help = await runCli(["bench", "sample", "--help"]);
  assert.equal(help.code, 0, help.stderr);
  assert.match(help.stdout, /^Usage: checkerboard bench sample \[--model/m);
  assert.doesNotMatch(help.stdout, /bench bench/);

  const seed = await runCli(["order", "--size", "4", "--seed", "-1"]);
  assert.equal(seed.code, 2);
  assert.equal(seed.stderr.trim(), "checkerboard: error: --seed must be at least 0, got -1");

  for (
    const args of [
      ["sample", "--cfg", "-1"],
      ["sample", "stray"],
      ["order", "--size"],
      ["info", "--json=1"],
      ["tokenizer", "fit", "--bogus"],
    ]
  ) {
    const r = await runCli(args);
    assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
    const lines = r.stderr.trim().split("\n");
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0], /^checkerboard: error: /);
    assert.doesNotMatch(lines[0], /ambiguous|ERR_PARSE_ARGS|parseArgs|undefined|null|\[object/);
  }
  const cfg = await runCli(["sample", "--cfg", "-1"]);
  assert.equal(cfg.stderr.trim(), "checkerboard: error: --cfg must be in [0, 100], got -1");

  const unknown = await runCli(["ordr"]);
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /unknown command 'ordr' .*; did you mean 'order'\?/);
});
