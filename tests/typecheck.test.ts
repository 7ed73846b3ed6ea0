/**
 * The CLI runs without type checking (`deno run`), so the commands, which the
 * test files reach only through subprocesses, are checked and linted here.
 */
import assert from "node:assert/strict";
import { repoRoot } from "./helpers.ts";

async function deno(args: string[]) {
  const out = await new Deno.Command(Deno.execPath(), {
    args,
    cwd: repoRoot,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  return { ok: out.success, text };
}

Deno.test("every command type-checks", async () => {
  const commands = [...Deno.readDirSync(`${repoRoot}cli/commands`)].map((e) =>
    `cli/commands/${e.name}`
  );
  const r = await deno(["check", "cli/main.ts", ...commands]);
  assert.ok(r.ok, r.text);
});

Deno.test("deno lint is clean", async () => {
  const r = await deno(["lint", "cli", "src", "tests", "scripts"]);
  assert.ok(r.ok, r.text);
});
