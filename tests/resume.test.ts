/** The training options a checkpoint records, read back for --resume (src/train/resume.ts). */
import assert from "node:assert/strict";
import { trainOptionsOf } from "../src/train/resume.ts";
import type { CheckpointInfo } from "../src/model/checkpoint.ts";
import { UserError } from "../src/errors.ts";

const training = {
  model: "tiny",
  order: "random",
  stepsChoices: [1, 2, 4],
  batch: 4,
  accum: 2,
  lr: 1e-3,
  warmup: 3,
  lrDrops: [0.9, 0.95],
  classDropout: 0.1,
  seed: 5,
  totalSteps: 20,
  adamw: { beta1: 0.9 },
  data: "d",
};

const info = (t: Record<string, unknown>) => ({ training: t }) as unknown as CheckpointInfo;

Deno.test("a checkpoint's training options are read field by field", () => {
  assert.deepEqual(trainOptionsOf(info(training), "run/train-state.safetensors"), {
    order: "random",
    stepsChoices: [1, 2, 4],
    batch: 4,
    accum: 2,
    lr: 1e-3,
    warmup: 3,
    lrDrops: [0.9, 0.95],
    totalSteps: 20,
    classDropout: 0.1,
    seed: 5,
  });
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ batch: undefined }, /'training\.batch' is missing/],
    [{ batch: 0 }, /'training\.batch' must be at least 1, got 0/],
    [{ accum: "2" }, /'training\.accum' must be an integer, got the text '2'/],
    [{ lr: null }, /'training\.lr' must be a number, got an empty JSON value/],
    [{ order: "spiral" }, /'training\.order' must be one of/],
    [{ stepsChoices: [] }, /'training\.stepsChoices' must have at least 1 entry/],
    [{ stepsChoices: [1, 0] }, /'training\.stepsChoices\[1\]' must be at least 1/],
    [{ lrDrops: [0.95, 0.9] }, /'training\.lrDrops' must be increasing fractions in \(0, 1\)/],
    [{ classDropout: 2 }, /'training\.classDropout' must be at most 1/],
    [{ totalSteps: 1.5 }, /'training\.totalSteps' must be an integer/],
    [{ seed: -1 }, /'training\.seed' must be at least 0/],
  ];
  for (const [edit, pattern] of cases) {
    assert.throws(
      () => trainOptionsOf(info({ ...training, ...edit }), "run/train-state.safetensors"),
      (e: Error) => {
        assert.ok(e instanceof UserError, String(e));
        assert.match(e.message, /^run\/train-state\.safetensors: /);
        assert.match(e.message, pattern);
        assert.doesNotMatch(e.message, /undefined|(?<!JSON )\bnull\b|\[object Object\]/);
        return true;
      },
      JSON.stringify(edit),
    );
  }
});
