/** Image file decoding through sharp: centre crop, resize, flatten over white to RGB. */
import sharp from "sharp";
import { UserError } from "../errors.ts";
import { settleInFlight, trackInFlight } from "../util/in_flight.ts";

// Every file is decoded once, so libvips' operation cache (up to 50 MB by default) only holds
// memory that a streaming `data` run never reuses.
sharp.cache(false);

/**
 * Decodes `path` into a (side, side, 3) uint8 RGB image.
 *
 * A failure is reported only once no other decode (nor any other tracked work) is running:
 * callers decode several files at once with Promise.all, which rejects at the first failure,
 * and the CLI then exits at once; exit() while sharp's threads still decode crashed the process
 * (SIGSEGV, about 1 run in 100, after the error was printed).
 */
export async function decodeImageFile(path: string, side: number): Promise<Uint8Array> {
  try {
    const { data, info } = await trackInFlight(
      sharp(path)
        .resize(side, side, { fit: "cover", position: "centre", kernel: "lanczos3" })
        .flatten({ background: "#ffffff" })
        .removeAlpha()
        .toColourspace("srgb")
        .raw()
        .toBuffer({ resolveWithObject: true }),
    );
    if (info.width !== side || info.height !== side || info.channels !== 3) {
      throw new Error(`decoded to ${info.width}x${info.height}x${info.channels}`);
    }
    return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  } catch (err) {
    await settleInFlight();
    throw new UserError(`${path}: cannot decode image (${reasonOf(err)})`);
  }
}

/** The first line of what sharp (or libvips) said, never "undefined". */
function reasonOf(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  return message.split("\n")[0].trim() || "unknown decoder error";
}
