/**
 * The file-format fuzzer (scripts/fuzz.ts): its judge, its determinism, and a small fast
 * subset of its cases (7 per format) that must all end in a clean error or a success.
 */
import { deepEqual, equal, notDeepEqual } from "node:assert/strict";
import { formatBad, formatTable } from "../scripts/fuzz/report.ts";
import { runFuzz } from "../scripts/fuzz.ts";
import { judge } from "../scripts/fuzz/classify.ts";
import { FuzzRng } from "../scripts/fuzz/rng.ts";
import {
  encodeWithHeader,
  mutateSafetensors,
  nonFiniteTensors,
} from "../scripts/fuzz/safetensors.ts";
import type { RunResult } from "../scripts/fuzz/runner.ts";

function run(over: Partial<RunResult>): RunResult {
  return {
    code: 1,
    signal: null,
    timedOut: false,
    memoryKilled: false,
    peakRssMiB: 100,
    stdout: "",
    stderr: "",
    ms: 10,
    ...over,
  };
}

async function outcomeOf(r: Partial<RunResult>, mustRefuse = false): Promise<string> {
  const caseDir = await Deno.makeTempDir();
  try {
    const j = await judge({
      run: run(r),
      caseDir,
      outputs: [],
      injectsNonFinite: false,
      mustRefuse,
      before: new Map(),
      earlierOutputs: new Map(),
    });
    return j.outcome;
  } finally {
    await Deno.remove(caseDir, { recursive: true });
  }
}

Deno.test("fuzz judge: each outcome from the exit status and the output", async () => {
  const clean =
    "checkerboard: error: data/manifest.json: 'counts' must be an object, got an empty JSON value\n";
  equal(await outcomeOf({ stderr: clean }), "clean error");
  equal(await outcomeOf({ code: 0, stdout: "wrote x\n" }), "success");
  equal(
    await outcomeOf({ code: 70, stderr: "checkerboard: internal error: RangeError: x\n" }),
    "STACK TRACE",
  );
  equal(
    await outcomeOf({
      stderr: "error: Uncaught (in promise) TypeError: x\n    at f (file:///a.ts:1:2)\n",
    }),
    "STACK TRACE",
  );
  equal(await outcomeOf({ code: 139, signal: "SIGSEGV" }), "SIGNAL");
  equal(await outcomeOf({ code: 137, timedOut: true }), "HANG");
  equal(await outcomeOf({ stderr: "checkerboard: error: format 'undefined'\n" }), "BAD MESSAGE");
  equal(await outcomeOf({ stderr: "checkerboard: error: got [object Object]\n" }), "BAD MESSAGE");
  equal(await outcomeOf({ code: 0, stdout: "P=4  NaN bits per token\n" }), "NaN OUTPUT");
  equal(await outcomeOf({ code: 0 }, true), "SILENT ACCEPT");
  equal(
    await outcomeOf({ code: 0, stderr: "checkerboard: warning: empty class\n" }, true),
    "success",
  );
  equal(await outcomeOf({ stderr: "something failed\n" }), "UNCLEAR ERROR");
});

Deno.test("fuzz mutations: a pure function of the seed, and NaN found where written", () => {
  const data = new Uint8Array(new Float32Array([1, 2, 3, 4]).buffer);
  const header = JSON.stringify({
    __metadata__: { format: "x", config: '{"a":1,"b":[1,2]}' },
    w: { dtype: "F32", shape: [2, 2], data_offsets: [0, 16] },
  });
  const file = encodeWithHeader(header, data);
  deepEqual(nonFiniteTensors(file), []);
  for (let i = 0; i < 20; i++) {
    const a = mutateSafetensors(new FuzzRng(7, "model", i), file);
    const b = mutateSafetensors(new FuzzRng(7, "model", i), file);
    deepEqual(a, b);
    if (a.injectsNonFinite && a.what.includes("written into")) {
      deepEqual(nonFiniteTensors(a.data), ["w"]);
    }
  }
  notDeepEqual(
    Array.from({ length: 8 }, (_, i) => mutateSafetensors(new FuzzRng(1, "model", i), file).what),
    Array.from({ length: 8 }, (_, i) => mutateSafetensors(new FuzzRng(2, "model", i), file).what),
  );
});

Deno.test({
  name: "fuzz subset: 42 mutated files, 7 per format, each a clean error or a success",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const report = await runFuzz({
      cases: 42,
      seed: 0,
      formats: ["model", "resume", "tokenizer", "shards", "manifest", "images"],
      jobs: 2,
      timeoutS: 30,
      quiet: true,
    });
    equal(report.cases, 42);
    for (const f of report.formats) {
      equal(Object.values(report.counts[f]).reduce((a, b) => a + b, 0), 7, `cases of ${f}`);
    }
    // On failure the message lists every bad case with its mutation, command and stderr.
    equal(report.bad.length, 0, `bad cases:\n${formatBad(report)}\n\n${formatTable(report)}`);
  },
});
