/** `sample --classes` by index or name, and class names in image file names (src/sample/classes.ts). */
import assert from "node:assert/strict";
import { classSlug, imageFileName, parseClassSpec, resolveClasses } from "../src/sample/classes.ts";
import { UsageError, UserError } from "../src/errors.ts";

const EMOJI = ["Smileys & Emotion", "People & Body", "Animals & Nature", "Food & Drink"];

Deno.test("classes by index and by name, quoted or not, any case, duplicates dropped", () => {
  const spec = parseClassSpec('"Smileys & Emotion",animals & nature, 3,0');
  assert.equal(spec.kind, "list");
  if (spec.kind !== "list") return;
  assert.deepEqual(resolveClasses(spec.entries, EMOJI, 4, "ckpt"), [0, 2, 3]);
  assert.deepEqual(parseClassSpec(" all "), { kind: "all" });
  assert.throws(() => parseClassSpec("1,,2"), UsageError);
});

Deno.test("an unknown class name lists the valid ones; an index out of range names the range", () => {
  assert.throws(
    () => resolveClasses(["Plants"], EMOJI, 4, "ckpt/model.safetensors"),
    (err: Error) =>
      err instanceof UserError &&
      err.message === "--classes: no class 'Plants' in ckpt/model.safetensors; its 4 classes " +
          "are: 0 Smileys & Emotion, 1 People & Body, 2 Animals & Nature, 3 Food & Drink",
  );
  const digits = Array.from({ length: 10 }, (_, d) => String(d));
  assert.throws(
    () => resolveClasses(["seven"], digits, 10, "m"),
    /no class 'seven' in m; its 10 classes are 0\.\.9$/,
  );
  assert.throws(() => resolveClasses(["12"], digits, 10, "m"), /class 12 is out of range/);
  assert.throws(() => resolveClasses(["x"], [], 3, "m"), /its 3 classes are 0\.\.2$/);
});

Deno.test("image file names carry a file-system-safe class name", () => {
  assert.equal(classSlug("Smileys & Emotion"), "smileys-emotion");
  assert.equal(classSlug("Café/../x"), "cafe-x");
  assert.equal(classSlug("&&&"), "");
  assert.equal(imageFileName(12, 0, EMOJI), "00012-0-smileys-emotion.png");
  assert.equal(
    imageFileName(12, 7, ["0", "1", "2", "3", "4", "5", "6", "seven"]),
    "00012-7-seven.png",
  );
  assert.equal(imageFileName(3, 7, Array.from({ length: 10 }, (_, d) => String(d))), "00003-7.png");
  assert.equal(imageFileName(3, 1, []), "00003-1.png");
});
