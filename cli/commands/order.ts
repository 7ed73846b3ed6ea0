/** `checkerboard order`: print a within-scale sampling order, its ranks and its blocks. */
import type { Command } from "../command.ts";
import { choiceOption, intOption } from "../options.ts";
import { makeOrder, ORDER_NAMES, rankGrid } from "../../src/plan/orders.ts";
import { blockOfRank } from "../../src/plan/blocks.ts";

/** Largest side accepted: the text grids are for looking at, not for 10^6 tokens. */
const MAX_SIZE = 1024;

/** Right-aligned columns, one text row per grid row y. */
function formatGrid(grid: number[][]): string {
  const width = Math.max(...grid.flat().map((v) => String(v).length));
  return grid.map((row) => row.map((v) => String(v).padStart(width)).join(" ")).join("\n");
}

export const command: Command = {
  name: "order",
  summary: "print a within-scale sampling order and its blocks",
  usage: "order --size N [--steps-per-scale P] [--order NAME] [--seed S] [--json]",
  options: {
    size: { type: "string", valueName: "N", description: "grid side (1 to 1024), required" },
    "steps-per-scale": {
      type: "string",
      valueName: "P",
      description: "number of blocks (sampling steps) of the grid; default: one block per token (N*N)",
    },
    order: {
      type: "string",
      valueName: "NAME",
      default: "checkerboard",
      description: `order: ${ORDER_NAMES.join(", ")}`,
    },
    seed: { type: "string", valueName: "S", default: "0", description: "seed of the random order" },
    json: { type: "boolean", description: "print one JSON line: size, order, rank, blocks" },
  },
  details: [
    "Positions are (x, y), x the column. rank[y][x] is the 0-based index of (x, y) in the",
    "order; blocks[y][x] is the 0-based block (step) it is sampled in. The order is cut into",
    "min(P, N*N) contiguous blocks whose sizes differ by at most one, larger blocks last.",
    "Without --steps-per-scale every token is its own block, so the block grid equals the rank grid.",
    "",
    "Orders: checkerboard (paper Algorithm 1; sides that are not a power of two use the next",
    "power of two's order restricted to the grid), raster (row by row), random (seeded",
    "permutation), quadrant (one token per quadrant per step, raster inside each quadrant).",
    "",
    "Examples:",
    "  checkerboard order --size 8 --steps-per-scale 8",
    '  checkerboard order --size 16 --order quadrant --json | jq -c ".rank[0]"',
  ].join("\n"),
  run(values) {
    const size = intOption(values, "size", { min: 1, max: MAX_SIZE, required: true })!;
    const steps = intOption(values, "steps-per-scale", { min: 1 });
    const name = choiceOption(values, "order", ORDER_NAMES)!;
    const seed = intOption(values, "seed", { min: 0, max: 0xffffffff })!;

    const order = makeOrder(name, size, seed);
    const rank = rankGrid(order, size);
    const blockOf = blockOfRank(size * size, steps ?? size * size);
    const blocks = rank.map((row) => row.map((r) => blockOf[r]));

    if (values.json) {
      console.log(JSON.stringify({ size, order, rank, blocks }));
      return Promise.resolve();
    }
    const lines = [
      `rank: position of (x, y) in the ${name} order, ${size}x${size} (rows y, columns x)`,
      formatGrid(rank),
    ];
    if (steps !== undefined) {
      const count = Math.min(steps, size * size);
      lines.push("", `block: sampling step of (x, y), ${count} steps`, formatGrid(blocks));
    }
    console.log(lines.join("\n"));
    return Promise.resolve();
  },
};
