/** PNG encoding of 8-bit RGB images (zlib through fflate), and image grids. */
import { zlibSync } from "fflate";
import { writeFileAtomic } from "../util/files.ts";
import { crc32 } from "../util/crc32.ts";

function chunk(type: string, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, data.length);
  out.set(new TextEncoder().encode(type), 4);
  out.set(data, 8);
  view.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}

/** Encodes an RGB image; `rgb` is (height, width, 3) uint8. */
export function encodePng(rgb: Uint8Array, width: number, height: number): Uint8Array {
  if (rgb.length !== width * height * 3) throw new Error("encodePng: size mismatch");
  const ihdr = new Uint8Array(13);
  const v = new DataView(ihdr.buffer);
  v.setUint32(0, width);
  v.setUint32(4, height);
  ihdr.set([8, 2, 0, 0, 0], 8); // 8-bit depth, truecolour, deflate, no filter, no interlace
  // Each row starts with filter byte 0 (none).
  const raw = new Uint8Array(height * (1 + width * 3));
  for (let y = 0; y < height; y++) {
    raw.set(rgb.subarray(y * width * 3, (y + 1) * width * 3), y * (1 + width * 3) + 1);
  }
  const parts = [
    new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", ihdr),
    chunk("IDAT", zlibSync(raw, { level: 6 })),
    chunk("IEND", new Uint8Array(0)),
  ];
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let pos = 0;
  for (const p of parts) {
    out.set(p, pos);
    pos += p.length;
  }
  return out;
}

export async function writePng(path: string, rgb: Uint8Array, width: number, height: number) {
  await writeFileAtomic(path, encodePng(rgb, width, height));
}

/**
 * Tiles equally sized RGB tiles into a grid of `cols` columns with `gap`
 * pixels of `background` between them. Returns the image and its size.
 */
export function tileGrid(
  tiles: Uint8Array[],
  tileW: number,
  tileH: number,
  cols: number,
  { gap = 2, background = 255 } = {},
): { rgb: Uint8Array; width: number; height: number } {
  const rows = Math.ceil(tiles.length / cols);
  const width = cols * tileW + (cols + 1) * gap;
  const height = rows * tileH + (rows + 1) * gap;
  const rgb = new Uint8Array(width * height * 3).fill(background);
  tiles.forEach((tile, i) => {
    const x0 = gap + (i % cols) * (tileW + gap);
    const y0 = gap + Math.floor(i / cols) * (tileH + gap);
    for (let y = 0; y < tileH; y++) {
      rgb.set(tile.subarray(y * tileW * 3, (y + 1) * tileW * 3), ((y0 + y) * width + x0) * 3);
    }
  });
  return { rgb, width, height };
}
