/**
 * Errors a user can act on. The CLI prints their message on one line and exits
 * with `exitCode`; anything else is a bug and gets a stack trace.
 */
export class UserError extends Error {
  constructor(message: string, readonly exitCode = 1) {
    super(message);
    this.name = "UserError";
  }
}

/** Wrong command-line usage (unknown option, bad value): exit status 2. */
export class UsageError extends UserError {
  constructor(message: string) {
    super(message, 2);
    this.name = "UsageError";
  }
}
