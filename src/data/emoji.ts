/**
 * Emoji from the npm package `emoji-datasource-google`: 64x64 RGBA images drawn
 * over white; the classes are its categories (Component is skipped).
 */
import type { ImageSet } from "./dataset.ts";
import { decodeImageFile } from "./decode.ts";
import { packageDir } from "./packages.ts";

interface EmojiEntry {
  image: string;
  category: string;
  has_img_google?: boolean;
  sort_order: number;
}

export async function loadEmoji(side = 64): Promise<ImageSet> {
  const dir = await packageDir("emoji-datasource-google");
  const entries: EmojiEntry[] = JSON.parse(await Deno.readTextFile(`${dir}emoji.json`));
  // Class order follows the package's own category order.
  const categoryOrder = Object.keys(JSON.parse(await Deno.readTextFile(`${dir}categories.json`)));
  const classes = categoryOrder.filter((c) => c !== "Component");
  const chosen = entries
    .filter((e) => e.has_img_google && classes.includes(e.category))
    .sort((a, b) => a.sort_order - b.sort_order);
  const pixels = new Uint8Array(chosen.length * side * side * 3);
  const labels = new Int32Array(chosen.length);
  const size = side * side * 3;
  // Decode a few at a time: sharp works on its own threads.
  const parallel = 8;
  for (let start = 0; start < chosen.length; start += parallel) {
    const batch = chosen.slice(start, start + parallel);
    const images = await Promise.all(
      batch.map((e) => decodeImageFile(`${dir}img/google/64/${e.image}`, side)),
    );
    images.forEach((img, j) => {
      pixels.set(img, (start + j) * size);
      labels[start + j] = classes.indexOf(batch[j].category);
    });
  }
  return { name: "emoji", classes, side, count: chosen.length, pixels, labels };
}
