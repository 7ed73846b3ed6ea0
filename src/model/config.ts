/**
 * Model configurations: the presets of DESIGN.md "Transformer", overrides from the command
 * line, validation with errors a user can act on, and the model's FLOPs per token.
 * Pure: no addon, no I/O.
 */
import { UsageError } from "../errors.ts";
import { validateScales } from "../plan/scales.ts";
import type { ModelConfig } from "./native_model.ts";

export type { ModelConfig };

export interface ModelShape {
  depth: number;
  width: number;
  heads: number;
  mlpRatio: number;
}

/** The presets (paper 4.1 for S and L; tiny for CPU demos). */
export const PRESETS = {
  tiny: { depth: 4, width: 256, heads: 4, mlpRatio: 4 },
  S: { depth: 12, width: 512, heads: 16, mlpRatio: 4 },
  L: { depth: 20, width: 1024, heads: 16, mlpRatio: 4 },
} as const satisfies Record<string, ModelShape>;

export type PresetName = keyof typeof PRESETS;
export const PRESET_NAMES = Object.keys(PRESETS) as PresetName[];

/** The largest codebook a uint16 shard can index. */
export const MAX_VOCAB = 65536;

export function parsePreset(text: string): PresetName {
  if (!(PRESET_NAMES as string[]).includes(text)) {
    throw new UsageError(`--model must be one of ${PRESET_NAMES.join(", ")}, got '${text}'`);
  }
  return text as PresetName;
}

/**
 * Key RoPE mixing (paper 3.4) from "none", "all" or a layer count n (the first n layers).
 * Returns ropeMixLayers: 0 for none, depth for all.
 */
export function parseRopeMix(text: string, depth: number): number {
  const t = text.trim().toLowerCase();
  if (t === "none") return 0;
  if (t === "all") return depth;
  const n = Number(t);
  if (!/^\d+$/.test(t) || !Number.isSafeInteger(n)) {
    throw new UsageError(`--rope-mix must be none, all or a layer count, got '${text}'`);
  }
  if (n > depth) {
    throw new UsageError(`--rope-mix ${n} exceeds the model depth ${depth} (use 'all')`);
  }
  return n;
}

/** The --rope-mix spelling of ropeMixLayers (for messages and metadata). */
export function formatRopeMix(config: Pick<ModelConfig, "ropeMixLayers" | "depth">): string {
  if (config.ropeMixLayers === 0) return "none";
  if (config.ropeMixLayers === config.depth) return "all";
  return String(config.ropeMixLayers);
}

export interface ConfigRequest {
  preset: PresetName;
  depth?: number;
  width?: number;
  heads?: number;
  /** "none" (default), "all" or a layer count. */
  ropeMix?: string;
  vocab: number;
  latentDim: number;
  classes: number;
  scales: readonly number[];
}

/** A preset with overrides, for the data's codebook, latents, classes and scales; validated. */
export function buildModelConfig(req: ConfigRequest): ModelConfig {
  const base = PRESETS[req.preset];
  const depth = req.depth ?? base.depth;
  const config: ModelConfig = {
    vocab: req.vocab,
    latentDim: req.latentDim,
    classes: req.classes,
    depth,
    width: req.width ?? base.width,
    heads: req.heads ?? base.heads,
    mlpRatio: base.mlpRatio,
    scales: [...req.scales],
    ropeMixLayers: parseRopeMix(req.ropeMix ?? "none", depth),
  };
  validateModelConfig(config);
  return config;
}

/**
 * Throws a UsageError naming the first impossible setting: sizes must be positive integers,
 * width divisible by heads, head dimension even (RoPE rotates pairs), scales strictly
 * increasing, vocab at most 65536 (uint16 codes), ropeMixLayers in [0, depth].
 */
export function validateModelConfig(c: ModelConfig): void {
  const positive = (v: number, what: string) => {
    if (!Number.isSafeInteger(v) || v < 1) {
      throw new UsageError(`${what} must be a positive integer, got ${v}`);
    }
  };
  positive(c.depth, "depth");
  positive(c.width, "width");
  positive(c.heads, "heads");
  positive(c.mlpRatio, "mlp ratio");
  positive(c.vocab, "codebook size");
  positive(c.latentDim, "latent dimension");
  positive(c.classes, "class count");
  if (c.width % c.heads !== 0) {
    throw new UsageError(`width ${c.width} is not divisible by heads ${c.heads}`);
  }
  const headDim = c.width / c.heads;
  if (headDim % 2 !== 0) {
    throw new UsageError(
      `head dimension width/heads = ${c.width}/${c.heads} = ${headDim} must be even (RoPE rotates pairs)`,
    );
  }
  if (c.vocab > MAX_VOCAB) {
    throw new UsageError(`codebook size ${c.vocab} exceeds ${MAX_VOCAB} (codes are uint16)`);
  }
  validateScales(c.scales);
  if (!Number.isSafeInteger(c.ropeMixLayers) || c.ropeMixLayers < 0 || c.ropeMixLayers > c.depth) {
    throw new UsageError(`rope-mix layers must be in [0, ${c.depth}], got ${c.ropeMixLayers}`);
  }
}

/** One line describing a config, e.g. for logs. */
export function describeConfig(c: ModelConfig): string {
  return `depth ${c.depth}, width ${c.width}, heads ${c.heads}, codebook ${c.vocab}, ` +
    `latent ${c.latentDim}, classes ${c.classes}, scales ${c.scales.join(",")}, ` +
    `rope-mix ${formatRopeMix(c)}`;
}

/**
 * Weights of the matrix products every slot goes through once (the multiply-adds per slot of
 * a forward pass, outside attention):
 * - latent MLP on u and on v: 2 x (Dl*W + W*W),
 * - the input projection W_proj: 4W x W,
 * - per layer: qkv 3W^2, attention output W^2, MLP 2 * mlpRatio * W^2,
 * - the head: W x K.
 * AdaLN (computed once per sequence from the class embedding) and the embedding lookups are
 * left out.
 */
export function matmulParamsPerSlot(c: ModelConfig): number {
  const W = c.width;
  const latentMlp = 2 * (c.latentDim * W + W * W);
  const inProj = 4 * W * W;
  const perLayer = (4 + 2 * c.mlpRatio) * W * W;
  return latentMlp + inProj + c.depth * perLayer + W * c.vocab;
}

/**
 * Training FLOPs (forward + backward) per slot:
 *   6 * matmulParamsPerSlot + depth * 12 * meanVisible * width
 * The first term is the usual 2 FLOPs per multiply-add, times 3 for forward + backward. The
 * second is attention: q.k over the visible keys and the weighted sum of values are
 * 2 * 2 * visible * width forward, times 3 for forward + backward. `meanVisible` is the mean
 * number of slots a slot attends to (meanVisibleSlots of a layout's visibleEnd; about T / 2 for
 * a causal sequence).
 */
export function modelFlopsPerToken(c: ModelConfig, meanVisible: number): number {
  return 6 * matmulParamsPerSlot(c) + c.depth * 12 * meanVisible * c.width;
}

/** Mean of visibleEnd: how many slots a slot attends to on average. */
export function meanVisibleSlots(visibleEnd: ArrayLike<number>): number {
  let sum = 0;
  for (let i = 0; i < visibleEnd.length; i++) sum += visibleEnd[i];
  return visibleEnd.length ? sum / visibleEnd.length : 0;
}
