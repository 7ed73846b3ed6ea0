/** The fuzz report: counts per format x outcome (a table and JSON), and every bad case in full. */
import { isBad, type Outcome, OUTCOMES } from "./classify.ts";

export interface CaseResult {
  id: string;
  format: string;
  file: string;
  mutation: string;
  command: string;
  commandName: string;
  outcome: Outcome;
  detail: string;
  exit: number;
  signal: string | null;
  ms: number;
  stderrHead: string[];
  reproduce: string;
}

export interface Report {
  seed: number;
  cases: number;
  formats: string[];
  seconds: number;
  secondsPerCase: number;
  counts: Record<string, Record<string, number>>;
  totals: Record<string, number>;
  bad: CaseResult[];
  /** Every case in one line: id, outcome, mutation, detail. */
  all: string[];
}

export function makeReport(
  results: CaseResult[],
  opts: { seed: number; formats: string[]; seconds: number },
): Report {
  const counts: Record<string, Record<string, number>> = {};
  const totals: Record<string, number> = {};
  for (const f of opts.formats) counts[f] = Object.fromEntries(OUTCOMES.map((o) => [o, 0]));
  for (const o of OUTCOMES) totals[o] = 0;
  for (const r of results) {
    counts[r.format][r.outcome]++;
    totals[r.outcome]++;
  }
  return {
    seed: opts.seed,
    cases: results.length,
    formats: opts.formats,
    seconds: Math.round(opts.seconds),
    secondsPerCase: Number((opts.seconds / Math.max(1, results.length)).toFixed(3)),
    counts,
    totals,
    all: [...results].sort((a, b) => a.id.localeCompare(b.id, "en", { numeric: true }))
      .map((r) =>
        `${r.id} | ${r.outcome} | ${r.commandName} ${r.ms} ms | ${r.file}: ${r.mutation} | ${r.detail}`
      ),
    bad: results.filter((r) => isBad(r.outcome)).sort((a, b) =>
      a.id.localeCompare(b.id, "en", { numeric: true })
    ),
  };
}

/** Rows of formats, columns of outcomes (bad ones in capitals), totals last. */
export function formatTable(report: Report): string {
  const cols = ["format", ...OUTCOMES, "cases"];
  const rows = [
    ...report.formats.map((f) => {
      const c = report.counts[f];
      return [
        f,
        ...OUTCOMES.map((o) => String(c[o])),
        String(Object.values(c).reduce((a, b) => a + b, 0)),
      ];
    }),
    ["total", ...OUTCOMES.map((o) => String(report.totals[o])), String(report.cases)],
  ];
  const widths = cols.map((c, i) => Math.max(c.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join("  ");
  return [line(cols), ...rows.map(line)].join("\n");
}

/** The bad cases, each with what to run to see it again. */
export function formatBad(report: Report): string {
  return report.bad.map((r) =>
    [
      `${r.outcome}  ${r.id}  (${r.format}: ${r.file})`,
      `  mutation: ${r.mutation}`,
      `  command:  checkerboard ${r.command}`,
      `  result:   exit ${r.exit}${r.signal ? ` signal ${r.signal}` : ""}, ${r.ms} ms${
        r.detail ? `; ${r.detail}` : ""
      }`,
      ...r.stderrHead.map((l) => `  | ${l}`),
      `  again:    ${r.reproduce}`,
    ].join("\n")
  ).join("\n");
}
