/** A run's metrics.jsonl: one JSON object a line, each with its `step`. */
import { join } from "node:path";
import { exists, fileSystemError, writeFileAtomic } from "./files.ts";

export const METRICS_FILE = "metrics.jsonl";

/** Appends JSON lines to DIR/metrics.jsonl; on resume drops lines past the resumed step. */
export class MetricsLog {
  private constructor(private readonly path: string) {}

  static async open(dir: string, startStep: number): Promise<MetricsLog> {
    const path = join(dir, METRICS_FILE);
    if (startStep === 0 || !(await exists(path))) {
      await writeFileAtomic(path, "");
    } else {
      const kept = (await Deno.readTextFile(path)).split("\n").filter((line) => {
        if (!line.trim()) return false;
        try {
          return JSON.parse(line).step <= startStep;
        } catch {
          return false;
        }
      });
      await writeFileAtomic(path, kept.map((l) => l + "\n").join(""));
    }
    return new MetricsLog(path);
  }

  async write(entry: Record<string, unknown>) {
    try {
      await Deno.writeTextFile(this.path, JSON.stringify(entry) + "\n", { append: true });
    } catch (err) {
      throw fileSystemError(err, `cannot write ${this.path}`);
    }
  }
}
