/**
 * The machine's limits that every benchmark figure is reported against (issue 14): the best
 * fp32 GEMM rate the engine's own libraries reach at size^3, the bf16 rate, and the memory read
 * bandwidth, measured in the same run as the figures (this machine is shared and noisy).
 */
import { nativeAddon } from "../engine.ts";

export interface GemmRate {
  path: string;
  gflops: number;
  /** Of the fastest run. */
  seconds: number;
  runs: number;
}

export interface MachineLimits {
  threads: number;
  /** m = n = k of the GEMMs. */
  size: number;
  /** Every fp32 path the engine has. */
  fp32: GemmRate[];
  fp32Peak: { path: string; gflops: number };
  /** Which path the engine's shape rule picks (cpu/sgemm.h). */
  fp32Rule: string;
  bf16: GemmRate | null;
  /** Why bf16 is not available ("" when it is). */
  bf16Unavailable: string;
  readGBps: number;
  readBytes: number;
  readPasses: number;
  cpu: string;
  onednn: string;
}

export interface LimitSettings {
  /** GEMM side (default 4096). */
  size?: number;
  /** Time box of each measurement in seconds (default 2). */
  seconds?: number;
  /** Bandwidth buffer in MiB (default 1024). */
  readMiB?: number;
}

/** Measures the limits (a few seconds per GEMM path, plus the bandwidth). */
export function measureLimits(settings: LimitSettings = {}): Promise<MachineLimits> {
  const addon = nativeAddon() as unknown as {
    gemmLimits(o: LimitSettings): Promise<MachineLimits>;
  };
  return addon.gemmLimits(settings);
}

/**
 * The peak a figure of `precision` is a fraction of: the bf16 rate, or the best fp32 one (also
 * for bf16 where the machine has none), with the name of the one it is.
 */
export function peakFor(
  limits: MachineLimits,
  precision: "fp32" | "bf16",
): { name: "fp32" | "bf16"; gflops: number } {
  if (precision === "bf16" && limits.bf16 !== null) {
    return { name: "bf16", gflops: limits.bf16.gflops };
  }
  return { name: "fp32", gflops: limits.fp32Peak.gflops };
}

/** The report's lines for the limits. */
export function describeLimits(l: MachineLimits): string[] {
  const lines = l.fp32.map((r) =>
    `limit fp32 gemm ${l.size}^3 on ${r.path}: ${r.gflops.toFixed(1)} GFLOP/s`
  );
  lines.push(
    `limit fp32 peak: ${l.fp32Peak.gflops.toFixed(1)} GFLOP/s (${l.fp32Peak.path}; ` +
      `${l.threads} threads)`,
  );
  lines.push(
    l.bf16 === null
      ? `limit bf16: not available (${l.bf16Unavailable})`
      : `limit bf16 gemm ${l.size}^3 on ${l.bf16.path}: ${l.bf16.gflops.toFixed(1)} GFLOP/s`,
  );
  lines.push(
    `limit memory read: ${l.readGBps.toFixed(1)} GB/s (${l.threads} threads, ` +
      `${(l.readBytes / 2 ** 20).toFixed(0)} MiB buffer)`,
  );
  return lines;
}
