/** `checkerboard info`: versions, how the native addon was built, the BLAS and the GPUs. */
import type { Command } from "../command.ts";
import { engineInfo } from "../../src/engine.ts";
import type { EngineInfo } from "../../src/engine.ts";
import { VERSION } from "../../src/version.ts";

function gib(bytes: number): string {
  return `${(bytes / 2 ** 30).toFixed(1)} GiB`;
}

function cudaVersion(v: number): string {
  return `${Math.floor(v / 1000)}.${Math.floor((v % 1000) / 10)}`;
}

/** NCCL's version code: major*10000 + minor*100 + patch (before 2.9: major*1000 + ...). */
function ncclVersion(v: number): string {
  const [major, rest] = v >= 20900 ? [Math.floor(v / 10000), v % 10000] : [
    Math.floor(v / 1000),
    v % 1000,
  ];
  return `NCCL ${major}.${Math.floor(rest / 100)}.${rest % 100}`;
}

function textReport(info: EngineInfo): string {
  const { build, blas, cuda } = info;
  const stale = info.addonVersion !== VERSION
    ? ` (stale: built for ${info.addonVersion}; run scripts/build-addon.sh)`
    : "";
  const lines = [
    `checkerboard  ${VERSION}`,
    `deno          ${Deno.version.deno} (v8 ${Deno.version.v8}, typescript ${Deno.version.typescript})`,
    `addon         ${info.addonPath}${stale}`,
    `  build       ${build.type}, ${build.compiler}`,
    `  c++ flags   ${build.cxxFlags}`,
  ];
  if (blas.name === "openblas") {
    const config = (blas.config ?? "").trim();
    lines.push(`blas          OpenBLAS, ${blas.threads} threads${config ? ` (${config})` : ""}`);
  } else {
    lines.push(
      `blas          none: portable blocked loop, ${blas.threads} threads ` +
        `(OpenBLAS was not found at build time; install libopenblas-dev and rebuild)`,
    );
  }
  if (!cuda.compiled) {
    lines.push(`cuda          not compiled: ${cuda.reason || "built without nvcc"}`);
  } else {
    lines.push(
      `cuda          compiled with ${build.cudaCompiler}, runtime ${
        cudaVersion(cuda.runtimeVersion)
      }, architectures ${build.cudaArchitectures}`,
      `  cuda flags  ${build.cudaFlags}`,
    );
    if (!cuda.available) {
      lines.push(`  status      not available: ${cuda.reason || "no usable device"}`);
    } else {
      lines.push(`  driver      ${cudaVersion(cuda.driverVersion)}`);
      cuda.devices.forEach((dev, i) => {
        lines.push(
          `  device ${i}    ${dev.name}, ${
            gib(dev.memoryBytes)
          }, compute capability ${dev.computeCapability}`,
        );
      });
    }
  }
  const { dist } = info;
  lines.push(
    dist.mpi
      ? `mpi           ${dist.mpiLibrary}: mpirun -np N / srun run train and sample over N ranks`
      : `mpi           not compiled: ${dist.mpiWhyNot}`,
    dist.nccl.loaded
      ? `nccl          ${
        ncclVersion(dist.nccl.version)
      } from ${dist.nccl.path} (gradients between GPUs)`
      : `nccl          not loaded: ${dist.nccl.whyNot} (CUDA ranks use MPI through host memory)`,
  );
  lines.push(
    `backends      ${info.modelBackends.join(", ")} (gemm, nearest: ${info.backends.join(", ")})`,
  );
  return lines.join("\n");
}

export const command: Command = {
  name: "info",
  summary: "show version, addon build, BLAS and CUDA status",
  usage: "info [--json]",
  details: [
    "Prints the tool and Deno versions, how the native addon was built (compiler and flags),",
    "the BLAS the cpu backend uses with its thread count, and the CUDA status: each GPU's name",
    "and memory, or why CUDA is not available (not compiled, no driver, no device).",
    "",
    "The addon is built by scripts/build-addon.sh; OPENBLAS_NUM_THREADS sets the BLAS threads.",
    "",
    "Examples:",
    "  checkerboard info",
    "  checkerboard info --json",
  ].join("\n"),
  options: {
    json: { type: "boolean", description: "print one JSON object instead of text" },
  },
  run(values) {
    const info = engineInfo();
    if (values.json) {
      console.log(JSON.stringify({
        version: VERSION,
        deno: Deno.version.deno,
        addon: { version: info.addonVersion, path: info.addonPath, ...info.build },
        blas: info.blas,
        backends: info.backends,
        modelBackends: info.modelBackends,
        cuda: info.cuda,
      }));
    } else {
      console.log(textReport(info));
    }
    return Promise.resolve();
  },
};
