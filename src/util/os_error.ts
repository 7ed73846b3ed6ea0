/**
 * Operating-system failures as UserErrors, including those Deno raises as plain Errors: EROFS
 * (read-only file system) and ENOSPC (full disk) are not Deno.errors kinds, so `fileSystemError`
 * (src/util/files.ts) lets them through; Deno gives every OS error a `code` such as "EROFS".
 */
import { fileSystemError, reason } from "./files.ts";
import { UserError } from "../errors.ts";

/** True for an error the operating system raised (it carries an errno name such as "ENOSPC"). */
export function isOsError(err: unknown): boolean {
  const code = (err as { code?: unknown })?.code;
  return err instanceof Error && typeof code === "string" && /^E[A-Z0-9]+$/.test(code);
}

/** `DOING: REASON` as a UserError for any OS failure; anything else (a bug) unchanged. */
export function osError(err: unknown, doing: string): unknown {
  const converted = fileSystemError(err, doing);
  if (converted !== err || !isOsError(err)) return converted;
  return new UserError(`${doing}: ${reason(err)}`);
}
