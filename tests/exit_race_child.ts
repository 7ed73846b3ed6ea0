/**
 * Child process of tests/exit_race.test.ts: decodes every image of a folder at once, one of
 * them corrupt, and exits as soon as a decode fails, as cli/main.ts does after an error.
 * Before the fix this process died with SIGSEGV now and then: sharp decodes were still
 * running while exit() ran the static destructors.
 * Usage: deno run -A tests/exit_race_child.ts SIDE FILE...
 */
import { decodeImageFile } from "../src/data/decode.ts";

const [side, ...files] = Deno.args;
try {
  await Promise.all(files.map((f) => decodeImageFile(f, Number(side))));
  Deno.exit(0);
} catch (err) {
  console.error((err as Error).message);
  Deno.exit(1);
}
