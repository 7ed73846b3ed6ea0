/** The study's pure parts: which runs the parts need, the budget arithmetic, the finding rules. */
import assert from "node:assert/strict";
import { parseParts, runId, runWork, studyRuns } from "../src/study/design.ts";
import { itersForBudget } from "../src/study/budget.ts";
import {
  checkerboardVsRandom,
  gainsLevelOff,
  type ModelSummary,
  multiscaleVsSingle,
  stat,
  undertrainedEvidence,
  valueAtTotalSteps,
} from "../src/study/aggregate.ts";
import type { RunSpec } from "../src/study/design.ts";

Deno.test("study design: all parts share the base model, 10 configurations x seeds", () => {
  const runs = studyRuns(parseParts("all"), 2);
  assert.equal(runs.length, 20);
  assert.equal(new Set(runs.map(runId)).size, 20);
  const base = runs.filter((r) =>
    r.ratio === "2" && r.order === "checkerboard" && r.ropeMix === "none"
  );
  assert.deepEqual(base.map((r) => r.seed), [0, 1]);
  assert.equal(studyRuns(parseParts("order"), 3).length, 6);
  assert.deepEqual(parseParts("samples,ratios"), ["ratios", "samples"]);
  // Entropy only for Figure 6's order models; samples for every model when the part is on.
  const parts = parseParts("ratios,entropy");
  assert.deepEqual(
    runWork({ ratio: "3", order: "checkerboard", ropeMix: "none", seed: 0 }, parts),
    {
      entropy: false,
      samples: false,
    },
  );
  assert.deepEqual(runWork({ ratio: "2", order: "raster", ropeMix: "none", seed: 1 }, parts), {
    entropy: true,
    samples: false,
  });
  assert.throws(() => parseParts("ratio"), /unknown part 'ratio'/);
});

Deno.test("study budget: steps fill 90% of what measuring leaves", () => {
  const runs = [{ trainStep: 1, measure: 60 }, { trainStep: 2, measure: 40 }];
  // 0.9 * 1000 - 100 = 800 seconds for 3 seconds per step of both runs.
  assert.equal(itersForBudget(1000, runs), 266);
  assert.equal(itersForBudget(100, runs), 0);
});

/** A model summary with bits per token `bpt` at P = 1, 2, 4, 8, 16 and the given total steps. */
function model(config: Omit<RunSpec, "seed">, totals: number[], bpt: number[], tokens: number) {
  return {
    config,
    scales: [],
    seeds: [0, 1],
    points: totals.map((t, i) => ({
      stepsPerScale: 2 ** i,
      totalSteps: t,
      bitsPerToken: stat([bpt[i], bpt[i]]),
      bitsPerImage: stat([bpt[i] * tokens, bpt[i] * tokens]),
      finalScaleBits: stat([bpt[i], bpt[i]]),
    })),
    finalLoss: stat([1, 1]),
    paramCount: 1,
    mixAlpha: [],
  } satisfies ModelSummary;
}

const base = { ratio: "2", order: "checkerboard", ropeMix: "none" } as const;

Deno.test("study findings: rules follow the numbers", () => {
  const single = model({ ...base, ratio: "single" }, [1, 2, 4, 8, 16], [3, 2.5, 2, 1.8, 1.7], 64);
  assert.equal(valueAtTotalSteps(single, "bitsPerToken", 2), 2.5);
  assert.ok(Math.abs(valueAtTotalSteps(single, "bitsPerToken", Math.sqrt(8))! - 2.25) < 1e-12);
  assert.equal(valueAtTotalSteps(single, "bitsPerToken", 32), undefined);

  const good = model(base, [4, 7, 13, 21, 37], [1.2, 1.0, 0.9, 0.85, 0.84], 85);
  const bad = model(base, [4, 7, 13, 21, 37], [2, 1.9, 1.8, 1.7, 1.7], 85);
  assert.equal(multiscaleVsSingle([good, single]).reproduced, true);
  assert.equal(multiscaleVsSingle([bad, single]).reproduced, false);
  assert.equal(multiscaleVsSingle([good]).reproduced, undefined);

  const random = model({ ...base, order: "random" }, [4, 7, 13, 21, 37], [
    1.3,
    1.1,
    0.95,
    0.9,
    0.86,
  ], 85);
  assert.equal(checkerboardVsRandom(good, random).reproduced, true);
  assert.equal(checkerboardVsRandom(random, good).reproduced, false);
  // One seed pair disagrees: lower on average is not enough.
  const mixed = model(
    { ...base, order: "random" },
    [4, 7, 13, 21, 37],
    [1.3, 1.1, 0.95, 0.9, 0.86],
    85,
  );
  mixed.points[2].bitsPerToken = stat([0.7, 1.2]); // seed 0 below the checkerboard's 0.9
  assert.equal(checkerboardVsRandom(good, mixed).reproduced, false);

  assert.equal(gainsLevelOff(good).reproduced, true); // gains 0.2, 0.1, 0.05, 0.01
  const flat = model(base, [4, 7, 13, 21, 37], [1.2, 1.15, 1.1, 1.05, 1.0], 85);
  assert.equal(gainsLevelOff(flat).reproduced, false); // the last gain equals the first
  const none = model(base, [4, 7, 13, 21, 37], [1.2, 1.19, 1.2, 1.21, 1.22], 85);
  assert.equal(gainsLevelOff(none).reproduced, false); // P = 16 is worse than P = 1
});

Deno.test("study honesty: few epochs or an NLL that rises with P make the models undertrained", () => {
  const falling = model(base, [4, 7, 13, 21, 37], [1.2, 1.0, 0.9, 0.85, 0.84], 85);
  const rising = model(base, [4, 7, 13, 21, 37], [1.998, 1.992, 1.999, 2.013, 2.015], 85);
  assert.deepEqual(undertrainedEvidence(12, falling), []);
  assert.deepEqual(undertrainedEvidence(5, undefined), []);
  const [epochs] = undertrainedEvidence(1.12, falling);
  assert.match(epochs, /1\.12 epochs of the training split \(under 5\)/);
  const why = undertrainedEvidence(20, rising);
  assert.equal(why.length, 1);
  assert.match(
    why[0],
    /NLL rises with steps per scale: 1\.998 bits per token at P = 1, 2\.015 at P = 16/,
  );
  assert.match(why[0], /rises at 3 of 4 doublings/);
  assert.equal(undertrainedEvidence(1, rising).length, 2);
});
