/**
 * Which classes `sample` draws, as the user names them: `all`, `random`, or a comma list of class
 * indices and class names (`3,7`, `"Smileys & Emotion",Animals & Nature`), checked against the
 * checkpoint's classes; and the file-system-safe form of a class name for image file names.
 */
import { UsageError, UserError } from "../errors.ts";

export type ClassSpec =
  | { kind: "all" }
  | { kind: "random" }
  | { kind: "list"; entries: string[] };

/** Parses `--classes` (no checkpoint needed): empty entries are a UsageError. */
export function parseClassSpec(text: string): ClassSpec {
  const trimmed = text.trim();
  if (trimmed === "all" || trimmed === "random") return { kind: trimmed };
  const entries = trimmed.split(",").map((e) => e.trim().replace(/^(["'])(.*)\1$/, "$2").trim());
  if (entries.some((e) => e === "")) {
    throw new UsageError(
      `--classes must be all, random, or a comma list of class indices or names, got '${text}'`,
    );
  }
  return { kind: "list", entries };
}

/**
 * The class indices of a list spec, in the order given, duplicates dropped. An entry is an
 * index (0..C-1) or a class name (exact, else ignoring case); anything else is a UserError
 * that lists the valid classes of `source` (the checkpoint's path).
 */
export function resolveClasses(
  entries: readonly string[],
  names: readonly string[],
  classCount: number,
  source: string,
): number[] {
  const named = names.length === classCount;
  const plain = !named || names.every((n, c) => n === String(c));
  const listing = plain
    ? ` 0..${classCount - 1}`
    : `: ${names.map((n, c) => `${c} ${n}`).join(", ")}`;
  const out: number[] = [];
  for (const entry of entries) {
    let c = named ? names.indexOf(entry) : -1;
    if (c < 0 && named) {
      const lower = entry.toLowerCase();
      c = names.findIndex((n) => n.toLowerCase() === lower);
    }
    if (c < 0 && /^[+-]?\d+$/.test(entry)) {
      const index = Number(entry);
      if (!(Number.isSafeInteger(index) && index >= 0 && index < classCount)) {
        throw new UserError(
          `--classes: class ${entry} is out of range; ${source} has ${classCount} classes, ` +
            `0..${classCount - 1}${named ? `: ${names.join(", ")}` : ""}`,
        );
      }
      c = index;
    }
    if (c < 0) {
      throw new UserError(
        `--classes: no class '${entry}' in ${source}; its ${classCount} classes are${listing}`,
      );
    }
    if (!out.includes(c)) out.push(c);
  }
  return out;
}

/**
 * A class name as a file-name part: lower case ASCII letters and digits, runs of anything else
 * as one '-', at most 40 characters ("Smileys & Emotion" -> "smileys-emotion"). May be empty.
 */
export function classSlug(name: string): string {
  return name.normalize("NFKD").replace(/[\u0300-\u036f]/g, "").toLowerCase()
    .replace(/[^a-z0-9]+/g, "-").replace(/^-+|-+$/g, "").slice(0, 40).replace(/-+$/, "");
}

/**
 * The file name of image `index` of class `label`: `00012-7.png`, with the class's slug when it
 * says more than the index (`00012-7-seven.png`, `00012-0-smileys-emotion.png`).
 */
export function imageFileName(index: number, label: number, names: readonly string[]): string {
  const slug = classSlug(names[label] ?? "");
  const base = `${String(index).padStart(5, "0")}-${label}`;
  return slug && slug !== String(label) ? `${base}-${slug}.png` : `${base}.png`;
}
