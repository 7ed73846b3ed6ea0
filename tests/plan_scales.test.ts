import assert from "node:assert/strict";
import { UsageError } from "../src/errors.ts";
import {
  parseRatio,
  parseScales,
  scalesForRatio,
  sequenceLength,
  validateScales,
} from "../src/plan/scales.ts";

Deno.test("scalesForRatio gives the DESIGN.md lists for N = 16", () => {
  assert.deepEqual(scalesForRatio(2, 16), [1, 2, 4, 8, 16]);
  assert.deepEqual(scalesForRatio(4, 16), [1, 4, 16]);
  assert.deepEqual(scalesForRatio(3, 16), [1, 2, 5, 16]);
  assert.deepEqual(scalesForRatio(Math.SQRT2, 16), [1, 2, 3, 4, 6, 8, 11, 16]);
  assert.deepEqual(scalesForRatio("single", 16), [16]);
});

Deno.test("scalesForRatio accepts ratio names as strings", () => {
  assert.deepEqual(scalesForRatio("sqrt2", 16), [1, 2, 3, 4, 6, 8, 11, 16]);
  assert.deepEqual(scalesForRatio("2", 16), [1, 2, 4, 8, 16]);
  assert.deepEqual(scalesForRatio("4", 16), [1, 4, 16]);
});

Deno.test("scalesForRatio ends at N, starts at 1 and strictly increases", () => {
  for (const r of [1.05, 1.2, 1.5, Math.SQRT2, 2, 2.5, 3, 4, 7, 100]) {
    for (const n of [1, 2, 3, 5, 7, 12, 16, 31, 32, 64]) {
      const scales = scalesForRatio(r, n);
      assert.equal(scales[0], 1, `r=${r} N=${n}`);
      assert.equal(scales[scales.length - 1], n, `r=${r} N=${n}`);
      validateScales(scales);
    }
  }
  assert.deepEqual(scalesForRatio(2, 1), [1]);
  assert.deepEqual(scalesForRatio("single", 1), [1]);
});

Deno.test("parseRatio reads names and numbers > 1", () => {
  assert.equal(parseRatio("sqrt2"), Math.SQRT2);
  assert.equal(parseRatio("single"), "single");
  assert.equal(parseRatio("2"), 2);
  assert.equal(parseRatio("1.5"), 1.5);
  for (const bad of ["1", "0.5", "-2", "", "two", "NaN", "Infinity"]) {
    assert.throws(() => parseRatio(bad), UsageError, bad);
  }
});

Deno.test("parseScales reads strictly increasing positive integers", () => {
  assert.deepEqual(parseScales("1,2,4,8"), [1, 2, 4, 8]);
  assert.deepEqual(parseScales(" 3, 5 "), [3, 5]);
  assert.deepEqual(parseScales("16"), [16]);
  for (const bad of ["", "1,,2", "1,2,2", "4,2", "0,1", "1,2.5", "a,b", "-1,2"]) {
    assert.throws(() => parseScales(bad), UsageError, bad);
  }
});

Deno.test("sequenceLength counts the class token and every token", () => {
  assert.equal(sequenceLength([1, 2, 4, 8, 16]), 342);
  assert.equal(sequenceLength([16]), 257);
});
