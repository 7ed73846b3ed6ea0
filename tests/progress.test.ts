/** Progress lines when stderr is not a terminal, and the terminal bar, with an injected clock. */
import assert from "node:assert/strict";
import { Progress, type ProgressSink, spokenDuration } from "../src/util/progress.ts";

function fakeSink(isTerminal: boolean) {
  const lines: string[] = [];
  let t = 0;
  const sink: ProgressSink = { now: () => t, write: (text) => lines.push(text), isTerminal };
  return { sink, lines, advance: (seconds: number) => (t += seconds * 1000) };
}

Deno.test("plain progress: a line at every 10%, each starting with the stage name", () => {
  const { sink, lines, advance } = fakeSink(false);
  const p = new Progress("encode train", 10000, "img", { sink });
  for (let done = 100; done <= 10000; done += 100) {
    advance(0.1);
    p.update(done);
  }
  p.finish();
  assert.equal(lines.length, 10, lines.join("")); // 10%, ..., 90%, then the final line
  assert.ok(lines.every((l) => l.startsWith("encode train: ") && l.endsWith("\n")));
  assert.equal(lines[3], "encode train: 40% (4000/10000) 1.0k img/s, ETA 6 s\n");
  assert.equal(lines[9], "encode train: 100% (10000/10000) 1.0k img/s, done in 10 s\n");
});

Deno.test("plain progress: slow work prints every 30 s between the 10% lines", () => {
  const { sink, lines, advance } = fakeSink(false);
  const p = new Progress("train", 1000, "step", { sink });
  for (let done = 1; done <= 50; done++) {
    advance(2); // 2 s per step: 10% takes 200 s
    p.update(done, `loss ${(1 / done).toFixed(2)}`);
  }
  // Lines at 30, 60, 90 s (steps 15, 30, 45); the clock restarts at each line.
  assert.deepEqual(lines.map((l) => l.split(" (")[0]), ["train: 1%", "train: 3%", "train: 4%"]);
  assert.equal(lines[0], "train: 1% (15/1000) 0.50 step/s, ETA 32 min 50 s loss 0.07\n");
  advance(30);
  p.update(100);
  assert.equal(lines.length, 4);
  assert.match(lines[3], /^train: 10% \(100\/1000\)/);
});

Deno.test("plain progress: quiet prints nothing; durations read as words", () => {
  const { sink, lines } = fakeSink(false);
  const p = new Progress("x", 10, "it", { quiet: true, sink });
  p.update(5);
  p.finish();
  assert.deepEqual(lines, []);
  assert.equal(spokenDuration(7.4), "7 s");
  assert.equal(spokenDuration(125), "2 min 5 s");
  assert.equal(spokenDuration(3 * 3600 + 120), "3 h 2 min");
  assert.equal(spokenDuration(Infinity), "unknown");
});

Deno.test("terminal progress: a redrawn bar with rate and ETA, at most every 100 ms", () => {
  const { sink, lines, advance } = fakeSink(true);
  const p = new Progress("sampling", 4, "img", { sink });
  advance(0.05);
  p.update(1); // too soon after the start: no redraw
  advance(0.95);
  p.update(2);
  p.finish("");
  assert.equal(lines.length, 2);
  const clearLine = "\x1b[K";
  assert.equal(
    lines[0],
    `\rsampling [${"#".repeat(12)}${"-".repeat(12)}]  50% 2/4 2.00 img/s ETA 00:01${clearLine}`,
  );
  assert.equal(
    lines[1],
    `\rsampling [${"#".repeat(24)}] 100% 4/4 4.00 img/s in 00:01${clearLine}\n`,
  );
});
