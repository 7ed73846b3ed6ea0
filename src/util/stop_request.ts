/**
 * Ctrl-C during a long loop (training): the first press asks the loop to stop at its next step
 * boundary (after a checkpoint), a second quits at once, though never while native work runs on
 * another thread (exit() would free what it uses): that waits for the current call at most.
 */
import { settleNativeWork } from "../engine.ts";

export class StopRequest {
  #requested = false;
  #listening = false;
  readonly #onSigint = () => {
    if (this.#requested) void settleNativeWork().finally(() => Deno.exit(130));
    this.#requested = true;
    console.error(`\ncheckerboard: ${this.message} (Ctrl-C again to quit at once)`);
  };

  /** `message` is what the first Ctrl-C prints, e.g. "stopping after this step". */
  constructor(private readonly message: string) {
    try {
      Deno.addSignalListener("SIGINT", this.#onSigint);
      this.#listening = true;
    } catch {
      // Signals unavailable (e.g. no permission): Ctrl-C then ends the process as usual.
    }
  }

  /** True once Ctrl-C was pressed. */
  get requested(): boolean {
    return this.#requested;
  }

  /** Asks for the stop as Ctrl-C does, without its message (another rank was asked). */
  request() {
    this.#requested = true;
  }

  /** Stops listening (Ctrl-C ends the process as usual again). */
  dispose() {
    if (this.#listening) Deno.removeSignalListener("SIGINT", this.#onSigint);
    this.#listening = false;
  }
}
