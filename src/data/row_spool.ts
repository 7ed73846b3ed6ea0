/**
 * The rows of the shard being filled, kept in a file beside the shards instead of in memory.
 * A shard holds thousands of rows (4,096 by default: 2.8 MB of codes at 256 px), so holding
 * them made a streaming `data` run's peak memory depend on whether the run ever filled a
 * shard; spooled, it holds one write buffer whatever the shard size and the dataset's length.
 * The file is scratch: a run that is killed leaves it, and the next run's openPartial removes
 * it (the journal resumes at the last written shard).
 */
import { fileSystemError } from "../util/files.ts";

/** Bytes gathered before one write to the spool file. */
const WRITE_BUFFER_BYTES = 1 << 16;

export class RowSpool {
  private file: Deno.FsFile | null = null;
  private readonly buffer = new Uint8Array(WRITE_BUFFER_BYTES);
  private buffered = 0;
  /** Rows appended since the last reset. */
  rows = 0;

  constructor(
    /** The spool file's path. */
    readonly path: string,
    /** Values per row. */
    private readonly rowLength: number,
  ) {}

  /** Appends one row of `rowLength` uint16 values (stored little-endian, as .npy's '<u2'). */
  async append(row: Uint16Array) {
    if (row.length !== this.rowLength) {
      throw new Error(`RowSpool: a row of ${row.length} values, expected ${this.rowLength}`);
    }
    let bytes = new Uint8Array(row.buffer, row.byteOffset, row.byteLength);
    while (bytes.length > 0) {
      const n = Math.min(bytes.length, this.buffer.length - this.buffered);
      this.buffer.set(bytes.subarray(0, n), this.buffered);
      this.buffered += n;
      bytes = bytes.subarray(n);
      if (this.buffered === this.buffer.length) await this.flush();
    }
    this.rows++;
  }

  /**
   * The spooled rows' bytes from the first row, in chunks of `chunkBytes` (the last may be
   * shorter). Call reset() after, before appending again.
   */
  async *chunks(chunkBytes: number): AsyncGenerator<Uint8Array> {
    await this.flush();
    const total = this.rows * this.rowLength * 2;
    if (total === 0) return;
    const file = await this.open();
    try {
      await file.seek(0, Deno.SeekMode.Start);
      for (let done = 0; done < total;) {
        const want = Math.min(chunkBytes, total - done);
        // A fresh buffer each time: the consumer may keep the chunk (a deflater's window).
        const chunk = new Uint8Array(want);
        let filled = 0;
        while (filled < want) {
          const n = await file.read(chunk.subarray(filled, want));
          if (n === null) throw new Error(`${this.path}: ends after ${done + filled} bytes`);
          filled += n;
        }
        done += want;
        yield chunk;
      }
    } catch (err) {
      throw fileSystemError(err, `cannot read ${this.path}`);
    }
  }

  /** Forgets the rows (the file is truncated, and reused). */
  async reset() {
    this.rows = 0;
    this.buffered = 0;
    if (this.file !== null) {
      await this.file.truncate(0);
      await this.file.seek(0, Deno.SeekMode.Start);
    }
  }

  /** Closes and removes the spool file. */
  async remove() {
    this.file?.close();
    this.file = null;
    await Deno.remove(this.path).catch(() => {});
  }

  private async flush() {
    if (this.buffered === 0) return;
    const file = await this.open();
    try {
      const pending = this.buffer.subarray(0, this.buffered);
      for (let at = 0; at < pending.length;) at += await file.write(pending.subarray(at));
    } catch (err) {
      throw fileSystemError(err, `cannot write ${this.path}`);
    }
    this.buffered = 0;
  }

  private async open(): Promise<Deno.FsFile> {
    if (this.file === null) {
      try {
        this.file = await Deno.open(this.path, {
          read: true,
          write: true,
          create: true,
          truncate: true,
        });
      } catch (err) {
        throw fileSystemError(err, `cannot open ${this.path}`);
      }
    }
    return this.file;
  }
}
