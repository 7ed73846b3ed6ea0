/** Typed readers for option values; each bad value becomes a UsageError naming the option. */
import { UsageError } from "../src/errors.ts";
import type { OptionValues } from "./command.ts";

export function stringOption(values: OptionValues, name: string): string | undefined {
  const v = values[name];
  return typeof v === "string" ? v : undefined;
}

/** Every value of an option declared `multiple` (empty when it was not given). */
export function stringListOption(values: OptionValues, name: string): string[] {
  const v = values[name];
  return Array.isArray(v) ? v : typeof v === "string" ? [v] : [];
}

export function requiredString(values: OptionValues, name: string): string {
  const v = stringOption(values, name);
  if (v === undefined || v === "") throw new UsageError(`--${name} is required`);
  return v;
}

export function parseInteger(text: string, label: string, min = -Infinity, max = Infinity): number {
  const n = Number(text);
  if (!/^[+-]?\d+$/.test(text.trim()) || !Number.isSafeInteger(n)) {
    throw new UsageError(`${label} must be an integer, got '${text}'`);
  }
  if (n < min) throw new UsageError(`${label} must be at least ${min}, got ${n}`);
  if (n > max) throw new UsageError(`${label} must be at most ${max}, got ${n}`);
  return n;
}

export function intOption(
  values: OptionValues,
  name: string,
  { min = -Infinity, max = Infinity, required = false } = {},
): number | undefined {
  const v = stringOption(values, name);
  if (v === undefined) {
    if (required) throw new UsageError(`--${name} is required`);
    return undefined;
  }
  return parseInteger(v, `--${name}`, min, max);
}

export function floatOption(
  values: OptionValues,
  name: string,
  { min = -Infinity, max = Infinity } = {},
): number | undefined {
  const v = stringOption(values, name);
  if (v === undefined) return undefined;
  const n = Number(v);
  if (v.trim() === "" || !Number.isFinite(n)) {
    throw new UsageError(`--${name} must be a number, got '${v}'`);
  }
  if (n < min || n > max) throw new UsageError(`--${name} ${rangeText(min, max)}, got ${n}`);
  return n;
}

/** "must be in [0, 1]", "must be at least 0" or "must be at most 5": no Infinity in messages. */
function rangeText(min: number, max: number): string {
  if (Number.isFinite(min) && Number.isFinite(max)) return `must be in [${min}, ${max}]`;
  if (Number.isFinite(min)) return `must be at least ${min}`;
  return `must be at most ${max}`;
}

/**
 * A comma-separated list of integers, e.g. `--steps-per-scale 1,2,4,8`: the one list separator of
 * every command. Spaces around entries are allowed; an empty entry or another separator
 * (`1:2`, `1;2`) is a UsageError that says to use commas.
 */
export function intListOption(
  values: OptionValues,
  name: string,
  { min = -Infinity, max = Infinity } = {},
): number[] | undefined {
  const v = stringOption(values, name);
  if (v === undefined) return undefined;
  return parseIntList(v, `--${name}`, { min, max });
}

/** `text` as a comma-separated list of integers (see intListOption). */
export function parseIntList(
  text: string,
  label: string,
  { min = -Infinity, max = Infinity } = {},
): number[] {
  const parts = text.split(",").map((p) => p.trim());
  parts.forEach((part) => {
    if (part === "") {
      throw new UsageError(`${label} must be a comma-separated list of integers, got '${text}'`);
    }
    if (/^[+-]?\d+(\s*[:;|/\s]\s*[+-]?\d+)+$/.test(part)) {
      throw new UsageError(
        `${label}: separate the entries with commas, e.g. '${
          part.split(/\s*[:;|/\s]\s*/).join(",")
        }', got '${text}'`,
      );
    }
  });
  return parts.map((part) => parseInteger(part, label, min, max));
}

export function choiceOption<T extends string>(
  values: OptionValues,
  name: string,
  choices: readonly T[],
): T | undefined {
  const v = stringOption(values, name);
  if (v === undefined) return undefined;
  if (!(choices as readonly string[]).includes(v)) {
    throw new UsageError(`--${name} must be one of ${choices.join(", ")}, got '${v}'`);
  }
  return v as T;
}
