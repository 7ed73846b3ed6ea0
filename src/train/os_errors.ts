/**
 * Operating-system failures while a run writes its folder (a read-only file system, a full disk)
 * as one clear line. Deno raises EROFS and ENOSPC as plain Errors ("No space left on device
 * (os error 28): open 'PATH'"), not as a Deno.errors kind, so `fileSystemError` in
 * src/util/files.ts lets them through as internal errors; this recognises them by their
 * `code` and the "(os error N): op 'path'" that Deno puts in their message.
 */
import { UserError } from "../errors.ts";

/** `err` as a UserError when it is an operating-system error; anything else unchanged. */
export function osErrorAsUserError(err: unknown): unknown {
  if (err instanceof UserError || !(err instanceof Error)) return err;
  // Deno sets `code` (EROFS, ENOSPC, ...) on errors that come from the operating system.
  const code = (err as { code?: unknown }).code;
  const m = err.message.match(/^(.*\(os error \d+\))(?:: (\w+) '([^']*)')?/);
  if (typeof code !== "string" || !/^E[A-Z0-9]+$/.test(code) || !m) return err;
  const [, why, op, path] = m;
  // "cannot write /x/model.safetensors.tmp-1-ab" names the temporary file; the real name is
  // what the user knows.
  const where = path ? ` ${path.replace(/\.tmp-\d+-[a-z0-9]+$/, "")}` : "";
  const doing = op === "mkdir" ? "make the folder" : op ? "write" : "write the output";
  return new UserError(`cannot ${doing}${where}: ${why}`);
}
