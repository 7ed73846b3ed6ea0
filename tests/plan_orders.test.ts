import assert from "node:assert/strict";
import { UsageError } from "../src/errors.ts";
import {
  checkerboardOrder,
  makeOrder,
  type Order,
  ORDER_NAMES,
  parseOrderName,
  quadrantOrder,
  randomOrder,
  rankGrid,
  rasterOrder,
} from "../src/plan/orders.ts";

const pairs = (order: Order) => order.map(([x, y]) => [x, y]);

function assertPermutation(order: Order, size: number) {
  const rank = rankGrid(order, size); // throws unless a permutation
  order.forEach(([x, y], i) => assert.equal(rank[y][x], i));
}

Deno.test("checkerboard 8x8 starts as Algorithm 1 by hand", () => {
  // Corners of the four 4x4 quadrants (TL, BR, TR, BL); then, round robin over
  // those quadrants, the corners of their BR, then TR, then BL 2x2 sub-quadrants.
  assert.deepEqual(pairs(checkerboardOrder(8).slice(0, 16)), [
    [0, 0],
    [4, 4],
    [4, 0],
    [0, 4],
    [2, 2],
    [6, 6],
    [6, 2],
    [2, 6],
    [2, 0],
    [6, 4],
    [6, 0],
    [2, 4],
    [0, 2],
    [4, 6],
    [4, 2],
    [0, 6],
  ]);
  assert.deepEqual(pairs(checkerboardOrder(2)), [[0, 0], [1, 1], [1, 0], [0, 1]]);
  assert.deepEqual(pairs(checkerboardOrder(1)), [[0, 0]]);
});

Deno.test("every order is a permutation of the grid", () => {
  for (const size of [1, 2, 3, 5, 6, 8, 11, 16]) {
    for (const name of ORDER_NAMES) assertPermutation(makeOrder(name, size, 7), size);
  }
});

Deno.test("checkerboard of a non power of two restricts the next power of two", () => {
  for (const [size, pow2] of [[3, 4], [6, 8], [11, 16], [12, 16]]) {
    const expected = checkerboardOrder(pow2).filter(([x, y]) => x < size && y < size);
    assert.deepEqual(pairs(checkerboardOrder(size)), pairs(expected));
  }
});

Deno.test("checkerboard orders are memoised and frozen", () => {
  const a = checkerboardOrder(16);
  assert.equal(checkerboardOrder(16), a);
  assert.ok(Object.isFrozen(a) && Object.isFrozen(a[0]));
  assert.throws(() => (a as [number, number][]).push([0, 0]));
});

Deno.test("raster order goes row by row", () => {
  assert.deepEqual(pairs(rasterOrder(2)), [[0, 0], [1, 0], [0, 1], [1, 1]]);
  assert.deepEqual(rankGrid(rasterOrder(3), 3), [[0, 1, 2], [3, 4, 5], [6, 7, 8]]);
});

Deno.test("random order depends on the seed only", () => {
  assert.deepEqual(pairs(randomOrder(8, 1)), pairs(randomOrder(8, 1)));
  assert.notDeepEqual(pairs(randomOrder(8, 1)), pairs(randomOrder(8, 2)));
  assert.deepEqual(pairs(makeOrder("random", 8, 3)), pairs(randomOrder(8, 3)));
});

Deno.test("quadrant order takes one token per quadrant per step, TL TR BL BR", () => {
  assert.deepEqual(rankGrid(quadrantOrder(4), 4), [
    [0, 4, 1, 5],
    [8, 12, 9, 13],
    [2, 6, 3, 7],
    [10, 14, 11, 15],
  ]);
  // Odd side: quadrants 2x2, 2x1, 1x2, 1x1; exhausted ones are skipped.
  assert.deepEqual(pairs(quadrantOrder(3)), [
    [0, 0],
    [2, 0],
    [0, 2],
    [2, 2],
    [1, 0],
    [2, 1],
    [1, 2],
    [0, 1],
    [1, 1],
  ]);
});

Deno.test("sizes below 1 and unknown names are UsageErrors", () => {
  for (const name of ORDER_NAMES) {
    assert.throws(() => makeOrder(name, 0), UsageError);
    assert.throws(() => makeOrder(name, -3), UsageError);
  }
  assert.throws(() => checkerboardOrder(2.5), UsageError);
  assert.throws(() => makeOrder("bogus" as never, 4), UsageError);
  assert.throws(() => parseOrderName("bogus"), UsageError);
  assert.equal(parseOrderName("quadrant"), "quadrant");
});

Deno.test("rankGrid rejects what is not a permutation", () => {
  assert.throws(() => rankGrid([[0, 0], [0, 0], [1, 0], [1, 1]], 2), RangeError);
  assert.throws(() => rankGrid([[0, 0]], 2), RangeError);
  assert.throws(() => rankGrid([[0, 0], [2, 0], [1, 0], [1, 1]], 2), RangeError);
});
