/**
 * A small declarative layer over `node:util` parseArgs: each subcommand states
 * its options once, and the same table drives parsing, defaults and `--help`.
 */
import { parseArgs } from "node:util";
import { UsageError } from "../src/errors.ts";

export interface OptionSpec {
  type: "string" | "boolean";
  description: string;
  /** Shown in help as `--name VALUE`. */
  valueName?: string;
  default?: string | boolean;
  short?: string;
  /** The option may be given several times; its value is then a list (string options only). */
  multiple?: boolean;
}

export type OptionValues = Record<string, string | boolean | string[] | undefined>;

export interface Command {
  name: string;
  summary: string;
  /** Usage line after `checkerboard `, e.g. `order --size N [--json]`. */
  usage: string;
  /** Free text printed after the options (examples, notes). */
  details?: string;
  options: Record<string, OptionSpec>;
  /** Commands with sub-commands (e.g. `tokenizer fit`) set this instead of run. */
  subcommands?: Command[];
  run?: (values: OptionValues, positionals: string[]) => Promise<void>;
}

const helpOption: OptionSpec = { type: "boolean", short: "h", description: "show this help" };

export function formatHelp(cmd: Command, prefix = "checkerboard"): string {
  const lines = [`${cmd.summary}`, "", `Usage: ${prefix} ${cmd.usage}`];
  if (cmd.subcommands?.length) {
    lines.push("", "Commands:");
    const width = Math.max(...cmd.subcommands.map((c) => c.name.length));
    for (const sub of cmd.subcommands) lines.push(`  ${sub.name.padEnd(width)}  ${sub.summary}`);
    lines.push("", `Run '${prefix} ${cmd.name} COMMAND --help' for a command's options.`);
  }
  const entries = Object.entries({ ...cmd.options, help: helpOption });
  if (entries.length) {
    lines.push("", "Options:");
    const labels = entries.map(([name, spec]) =>
      `${spec.short ? `-${spec.short}, ` : "    "}--${name}${
        spec.type === "string" ? ` ${spec.valueName ?? "VALUE"}` : ""
      }`
    );
    const width = Math.max(...labels.map((l) => l.length));
    entries.forEach(([, spec], i) => {
      const dflt = spec.default !== undefined && spec.type === "string"
        ? ` (default: ${spec.default})`
        : "";
      lines.push(`  ${labels[i].padEnd(width)}  ${spec.description}${dflt}`);
    });
  }
  if (cmd.details) lines.push("", cmd.details.trimEnd());
  return lines.join("\n");
}

/**
 * Parses `argv` for `cmd`. Returns null when `--help` was given (the help has
 * been printed). Unknown options and missing values become UsageErrors.
 */
export function parseCommandArgs(
  cmd: Command,
  argv: string[],
  prefix = "checkerboard",
): { values: OptionValues; positionals: string[] } | null {
  const options: Record<
    string,
    { type: "string" | "boolean"; short?: string; default?: any; multiple?: boolean }
  > = {};
  for (const [name, spec] of Object.entries({ ...cmd.options, help: helpOption })) {
    // parseArgs rejects `short: undefined`, so only set the keys that are given.
    options[name] = {
      type: spec.type,
      ...(spec.short ? { short: spec.short } : {}),
      ...(spec.default !== undefined ? { default: spec.default } : {}),
      ...(spec.multiple ? { multiple: true } : {}),
    };
  }
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UsageError(`${cmd.name}: ${(err as Error).message.split("\n")[0]}`);
  }
  if (parsed.values.help) {
    console.log(formatHelp(cmd, prefix));
    return null;
  }
  return { values: parsed.values as OptionValues, positionals: parsed.positionals };
}

/** Runs `cmd` (or its sub-command named by the first positional) on argv. */
export async function dispatch(cmd: Command, argv: string[], prefix = "checkerboard") {
  if (cmd.subcommands?.length) {
    const [name, ...rest] = argv;
    if (name === undefined || name === "--help" || name === "-h") {
      console.log(formatHelp(cmd, prefix));
      if (name === undefined) throw new UsageError(`${cmd.name}: a command is required`);
      return;
    }
    const sub = cmd.subcommands.find((c) => c.name === name);
    if (!sub) {
      throw new UsageError(
        `${cmd.name}: unknown command '${name}' (one of: ${
          cmd.subcommands.map((c) => c.name).join(", ")
        })`,
      );
    }
    return await dispatch(sub, rest, `${prefix} ${cmd.name}`);
  }
  const parsed = parseCommandArgs(cmd, argv, prefix);
  if (parsed) await cmd.run!(parsed.values, parsed.positionals);
}
