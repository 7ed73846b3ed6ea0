/**
 * Kill -9 during training (scripts/kill-resume.ts): a run killed with SIGKILL at random moments
 * and resumed each time ends byte-identical to an uninterrupted one. The suite runs 3 kills;
 * `deno run -A scripts/kill-resume.ts` runs 30.
 */
import assert from "node:assert/strict";
import { repoRoot } from "./helpers.ts";

Deno.test("kill -9 at 3 random moments, each followed by --resume: the same final bytes", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      `${repoRoot}scripts/kill-resume.ts`,
      "--kills",
      "3",
      "--iters",
      "80",
      "--seed",
      "7",
    ],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const stdout = new TextDecoder().decode(out.stdout);
  const stderr = new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, `${stdout}\n${stderr}`);
  assert.equal(stdout.match(/^kill +\d\/3: .*resume ok$/gm)?.length, 3, stdout);
  assert.match(stdout, /summary: 3 kills .* 0 failures; final model\.safetensors identical .*PASS/);
});
