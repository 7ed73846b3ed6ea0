/**
 * The native test suite (native/tests, run by ctest) through scripts/native-test.sh: a plain
 * CMake build in build/native, reused between runs, so only changed files recompile.
 */
import assert from "node:assert/strict";
import { repoRoot } from "./helpers.ts";

Deno.test("native engine tests pass under ctest", async () => {
  const out = await new Deno.Command("bash", {
    args: [`${repoRoot}scripts/native-test.sh`],
    cwd: repoRoot,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  const stdout = dec.decode(out.stdout), stderr = dec.decode(out.stderr);
  assert.equal(out.code, 0, `scripts/native-test.sh failed:\n${stdout}\n${stderr}`);
  assert.match(stdout, /100% tests passed, 0 tests failed out of 16/);
  for (
    const group of [
      "status",
      "cpu-ref",
      "cpu",
      "model-ops-ref",
      "model",
      "model-ops-cpu",
      "sampling",
      "conv-ops-ref",
      "conv-grad",
      "conv-ops-cpu",
      "vq-model",
      "vq-train",
      "bf16",
      "dist",
      "cuda-emu",
    ]
  ) {
    assert.match(stdout, new RegExp(`Test +#\\d+: ${group} \\.+ +Passed`), `ctest group ${group}`);
  }
  // The cuda group on the emulation ran every kernel: no test of it may skip.
  assert.doesNotMatch(stdout, /cuda-emu .*Skipped/);
  // The CUDA group either ran or said why it was skipped, on one line.
  if (/cuda .*Skipped/.test(stdout)) assert.match(stdout, /^SKIP cuda: .+$/m);
});
