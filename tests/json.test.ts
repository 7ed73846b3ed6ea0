/** The strict JSON reader: JSON.parse's results on valid JSON, and duplicate keys refused. */
import assert from "node:assert/strict";
import { MAX_DEPTH, parseJsonStrict } from "../src/util/json.ts";
import { UserError } from "../src/errors.ts";

Deno.test("valid JSON parses exactly as JSON.parse parses it", () => {
  const texts = [
    "{}",
    "[]",
    ' { "a" : [1, -2.5e3, 0, -0, 1E+2, 3.25e-2], "b": {"c": null, "d": true, "e": false} } ',
    '"\\u00e9\\ud83d\\ude00 \\" \\\\ \\/ \\b\\f\\n\\r\\t"',
    '{"__proto__": {"x": 1}, "constructor": 2}',
    '\n\t[ "x" ,\r\n"y" ]',
    "12345678901234567890",
    "1e400",
    '"é ünïcödé 😀"',
    '{"": ""}',
  ];
  for (const text of texts) {
    const ours = parseJsonStrict(text, "t.json");
    assert.deepEqual(ours, JSON.parse(text), text);
    assert.equal(JSON.stringify(ours), JSON.stringify(JSON.parse(text)), text);
  }
  // "__proto__" is an ordinary key, not the prototype.
  const o = parseJsonStrict('{"__proto__": {"polluted": true}}', "t.json") as any;
  assert.equal(Object.getPrototypeOf(o), Object.prototype);
  assert.equal(({} as any).polluted, undefined);
  assert.deepEqual(Object.keys(o), ["__proto__"]);
});

Deno.test("invalid JSON and duplicate keys are UserErrors naming the file and the place", () => {
  const cases: [string, RegExp][] = [
    ['{"a": 1, "a": 2}', /duplicate key 'a' at line 1 column 10/],
    ['{"a": {"b": 1,\n  "b": 1}}', /duplicate key 'b' at line 2 column 3/],
    ["", /unexpected end of the text/],
    ["{", /expected a quoted key/],
    ["[1,]", /unexpected character ']'/],
    ["{'a': 1}", /expected a quoted key/],
    ['{"a" 1}', /expected ':'/],
    ["[1 2]", /expected ']'/],
    ["01", /unexpected text after the JSON value/],
    ["1.", /unexpected text after the JSON value/],
    ["NaN", /unexpected character 'N'/],
    ["-", /malformed number/],
    ['"a', /unterminated string/],
    ['"\t"', /control character in a string/],
    ['"\\x"', /malformed escape/],
    ['"\\u12"', /malformed \\u escape/],
    ["tru", /unexpected character 't'/],
    ["{} x", /unexpected text after the JSON value/],
    ["[".repeat(MAX_DEPTH + 2) + "]".repeat(MAX_DEPTH + 2), /nesting deeper than 64 levels/],
    ["[".repeat(100000), /nesting deeper/],
  ];
  for (const [text, pattern] of cases) {
    assert.throws(() => parseJsonStrict(text, "dir/t.json"), (err) => {
      assert.ok(err instanceof UserError, `${text}: ${(err as Error)?.stack}`);
      assert.match(err.message, /^dir\/t\.json: not valid JSON \(/);
      assert.match(err.message, pattern, text.slice(0, 40));
      return true;
    }, text.slice(0, 40));
    // JSON.parse refuses the same texts, except duplicates (the point of this reader) and depth.
    if (!/duplicate|nesting/.test(String(pattern))) assert.throws(() => JSON.parse(text), text);
  }
});
