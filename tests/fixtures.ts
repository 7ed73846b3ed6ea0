/** Small synthetic datasets written to disk, for tests that run the real pipeline quickly. */
import { encodePng } from "../src/data/png.ts";

/**
 * Writes `perClass` PNGs of side `side` into `dir/<class>/`, for classes
 * "bars" (vertical stripes) and "blocks" (a filled square); returns `dir`.
 */
export async function writeShapesFolder(dir: string, perClass = 12, side = 16): Promise<string> {
  for (const cls of ["bars", "blocks"]) {
    await Deno.mkdir(`${dir}/${cls}`, { recursive: true });
    for (let i = 0; i < perClass; i++) {
      const rgb = new Uint8Array(side * side * 3).fill(255);
      for (let y = 0; y < side; y++) {
        for (let x = 0; x < side; x++) {
          const on = cls === "bars"
            ? (x + i) % 4 < 2
            : x >= i % 6 && x < (i % 6) + side / 2 && y >= 2 && y < 2 + side / 2;
          if (on) rgb.set([20 * (i % 5), 120, 255 - 10 * i], (y * side + x) * 3);
        }
      }
      await Deno.writeFile(
        `${dir}/${cls}/${String(i).padStart(3, "0")}.png`,
        encodePng(rgb, side, side),
      );
    }
  }
  return dir;
}
