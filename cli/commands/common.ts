/** Options and readers shared by several subcommands. */
import type { OptionSpec, OptionValues } from "../command.ts";
import { choiceOption, stringOption } from "../options.ts";
import { parseScales, scalesForRatio } from "../../src/plan/scales.ts";
import { UsageError } from "../../src/errors.ts";

export const deviceOption: OptionSpec = {
  type: "string",
  valueName: "auto|cpu|cuda",
  default: "auto",
  description: "compute backend; auto uses CUDA when a GPU is present",
};

export async function deviceFrom(values: OptionValues): Promise<"cpu" | "cuda"> {
  const requested = choiceOption(values, "device", ["auto", "cpu", "cuda"] as const) ?? "auto";
  const { resolveDevice } = await import("../../src/engine.ts");
  return resolveDevice(requested);
}

export const precisionOption: OptionSpec = {
  type: "string",
  valueName: "fp32|bf16",
  description:
    "matmul precision: bf16 keeps bf16 weight copies and matmul inputs, accumulating in fp32 " +
    "(cpu: needs AVX512-BF16); default fp32 on the cpu, bf16 on cuda",
};

/** --precision, or undefined for the backend's default. */
export function precisionFrom(values: OptionValues): "fp32" | "bf16" | undefined {
  return choiceOption(values, "precision", ["fp32", "bf16"] as const);
}

export const ratioOptions: Record<string, OptionSpec> = {
  ratio: {
    type: "string",
    valueName: "R",
    default: "2",
    description: "scale ratio: sqrt2, 2, 3, 4, single, or a number > 1",
  },
  scales: {
    type: "string",
    valueName: "LIST",
    description:
      "explicit scale sides, e.g. 1,2,4,8 (overrides --ratio; must end at the final side)",
  },
};

/** The scale list from --scales or --ratio for a final grid side; returns the ratio label too. */
export function scalesFrom(
  values: OptionValues,
  finalSide: number,
): { scales: number[]; ratio: string } {
  const explicit = stringOption(values, "scales");
  if (explicit !== undefined) {
    const scales = withOption("--scales", () => parseScales(explicit));
    if (scales[scales.length - 1] !== finalSide) {
      throw new UsageError(
        `--scales must end at the final grid side ${finalSide}, got ${explicit}`,
      );
    }
    return { scales, ratio: "explicit" };
  }
  const ratio = stringOption(values, "ratio") ?? "2";
  return { scales: withOption("--ratio", () => scalesForRatio(ratio, finalSide)), ratio };
}

/** Runs `read`, naming `option` in front of the UsageError it may throw. */
function withOption<T>(option: string, read: () => T): T {
  try {
    return read();
  } catch (err) {
    if (err instanceof UsageError && !err.message.startsWith(option)) {
      throw new UsageError(`${option}: ${err.message}`);
    }
    throw err;
  }
}
