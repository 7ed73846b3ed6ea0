/**
 * Progress display for long work: a redrawn bar with rate and ETA on a
 * terminal, plain occasional lines otherwise (logs, CI, pipes). Writes to stderr
 * so stdout stays clean for results and --json.
 */
const encoder = new TextEncoder();

function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return "--:--";
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  const mm = String(m).padStart(2, "0"), ss = String(r).padStart(2, "0");
  return h > 0 ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
}

function formatRate(rate: number, unit: string): string {
  if (rate >= 1e6) return `${(rate / 1e6).toFixed(1)}M ${unit}/s`;
  if (rate >= 1e3) return `${(rate / 1e3).toFixed(1)}k ${unit}/s`;
  return `${rate.toFixed(rate < 10 ? 2 : 1)} ${unit}/s`;
}

export class Progress {
  private done = 0;
  private readonly start = performance.now();
  private lastDraw = 0;
  private lastPlainPercent = -1;
  private readonly tty: boolean;
  private extra = "";

  constructor(
    private readonly label: string,
    private readonly total: number,
    private readonly unit = "it",
    opts: { quiet?: boolean } = {},
  ) {
    this.tty = !opts.quiet && Deno.stderr.isTerminal();
    this.quiet = opts.quiet ?? false;
  }
  private readonly quiet: boolean;

  /** Advance by `n` units; `extra` is shown after the bar (e.g. a loss). */
  tick(n = 1, extra?: string) {
    this.done += n;
    if (extra !== undefined) this.extra = extra;
    this.draw(false);
  }

  /** Set the absolute count. */
  update(done: number, extra?: string) {
    this.done = done;
    if (extra !== undefined) this.extra = extra;
    this.draw(false);
  }

  finish(extra?: string) {
    if (extra !== undefined) this.extra = extra;
    this.done = Math.max(this.done, this.total);
    this.draw(true);
  }

  private draw(final: boolean) {
    if (this.quiet) return;
    const now = performance.now();
    const elapsed = (now - this.start) / 1000;
    const rate = elapsed > 0 ? this.done / elapsed : 0;
    const eta = rate > 0 ? (this.total - this.done) / rate : Infinity;
    const frac = this.total > 0 ? Math.min(1, this.done / this.total) : 1;
    const stats = `${this.done}/${this.total} ${formatRate(rate, this.unit)} ` +
      (final ? `in ${formatDuration(elapsed)}` : `ETA ${formatDuration(eta)}`) +
      (this.extra ? ` ${this.extra}` : "");
    if (this.tty) {
      if (!final && now - this.lastDraw < 100) return;
      this.lastDraw = now;
      const width = 24;
      const filled = Math.round(frac * width);
      const bar = "#".repeat(filled) + "-".repeat(width - filled);
      const line = `\r${this.label} [${bar}] ${
        (frac * 100).toFixed(0).padStart(3)
      }% ${stats}\x1b[K`;
      Deno.stderr.writeSync(encoder.encode(final ? line + "\n" : line));
      return;
    }
    // Plain mode: one line per 10% (and the final one), throttled to 1 per second.
    const percent = Math.floor(frac * 10) * 10;
    if (final || (percent > this.lastPlainPercent && now - this.lastDraw > 1000)) {
      this.lastPlainPercent = percent;
      this.lastDraw = now;
      console.error(`${this.label}: ${(frac * 100).toFixed(0)}% ${stats}`);
    }
  }
}
