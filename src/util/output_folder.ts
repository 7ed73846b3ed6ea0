/**
 * An output folder written all or nothing: made and probed for writing before the long work,
 * outputs staged under temporary names and renamed into place at the end, and on failure the
 * staged files and any folder the run created removed again.
 */
import { join } from "node:path";
import { UserError } from "../errors.ts";
import { exists, reason } from "./files.ts";

/**
 * The output folder, made and probed for writing before any sampling. Outputs are staged under
 * temporary names and renamed into place by commit(); abort() removes the staged files and any
 * folder this run created.
 */
export class OutputFolder {
  private staged: { tmp: string; final: string; folder: boolean }[] = [];
  private createdTop: string | null = null;
  private readonly tag = `${Deno.pid}-${Math.random().toString(36).slice(2, 8)}`;

  constructor(readonly dir: string) {}

  /**
   * Makes the folder (or checks the existing one) and probes it for writing. An existing folder
   * with anything in it is refused unless `force` is set: outputs of an earlier run are not
   * silently replaced.
   */
  async prepare({ force = false }: { force?: boolean } = {}) {
    try {
      const st = await Deno.stat(this.dir);
      if (!st.isDirectory) {
        throw new UserError(`--out ${this.dir} exists and is not a folder`);
      }
      if (!force) {
        const entries = await firstEntries(this.dir, 3);
        if (entries.length) {
          throw new UserError(
            `--out ${this.dir} is not empty (${entries.join(", ")}${
              entries.length === 3 ? ", ..." : ""
            }); give --force to write into it, or another folder`,
          );
        }
      }
    } catch (err) {
      if (err instanceof UserError) throw err;
      if (!(err instanceof Deno.errors.NotFound)) {
        throw new UserError(`cannot create the output folder ${this.dir}: ${reason(err)}`);
      }
      // Remember the topmost folder this run creates, to remove it again on failure.
      let top = this.dir;
      for (let up = join(top, ".."); up !== top && !(await exists(up)); up = join(up, "..")) {
        top = up;
      }
      try {
        await Deno.mkdir(this.dir, { recursive: true });
      } catch (e) {
        throw new UserError(`cannot create the output folder ${this.dir}: ${reason(e)}`);
      }
      this.createdTop = top;
    }
    const probe = join(this.dir, `.probe-${this.tag}`);
    try {
      await Deno.writeFile(probe, new Uint8Array(1));
      await Deno.remove(probe);
    } catch (err) {
      await this.abort();
      throw new UserError(`the output folder ${this.dir} is not writable: ${reason(err)}`);
    }
  }

  private tmpName(name: string) {
    return join(this.dir, `.${name.replaceAll("/", "_")}.tmp-${this.tag}`);
  }

  /** Writes `data` under a temporary name that commit() renames to `name`. */
  async stage(name: string, data: Uint8Array | string) {
    const tmp = this.tmpName(name);
    this.staged.push({ tmp, final: join(this.dir, name), folder: false });
    try {
      if (typeof data === "string") await Deno.writeTextFile(tmp, data);
      else await Deno.writeFile(tmp, data);
    } catch (err) {
      throw new UserError(`cannot write ${tmp} in the output folder: ${reason(err)}`);
    }
  }

  /** A staged folder (replacing `name` on commit); returns its temporary path. */
  async stageFolder(name: string): Promise<string> {
    const tmp = this.tmpName(name);
    this.staged.push({ tmp, final: join(this.dir, name), folder: true });
    try {
      await Deno.mkdir(tmp);
    } catch (err) {
      throw new UserError(`cannot create ${tmp} in the output folder: ${reason(err)}`);
    }
    return tmp;
  }

  async writeIn(folder: string, name: string, data: Uint8Array) {
    try {
      await Deno.writeFile(join(folder, name), data);
    } catch (err) {
      throw new UserError(`cannot write ${join(folder, name)}: ${reason(err)}`);
    }
  }

  /** Renames every staged output into place; returns the final paths. */
  async commit(): Promise<string[]> {
    const done: string[] = [];
    for (const s of this.staged) {
      try {
        if (s.folder && (await exists(s.final))) await Deno.remove(s.final, { recursive: true });
        await Deno.rename(s.tmp, s.final);
      } catch (err) {
        throw new UserError(`cannot move ${s.tmp} to ${s.final}: ${reason(err)}`);
      }
      done.push(s.final);
    }
    this.staged = [];
    this.createdTop = null;
    return done;
  }

  /** Removes staged files and a folder created by this run. Never throws. */
  async abort() {
    for (const s of this.staged) await Deno.remove(s.tmp, { recursive: true }).catch(() => {});
    this.staged = [];
    if (this.createdTop) await Deno.remove(this.createdTop, { recursive: true }).catch(() => {});
    this.createdTop = null;
  }
}

/** Up to `max` entry names of a folder (sorted), to show what is in the way. */
async function firstEntries(dir: string, max: number): Promise<string[]> {
  const names: string[] = [];
  try {
    for await (const e of Deno.readDir(dir)) names.push(e.name);
  } catch (err) {
    throw new UserError(`cannot read the output folder ${dir}: ${reason(err)}`);
  }
  return names.sort().slice(0, max);
}
