/**
 * Progress display for long work, on stderr so stdout stays clean for results and --json.
 * On a terminal: one redrawn bar with the rate and the time left. Otherwise (logs, CI, pipes):
 * a plain line whenever another 10% is done or 30 s have passed since the last line, whichever
 * comes first, and one at the end; every line starts with the stage name, e.g.
 * `encode train: 40% (4000/10000) 812 img/s, ETA 7 s`.
 */
const encoder = new TextEncoder();

/** Seconds between plain lines when progress is slow. */
export const PLAIN_INTERVAL_S = 30;
/** A plain line at every such fraction of the work. */
const PLAIN_STEP = 0.1;
/** Shortest time between redraws of the terminal bar, in ms. */
const BAR_REDRAW_MS = 100;

/** Where progress goes and what time it is: the real stderr and clock unless a test injects them. */
export interface ProgressSink {
  /** Milliseconds on a monotonic clock. */
  now(): number;
  write(text: string): void;
  isTerminal: boolean;
}

const stderrSink = (): ProgressSink => ({
  now: () => performance.now(),
  write: (text) => {
    Deno.stderr.writeSync(encoder.encode(text));
  },
  isTerminal: Deno.stderr.isTerminal(),
});

/** mm:ss or h:mm:ss, for the terminal bar. */
function clock(seconds: number): string {
  if (!Number.isFinite(seconds)) return "--:--";
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  const mm = String(m).padStart(2, "0"), ss = String(r).padStart(2, "0");
  return h > 0 ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
}

/** "7 s", "2 min 5 s", "1 h 3 min": for plain lines, which are read later in a log. */
export function spokenDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return "unknown";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  return h > 0 ? `${h} h ${m} min` : `${m} min ${r} s`;
}

function formatRate(rate: number, unit: string): string {
  if (rate >= 1e6) return `${(rate / 1e6).toFixed(1)}M ${unit}/s`;
  if (rate >= 1e3) return `${(rate / 1e3).toFixed(1)}k ${unit}/s`;
  return `${rate.toFixed(rate < 10 ? 2 : 1)} ${unit}/s`;
}

export class Progress {
  private done = 0;
  private readonly start: number;
  private lastDraw = -Infinity;
  /** The last 10% step a plain line was printed for. */
  private lastPlainStep = 0;
  private extra = "";
  private readonly sink: ProgressSink | null;

  constructor(
    private readonly label: string,
    private readonly total: number,
    private readonly unit = "it",
    opts: { quiet?: boolean; sink?: ProgressSink } = {},
  ) {
    this.sink = opts.quiet ? null : opts.sink ?? stderrSink();
    this.start = this.sink?.now() ?? 0;
    this.lastDraw = this.start;
  }

  /** Advance by `n` units; `extra` is shown after the numbers (e.g. a loss). */
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
    const sink = this.sink;
    if (!sink) return;
    const now = sink.now();
    const elapsed = (now - this.start) / 1000;
    const rate = elapsed > 0 ? this.done / elapsed : 0;
    const eta = rate > 0 ? Math.max(0, this.total - this.done) / rate : Infinity;
    const frac = this.total > 0 ? Math.min(1, Math.max(0, this.done / this.total)) : 1;
    const percent = `${Math.floor(frac * 100)}%`;
    const extra = this.extra ? ` ${this.extra}` : "";
    if (sink.isTerminal) {
      if (!final && now - this.lastDraw < BAR_REDRAW_MS) return;
      this.lastDraw = now;
      const width = 24;
      const filled = Math.round(frac * width);
      const bar = "#".repeat(filled) + "-".repeat(width - filled);
      const stats = `${this.done}/${this.total} ${formatRate(rate, this.unit)} ` +
        (final ? `in ${clock(elapsed)}` : `ETA ${clock(eta)}`);
      const line = `\r${this.label} [${bar}] ${percent.padStart(4)} ${stats}${extra}\x1b[K`;
      sink.write(final ? line + "\n" : line);
      return;
    }
    // All done is left to finish()'s line, so the end is not printed twice.
    const step = Math.floor(frac / PLAIN_STEP + 1e-9);
    const due = final ||
      (frac < 1 && (step > this.lastPlainStep || now - this.lastDraw >= PLAIN_INTERVAL_S * 1000));
    if (!due) return;
    this.lastPlainStep = step;
    this.lastDraw = now;
    const tail = final ? `done in ${spokenDuration(elapsed)}` : `ETA ${spokenDuration(eta)}`;
    sink.write(
      `${this.label}: ${percent} (${this.done}/${this.total}) ${
        formatRate(rate, this.unit)
      }, ${tail}${extra}\n`,
    );
  }
}
