/** util/memory.ts: the collection that keeps a streaming `data` run's memory flat. */
import assert from "node:assert/strict";
import { collectGarbage, settleMemory } from "../src/util/memory.ts";

Deno.test("settleMemory frees unreachable buffers held outside the JS heap", async () => {
  assert.equal(collectGarbage(), true, "the runtime exposes V8's collection");
  const before = Deno.memoryUsage().external;
  let garbage: Uint8Array[] = [];
  for (let i = 0; i < 16; i++) garbage.push(new Uint8Array(4 << 20).fill(i + 1)); // 64 MB
  const held = Deno.memoryUsage().external;
  assert.ok(held - before >= 60 << 20, `64 MB of buffers are counted (${held - before} bytes)`);
  garbage = [];
  await settleMemory();
  const after = Deno.memoryUsage().external;
  assert.ok(after - before < 8 << 20, `freed: ${before} bytes before, ${after} after`);
  assert.equal(garbage.length, 0);
});
