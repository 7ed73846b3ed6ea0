/**
 * JSON field edits, for JSON files and for the JSON inside safetensors headers and metadata:
 * delete a field, set it to null, a number, a text, a list, an object or another value of its
 * own type, give an object a key twice, or break the text itself.
 */
import type { FuzzRng } from "./rng.ts";

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type Path = (string | number)[];

/** An edit chosen in advance (a format's known pitfalls): set `path` to `value`, or delete it. */
export interface TargetedEdit {
  path: Path;
  value?: Json;
  delete?: boolean;
  /** The edit makes the file invalid: exit 0 without a warning is SILENT ACCEPT (default true). */
  refuse?: boolean;
}

export interface JsonEdit {
  text: string;
  what: string;
  mustRefuse?: boolean;
}

function describePath(path: Path): string {
  if (path.length === 0) return "the whole document";
  return path.map((p, i) => (typeof p === "number" ? `[${p}]` : i === 0 ? p : `.${p}`)).join("");
}

function short(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

// Replacement texts avoid the words the judge looks for (null, NaN, undefined), so that a
// message quoting them back is not mistaken for a bad message.

/** Every node's path, the root first. */
function allPaths(value: Json, prefix: Path = [], out: Path[] = []): Path[] {
  out.push(prefix);
  if (Array.isArray(value)) value.forEach((v, i) => allPaths(v, [...prefix, i], out));
  else if (value !== null && typeof value === "object") {
    for (const [k, v] of Object.entries(value)) allPaths(v, [...prefix, k], out);
  }
  return out;
}

function getAt(root: Json, path: Path): Json {
  let v: any = root;
  for (const p of path) v = v?.[p];
  return v;
}

/** Sets (or with `remove`, deletes) the node at a non-empty path, creating objects on the way. */
function setAt(root: Json, path: Path, value: Json | undefined, remove = false): void {
  let parent: any = root;
  for (const p of path.slice(0, -1)) {
    if (parent[p] === null || typeof parent[p] !== "object") parent[p] = {};
    parent = parent[p];
  }
  const last = path[path.length - 1];
  if (remove) {
    if (Array.isArray(parent) && typeof last === "number") parent.splice(last, 1);
    else delete parent[last];
  } else parent[last] = value;
}

/** A value of another kind, or another value of the same kind, for a node holding `v`. */
function replacementFor(rng: FuzzRng, v: Json, root: Json): Json {
  const others: Json[] = [
    null,
    0,
    -1,
    1.5,
    1e308,
    -1e308,
    2 ** 53 + 2,
    "",
    "x",
    "1e999", // a text that Number() reads as Infinity
    [],
    [null],
    {},
    true,
    "x".repeat(5000),
  ];
  if (rng.chance(0.45)) return rng.pick(others);
  if (typeof v === "number") {
    return rng.pick([
      v + 1,
      v - 1,
      -v,
      0,
      v * 1000,
      v + 0.5,
      2 * v,
      v === 1 ? 2 : 1,
      65536,
      2 ** 31,
    ]);
  }
  if (typeof v === "string") {
    const texts = allPaths(root).map((p) => getAt(root, p)).filter((x) => typeof x === "string");
    return rng.pick([
      "",
      `${v}x`,
      v.toUpperCase(),
      "../../nowhere",
      "/dev/zero",
      rng.pick(texts) as string,
      String(Number(v) + 1),
      " " + v,
    ]);
  }
  if (Array.isArray(v)) {
    const a = structuredClone(v);
    const op = rng.int(5);
    if (op === 0 || a.length === 0) return [];
    if (op === 1) return a.slice(1);
    if (op === 2) return [...a, a[a.length - 1]];
    if (op === 3) return [...a].reverse();
    return [...a, null];
  }
  if (v !== null && typeof v === "object") return rng.chance(0.5) ? {} : { ...v, unexpected: 1 };
  if (typeof v === "boolean") return !v;
  return rng.pick(others);
}

/** JSON text; `dup` makes the object `dup.owner` carry `dup.key` a second time with `dup.value`. */
function stringify(value: Json, dup?: { owner: object; key: string; value: Json }): string {
  if (value === null || typeof value !== "object") return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map((v) => stringify(v, dup)).join(",")}]`;
  const members = Object.entries(value).map(([k, v]) =>
    `${JSON.stringify(k)}:${stringify(v, dup)}`
  );
  if (dup && dup.owner === value) {
    members.push(`${JSON.stringify(dup.key)}:${stringify(dup.value)}`);
  }
  return `{${members.join(",")}}`;
}

/** Breaks the text rather than a field. */
function textEdit(rng: FuzzRng, text: string): JsonEdit {
  const op = rng.int(7);
  if (op === 0) return { text: "", what: "empty text" };
  if (op === 1) {
    const n = rng.int(text.length);
    return { text: text.slice(0, n), what: `text cut to ${n} of ${text.length} characters` };
  }
  if (op === 2) {
    return { text: text + rng.pick(["}", " x", "\n{}", ","]), what: "trailing garbage" };
  }
  if (op === 3) return { text: "\ufeff" + text, what: "byte-order mark before the text" };
  if (op === 4) return { text: "[".repeat(100000), what: "100000 nested lists" };
  if (op === 5) {
    const v = rng.pick(["null", "[]", "3", '"x"', "true", "{}"]);
    return { text: v, what: `whole document replaced by ${v}` };
  }
  const p = rng.int(text.length);
  return {
    text: text.slice(0, p) + rng.pick(["'", "NaN", "Infinity", "\u0000", "//", "\\"]) +
      text.slice(p),
    what: `invalid token inserted at character ${p}`,
  };
}

/**
 * One edit of `root` (which is not changed), as JSON text. `targeted` edits are picked a
 * 40% of the time, `textLevel` allows breaking the syntax (not wanted where the caller
 * must keep the outer format parseable).
 */
export function editJson(
  rng: FuzzRng,
  root: Json,
  { targeted = [], textLevel = true }: { targeted?: TargetedEdit[]; textLevel?: boolean } = {},
): JsonEdit {
  const value = structuredClone(root);
  if (textLevel && rng.chance(0.1)) return textEdit(rng, JSON.stringify(root, null, 2));
  if (targeted.length > 0 && rng.chance(0.4)) {
    const t = rng.pick(targeted);
    const mustRefuse = t.refuse ?? true;
    if (t.path.length === 0) {
      return { text: stringify(t.value ?? null), what: `document = ${short(t.value)}`, mustRefuse };
    }
    setAt(value, t.path, t.value, t.delete);
    const what = t.delete
      ? `delete ${describePath(t.path)}`
      : `${describePath(t.path)} = ${short(t.value)}`;
    // An edit that changed nothing (a 1-D shape "reversed") leaves a valid file.
    return {
      text: stringify(value),
      what,
      mustRefuse: mustRefuse && stringify(value) !== stringify(root),
    };
  }
  const paths = allPaths(value);
  const path = rng.pick(paths);
  const old = getAt(value, path);
  const objects = paths.filter((p) => {
    const v = getAt(value, p);
    return v !== null && typeof v === "object" && !Array.isArray(v) && Object.keys(v).length > 0;
  });
  const op = rng.int(10);
  if (op === 0 && objects.length > 0) {
    const ownerPath = rng.pick(objects);
    const owner = getAt(value, ownerPath) as Record<string, Json>;
    const key = rng.pick(Object.keys(owner));
    const second = replacementFor(rng, owner[key], value);
    return {
      text: stringify(value, { owner, key, value: second }),
      what: `duplicate key ${describePath([...ownerPath, key])}, second = ${short(second)}`,
      mustRefuse: true,
    };
  }
  if (path.length === 0) {
    const v = rng.pick<Json>([null, [], 3, "x", [value]]);
    return { text: stringify(v), what: `document = ${short(v)}` };
  }
  if (op <= 2) {
    setAt(value, path, undefined, true);
    return { text: stringify(value), what: `delete ${describePath(path)}` };
  }
  if (op === 3 && old !== null && typeof old === "object" && !Array.isArray(old)) {
    setAt(value, [...path, "unexpected"], 1);
    return {
      text: stringify(value),
      what: `add unknown key ${describePath([...path, "unexpected"])}`,
    };
  }
  const replacement = replacementFor(rng, old, value);
  setAt(value, path, replacement);
  return { text: stringify(value), what: `${describePath(path)} = ${short(replacement)}` };
}
