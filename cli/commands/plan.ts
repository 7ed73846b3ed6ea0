/** `checkerboard plan`: the scales, blocks, steps and sequence length of a sampling plan. */
import type { Command, OptionValues } from "../command.ts";
import { choiceOption, intListOption, intOption, stringOption } from "../options.ts";
import { UsageError } from "../../src/errors.ts";
import { parseRatio, parseScales, scalesForRatio, sequenceLength } from "../../src/plan/scales.ts";
import { blockSizes, stepsPerScale } from "../../src/plan/blocks.ts";
import { ORDER_NAMES } from "../../src/plan/orders.ts";

const DEFAULT_RATIO = "2";

/** The scale list from --scales, or from --ratio and --size. */
function resolveScales(values: OptionValues): {
  scales: number[];
  ratio: string | null;
} {
  const scalesText = stringOption(values, "scales");
  const ratioText = stringOption(values, "ratio");
  if (scalesText !== undefined) {
    if (ratioText !== undefined) throw new UsageError("give --ratio or --scales, not both");
    let scales: number[];
    try {
      scales = parseScales(scalesText);
    } catch (err) {
      throw new UsageError(`--scales: ${(err as Error).message}`);
    }
    const size = intOption(values, "size", { min: 1 });
    if (size !== undefined && size !== scales[scales.length - 1]) {
      throw new UsageError(
        `--size ${size} differs from the last entry of --scales (${scales[scales.length - 1]})`,
      );
    }
    return { scales, ratio: null };
  }
  const size = intOption(values, "size", { min: 1, required: true })!;
  const text = ratioText ?? DEFAULT_RATIO;
  let ratio;
  try {
    ratio = parseRatio(text);
  } catch (err) {
    throw new UsageError(`--ratio: ${(err as Error).message}`);
  }
  return { scales: scalesForRatio(ratio, size), ratio: text };
}

export const command: Command = {
  name: "plan",
  summary: "print the scales, blocks, steps and sequence length of a plan",
  usage: "plan [--ratio R] --size N --steps-per-scale P [--scales LIST] [--order NAME] [--json]",
  options: {
    ratio: {
      type: "string",
      valueName: "R",
      description:
        `scale ratio: sqrt2, 2, 3, 4, single or a number > 1 (default: ${DEFAULT_RATIO})`,
    },
    size: { type: "string", valueName: "N", description: "final token-grid side N (s_K)" },
    "steps-per-scale": {
      type: "string",
      valueName: "P|P1,P2,...",
      description: "steps per scale: one P for all scales or a comma list, one per scale",
    },
    scales: {
      type: "string",
      valueName: "LIST",
      description: "explicit scale sides, e.g. 1,2,4,8,16 (instead of --ratio)",
    },
    order: {
      type: "string",
      valueName: "NAME",
      default: "checkerboard",
      description: `within-scale order: ${ORDER_NAMES.join(", ")}`,
    },
    json: { type: "boolean", description: "print one JSON object" },
  },
  details: [
    "Scales: s_K = N, then s_{k-1} = max(1, round(s_k / r)) down to 1. Each scale's order is",
    "cut into min(P_k, s_k^2) blocks whose sizes differ by at most one, larger blocks last.",
    "Total steps = sum over scales of min(P_k, s_k^2); sequence length = 1 + sum of s_k^2",
    "(the class token plus every token of every scale).",
    "",
    "Examples:",
    "  checkerboard plan --ratio 2 --size 16 --steps-per-scale 4   # 17 steps, length 342",
    "  checkerboard plan --scales 1,2,4,8 --steps-per-scale 1,2,4,8 --json",
  ].join("\n"),
  run(values) {
    const { scales, ratio } = resolveScales(values);
    const stepsList = intListOption(values, "steps-per-scale", { min: 1 });
    if (stepsList === undefined) throw new UsageError("--steps-per-scale is required");
    let steps: number[];
    try {
      steps = stepsPerScale(scales, stepsList.length === 1 ? stepsList[0] : stepsList);
    } catch (err) {
      throw new UsageError(`--steps-per-scale: ${(err as Error).message}`);
    }
    const order = choiceOption(values, "order", ORDER_NAMES)!;
    const blocks = scales.map((s, k) => blockSizes(s * s, steps[k]));
    const totalSteps = steps.reduce((a, b) => a + b, 0);
    const length = sequenceLength(scales);

    if (values.json) {
      console.log(JSON.stringify({ ratio, order, scales, steps, blocks, totalSteps, length }));
      return Promise.resolve();
    }
    const width = Math.max(...scales.map((s) => `${s}x${s}`.length));
    const lines = [
      `scales: ${scales.join(", ")}${ratio === null ? "" : ` (ratio ${ratio})`}`,
      `order: ${order}`,
      "blocks per scale (sizes):",
      ...scales.map((s, k) => {
        const grid = `${s}x${s}`.padStart(width);
        const count = `${String(steps[k]).padStart(3)} ${steps[k] === 1 ? "step " : "steps"}`;
        return `  ${grid}  ${count}  [${blocks[k].join(", ")}]`;
      }),
      `total steps: ${totalSteps}`,
      `sequence length: ${length} (1 class token + ${length - 1} image tokens)`,
    ];
    console.log(lines.join("\n"));
    return Promise.resolve();
  },
};
