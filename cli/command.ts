/**
 * A small declarative layer for the command line: each subcommand states its options once, and
 * the same table drives parsing, defaults and `--help`. The parser is our own (not parseArgs), so
 * that every mistake gets a message written for the user: a negative number is a value
 * (`--seed -1`), an unknown option gets the nearest valid one suggested, a stray positional
 * argument is a usage error.
 */
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
  /**
   * Usage line, e.g. `order --size N [--json]`. It may start with the command's own name, or with
   * the names above it (`bench sample ...`): help prints the full command path once either way.
   */
  usage: string;
  /** Free text printed after the options (examples, notes). */
  details?: string;
  options: Record<string, OptionSpec>;
  /** Commands with sub-commands (e.g. `tokenizer fit`) set this instead of run. */
  subcommands?: Command[];
  /** Set by a command that takes positional arguments; for the others a stray one is an error. */
  positionals?: boolean;
  run?: (values: OptionValues, positionals: string[]) => Promise<void>;
}

const helpOption: OptionSpec = { type: "boolean", short: "h", description: "show this help" };

/**
 * `cmd.usage` without the leading command names that `path` (e.g. `checkerboard bench sample`)
 * already gives. Only the first line is touched: further lines (other forms) stay as written.
 */
function usageArguments(usage: string, path: string[]): string {
  const [first, ...more] = usage.trim().split("\n");
  const words = first.trim().split(/\s+/);
  let rest = first.trim();
  for (let k = Math.min(path.length, words.length); k >= 1; k--) {
    if (words.slice(0, k).join(" ") === path.slice(path.length - k).join(" ")) {
      rest = words.slice(k).join(" ");
      break;
    }
  }
  return [rest, ...more].join("\n");
}

export function formatHelp(cmd: Command, prefix = "checkerboard"): string {
  const path = [...prefix.split(" "), cmd.name];
  const args = usageArguments(cmd.usage, path);
  const lines = [`${cmd.summary}`, "", `Usage: ${path.join(" ")}${args ? ` ${args}` : ""}`];
  if (cmd.subcommands?.length) {
    lines.push("", "Commands:");
    const width = Math.max(...cmd.subcommands.map((c) => c.name.length));
    for (const sub of cmd.subcommands) lines.push(`  ${sub.name.padEnd(width)}  ${sub.summary}`);
    lines.push("", `Run '${path.join(" ")} COMMAND --help' for a command's options.`);
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
      const again = spec.multiple ? " (may be given several times)" : "";
      lines.push(`  ${labels[i].padEnd(width)}  ${spec.description}${dflt}${again}`);
    });
  }
  if (cmd.details) lines.push("", cmd.details.trimEnd());
  return lines.join("\n");
}

/** Edit distance (insertions, deletions, substitutions) between a and b. */
export function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = row;
  }
  return prev[b.length];
}

/**
 * The valid names a mistyped `name` most likely meant: those it begins (`step` ->
 * `steps-per-scale`), else the nearest by edit distance when that is close enough to be a typo.
 */
export function nearestNames(name: string, valid: readonly string[]): string[] {
  if (name.length >= 2) {
    const extended = valid.filter((v) => v.startsWith(name));
    if (extended.length) return extended.slice(0, 3);
  }
  const scored = valid.map((v) => ({ v, d: editDistance(name, v) }));
  const best = Math.min(...scored.map((s) => s.d));
  if (!(best <= Math.max(2, Math.floor(name.length / 3)))) return [];
  return scored.filter((s) => s.d === best).map((s) => s.v).slice(0, 3);
}

function suggestion(names: string[]): string {
  if (!names.length) return "";
  const quoted = names.map((n) => `'--${n}'`);
  return `; did you mean ${quoted.slice(0, -1).join(", ")}${quoted.length > 1 ? " or " : ""}${
    quoted[quoted.length - 1]
  }?`;
}

/** A token that is an option value although it starts with a dash: a negative number. */
const NEGATIVE_NUMBER = /^-(\d|\.\d|inf(inity)?$|nan$)/i;

/** The usage error of an unknown option `token` (`--name`, `--name=v` or `-x`). */
function unknownOption(
  cmd: Command,
  token: string,
  specs: Record<string, OptionSpec>,
  prefix: string,
): UsageError {
  const name = token.replace(/^-+/, "").split("=")[0];
  const shown = token.split("=")[0];
  const hint = suggestion(nearestNames(name, Object.keys(specs)));
  return new UsageError(
    `${cmd.name}: unknown option '${shown}'${hint || `; see '${prefix} ${cmd.name} --help'`}`,
  );
}

/**
 * Parses `argv` for `cmd`. Returns null when `--help` was given (the help has been printed).
 * Every mistake (unknown option, missing value, stray argument) is a UsageError.
 */
export function parseCommandArgs(
  cmd: Command,
  argv: string[],
  prefix = "checkerboard",
): { values: OptionValues; positionals: string[] } | null {
  const specs: Record<string, OptionSpec> = { ...cmd.options, help: helpOption };
  const byShort = new Map(
    Object.entries(specs).filter(([, s]) => s.short).map(([n, s]) => [s.short!, n]),
  );
  const end = argv.indexOf("--");
  const optionPart = end < 0 ? argv : argv.slice(0, end);
  // --help wins over every other mistake on the line.
  if (optionPart.some((a) => a === "--help" || a === "-h")) {
    console.log(formatHelp(cmd, prefix));
    return null;
  }

  const values: OptionValues = {};
  const positionals: string[] = [];
  let lastOption: string | null = null; // the string option whose value the previous token was
  const set = (name: string, value: string | boolean) => {
    const spec = specs[name];
    if (spec.multiple && typeof value === "string") {
      values[name] = [...(Array.isArray(values[name]) ? values[name] as string[] : []), value];
    } else {
      values[name] = value; // given twice: the last one counts
    }
  };

  for (let i = 0; i < optionPart.length; i++) {
    const token = optionPart[i];
    const isOption = token.startsWith("-") && token !== "-" && !NEGATIVE_NUMBER.test(token);
    if (!isOption) {
      if (!cmd.positionals) {
        const hint = lastOption
          ? ` (--${lastOption} takes one value; write a list with commas, e.g. ` +
            `--${lastOption} ${optionPart[i - 1]},${token})`
          : "";
        throw new UsageError(
          `${cmd.name}: unexpected argument '${token}'` +
            (hint || `; '${cmd.name}' takes no arguments besides options (--name VALUE)`),
        );
      }
      positionals.push(token);
      lastOption = null;
      continue;
    }
    lastOption = null;
    let name: string, inline: string | undefined;
    if (token.startsWith("--")) {
      const eq = token.indexOf("=");
      name = eq < 0 ? token.slice(2) : token.slice(2, eq);
      inline = eq < 0 ? undefined : token.slice(eq + 1);
      if (!Object.hasOwn(specs, name)) throw unknownOption(cmd, token, specs, prefix);
    } else {
      // `-x` or `-xVALUE`: short options are single letters.
      const long = byShort.get(token[1]);
      if (long === undefined) throw unknownOption(cmd, token, specs, prefix);
      name = long;
      inline = token.length > 2 ? token.slice(2) : undefined;
    }
    const spec = specs[name];
    if (spec.type === "boolean") {
      if (inline !== undefined) {
        throw new UsageError(
          `${cmd.name}: --${name} is a switch and takes no value (got '${inline}')`,
        );
      }
      set(name, true);
      continue;
    }
    if (inline === undefined) {
      const next = optionPart[i + 1];
      const nextIsValue = next !== undefined &&
        (!next.startsWith("-") || next === "-" || NEGATIVE_NUMBER.test(next));
      if (!nextIsValue) {
        throw new UsageError(
          `${cmd.name}: --${name} needs a value (--${name} ${spec.valueName ?? "VALUE"})` +
            (next === undefined ? "" : `, got the option '${next}'`),
        );
      }
      inline = next;
      i++;
      lastOption = name;
    }
    set(name, inline);
  }
  if (end >= 0) {
    const rest = argv.slice(end + 1);
    if (rest.length && !cmd.positionals) {
      throw new UsageError(`${cmd.name}: unexpected argument '${rest[0]}'`);
    }
    positionals.push(...rest);
  }
  for (const [name, spec] of Object.entries(specs)) {
    if (values[name] === undefined && spec.default !== undefined) values[name] = spec.default;
  }
  return { values, positionals };
}

/** Runs `cmd` (or its sub-command named by the first argument) on argv. */
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
      const names = cmd.subcommands.map((c) => c.name);
      const near = name.startsWith("-") ? [] : nearestNames(name, names);
      throw new UsageError(
        `${cmd.name}: unknown command '${name}' (one of: ${names.join(", ")})` +
          (near.length ? `; did you mean '${near[0]}'?` : ""),
      );
    }
    return await dispatch(sub, rest, `${prefix} ${cmd.name}`);
  }
  const parsed = parseCommandArgs(cmd, argv, prefix);
  if (parsed) await cmd.run!(parsed.values, parsed.positionals);
}
