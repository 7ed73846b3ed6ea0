/**
 * A strict JSON reader for the tool's own formats (manifest.json, tokenizer.json, safetensors
 * headers). It accepts exactly RFC 8259 JSON, like JSON.parse, but also refuses an object with
 * the same key twice (JSON.parse silently keeps the last one, so an edited file could say two
 * things) and nesting deeper than MAX_DEPTH (no stack overflow on "[[[[..."). Failures are
 * UserErrors naming the file, the line and the column.
 */
import { UserError } from "../errors.ts";
import { fileSystemError } from "./files.ts";

/** Deeper nesting than any of the tool's formats needs; refused rather than recursed into. */
export const MAX_DEPTH = 64;

class JsonSyntaxError extends Error {}

class Parser {
  private pos = 0;

  constructor(private readonly text: string) {}

  parseDocument(): unknown {
    this.skipSpace();
    const value = this.value(0);
    this.skipSpace();
    if (this.pos < this.text.length) this.fail("unexpected text after the JSON value");
    return value;
  }

  /** Line and column (1-based) of the current position. */
  where(): string {
    const before = this.text.slice(0, this.pos);
    const line = before.split("\n").length;
    const column = this.pos - before.lastIndexOf("\n");
    return `line ${line} column ${column}`;
  }

  fail(why: string): never {
    throw new JsonSyntaxError(`${why} at ${this.where()}`);
  }

  private skipSpace() {
    const t = this.text;
    while (this.pos < t.length) {
      const c = t.charCodeAt(this.pos);
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) this.pos++;
      else break;
    }
  }

  private value(depth: number): unknown {
    if (depth > MAX_DEPTH) this.fail(`nesting deeper than ${MAX_DEPTH} levels`);
    const c = this.text[this.pos];
    if (c === "{") return this.object(depth);
    if (c === "[") return this.array(depth);
    if (c === '"') return this.string();
    if (c === "-" || (c >= "0" && c <= "9")) return this.number();
    for (const [word, v] of [["true", true], ["false", false], ["null", null]] as const) {
      if (this.text.startsWith(word, this.pos)) {
        this.pos += word.length;
        return v;
      }
    }
    this.fail(c === undefined ? "unexpected end of the text" : `unexpected character '${c}'`);
  }

  private expect(c: string) {
    if (this.text[this.pos] !== c) {
      const found = this.text[this.pos];
      this.fail(found === undefined ? `expected '${c}', found the end` : `expected '${c}'`);
    }
    this.pos++;
  }

  private object(depth: number): Record<string, unknown> {
    this.pos++; // {
    const out: Record<string, unknown> = {};
    const seen = new Set<string>();
    this.skipSpace();
    if (this.text[this.pos] === "}") {
      this.pos++;
      return out;
    }
    for (;;) {
      this.skipSpace();
      if (this.text[this.pos] !== '"') this.fail("expected a quoted key");
      const keyAt = this.pos;
      const key = this.string();
      if (seen.has(key)) {
        this.pos = keyAt;
        this.fail(`duplicate key '${key.length > 40 ? key.slice(0, 40) + "..." : key}'`);
      }
      seen.add(key);
      this.skipSpace();
      this.expect(":");
      this.skipSpace();
      const v = this.value(depth + 1);
      // defineProperty, as JSON.parse does: a key "__proto__" is an ordinary key, no prototype.
      if (key === "__proto__") {
        Object.defineProperty(out, key, {
          value: v,
          enumerable: true,
          writable: true,
          configurable: true,
        });
      } else out[key] = v;
      this.skipSpace();
      if (this.text[this.pos] === ",") {
        this.pos++;
        continue;
      }
      this.expect("}");
      return out;
    }
  }

  private array(depth: number): unknown[] {
    this.pos++; // [
    const out: unknown[] = [];
    this.skipSpace();
    if (this.text[this.pos] === "]") {
      this.pos++;
      return out;
    }
    for (;;) {
      this.skipSpace();
      out.push(this.value(depth + 1));
      this.skipSpace();
      if (this.text[this.pos] === ",") {
        this.pos++;
        continue;
      }
      this.expect("]");
      return out;
    }
  }

  private static readonly NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;

  private number(): number {
    const re = Parser.NUMBER;
    re.lastIndex = this.pos;
    const m = re.exec(this.text);
    if (!m) this.fail("malformed number");
    this.pos += m[0].length;
    return Number(m[0]);
  }

  private string(): string {
    const t = this.text;
    this.pos++; // opening quote
    let out = "";
    let start = this.pos;
    for (;;) {
      if (this.pos >= t.length) this.fail("unterminated string");
      const c = t.charCodeAt(this.pos);
      if (c === 0x22) { // closing quote
        out += t.slice(start, this.pos);
        this.pos++;
        return out;
      }
      if (c < 0x20) this.fail("control character in a string");
      if (c !== 0x5c) { // not a backslash
        this.pos++;
        continue;
      }
      out += t.slice(start, this.pos);
      const e = t[this.pos + 1];
      const simple: Record<string, string> = {
        '"': '"',
        "\\": "\\",
        "/": "/",
        b: "\b",
        f: "\f",
        n: "\n",
        r: "\r",
        t: "\t",
      };
      if (e !== undefined && e in simple) {
        out += simple[e];
        this.pos += 2;
      } else if (e === "u") {
        const hex = t.slice(this.pos + 2, this.pos + 6);
        if (!/^[0-9a-fA-F]{4}$/.test(hex)) this.fail("malformed \\u escape");
        out += String.fromCharCode(parseInt(hex, 16));
        this.pos += 6;
      } else {
        this.fail("malformed escape");
      }
      start = this.pos;
    }
  }
}

/**
 * Parses `text` as strict JSON; `file` names it in the UserError, e.g.
 * `m/manifest.json: not valid JSON (duplicate key 'codes' at line 3 column 3)`.
 */
export function parseJsonStrict(text: string, file: string): unknown {
  const parser = new Parser(text);
  try {
    return parser.parseDocument();
  } catch (err) {
    if (err instanceof JsonSyntaxError) {
      throw new UserError(`${file}: not valid JSON (${err.message})`);
    }
    throw err;
  }
}

/**
 * Reads and strictly parses a JSON file. A missing file is `FILE: not found (HINT)`; a file that
 * cannot be read or is not UTF-8 text is one clear line too.
 */
export async function readJsonStrict(path: string, hint: string): Promise<unknown> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) throw new UserError(`${path}: not found (${hint})`);
    throw fileSystemError(err, `cannot read ${path}`);
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new UserError(`${path}: not valid JSON (not UTF-8 text)`);
  }
  return parseJsonStrict(text, path);
}
