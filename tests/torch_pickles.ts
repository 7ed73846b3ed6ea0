/**
 * Hand-written torch.save files for tests: a zip holding `archive/data.pkl` (a pickle assembled
 * opcode by opcode) and raw storages `archive/data/KEY`, including hostile ones whose pickle
 * would run code if a reader executed it.
 */
import { zipSync } from "fflate";

const ascii = (s: string) => [...new TextEncoder().encode(s)];

/** Pickle opcodes used below (protocol 2). */
export const op = {
  PROTO: 0x80,
  EMPTY_DICT: 0x7d,
  MARK: 0x28,
  TUPLE: 0x74,
  TUPLE1: 0x85,
  REDUCE: 0x52,
  SETITEM: 0x73,
  STOP: 0x2e,
  BINPERSID: 0x51,
  BININT1: 0x4b,
  NEWFALSE: 0x89,
  NONE: 0x4e,
  /** Protocol 4's STACK_GLOBAL: not an opcode torch.save's protocol 2 pickles use. */
  STACK_GLOBAL: 0x93,
} as const;

/** GLOBAL module\nname\n */
export const global = (module: string, name: string) => [0x63, ...ascii(`${module}\n${name}\n`)];
/** BINUNICODE: a 4-byte little-endian length, then UTF-8 (what torch.save writes). */
export const unicode = (s: string) => {
  const bytes = ascii(s);
  const n = bytes.length;
  return [0x58, n & 255, (n >> 8) & 255, (n >> 16) & 255, n >>> 24, ...bytes];
};

/** `_rebuild_tensor_v2(storage KEY of `numel` floats, 0, size, stride, False, None)` */
export function tensorOps(key: string, numel: number, size: number[], stride: number[]): number[] {
  const tuple = (xs: number[]) => [op.MARK, ...xs.flatMap((x) => [op.BININT1, x]), op.TUPLE];
  return [
    ...global("torch._utils", "_rebuild_tensor_v2"),
    op.MARK,
    op.MARK,
    ...unicode("storage"),
    ...global("torch", "FloatStorage"),
    ...unicode(key),
    ...unicode("cpu"),
    op.BININT1,
    numel,
    op.TUPLE,
    op.BINPERSID,
    op.BININT1,
    0,
    ...tuple(size),
    ...tuple(stride),
    op.NEWFALSE,
    op.NONE,
    op.TUPLE,
    op.REDUCE,
  ];
}

/** A pickle of `{outer: {name: tensor}}`, or of `{name: tensor}` when outer is null. */
export function stateDictPickle(outer: string | null, name: string, tensor: number[]): number[] {
  const inner = [op.EMPTY_DICT, ...unicode(name), ...tensor, op.SETITEM];
  const body = outer === null ? inner : [op.EMPTY_DICT, ...unicode(outer), ...inner, op.SETITEM];
  return [op.PROTO, 2, ...body, op.STOP];
}

/** `module.name(arg)`: what a malicious pickle does to run code. */
export function callPickle(module: string, name: string, arg: string): number[] {
  return [op.PROTO, 2, ...global(module, name), ...unicode(arg), op.TUPLE1, op.REDUCE, op.STOP];
}

/** The zip torch.save writes (stored, one folder), with `pickle` and raw storages by key. */
export function torchZip(pickle: number[], storages: Record<string, Uint8Array> = {}): Uint8Array {
  const files: Record<string, Uint8Array> = { "archive/data.pkl": new Uint8Array(pickle) };
  for (const [key, raw] of Object.entries(storages)) files[`archive/data/${key}`] = raw;
  files["archive/version"] = new TextEncoder().encode("3\n");
  return zipSync(files, { level: 0 });
}

/** Float32 values as a raw little-endian storage. */
export const floatStorage = (values: number[]) => new Uint8Array(new Float32Array(values).buffer);
