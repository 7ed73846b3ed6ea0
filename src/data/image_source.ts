/**
 * Where `data` reads images from: a list of labelled images that are decoded one at a time on
 * demand, so that a dataset never has to fit in memory. A folder dataset lists its files and
 * decodes each when asked (folder.ts, FolderSource); mnist and emoji, small enough to hold,
 * are a source over their in-memory ImageSet (ImageSetSource).
 */
import { createHash } from "node:crypto";
import { Buffer } from "node:buffer";
import sharp from "sharp";
import { imageAt, type ImageSet } from "./dataset.ts";
import { trackInFlight } from "../util/in_flight.ts";

export interface ImageSource {
  /** Dataset spec as the user gave it ("mnist", "emoji", "folder:PATH"). */
  readonly name: string;
  readonly classes: string[];
  readonly count: number;
  /** (count) class index per image. */
  readonly labels: Int32Array;
  /**
   * Whether an image that cannot be decoded is skipped (counted, named in the manifest) rather
   * than an error: files on disk may be damaged; an in-memory set cannot be.
   */
  readonly skipsUnreadable: boolean;
  /** Image i's name for messages and the manifest (a folder's: relative to the folder). */
  nameOf(i: number): string;
  /**
   * A short hash of what is listed (a folder's file names, sizes and modification times; an
   * in-memory set's pixels and labels): a resumed `data` run must see the same dataset.
   */
  fingerprint(): Promise<string>;
  /**
   * Image i as a (side, side, 3) uint8 RGB square: the shorter side resized to `side`, then
   * the centre crop. Rejects with a UserError naming the file when it cannot be decoded.
   */
  square(i: number, side: number): Promise<Uint8Array>;
}

/** An ImageSet as a source; images of another side are resized (lanczos3) on demand. */
export class ImageSetSource implements ImageSource {
  readonly skipsUnreadable = false;
  constructor(readonly set: ImageSet) {}

  get name() {
    return this.set.name;
  }
  get classes() {
    return this.set.classes;
  }
  get count() {
    return this.set.count;
  }
  get labels() {
    return this.set.labels;
  }

  nameOf(i: number): string {
    return `${this.set.name} image ${i}`;
  }

  fingerprint(): Promise<string> {
    const h = createHash("sha256");
    h.update(
      JSON.stringify({ name: this.set.name, classes: this.set.classes, side: this.set.side }),
    );
    h.update(this.set.pixels);
    h.update(
      new Uint8Array(
        this.set.labels.buffer,
        this.set.labels.byteOffset,
        this.set.labels.byteLength,
      ),
    );
    return Promise.resolve(h.digest("hex").slice(0, 16));
  }

  async square(i: number, side: number): Promise<Uint8Array> {
    const image = imageAt(this.set, i); // (set.side, set.side, 3)
    if (side === this.set.side) return image;
    const s = this.set.side;
    const { data } = await trackInFlight(
      sharp(Buffer.from(image.buffer, image.byteOffset, image.byteLength), {
        raw: { width: s, height: s, channels: 3 },
      })
        .resize(side, side, { kernel: "lanczos3" })
        .raw()
        .toBuffer({ resolveWithObject: true }),
    );
    return new Uint8Array(data.buffer, data.byteOffset, data.byteLength); // (side, side, 3)
  }
}

/** True when `input` is an in-memory ImageSet rather than a source. */
export function isImageSet(input: ImageSet | ImageSource): input is ImageSet {
  return (input as ImageSet).pixels instanceof Uint8Array;
}

/** `input` as a source. */
export function asSource(input: ImageSet | ImageSource): ImageSource {
  return isImageSet(input) ? new ImageSetSource(input) : input;
}
