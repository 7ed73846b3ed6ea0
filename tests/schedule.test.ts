/** The training schedule (src/train/schedule.ts): lr, P, class dropout, data position. */
import assert from "node:assert/strict";
import {
  dataPosition,
  dropClasses,
  learningRate,
  parseLrDrops,
  sequenceSeeds,
  stepsForBatch,
} from "../src/train/schedule.ts";
import { UsageError } from "../src/errors.ts";

const near = (a: number, b: number) =>
  assert.ok(Math.abs(a - b) <= 1e-12 * Math.abs(b), `${a} vs ${b}`);

Deno.test("lr: linear warmup, then constant, then two drops ending at lr / 10", () => {
  const s = { lr: 1e-4, warmup: 4, drops: [0.9, 0.95], totalSteps: 100 };
  near(learningRate(s, 0), 0.25e-4);
  near(learningRate(s, 1), 0.5e-4);
  near(learningRate(s, 3), 1e-4);
  near(learningRate(s, 50), 1e-4);
  near(learningRate(s, 89), 1e-4);
  near(learningRate(s, 90), 1e-4 * Math.sqrt(0.1));
  near(learningRate(s, 94), 1e-4 * Math.sqrt(0.1));
  near(learningRate(s, 95), 1e-5);
  near(learningRate(s, 99), 1e-5);
  // No warmup, no drops: constant.
  const flat = { lr: 3e-4, warmup: 0, drops: [], totalSteps: 10 };
  for (let t = 0; t < 10; t++) assert.equal(learningRate(flat, t), 3e-4);
  // One drop: straight to lr / 10.
  near(learningRate({ lr: 1, warmup: 0, drops: [0.5], totalSteps: 10 }, 5), 0.1);
});

Deno.test("lr drops parse and validate", () => {
  assert.deepEqual(parseLrDrops("0.9,0.95"), [0.9, 0.95]);
  assert.deepEqual(parseLrDrops("none"), []);
  assert.throws(() => parseLrDrops("0.95,0.9"), UsageError);
  assert.throws(() => parseLrDrops("1.2"), /fractions in \(0, 1\)/);
  assert.throws(() => parseLrDrops("0.5,x"), UsageError);
});

Deno.test("P per batch is a function of (seed, step, micro) and covers the list", () => {
  const choices = [1, 2, 4, 8, 16];
  const seen = new Set<number>();
  for (let step = 0; step < 200; step++) {
    const p = stepsForBatch(choices, 7, step);
    assert.ok(choices.includes(p));
    assert.equal(stepsForBatch(choices, 7, step), p);
    seen.add(p);
  }
  assert.equal(seen.size, choices.length);
  const a = Array.from({ length: 50 }, (_, t) => stepsForBatch(choices, 1, t));
  const b = Array.from({ length: 50 }, (_, t) => stepsForBatch(choices, 2, t));
  assert.notDeepEqual(a, b);
  assert.equal(stepsForBatch([4], 9, 3, 1), 4);
});

Deno.test("class dropout: about the rate, to the null class, reproducible", () => {
  const labels = new Int32Array(10000).map((_, i) => i % 10);
  const dropped = dropClasses(labels, 0.1, 10, 3, 42);
  const count = dropped.filter((l) => l === 10).length;
  assert.ok(count > 800 && count < 1200, `${count} dropped`);
  dropped.forEach((l, i) => assert.ok(l === 10 || l === labels[i]));
  assert.deepEqual(dropClasses(labels, 0.1, 10, 3, 42), dropped);
  assert.notDeepEqual(dropClasses(labels, 0.1, 10, 3, 43), dropped);
  assert.deepEqual(dropClasses(labels, 0, 10, 3, 42), labels);
  assert.deepEqual(Array.from(labels.subarray(0, 3)), [0, 1, 2]); // input untouched
});

Deno.test("sequence seeds and data positions", () => {
  const s = sequenceSeeds(4, 1, 2, 0);
  assert.equal(new Set(s).size, 4);
  assert.deepEqual(sequenceSeeds(4, 1, 2, 0), s);
  assert.notDeepEqual(sequenceSeeds(4, 1, 2, 1), s);
  assert.deepEqual(dataPosition(0, 10), { epoch: 0, batch: 0 });
  assert.deepEqual(dataPosition(23, 10), { epoch: 2, batch: 3 });
});
