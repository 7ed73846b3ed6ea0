/**
 * A generated folder dataset for the scale scripts (data-scale.ts, vq-pipeline.ts): seeded JPEGs
 * of sides 64-500 px drawn independently (any aspect), 10 classes, from class-coloured gradients,
 * random rectangles and discs, and noise.
 */
import { Buffer } from "node:buffer";
import { join } from "node:path";
import sharp from "sharp";
import { Rng } from "../src/util/rng.ts";
import { exists } from "../src/util/files.ts";

const CLASSES = 10;

/**
 * One image of class `c`: a class-coloured gradient, a few rectangles and discs, and noise;
 * (h, w, 3) RGB.
 */
function drawImage(rng: Rng, c: number, w: number, h: number): Uint8Array {
  const rgb = new Uint8Array(w * h * 3);
  const base = [(c * 73) % 256, (c * 151 + 40) % 256, (c * 29 + 90) % 256];
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const g = (x / w + y / h) * 60;
      rgb.set([base[0] + g, base[1] - g, base[2] + g / 2].map((v) => v & 255), (y * w + x) * 3);
    }
  }
  for (let k = 0; k < 3 + rng.int(5); k++) {
    const colour = [rng.int(256), rng.int(256), rng.int(256)];
    const cx = rng.int(w), cy = rng.int(h), r = 8 + rng.int(Math.min(w, h) / 3);
    const disc = (k + c) % 2 === 0;
    for (let y = Math.max(0, cy - r); y < Math.min(h, cy + r); y++) {
      for (let x = Math.max(0, cx - r); x < Math.min(w, cx + r); x++) {
        if (!disc || (x - cx) ** 2 + (y - cy) ** 2 < r * r) rgb.set(colour, (y * w + x) * 3);
      }
    }
  }
  for (let i = 0; i < rgb.length; i++) {
    rgb[i] = Math.max(0, Math.min(255, rgb[i] + rng.int(31) - 15));
  }
  return rgb;
}

/** Writes the dataset into `dir` unless a complete one of the same settings is there. */
export async function generateImages(dir: string, images: number, seed: number) {
  const stamp = join(dir, ".complete");
  if (await exists(stamp)) return console.log(`images: ${dir} (kept from an earlier run)`);
  await Deno.remove(dir, { recursive: true }).catch(() => {});
  const rng = new Rng(seed);
  const started = performance.now();
  for (let i = 0; i < images; i++) {
    const c = i % CLASSES;
    const classDir = join(dir, `class-${String(c).padStart(2, "0")}`);
    if (i < CLASSES) await Deno.mkdir(classDir, { recursive: true });
    const w = 64 + rng.int(437), h = 64 + rng.int(437);
    await sharp(Buffer.from(drawImage(rng, c, w, h)), { raw: { width: w, height: h, channels: 3 } })
      .jpeg({ quality: 85 })
      .toFile(join(classDir, `img-${String(i).padStart(6, "0")}.jpg`));
  }
  await Deno.writeTextFile(stamp, "");
  const s = (performance.now() - started) / 1000;
  console.log(
    `images: generated ${images} JPEGs (64-500 px, ${CLASSES} classes) in ${s.toFixed(1)} s`,
  );
}
