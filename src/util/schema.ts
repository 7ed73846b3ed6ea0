/**
 * Reading a parsed JSON value (a manifest, tokenizer.json, safetensors metadata) against what
 * its format expects: every field's presence, type and range. Each failure is a UserError that
 * names the file and the field's path and shows what was found, e.g.
 * `out/d/manifest.json: 'tokenizer.path' must be a string, got 3`.
 * One reader per format lives beside the format's code and is the only place it is checked.
 */
import { UserError } from "../errors.ts";

/** A short description of a found value for messages: never "undefined" or "[object Object]". */
export function describeValue(value: unknown): string {
  if (value === undefined) return "nothing";
  if (value === null) return "an empty JSON value";
  if (Array.isArray(value)) return `a list of ${value.length}`;
  if (typeof value === "object") return "an object";
  if (typeof value === "string") {
    return value.length > 40 ? `the text '${value.slice(0, 40)}...'` : `the text '${value}'`;
  }
  if (typeof value === "number" && !Number.isFinite(value)) return String(value);
  return String(value);
}

interface Range {
  min?: number;
  max?: number;
}

/** The fields of one JSON object, read and checked one by one. */
export class Fields {
  private constructor(
    private readonly record: Record<string, unknown>,
    readonly file: string,
    private readonly prefix: string,
  ) {}

  /** `value` as an object (not null, not a list); `what` names it in the message. */
  static of(value: unknown, file: string, what = "the file", prefix = ""): Fields {
    if (value === null || typeof value !== "object" || Array.isArray(value)) {
      throw new UserError(`${file}: ${what} must be a JSON object, got ${describeValue(value)}`);
    }
    return new Fields(value as Record<string, unknown>, file, prefix);
  }

  /** A failure about field `key`: `FILE: 'a.b' must be ..., got ...`. */
  fail(key: string, must: string, got?: unknown): never {
    const found = arguments.length > 2 ? `, got ${describeValue(got)}` : "";
    throw new UserError(`${this.file}: '${this.prefix}${key}' ${must}${found}`);
  }

  has(key: string): boolean {
    return this.record[key] !== undefined;
  }

  raw(key: string): unknown {
    return this.record[key];
  }

  private present(key: string): unknown {
    const v = this.record[key];
    if (v === undefined) this.fail(key, "is missing");
    return v;
  }

  /** A nested object. */
  object(key: string): Fields {
    const v = this.present(key);
    if (v === null || typeof v !== "object" || Array.isArray(v)) {
      this.fail(key, "must be an object", v);
    }
    return new Fields(v as Record<string, unknown>, this.file, `${this.prefix}${key}.`);
  }

  string(key: string, { nonEmpty = false } = {}): string {
    const v = this.present(key);
    if (typeof v !== "string") this.fail(key, "must be a text", v);
    if (nonEmpty && v === "") this.fail(key, "must not be empty");
    return v as string;
  }

  /** One of a fixed set of texts. */
  choice<T extends string>(key: string, choices: readonly T[]): T {
    const v = this.present(key);
    if (typeof v !== "string" || !(choices as readonly string[]).includes(v)) {
      this.fail(key, `must be one of ${choices.map((c) => `'${c}'`).join(", ")}`, v);
    }
    return v as T;
  }

  /** Exactly `expected` (a format tag or version). */
  literal<T extends string | number>(key: string, expected: T): T {
    const v = this.present(key);
    if (v !== expected) this.fail(key, `must be ${JSON.stringify(expected)}`, v);
    return expected;
  }

  number(key: string, range: Range = {}): number {
    const v = this.present(key);
    if (typeof v !== "number" || !Number.isFinite(v)) this.fail(key, "must be a number", v);
    return this.inRange(key, v as number, range);
  }

  int(key: string, range: Range = {}): number {
    const v = this.present(key);
    if (typeof v !== "number" || !Number.isSafeInteger(v)) this.fail(key, "must be an integer", v);
    return this.inRange(key, v as number, range);
  }

  bool(key: string): boolean {
    const v = this.present(key);
    if (typeof v !== "boolean") this.fail(key, "must be true or false", v);
    return v as boolean;
  }

  /** A list; `item` checks and converts each element (its index names it in messages). */
  list<T>(key: string, item: (value: unknown, at: string) => T, { minLength = 0 } = {}): T[] {
    const v = this.present(key);
    if (!Array.isArray(v)) this.fail(key, "must be a list", v);
    const items = v as unknown[];
    if (items.length < minLength) {
      this.fail(key, `must have at least ${minLength} ${minLength === 1 ? "entry" : "entries"}`);
    }
    return items.map((x, i) => item(x, `${key}[${i}]`));
  }

  intList(key: string, range: Range = {}, { minLength = 0 } = {}): number[] {
    return this.list(key, (x, at) => {
      if (typeof x !== "number" || !Number.isSafeInteger(x)) this.fail(at, "must be an integer", x);
      return this.inRange(at, x as number, range);
    }, { minLength });
  }

  numberList(key: string, range: Range = {}, { minLength = 0 } = {}): number[] {
    return this.list(key, (x, at) => {
      if (typeof x !== "number" || !Number.isFinite(x)) this.fail(at, "must be a number", x);
      return this.inRange(at, x as number, range);
    }, { minLength });
  }

  stringList(key: string, { minLength = 0, nonEmpty = false } = {}): string[] {
    return this.list(key, (x, at) => {
      if (typeof x !== "string") this.fail(at, "must be a text", x);
      if (nonEmpty && x === "") this.fail(at, "must not be empty");
      return x as string;
    }, { minLength });
  }

  /** A list of objects, each read by `item`. */
  objectList<T>(key: string, item: (fields: Fields) => T, { minLength = 0 } = {}): T[] {
    return this.list(
      key,
      (x, at) => item(Fields.of(x, this.file, `'${this.prefix}${at}'`, `${this.prefix}${at}.`)),
      { minLength },
    );
  }

  private inRange(key: string, v: number, { min, max }: Range): number {
    if (min !== undefined && v < min) this.fail(key, `must be at least ${min}`, v);
    if (max !== undefined && v > max) this.fail(key, `must be at most ${max}`, v);
    return v;
  }
}
