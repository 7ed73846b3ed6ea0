/** Image file decoding through sharp: centre crop, resize, flatten over white to RGB. */
import sharp from "sharp";
import { UserError } from "../errors.ts";

/** Decodes `path` into a (side, side, 3) uint8 RGB image. */
export async function decodeImageFile(path: string, side: number): Promise<Uint8Array> {
  try {
    const { data, info } = await sharp(path)
      .resize(side, side, { fit: "cover", position: "centre", kernel: "lanczos3" })
      .flatten({ background: "#ffffff" })
      .removeAlpha()
      .toColourspace("srgb")
      .raw()
      .toBuffer({ resolveWithObject: true });
    if (info.width !== side || info.height !== side || info.channels !== 3) {
      throw new Error(`decoded to ${info.width}x${info.height}x${info.channels}`);
    }
    return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  } catch (err) {
    const msg = (err as Error).message.split("\n")[0];
    throw new UserError(`${path}: cannot decode image (${msg})`);
  }
}
