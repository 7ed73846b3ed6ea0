/** `checkerboard order` and `checkerboard plan` run as a user would, through the CLI. */
import assert from "node:assert/strict";
import { runCli } from "./helpers.ts";

type Pair = [number, number];
interface OrderJson {
  size: number;
  order: Pair[];
  rank: number[][];
  blocks: number[][];
}

const cache = new Map<string, OrderJson>();

/** `order --json` output, parsed; memoised so each command line runs once. */
async function orderJson(...args: string[]): Promise<OrderJson> {
  const key = args.join(" ");
  if (!cache.has(key)) {
    const res = await runCli(["order", "--json", ...args]);
    assert.equal(res.code, 0, res.stderr);
    const lines = res.stdout.trimEnd().split("\n");
    assert.equal(lines.length, 1, "exactly one JSON line");
    cache.set(key, JSON.parse(lines[0]));
  }
  return cache.get(key)!;
}

function assertPermutationWithRank({ size, order, rank }: OrderJson) {
  assert.equal(order.length, size * size);
  const seen = new Set<number>();
  order.forEach(([x, y], i) => {
    assert.ok(
      Number.isInteger(x) && x >= 0 && x < size && Number.isInteger(y) && y >= 0 && y < size,
    );
    seen.add(y * size + x);
    assert.equal(rank[y][x], i, `rank of (${x}, ${y})`);
  });
  assert.equal(seen.size, size * size, "every position once");
  assert.equal(rank.length, size);
  for (const row of rank) assert.equal(row.length, size);
}

/**
 * For every prefix of the order and every quadtree node, the counts of the
 * node's four quadrants differ by at most one. Adding a position changes only
 * the nodes that contain it, so checking those after each step covers all.
 */
function assertBalanced(order: Pair[], size: number) {
  const counts = new Map<string, number[]>(); // node "side,x0,y0" -> counts TL, TR, BL, BR
  order.forEach(([x, y], i) => {
    for (let side = size; side >= 2; side /= 2) {
      const x0 = x - (x % side), y0 = y - (y % side), half = side / 2;
      const key = `${side},${x0},${y0}`;
      const c = counts.get(key) ?? [0, 0, 0, 0];
      c[(y - y0 >= half ? 2 : 0) + (x - x0 >= half ? 1 : 0)]++;
      counts.set(key, c);
      assert.ok(
        Math.max(...c) - Math.min(...c) <= 1,
        `prefix ${i + 1}: node ${key} has quadrant counts ${c}`,
      );
    }
  });
}

Deno.test("order --json: a permutation with a consistent rank, sizes 6, 8, 11, 16", async () => {
  for (const size of [6, 8, 11, 16]) {
    const out = await orderJson("--size", String(size));
    assert.equal(out.size, size);
    assertPermutationWithRank(out);
    // Without --steps every token is its own block.
    assert.deepEqual(out.blocks, out.rank);
  }
});

Deno.test("order --json: checkerboard is balanced at every quadtree level, sizes 8 and 16", async () => {
  for (const size of [8, 16]) assertBalanced((await orderJson("--size", String(size))).order, size);
});

Deno.test("order --json: sizes 6 and 11 are the next power of two's order restricted", async () => {
  for (const [size, pow2] of [[6, 8], [11, 16]]) {
    const full = (await orderJson("--size", String(pow2))).order;
    const restricted = full.filter(([x, y]) => x < size && y < size);
    assert.deepEqual((await orderJson("--size", String(size))).order, restricted);
  }
});

Deno.test("order --json: the 8x8 checkerboard starts as Algorithm 1", async () => {
  const { order } = await orderJson("--size", "8");
  assert.deepEqual(order.slice(0, 8), [
    [0, 0], // TL corner of the whole grid
    [4, 4], // then of the BR, TR and BL 4x4 quadrants
    [4, 0],
    [0, 4],
    [2, 2], // then the BR 2x2 sub-quadrant of each, round robin TL, BR, TR, BL
    [6, 6],
    [6, 2],
    [2, 6],
  ]);
});

Deno.test("order --json: blocks of 8x8 for P = 4 and P = 8", async () => {
  for (const steps of [4, 8]) {
    const { rank, blocks } = await orderJson("--size", "8", "--steps-per-scale", String(steps));
    const per = 64 / steps;
    rank.forEach((row, y) =>
      row.forEach((r, x) => assert.equal(blocks[y][x], Math.floor(r / per)))
    );
  }
  // P = 8: the first block is the stride-4 lattice plus its centres, as in the paper's Fig. 3.
  const { order, blocks } = await orderJson("--size", "8", "--steps-per-scale", "8");
  const first = order.filter(([x, y]) => blocks[y][x] === 0).map(([x, y]) => `${x},${y}`).sort();
  assert.deepEqual(first, ["0,0", "0,4", "2,2", "2,6", "4,0", "4,4", "6,2", "6,6"]);
});

Deno.test("order --json: uneven blocks put the larger ones last", async () => {
  // 9 tokens in 4 blocks: sizes 2, 2, 2, 3.
  const { order, blocks } = await orderJson(
    "--size",
    "3",
    "--steps-per-scale",
    "4",
    "--order",
    "raster",
  );
  assert.deepEqual(order.map(([x, y]) => blocks[y][x]), [0, 0, 1, 1, 2, 2, 3, 3, 3]);
});

Deno.test("order --json: other orders are permutations too", async () => {
  for (const name of ["raster", "random", "quadrant"]) {
    assertPermutationWithRank(await orderJson("--size", "5", "--order", name, "--seed", "3"));
  }
});

Deno.test("order: text output has a rank grid and, with --steps-per-scale, a block grid", async () => {
  const res = await runCli(["order", "--size", "4", "--steps-per-scale", "2"]);
  assert.equal(res.code, 0, res.stderr);
  const lines = res.stdout.trimEnd().split("\n");
  assert.match(lines[0], /^rank/);
  assert.deepEqual(lines.slice(1, 5), [" 0  8  2 10", "12  4 14  6", " 3 11  1  9", "15  7 13  5"]);
  assert.match(lines[6], /^block/);
  assert.deepEqual(lines.slice(7, 11), ["0 1 0 1", "1 0 1 0", "0 1 0 1", "1 0 1 0"]);
});

Deno.test("order and plan: bad options give a one-line error naming the option", async () => {
  const cases: [string[], string][] = [
    [["order", "--size", "0"], "--size"],
    [["order", "--size", "4", "--steps-per-scale", "0"], "--steps-per-scale"],
    [["order", "--size", "4", "--order", "bogus"], "--order"],
    [["order", "--size", "2.5"], "--size"],
    [["order"], "--size"],
    [["plan", "--ratio", "2", "--size", "16", "--steps-per-scale", "4,4"], "--steps-per-scale"],
    [["plan", "--ratio", "1", "--size", "16", "--steps-per-scale", "4"], "--ratio"],
  ];
  for (const [args, option] of cases) {
    const res = await runCli(args);
    assert.notEqual(res.code, 0, args.join(" "));
    assert.equal(res.code, 2, args.join(" "));
    const lines = res.stderr.trimEnd().split("\n");
    assert.equal(lines.length, 1, `one line for ${args.join(" ")}: ${res.stderr}`);
    assert.ok(lines[0].includes(option), `${args.join(" ")}: ${lines[0]}`);
  }
});

Deno.test("plan: ratio 2, size 16, steps 4 gives 17 steps and length 342", async () => {
  const res = await runCli([
    "plan",
    "--ratio",
    "2",
    "--size",
    "16",
    "--steps-per-scale",
    "4",
    "--json",
  ]);
  assert.equal(res.code, 0, res.stderr);
  const plan = JSON.parse(res.stdout);
  assert.deepEqual(plan.scales, [1, 2, 4, 8, 16]);
  assert.deepEqual(plan.steps, [1, 4, 4, 4, 4]);
  assert.deepEqual(plan.blocks[4], [64, 64, 64, 64]);
  assert.equal(plan.totalSteps, 17);
  assert.equal(plan.length, 342);

  const text = await runCli(["plan", "--ratio", "sqrt2", "--size", "16", "--steps-per-scale", "8"]);
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /scales: 1, 2, 3, 4, 6, 8, 11, 16/);
  // Scales 1 and 2 have fewer than 8 tokens: 1 + 4 + 6 * 8 steps.
  assert.match(text.stdout, /total steps: 53/);
});

Deno.test("order and plan say --steps-per-scale, as sample and eval do; --steps gets a suggestion", async () => {
  for (const cmd of [["order", "--size", "4"], ["plan", "--size", "4"]]) {
    const res = await runCli([...cmd, "--steps", "2"]);
    assert.equal(res.code, 2, res.stderr);
    assert.equal(
      res.stderr.trim(),
      `checkerboard: error: ${cmd[0]}: unknown option '--steps'; did you mean '--steps-per-scale'?`,
    );
    const help = await runCli([cmd[0], "--help"]);
    assert.match(help.stdout, /--steps-per-scale P/);
  }
});

Deno.test("plan: per-scale lists are separated by commas; another separator is named", async () => {
  const res = await runCli(["plan", "--size", "8", "--steps-per-scale", "1:2:4:4"]);
  assert.equal(res.code, 2);
  assert.equal(
    res.stderr.trim(),
    "checkerboard: error: --steps-per-scale: separate the entries with commas, e.g. '1,2,4,4', " +
      "got '1:2:4:4'",
  );
  const ok = await runCli(["plan", "--size", "8", "--steps-per-scale", "1, 2, 4, 4", "--json"]);
  assert.equal(ok.code, 0, ok.stderr);
  assert.deepEqual(JSON.parse(ok.stdout).steps, [1, 2, 4, 4]);
});
