/**
 * The architecture of LlamaGen's VQ autoencoder (vq_model.py: Encoder, VectorQuantizer, Decoder)
 * as a few numbers, derived from a state dict's tensor shapes, and the full list of tensors (names
 * and shapes, in LlamaGen's state-dict order) an architecture implies. A checkpoint loads when its
 * tensors are exactly that list (plus the training-only quantize.codebook_used), so the released
 * ds16 model and the small test fixture load without a configuration file.
 */
import { UserError } from "../errors.ts";

/** The numbers of VqNet's `arch` (native/engine/vq/vq_config.h). */
export interface VqArchitecture {
  /** Base channels: level l has ch * chMult[l]. */
  ch: number;
  /** One entry per resolution level; the same for encoder and decoder. */
  chMult: number[];
  /** The encoder's output and the decoder's input channels. */
  zChannels: number;
  /** Codebook size K. */
  codes: number;
  /** Code dimension D (quant_conv's output channels, the codebook's width). */
  codeDim: number;
  /** ResnetBlocks per encoder level (LlamaGen's num_res_blocks). */
  encoderBlocks: number;
  /** ResnetBlocks per decoder level (num_res_blocks + 1). */
  decoderBlocks: number;
}

/** GroupNorm's group count in every norm of the model: every channel count must divide by it. */
export const VQ_GROUPS = 32;
/** The tensor only training uses; dropped on import. */
export const CODEBOOK_USED_KEY = "quantize.codebook_used";
/** The codebook (K, D), as LlamaGen names it. */
export const CODEBOOK_KEY = "quantize.embedding.weight";

/** Bounds that keep a damaged file from asking for absurd allocations. */
const MAX_LEVELS = 8, MAX_CHANNELS = 8192, MAX_BLOCKS = 16, MAX_CODES = 65536, MAX_CODE_DIM = 1024;

/** Pixels per code along a side: 2^(levels - 1) (16 for VQ-16). */
export function patchOf(arch: VqArchitecture): number {
  return 2 ** (arch.chMult.length - 1);
}

export type ShapeList = [name: string, shape: number[]][];

/** Every tensor `arch` implies, in LlamaGen's state-dict order, without codebook_used. */
export function vqTensorShapes(arch: VqArchitecture): ShapeList {
  const out: ShapeList = [];
  const conv = (name: string, cout: number, cin: number, k: number) => {
    out.push([`${name}.weight`, [cout, cin, k, k]], [`${name}.bias`, [cout]]);
  };
  const norm = (name: string, c: number) => {
    out.push([`${name}.weight`, [c]], [`${name}.bias`, [c]]);
  };
  const resnet = (name: string, cin: number, cout: number) => {
    norm(`${name}.norm1`, cin);
    conv(`${name}.conv1`, cout, cin, 3);
    norm(`${name}.norm2`, cout);
    conv(`${name}.conv2`, cout, cout, 3);
    if (cin !== cout) conv(`${name}.nin_shortcut`, cout, cin, 1);
  };
  const attention = (name: string, c: number) => {
    norm(`${name}.norm`, c);
    for (const part of ["q", "k", "v", "proj_out"]) conv(`${name}.${part}`, c, c, 1);
  };
  const mid = (name: string, c: number) => {
    resnet(`${name}.0`, c, c);
    attention(`${name}.1`, c);
    resnet(`${name}.2`, c, c);
  };
  const { ch, chMult, zChannels, codes, codeDim, encoderBlocks, decoderBlocks } = arch;
  const levels = chMult.length;
  const top = ch * chMult[levels - 1];

  // Encoder: conv_in, levels (attention only at the last, lowest resolution), mid, out.
  conv("encoder.conv_in", ch, 3, 3);
  let cin = ch;
  for (let l = 0; l < levels; l++) {
    const cout = ch * chMult[l];
    const level = `encoder.conv_blocks.${l}`;
    for (let b = 0; b < encoderBlocks; b++) {
      resnet(`${level}.res.${b}`, b === 0 ? cin : cout, cout);
    }
    if (l === levels - 1) {
      for (let b = 0; b < encoderBlocks; b++) attention(`${level}.attn.${b}`, cout);
    } else {
      conv(`${level}.downsample.conv`, cout, cout, 3);
    }
    cin = cout;
  }
  mid("encoder.mid", top);
  norm("encoder.norm_out", top);
  conv("encoder.conv_out", zChannels, top, 3);

  // Decoder: conv_blocks[i] runs level levels-1-i, so block 0 is the lowest resolution.
  conv("decoder.conv_in", top, zChannels, 3);
  mid("decoder.mid", top);
  cin = top;
  for (let i = 0; i < levels; i++) {
    const cout = ch * chMult[levels - 1 - i];
    const level = `decoder.conv_blocks.${i}`;
    for (let b = 0; b < decoderBlocks; b++) {
      resnet(`${level}.res.${b}`, b === 0 ? cin : cout, cout);
    }
    if (i === 0) {
      for (let b = 0; b < decoderBlocks; b++) attention(`${level}.attn.${b}`, cout);
    }
    if (i !== levels - 1) conv(`${level}.upsample.conv`, cout, cout, 3);
    cin = cout;
  }
  norm("decoder.norm_out", cin);
  conv("decoder.conv_out", 3, cin, 3);

  out.push([CODEBOOK_KEY, [codes, codeDim]]);
  conv("quant_conv", codeDim, zChannels, 1);
  conv("post_quant_conv", zChannels, codeDim, 1);
  return out;
}

/** "[128, 3, 3, 3]" */
function shapeText(shape: readonly number[] | undefined): string {
  return shape ? `[${shape.join(", ")}]` : "missing";
}

/** The impossible setting of `arch`, if any (as a phrase), else null. */
export function architectureProblem(arch: VqArchitecture): string | null {
  const { ch, chMult, zChannels, codes, codeDim, encoderBlocks, decoderBlocks } = arch;
  const positive = (v: number, max: number) => Number.isSafeInteger(v) && v >= 1 && v <= max;
  if (!Array.isArray(chMult) || chMult.length < 1 || chMult.length > MAX_LEVELS) {
    return `ch_mult must have 1 to ${MAX_LEVELS} levels`;
  }
  if (!positive(ch, MAX_CHANNELS)) return `ch ${ch} is not a channel count`;
  for (const m of chMult) {
    if (!positive(m, MAX_CHANNELS) || !positive(ch * m, MAX_CHANNELS)) {
      return `ch_mult [${chMult}] with ch ${ch} gives an impossible channel count`;
    }
    if ((ch * m) % VQ_GROUPS !== 0) {
      return `a level has ${ch * m} channels, not a multiple of GroupNorm's ${VQ_GROUPS} groups`;
    }
  }
  if (!positive(zChannels, MAX_CHANNELS)) return `z_channels ${zChannels} is not a channel count`;
  if (!positive(codes, MAX_CODES) || codes < 2) {
    return `the codebook size ${codes} is not 2..${MAX_CODES}`;
  }
  if (!positive(codeDim, MAX_CODE_DIM)) {
    return `the code dimension ${codeDim} is not 1..${MAX_CODE_DIM}`;
  }
  if (!positive(encoderBlocks, MAX_BLOCKS)) return `${encoderBlocks} encoder blocks per level`;
  if (!positive(decoderBlocks, MAX_BLOCKS)) return `${decoderBlocks} decoder blocks per level`;
  return null;
}

/** Counts the consecutive indices n = 0, 1, ... for which `has(n)` holds. */
function countWhile(has: (n: number) => boolean, max: number): number {
  let n = 0;
  while (n < max && has(n)) n++;
  return n;
}

/**
 * The architecture of a LlamaGen VQ state dict, derived from its shapes and then checked tensor
 * by tensor against vqTensorShapes. Every failure is a UserError naming `file` (and the first
 * wrong key with both shapes); `quantize.codebook_used` may be present or not.
 */
export function deriveArchitecture(
  shapes: Record<string, readonly number[]>,
  file: string,
): VqArchitecture {
  const fail = (why: string): never => {
    throw new UserError(`${file}: not a LlamaGen VQ checkpoint (${why})`);
  };
  const dim = (key: string, axis: number, rank: number): number => {
    const shape = shapes[key];
    if (!shape) return fail(`no tensor '${key}'`);
    if (shape.length !== rank) return fail(`'${key}' has shape ${shapeText(shape)}`);
    return shape[axis];
  };
  const ch = dim("encoder.conv_in.weight", 0, 4);
  const levels = countWhile(
    (l) => `encoder.conv_blocks.${l}.res.0.conv1.weight` in shapes,
    MAX_LEVELS + 1,
  );
  if (levels === 0) fail("no encoder.conv_blocks.0.res.0.conv1.weight");
  const chMult = Array.from({ length: levels }, (_, l) => {
    const c = dim(`encoder.conv_blocks.${l}.res.0.conv1.weight`, 0, 4);
    if (c % ch !== 0) fail(`encoder level ${l} has ${c} channels, not a multiple of ch ${ch}`);
    return c / ch;
  });
  const blocks = (prefix: string) =>
    countWhile((b) => `${prefix}.res.${b}.conv1.weight` in shapes, MAX_BLOCKS + 1);
  const [codes, codeDim] = [0, 1].map((axis) => dim(CODEBOOK_KEY, axis, 2));
  const arch: VqArchitecture = {
    ch,
    chMult,
    zChannels: dim("encoder.conv_out.weight", 0, 4),
    codes,
    codeDim,
    encoderBlocks: blocks("encoder.conv_blocks.0"),
    decoderBlocks: blocks("decoder.conv_blocks.0"),
  };
  const problem = architectureProblem(arch);
  if (problem) fail(problem);
  checkShapes(arch, shapes, file);
  return arch;
}

/**
 * Checks that `shapes` holds exactly the tensors `arch` implies with their shapes (and at most
 * the extra quantize.codebook_used), naming `file` and the first wrong key.
 */
export function checkShapes(
  arch: VqArchitecture,
  shapes: Record<string, readonly number[]>,
  file: string,
): void {
  const want = vqTensorShapes(arch);
  for (const [key, shape] of want) {
    const got = shapes[key];
    if (!got || got.length !== shape.length || got.some((d, i) => d !== shape[i])) {
      throw new UserError(
        `${file}: tensor '${key}' has shape ${shapeText(got)}, but the architecture ` +
          `(ch ${arch.ch}, ch_mult [${arch.chMult}], z ${arch.zChannels}, ${arch.codes} codes of ` +
          `${arch.codeDim}) needs ${shapeText(shape)}`,
      );
    }
  }
  const known = new Set(want.map(([key]) => key));
  const extra = Object.keys(shapes).filter((k) => !known.has(k) && k !== CODEBOOK_USED_KEY);
  if (extra.length) {
    throw new UserError(
      `${file}: unexpected tensor '${extra[0]}'${
        extra.length > 1 ? ` and ${extra.length - 1} more` : ""
      } (not part of LlamaGen's VQ model with this architecture)`,
    );
  }
}
