/**
 * File helpers. Writes are atomic: data goes to a temporary name beside the
 * target and is renamed into place, so a crash never leaves a half-written file
 * under the real name. Reads turn a missing or malformed file into a UserError.
 */
import { dirname } from "node:path";
import { UserError } from "../errors.ts";

export function tempNameFor(path: string): string {
  return `${path}.tmp-${Deno.pid}-${Math.random().toString(36).slice(2, 8)}`;
}

/** The first line of an error message, without Deno's trailing `: op 'path'`. */
export function reason(err: unknown): string {
  const line = ((err as Error)?.message ?? String(err)).split("\n")[0];
  return line.replace(/: [a-z]+ '[^']*'( -> '[^']*')?$/, "");
}

/**
 * A file-system failure (read-only file system, full disk, no permission, a file where a
 * folder should be) as a UserError: `cannot write PATH: No space left on device (os error 28)`.
 * Anything else (a bug) passes through unchanged.
 */
export function fileSystemError(err: unknown, doing: string): unknown {
  if (err instanceof UserError) return err;
  return isOsError(err) ? new UserError(`${doing}: ${reason(err)}`) : err;
}

/**
 * `err` as a UserError when the operating system raised it, wherever it was raised: a last net
 * for a command's whole run. The message comes from Deno's "(os error N): op 'path'" text and
 * names the file without the temporary suffix of writeFileAtomic, e.g. `cannot write
 * out/run/model.safetensors: No space left on device (os error 28)`. Anything else unchanged.
 */
export function osErrorAsUserError(err: unknown): unknown {
  if (err instanceof UserError || !(err instanceof Error) || !isOsError(err)) return err;
  const m = err.message.match(/^(.*\(os error \d+\))(?:: (\w+) '([^']*)')?/);
  if (!m) return new UserError(`cannot write the output: ${reason(err)}`);
  const [, why, op, path] = m;
  const where = path ? ` ${path.replace(/\.tmp-\d+-[a-z0-9]+$/, "")}` : "";
  const doing = op === "mkdir" ? "make the folder" : op ? "write" : "write the output";
  return new UserError(`cannot ${doing}${where}: ${why}`);
}

/**
 * True for an error the operating system raised: a Deno.errors kind, or one of the plain Errors
 * Deno raises for the rest (EROFS read-only file system, ENOSPC full disk), which carry an errno
 * name as `code`.
 */
export function isOsError(err: unknown): boolean {
  if (Object.values(Deno.errors).some((kind) => err instanceof kind)) return true;
  const code = (err as { code?: unknown })?.code;
  return err instanceof Error && typeof code === "string" && /^E[A-Z0-9]+$/.test(code);
}

export async function writeFileAtomic(path: string, data: Uint8Array | string): Promise<void> {
  const tmp = tempNameFor(path);
  try {
    await Deno.mkdir(dirname(path), { recursive: true });
    if (typeof data === "string") await Deno.writeTextFile(tmp, data);
    else await Deno.writeFile(tmp, data);
    await Deno.rename(tmp, path);
  } catch (err) {
    await Deno.remove(tmp).catch(() => {});
    throw fileSystemError(err, `cannot write ${path}`);
  }
}

/** True when `path` exists (file or folder); a path under a file does not. */
export async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound || err instanceof Deno.errors.NotADirectory) {
      return false;
    }
    throw fileSystemError(err, `cannot look at ${path}`);
  }
}

/**
 * For an output folder `--out`: false when `out` is absent, true when it is a folder; a file
 * there (never replaced) or a stat failure is an error naming --out.
 */
export async function outFolderExists(out: string): Promise<boolean> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(out);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return false;
    throw fileSystemError(err, `--out ${out}: cannot check it`);
  }
  if (!info.isDirectory) {
    throw new UserError(`--out ${out} is a file, not a folder (remove it or choose another --out)`);
  }
  return true;
}

/** Reads a file; a missing file is a UserError naming it. */
export async function readFileOrFail(path: string): Promise<Uint8Array> {
  try {
    return await Deno.readFile(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) throw new UserError(`${path}: file not found`);
    throw err;
  }
}

/** Parses a JSON file; missing or malformed files are UserErrors (`hint` explains what was expected). */
export async function readJsonFile(path: string, hint: string): Promise<any> {
  try {
    return JSON.parse(await Deno.readTextFile(path));
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) throw new UserError(`${path}: not found (${hint})`);
    throw new UserError(`${path}: not valid JSON (${(err as Error).message})`);
  }
}
