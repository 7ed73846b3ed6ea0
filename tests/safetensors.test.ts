/**
 * The strict safetensors reader: every malformed header, offset table or length is one
 * UserError naming the file; files as PyTorch and Hugging Face write them still read.
 */
import assert from "node:assert/strict";
import {
  decodeSafetensors,
  encodeSafetensors,
  MAX_HEADER_BYTES,
  readSafetensors,
} from "../src/util/safetensors.ts";
import { UserError } from "../src/errors.ts";
import { tempDir } from "./helpers.ts";

/** A safetensors file with header text `header` (padded with spaces to 8 bytes) and `data`. */
function raw(header: string | unknown, data = new Uint8Array(0), pad = true): Uint8Array {
  let json = typeof header === "string" ? header : JSON.stringify(header);
  if (pad) json += " ".repeat((8 - ((8 + json.length) % 8)) % 8);
  const head = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + head.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(head.length), true);
  out.set(head, 8);
  out.set(data, 8 + head.length);
  return out;
}

const f32 = (n: number) => ({ dtype: "F32", shape: [n], data_offsets: [0, 4 * n] });

function rejects(bytes: Uint8Array, pattern: RegExp, label = String(pattern)) {
  assert.throws(() => decodeSafetensors(bytes, "w.safetensors"), (err: Error) => {
    assert.ok(err instanceof UserError, `${label}: ${err.stack}`);
    assert.match(err.message, /^w\.safetensors: not a valid safetensors file \(/, label);
    assert.match(err.message, pattern, label);
    // describeValue (src/util/schema.ts) names a JSON null "an empty JSON value"; a bare null is a bug.
    assert.doesNotMatch(err.message, /undefined|(?<!JSON )null|\[object Object\]/, label);
    assert.equal(err.message.split("\n").length, 1, label);
    return true;
  }, label);
}

Deno.test("a header that is not a JSON object is refused", () => {
  rejects(raw("null"), /header must be a JSON object, got an empty JSON value/);
  rejects(raw("[1,2]"), /header must be a JSON object, got a list of 2/);
  rejects(raw('"x"'), /header must be a JSON object, got the text 'x'/);
  rejects(raw("7"), /header must be a JSON object, got 7/);
  rejects(raw("{"), /header is not valid JSON/);
  rejects(raw('{"a": 1} {}'), /header is not valid JSON \(unexpected text after/);
});

Deno.test("a header that is not UTF-8 is refused", () => {
  const bytes = raw("{}    ");
  bytes[9] = 0xff;
  rejects(bytes, /not UTF-8|not valid JSON/);
});

Deno.test("duplicate keys in the header are refused (JSON.parse would keep the last)", () => {
  const data = new Uint8Array(8);
  rejects(
    raw(`{"w": ${JSON.stringify(f32(2))}, "w": ${JSON.stringify(f32(2))}}`, data),
    /duplicate key 'w'/,
  );
  rejects(
    raw(`{"w": {"dtype": "F32", "dtype": "I32", "shape": [2], "data_offsets": [0, 8]}}`, data),
    /duplicate key 'dtype'/,
  );
});

Deno.test("__metadata__ must be an object of texts", () => {
  rejects(raw({ __metadata__: null }), /'__metadata__' must be an object of texts, got an empty JSON value/);
  rejects(raw({ __metadata__: ["a"] }), /'__metadata__' must be an object of texts, got a list/);
  rejects(raw({ __metadata__: { config: 3 } }), /'__metadata__\.config' must be a text, got 3/);
  rejects(
    raw({ __metadata__: { a: { b: "c" } } }),
    /'__metadata__\.a' must be a text, got an object/,
  );
});

Deno.test("tensor entries: object, dtype, shape and data_offsets are checked", () => {
  const d8 = new Uint8Array(8);
  const cases: [unknown, RegExp][] = [
    [{ w: null }, /tensor 'w' must be an object, got an empty JSON value/],
    [{ w: [1] }, /tensor 'w' must be an object, got a list of 1/],
    [{ w: 3 }, /tensor 'w' must be an object, got 3/],
    [{ w: { ...f32(2), dtype: "Q7" } }, /tensor 'w' has unsupported dtype the text 'Q7'/],
    [{ w: { ...f32(2), dtype: 4 } }, /tensor 'w': 'dtype' must be a text, got 4/],
    [{ w: { ...f32(2), dtype: undefined } }, /tensor 'w': 'dtype' must be a text, got nothing/],
    [{ w: { ...f32(2), shape: null } }, /'shape' must be a list of integers, got an empty JSON value/],
    [{ w: { ...f32(2), shape: "2" } }, /'shape' must be a list of integers, got the text '2'/],
    [{ w: { ...f32(2), shape: [-2] } }, /'shape' \[-2\] must hold non-negative integers/],
    [{ w: { ...f32(2), shape: [1.5] } }, /'shape' \[1.5\] must hold non-negative integers/],
    [{ w: { ...f32(2), shape: ["2"] } }, /must hold non-negative integers/],
    [{ w: { ...f32(2), shape: [1e300, 1e300] } }, /must hold non-negative integers/],
    [
      { w: { ...f32(2), shape: [2 ** 40, 2 ** 40] } },
      /needs more bytes than the file's 8 data bytes/,
    ],
    [{ w: { ...f32(2), shape: [1] } }, /hold 8 bytes, its shape \[1\] of F32 needs 4/],
    [{ w: { ...f32(2), shape: [3] } }, /shape \[3\] needs more bytes than the file.s 8 data bytes/],
    [
      { w: { ...f32(2), data_offsets: 8 } },
      /'data_offsets' must be a list of two non-negative integers, got 8/,
    ],
    [{ w: { ...f32(2), data_offsets: null } }, /'data_offsets' must be a list .* got an empty JSON value/],
    [{ w: { ...f32(2), data_offsets: [0] } }, /'data_offsets' must be a list .* got a list of 1/],
    [{ w: { ...f32(2), data_offsets: [0, 8, 9] } }, /'data_offsets' must be a list/],
    [{ w: { ...f32(2), data_offsets: [-8, 0] } }, /'data_offsets' must be a list/],
    [{ w: { ...f32(2), data_offsets: [0, "8"] } }, /'data_offsets' must be a list/],
    [{ w: { ...f32(2), data_offsets: [0, 2 ** 60] } }, /'data_offsets' must be a list/],
    [{ w: { ...f32(2), data_offsets: [8, 0] } }, /end before they begin/],
    [
      { w: { ...f32(2), data_offsets: [0, 16] } },
      /lie past the end of the data \(8 bytes; truncated\?\)/,
    ],
  ];
  for (const [header, pattern] of cases) rejects(raw(header, d8), pattern, JSON.stringify(header));
});

Deno.test("tensors must tile the data exactly: no overlap, no gap, no trailing bytes", () => {
  const a = { dtype: "F32", shape: [2], data_offsets: [0, 8] };
  const b = { dtype: "F32", shape: [2], data_offsets: [4, 12] };
  rejects(raw({ a, b }, new Uint8Array(12)), /tensors 'a' and 'b' overlap/);
  rejects(raw({ a, b: a }, new Uint8Array(8)), /tensors '[ab]' and '[ab]' overlap/);
  const gap = { dtype: "F32", shape: [1], data_offsets: [12, 16] };
  rejects(raw({ a, gap }, new Uint8Array(16)), /4 bytes before tensor 'gap' belong to no tensor/);
  rejects(raw({ a }, new Uint8Array(12)), /4 trailing bytes after the last tensor/);
  rejects(raw({}, new Uint8Array(3)), /3 trailing bytes after the last tensor/);
});

Deno.test("a huge or too long header length is refused without allocating", () => {
  const bytes = raw({});
  const view = new DataView(bytes.buffer);
  view.setBigUint64(0, 0xffffffffffffffffn, true);
  rejects(bytes, /header length 18446744073709551615 is over the limit/);
  view.setBigUint64(0, BigInt(MAX_HEADER_BYTES), true);
  rejects(bytes, /runs past the end of the file/);
  view.setBigUint64(0, 1000n, true);
  rejects(bytes, /header length 1000 runs past the end of the file \(16 bytes; truncated\?\)/);
  rejects(new Uint8Array(5), /5 bytes, too short/);
  rejects(new Uint8Array(0), /0 bytes, too short/);
});

Deno.test("files as PyTorch / Hugging Face write them read: no metadata, F16, padding, empty", () => {
  // Hugging Face's writer: no __metadata__ when there is none, header padded with spaces.
  const half = Uint16Array.from([0x3c00, 0xc000, 0x7bff]); // 1, -2, 65504
  const bf16 = Uint16Array.from([0x3f80, 0xc000]); // 1, -2
  const data = new Uint8Array(10);
  data.set(new Uint8Array(half.buffer), 0);
  data.set(new Uint8Array(bf16.buffer), 6);
  const file = raw({
    h: { dtype: "F16", shape: [3], data_offsets: [0, 6] },
    b: { dtype: "BF16", shape: [1, 2], data_offsets: [6, 10] },
  }, data);
  const { tensors, metadata } = decodeSafetensors(file, "hf.safetensors");
  assert.deepEqual(metadata, {});
  assert.deepEqual(Array.from(tensors.h.data), [1, -2, 65504]);
  assert.deepEqual(tensors.b.shape, [1, 2]);
  assert.deepEqual(Array.from(tensors.b.data), [1, -2]);
  // Empty metadata, a zero-size tensor and a scalar.
  const z = decodeSafetensors(
    raw(
      {
        __metadata__: {},
        e: { dtype: "F32", shape: [0, 5], data_offsets: [0, 0] },
        s: { dtype: "I32", shape: [], data_offsets: [0, 4] },
      },
      Int32Array.from([42]).reduce(
        (u, v) => (new DataView(u.buffer).setInt32(0, v, true), u),
        new Uint8Array(4),
      ),
    ),
    "z.safetensors",
  );
  assert.equal(z.tensors.e.data.length, 0);
  assert.deepEqual(Array.from(z.tensors.s.data), [42]);
  // Our own writer's output (metadata, alignment) reads back.
  const w = Float32Array.from([1, 2, 3]);
  const ours = decodeSafetensors(
    encodeSafetensors({ w: { shape: [3], data: w } }, { a: "b" }),
    "o",
  );
  assert.deepEqual(ours.tensors.w.data, w);
  assert.deepEqual(ours.metadata, { a: "b" });
});

Deno.test("a safetensors path that is a folder is one clear error", async () => {
  await using dir = await tempDir();
  await assert.rejects(() => readSafetensors(dir.path), (err: Error) => {
    assert.ok(err instanceof UserError, err.stack);
    assert.match(err.message, /cannot read .*checkerboard-test-/);
    return true;
  });
});

Deno.test("a tensor named __proto__ is an ordinary tensor", () => {
  const file = raw({ __proto__x: f32(1) }, new Uint8Array(4));
  // JSON.stringify cannot write a "__proto__" key from an object literal; rename it in the text.
  const text = new TextDecoder().decode(file).replace("__proto__x", "__proto__ ");
  const bytes = new TextEncoder().encode(text.replace('"__proto__ "', '"__proto__"'));
  const fixed = new Uint8Array(bytes.length);
  fixed.set(bytes);
  new DataView(fixed.buffer).setBigUint64(0, BigInt(bytes.length - 8 - 4), true);
  const { tensors } = decodeSafetensors(fixed, "p.safetensors");
  assert.deepEqual(Object.keys(tensors), ["__proto__"]);
  assert.equal(Object.getPrototypeOf(tensors), Object.prototype);
});
