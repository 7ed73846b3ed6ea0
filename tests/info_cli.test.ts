/** `checkerboard info` as a user runs it. Needs the addon: run scripts/build-addon.sh first. */
import assert from "node:assert/strict";
import { repoRoot, runCli } from "./helpers.ts";
import { VERSION } from "../src/version.ts";

Deno.test("info prints versions, the addon build, the BLAS and the CUDA status", async () => {
  const { code, stdout, stderr } = await runCli(["info"]);
  assert.equal(code, 0, stderr);
  assert.match(stdout, new RegExp(`^checkerboard +${VERSION.replaceAll(".", "\\.")}$`, "m"));
  assert.match(stdout, new RegExp(`^deno +${Deno.version.deno.replaceAll(".", "\\.")} `, "m"));
  assert.match(stdout, /^addon +\S*checkerboard\.node/m);
  assert.match(stdout, /^ +c\+\+ flags +.*-Wall/m);
  assert.match(stdout, /^blas +(OpenBLAS, \d+ threads|none: portable blocked loop, \d+ threads)/m);
  // CUDA: not compiled (with why), compiled but unavailable (with why), or the devices.
  assert.match(
    stdout,
    /^cuda +(not compiled: .+|compiled with .+)$/m,
  );
  // Several processes: MPI in the build (scripts/setup.sh installs OpenMPI), and NCCL's state.
  assert.match(stdout, /^mpi +(Open MPI v[\d.]+: mpirun .+|not compiled: .+)$/m);
  assert.match(stdout, /^nccl +(NCCL \d+\.\d+\.\d+ from .+|not loaded: .*libnccl\.so\.2.*)$/m);
  // Every model backend, cuda-fp32 (the parity path) included.
  const backends = stdout.match(/^backends +(.+?) \(gemm, nearest: (.+)\)$/m);
  assert.ok(backends, stdout);
  assert.deepEqual(backends[1].split(", "), ["cpu-ref", "cpu", "cuda", "cuda-fp32"]);
  if (/^cuda +compiled/m.test(stdout)) {
    assert.match(stdout, /^ +(status +not available: .+|device 0 +.+, [\d.]+ GiB, .+)$/m);
  }
});

Deno.test("info --json prints one JSON object", async () => {
  const { code, stdout, stderr } = await runCli(["info", "--json"]);
  assert.equal(code, 0, stderr);
  assert.equal(stdout.trim().split("\n").length, 1);
  const info = JSON.parse(stdout);
  assert.equal(info.version, VERSION);
  assert.equal(info.deno, Deno.version.deno);
  assert.equal(info.addon.version, VERSION);
  assert.ok(["openblas", "blocked"].includes(info.blas.name));
  assert.ok(info.blas.threads >= 1);
  assert.equal(typeof info.cuda.compiled, "boolean");
  assert.equal(typeof info.cuda.available, "boolean");
  assert.ok(Array.isArray(info.cuda.devices));
  if (!info.cuda.available) assert.ok(info.cuda.reason.length > 0);
  for (const dev of info.cuda.devices) {
    assert.ok(dev.name && dev.memoryBytes > 0 && /^\d+\.\d+$/.test(dev.computeCapability));
  }
});

Deno.test("info --help explains the command", async () => {
  const { code, stdout } = await runCli(["info", "--help"]);
  assert.equal(code, 0);
  assert.match(stdout, /Usage: checkerboard info \[--json\]/);
  assert.match(stdout, /--json +print one JSON object/);
  assert.match(stdout, /CUDA status/);
});

Deno.test("info with an unknown option is a usage error", async () => {
  const { code, stderr } = await runCli(["info", "--bogus"]);
  assert.equal(code, 2);
  assert.match(stderr, /checkerboard: error: info: .*bogus/);
});

Deno.test("a missing addon says how to build it", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${repoRoot}cli/main.ts`, "info"],
    cwd: repoRoot,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1", CHECKERBOARD_ADDON: "/nonexistent/checkerboard.node" },
  }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 1, stderr);
  assert.match(
    stderr,
    /^checkerboard: error: the native addon is not built .*scripts\/build-addon\.sh/,
  );
});
