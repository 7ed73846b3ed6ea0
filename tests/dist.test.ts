/**
 * dist/checkerboard, the single-file executable, when it has been built (`deno task dist`;
 * the tests never build it). It runs with a PATH holding only the tools its launcher uses
 * (so no node, npm or deno) and an empty environment. Its cache is dist/test-cache, so it
 * unpacks once per build (the build removes dist/).
 */
import assert from "node:assert/strict";
import { repoRoot, tempDir } from "./helpers.ts";

const exe = `${repoRoot}dist/checkerboard`;
const built = (() => {
  try {
    return Deno.statSync(exe).isFile;
  } catch {
    return false;
  }
})();
const skipped = built ? "" : " (ignored: dist/checkerboard is not built; run 'deno task dist')";

/** What scripts/dist-launcher.sh runs, linked into one folder to serve as the whole PATH. */
const LAUNCHER_TOOLS = [
  "sh",
  "mkdir",
  "find",
  "rm",
  "mktemp",
  "tail",
  "sha256sum",
  "cut",
  "gzip",
  "tar",
  "mv",
  "id",
];

async function runDist(bin: string, home: string, args: string[]) {
  const out = await new Deno.Command(exe, {
    args,
    cwd: home,
    clearEnv: true,
    env: { PATH: bin, HOME: home, XDG_CACHE_HOME: `${repoRoot}dist/test-cache` },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

Deno.test({
  name: `dist/checkerboard runs with no node, npm or deno on PATH${skipped}`,
  ignore: !built,
  async fn() {
    await using home = await tempDir();
    const bin = `${home.path}/bin`;
    await Deno.mkdir(bin);
    for (const tool of LAUNCHER_TOOLS) {
      const found = ["/usr/bin", "/bin"].map((d) => `${d}/${tool}`).find((p) => {
        try {
          return Deno.statSync(p).isFile;
        } catch {
          return false;
        }
      });
      assert.ok(found, `${tool} is not in /usr/bin or /bin`);
      await Deno.symlink(found, `${bin}/${tool}`);
    }

    const help = await runDist(bin, home.path, ["--help"]);
    assert.equal(help.code, 0, help.stderr);
    assert.match(help.stdout, /^Usage: checkerboard COMMAND/m);

    const order = await runDist(bin, home.path, ["order", "--size", "8", "--steps-per-scale", "4", "--json"]);
    assert.equal(order.code, 0, order.stderr);
    const json = JSON.parse(order.stdout);
    assert.equal(json.size, 8);
    assert.equal(json.order.length, 64);
    assert.deepEqual(new Set(json.blocks.flat()), new Set([0, 1, 2, 3]));

    // The addon and its libraries come from the bundle, not from this checkout.
    const info = await runDist(bin, home.path, ["info", "--json"]);
    assert.equal(info.code, 0, info.stderr);
    const { addon, blas } = JSON.parse(info.stdout);
    assert.ok(addon.path.startsWith(`${repoRoot}dist/test-cache/checkerboard/`), addon.path);
    assert.equal(blas.name, "openblas");
  },
});
