/**
 * Reading a PyTorch checkpoint written by `torch.save` (the zip format of PyTorch >= 1.6), such
 * as LlamaGen's `vq_ds16_c2i.pt`, without PyTorch: the archive's `PREFIX/data.pkl` is a pickle
 * (protocol 2) of nested dicts whose tensors point at raw little-endian storages
 * `PREFIX/data/KEY`. The pickle is run by a small interpreter that knows only the opcodes
 * torch.save emits and only these globals: `collections.OrderedDict`,
 * `torch._utils._rebuild_tensor_v2` and the `torch.*Storage` types below. Anything else (code a
 * malicious pickle could name) is refused, so loading a checkpoint never runs code.
 */
import { UserError } from "../errors.ts";
import { readFileOrFail } from "../util/files.ts";
import { fromFloat16 } from "../util/safetensors.ts";
import { unzipStrict, ZipError } from "../data/unzip.ts";

export interface TorchTensor {
  shape: number[];
  /** Contiguous (row-major) values, widened to float32. */
  data: Float32Array;
}

/** Storage types by their torch name: bytes per element and how to widen to float32. */
const STORAGES: Record<string, { bytes: number; widen: (raw: Uint8Array) => Float32Array }> = {
  FloatStorage: { bytes: 4, widen: (raw) => new Float32Array(raw.slice().buffer) },
  HalfStorage: { bytes: 2, widen: (raw) => fromFloat16(new Uint16Array(raw.slice().buffer)) },
  BFloat16Storage: {
    bytes: 2,
    widen: (raw) => {
      const bits = new Uint16Array(raw.slice().buffer);
      const out = new Uint32Array(bits.length);
      for (let i = 0; i < bits.length; i++) out[i] = bits[i] << 16;
      return new Float32Array(out.buffer);
    },
  },
};

/** A storage as the pickle names it (its persistent id), resolved against the archive. */
interface StorageRef {
  kind: "storage";
  type: string;
  key: string;
  numel: number;
}

class Global {
  constructor(readonly module: string, readonly name: string) {}
}

const MARK = Symbol("mark");

/**
 * The state dict of a torch.save file: `{"model": state_dict}` (LlamaGen's layout; also under
 * "ema" or "state_dict"), or a state dict at the top level. Tensor names map to contiguous
 * float32 tensors.
 */
export async function readTorchCheckpoint(path: string): Promise<Record<string, TorchTensor>> {
  return decodeTorchCheckpoint(await readFileOrFail(path), path);
}

export function decodeTorchCheckpoint(
  bytes: Uint8Array,
  file: string,
): Record<string, TorchTensor> {
  const fail = (why: string): never => {
    throw new UserError(`${file}: not a readable PyTorch checkpoint (${why})`);
  };
  let entries: Record<string, Uint8Array>;
  try {
    entries = unzipStrict(bytes);
  } catch (err) {
    if (err instanceof ZipError) return fail(`not a torch.save zip archive: ${err.message}`);
    throw err;
  }
  const pickleName = Object.keys(entries).find((n) => /^[^/]+\/data\.pkl$/.test(n));
  if (!pickleName) return fail("no PREFIX/data.pkl in the archive");
  const prefix = pickleName.slice(0, -"data.pkl".length);
  const order = entries[`${prefix}byteorder`];
  if (order && new TextDecoder().decode(order).trim() !== "little") {
    fail("its storages are big-endian");
  }
  const root = runPickle(entries[pickleName], fail);
  // LlamaGen's vq_demo.py looks under "ema", then "model", then "state_dict"; else the top level.
  const nested = root instanceof Map
    ? ["ema", "model", "state_dict"].map((key) => root.get(key)).find((v) => v instanceof Map)
    : undefined;
  const dict = nested ?? root;
  if (!(dict instanceof Map)) return fail("the pickle holds no dict of tensors");
  const out: Record<string, TorchTensor> = {};
  for (const [name, value] of dict as Map<unknown, unknown>) {
    if (typeof name !== "string") fail("a state-dict key is not a text");
    if (!(value instanceof PendingTensor)) continue; // buffers such as ints are not weights
    out[name as string] = value.resolve(entries, prefix, `${name}`, fail);
  }
  if (Object.keys(out).length === 0) fail("the state dict holds no tensors");
  return out;
}

/** A tensor the pickle built: a view (offset, size, stride) of a storage not yet read. */
class PendingTensor {
  constructor(
    readonly storage: StorageRef,
    readonly offset: number,
    readonly shape: number[],
    readonly stride: number[],
  ) {}

  resolve(
    entries: Record<string, Uint8Array>,
    prefix: string,
    name: string,
    fail: (why: string) => never,
  ): TorchTensor {
    const { type, key, numel } = this.storage;
    const kind = STORAGES[type];
    const raw = entries[`${prefix}data/${key}`];
    if (!raw) fail(`tensor '${name}': storage data/${key} is missing`);
    if (raw.length !== numel * kind.bytes) {
      fail(`tensor '${name}': storage data/${key} has ${raw.length} bytes, not ${numel} values`);
    }
    const count = this.shape.reduce((a, b) => a * b, 1);
    // The furthest element the view reaches must lie inside the storage.
    const last = this.offset +
      this.shape.reduce((a, d, i) => a + (d > 0 ? (d - 1) * this.stride[i] : 0), 0);
    if (count > 0 && last >= numel) fail(`tensor '${name}' reaches past its storage`);
    const all = kind.widen(raw);
    const data = new Float32Array(count);
    // Gather in row-major order (a plain copy when the view is contiguous).
    const index = new Array(this.shape.length).fill(0);
    for (let i = 0; i < count; i++) {
      let at = this.offset;
      for (let d = 0; d < index.length; d++) at += index[d] * this.stride[d];
      data[i] = all[at];
      for (let d = index.length - 1; d >= 0; d--) {
        if (++index[d] < this.shape[d]) break;
        index[d] = 0;
      }
    }
    return { shape: [...this.shape], data };
  }
}

function isIntList(v: unknown): v is number[] {
  return Array.isArray(v) && v.every((x) => Number.isSafeInteger(x) && x >= 0);
}

/** Runs a torch.save pickle; returns its top-level object. */
function runPickle(bytes: Uint8Array, fail: (why: string) => never): unknown {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const text = new TextDecoder("utf-8", { fatal: true });
  const stack: unknown[] = [];
  const memo = new Map<number, unknown>();
  let pos = 0;
  const need = (n: number) => {
    if (pos + n > bytes.length) fail("the pickle ends early");
  };
  const u8 = () => (need(1), bytes[pos++]);
  const u16 = () => (need(2), pos += 2, view.getUint16(pos - 2, true));
  const u32 = () => (need(4), pos += 4, view.getUint32(pos - 4, true));
  const i32 = () => (need(4), pos += 4, view.getInt32(pos - 4, true));
  const str = (n: number) => {
    need(n);
    try {
      return text.decode(bytes.subarray(pos, pos += n));
    } catch {
      return fail("a text in the pickle is not UTF-8");
    }
  };
  const line = () => {
    const end = bytes.indexOf(0x0a, pos);
    if (end < 0) fail("the pickle ends early");
    return str(end - pos + 1).slice(0, -1);
  };
  const pop = () => (stack.length === 0 ? fail("the pickle's stack runs empty") : stack.pop());
  const popMark = (): unknown[] => {
    const at = stack.lastIndexOf(MARK);
    if (at < 0) fail("the pickle has no MARK where one is needed");
    return stack.splice(at).slice(1);
  };
  const top = () => (stack.length === 0 ? fail("the pickle's stack runs empty") : stack.at(-1));
  const setItems = (target: unknown, items: unknown[]) => {
    if (!(target instanceof Map)) fail("SETITEM on something that is not a dict");
    for (let i = 0; i + 1 < items.length; i += 2) {
      (target as Map<unknown, unknown>).set(items[i], items[i + 1]);
    }
  };
  const call = (fn: unknown, args: unknown): unknown => {
    if (!(fn instanceof Global) || !Array.isArray(args)) fail("REDUCE of something not callable");
    const g = fn as Global, a = args as unknown[];
    if (g.module === "collections" && g.name === "OrderedDict") return new Map();
    if (g.module === "torch._utils" && g.name === "_rebuild_tensor_v2") {
      const [storage, offset, size, stride] = a;
      const ref = storage as StorageRef;
      if (
        ref?.kind !== "storage" || !Number.isSafeInteger(offset) || !isIntList(size) ||
        !isIntList(stride) || size.length !== stride.length
      ) {
        fail("a tensor with an impossible storage, offset, size or stride");
      }
      return new PendingTensor(ref, offset as number, size as number[], stride as number[]);
    }
    return fail(`the pickle calls ${g.module}.${g.name}, which a checkpoint has no need of`);
  };

  for (;;) {
    const op = u8();
    switch (op) {
      case 0x80: // PROTO
        if (u8() > 5) fail("an unknown pickle protocol");
        break;
      case 0x7d: // EMPTY_DICT
        stack.push(new Map());
        break;
      case 0x29: // EMPTY_TUPLE
      case 0x5d: // EMPTY_LIST
        stack.push([]);
        break;
      case 0x28: // MARK
        stack.push(MARK);
        break;
      case 0x74: // TUPLE
        stack.push(popMark());
        break;
      case 0x85: // TUPLE1
        stack.push([pop()]);
        break;
      case 0x86: { // TUPLE2
        const b = pop(), a = pop();
        stack.push([a, b]);
        break;
      }
      case 0x87: { // TUPLE3
        const c = pop(), b = pop(), a = pop();
        stack.push([a, b, c]);
        break;
      }
      case 0x71: // BINPUT
        memo.set(u8(), top());
        break;
      case 0x72: // LONG_BINPUT
        memo.set(u32(), top());
        break;
      case 0x68: // BINGET
      case 0x6a: { // LONG_BINGET
        const key = op === 0x68 ? u8() : u32();
        if (!memo.has(key)) fail("the pickle reads a memo slot it never wrote");
        stack.push(memo.get(key));
        break;
      }
      case 0x4a: // BININT
        stack.push(i32());
        break;
      case 0x4b: // BININT1
        stack.push(u8());
        break;
      case 0x4d: // BININT2
        stack.push(u16());
        break;
      case 0x8a: { // LONG1
        const n = u8();
        if (n > 6) fail("an integer too large for a checkpoint");
        let v = 0;
        for (let i = 0; i < n; i++) v += u8() * 2 ** (8 * i);
        if (n > 0 && bytes[pos - 1] & 0x80) v -= 2 ** (8 * n);
        stack.push(v);
        break;
      }
      case 0x47: // BINFLOAT (big-endian)
        need(8);
        stack.push(view.getFloat64(pos, false));
        pos += 8;
        break;
      case 0x58: // BINUNICODE
        stack.push(str(u32()));
        break;
      case 0x8c: // SHORT_BINUNICODE
        stack.push(str(u8()));
        break;
      case 0x88: // NEWTRUE
        stack.push(true);
        break;
      case 0x89: // NEWFALSE
        stack.push(false);
        break;
      case 0x4e: // NONE
        stack.push(null);
        break;
      case 0x63: { // GLOBAL
        const module = line(), name = line();
        const storage = module === "torch" && name in STORAGES;
        const known = storage || (module === "collections" && name === "OrderedDict") ||
          (module === "torch._utils" && name === "_rebuild_tensor_v2");
        if (!known) fail(`the pickle names ${module}.${name}, which a checkpoint has no need of`);
        stack.push(new Global(module, name));
        break;
      }
      case 0x51: { // BINPERSID: ('storage', type, key, location, numel)
        const id = pop() as unknown[];
        const [tag, type, key, , numel] = Array.isArray(id) ? id : [];
        if (
          tag !== "storage" || !(type instanceof Global) || !(type.name in STORAGES) ||
          typeof key !== "string" || !Number.isSafeInteger(numel) || (numel as number) < 0
        ) {
          fail("a storage reference that is not (storage, type, key, location, size)");
        }
        stack.push(
          {
            kind: "storage",
            type: (type as Global).name,
            key,
            numel: numel as number,
          } satisfies StorageRef,
        );
        break;
      }
      case 0x52: { // REDUCE
        const args = pop(), fn = pop();
        stack.push(call(fn, args));
        break;
      }
      case 0x62: // BUILD: state of an OrderedDict (its metadata); nothing to keep
        pop();
        break;
      case 0x73: { // SETITEM
        const value = pop(), key = pop();
        setItems(top(), [key, value]);
        break;
      }
      case 0x75: { // SETITEMS
        const items = popMark();
        setItems(top(), items);
        break;
      }
      case 0x61: { // APPEND
        const value = pop();
        const list = top();
        if (!Array.isArray(list)) fail("APPEND to something that is not a list");
        (list as unknown[]).push(value);
        break;
      }
      case 0x65: { // APPENDS
        const items = popMark();
        const list = top();
        if (!Array.isArray(list)) fail("APPENDS to something that is not a list");
        (list as unknown[]).push(...items);
        break;
      }
      case 0x2e: // STOP
        if (stack.length !== 1) fail("the pickle ends with a malformed stack");
        return stack[0];
      default:
        return fail(`the pickle uses opcode 0x${op.toString(16)}, which torch.save does not write`);
    }
  }
}
