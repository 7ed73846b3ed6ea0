/** `sample` refuses, before allocating, a run that would not fit in memory (src/sample/sampler.ts). */
import assert from "node:assert/strict";
import { checkSampleMemory, sampledCodesBytes } from "../src/sample/sampler.ts";
import { UserError } from "../src/errors.ts";

Deno.test("the memory a run needs is checked against what is available", () => {
  const o = { steps: 4, entropy: true };
  // 1000 images of 85 tokens and 32x32 pixels: codes, steps, entropies, a label; images twice.
  assert.equal(sampledCodesBytes(1000, 85, o), 1000 * (85 * 4 * 3 + 4));
  const need = sampledCodesBytes(1000, 85, o) + 2 * 1000 * 32 * 32 * 3;
  checkSampleMemory(1000, 85, 32, o, need / 0.8 + 1); // fits
  assert.throws(
    () => checkSampleMemory(1_000_000, 85, 32, o, 2 ** 30),
    (err: Error) =>
      err instanceof UserError &&
      err.message === "sampling 1000000 images of 32x32 needs about 6.7 GiB of memory, " +
          "1.0 GiB is available; lower --count or --per-class",
  );
});
