import assert from "node:assert/strict";
import { UsageError } from "../src/errors.ts";
import { blockOfRank, blockSizes, stepsPerScale, totalSteps } from "../src/plan/blocks.ts";

Deno.test("blockSizes: examples", () => {
  assert.deepEqual(blockSizes(16, 4), [4, 4, 4, 4]);
  assert.deepEqual(blockSizes(10, 4), [2, 2, 3, 3]);
  assert.deepEqual(blockSizes(1, 4), [1]);
  assert.deepEqual(blockSizes(4, 4), [1, 1, 1, 1]);
  assert.deepEqual(blockSizes(25, 4), [6, 6, 6, 7]);
  assert.deepEqual(blockSizes(7, 100), [1, 1, 1, 1, 1, 1, 1]);
});

Deno.test("blockSizes: min(P, count) blocks, sum count, non-decreasing, spread <= 1", () => {
  for (let count = 1; count <= 70; count++) {
    for (let p = 1; p <= 80; p++) {
      const sizes = blockSizes(count, p);
      assert.equal(sizes.length, Math.min(p, count));
      assert.equal(sizes.reduce((a, b) => a + b, 0), count);
      for (let i = 1; i < sizes.length; i++) assert.ok(sizes[i] >= sizes[i - 1]);
      assert.ok(sizes[sizes.length - 1] - sizes[0] <= 1);
    }
  }
});

Deno.test("blockSizes rejects P < 1 with a UsageError", () => {
  assert.throws(() => blockSizes(16, 0), UsageError);
  assert.throws(() => blockSizes(16, -1), UsageError);
  assert.throws(() => blockSizes(16, 1.5), UsageError);
});

Deno.test("blockOfRank follows blockSizes", () => {
  assert.deepEqual([...blockOfRank(10, 4)], [0, 0, 1, 1, 2, 2, 2, 3, 3, 3]);
  assert.deepEqual([...blockOfRank(3, 1)], [0, 0, 0]);
});

Deno.test("stepsPerScale expands P, clamps to s^2 and validates lists", () => {
  const scales = [1, 2, 4, 8, 16];
  assert.deepEqual(stepsPerScale(scales, 4), [1, 4, 4, 4, 4]);
  assert.deepEqual(stepsPerScale(scales, [1, 2, 3, 4, 100]), [1, 2, 3, 4, 100]);
  assert.deepEqual(stepsPerScale(scales, [9, 9, 9, 9, 9]), [1, 4, 9, 9, 9]);
  assert.throws(() => stepsPerScale(scales, [1, 2]), UsageError);
  assert.throws(() => stepsPerScale(scales, [1, 2, 0, 4, 4]), UsageError);
  assert.throws(() => stepsPerScale(scales, 0), UsageError);
});

Deno.test("total steps: 17 for ratio 2, N = 16, P = 4 (the paper's 1+4+4+4+4)", () => {
  assert.equal(totalSteps([1, 2, 4, 8, 16], 4), 17);
  assert.equal(totalSteps([16], 8), 8);
});
