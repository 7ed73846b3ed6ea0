/** A folder dataset of generated PNG and JPEG images of mixed sizes, for the VQ tests. */
import { join } from "node:path";
import sharp from "sharp";
import { Rng } from "../src/util/rng.ts";

/** Writes `count` PNG and JPEG images of mixed sizes (smooth patterns, 4 classes) under `root`. */
export async function writeMixedImages(root: string, count: number, seed: number) {
  const rng = new Rng(seed);
  for (let i = 0; i < count; i++) {
    const dir = join(root, `class${i % 4}`);
    await Deno.mkdir(dir, { recursive: true });
    const w = 24 + rng.int(200), h = 24 + rng.int(200);
    const rgb = new Uint8Array(w * h * 3);
    const [r, g, b] = [rng.int(256), rng.int(256), rng.int(256)];
    const fx = 1 + rng.int(6), fy = 1 + rng.int(6);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const wave = Math.sin((fx * x) / w * 6.28) * Math.cos((fy * y) / h * 6.28);
        rgb.set([r * (0.5 + wave / 2), g * (1 - y / h), (b + 128 * wave) & 255], (y * w + x) * 3);
      }
    }
    const image = sharp(rgb, { raw: { width: w, height: h, channels: 3 } });
    const file = join(dir, `img${i}.${i % 2 ? "png" : "jpg"}`);
    await (i % 2 ? image.png() : image.jpeg({ quality: 90 })).toFile(file);
  }
}
