/**
 * The commands a case runs on its mutated copy of the corpus, each as cheap as the tool
 * allows (one image, one step, one batch, the tiny model, the cpu), with the files it writes
 * that the judge inspects for NaN when it succeeds.
 */
import { TINY_MODEL } from "./corpus.ts";

export interface CaseCommand {
  name: string;
  args: string[];
  /** Files (relative to the case folder) checked for non-finite values after exit 0. */
  outputs: string[];
  /**
   * Run after a success to tell whether NaN went unnoticed: a sampled image of random codes
   * looks like any other, but `eval nll` on the same model sees the non-finite outputs.
   */
  oracle?: string[];
}

const EVAL_ARGS = [
  "eval",
  "nll",
  "--model",
  "run",
  "--data",
  "data",
  "--max-batches",
  "1",
  "--batch",
  "2",
  "--device",
  "cpu",
];

/** A checkpoint folder's files, under the resume state's old and new names (absent ones are skipped). */
function stateFiles(dir: string): string[] {
  return ["model.safetensors", "train-state.safetensors", "optim.safetensors", "metrics.jsonl"].map(
    (f) => `${dir}/${f}`,
  );
}

export const COMMANDS = {
  sample: {
    name: "sample",
    args: [
      "sample",
      "--model",
      "run",
      "--count",
      "1",
      "--steps-per-scale",
      "2",
      "--threads",
      "1",
      "--device",
      "cpu",
      "--out",
      "samples",
    ],
    outputs: ["samples/samples.npz"],
    oracle: EVAL_ARGS,
  },
  eval: {
    name: "eval nll",
    args: [
      "eval",
      "nll",
      "--model",
      "run",
      "--data",
      "data",
      "--max-batches",
      "1",
      "--batch",
      "2",
      "--device",
      "cpu",
    ],
    outputs: [],
  },
  resume: {
    name: "train --resume",
    args: [
      "train",
      "--data",
      "data",
      "--out",
      "run",
      "--resume",
      "--iters",
      "5",
      "--device",
      "cpu",
    ],
    outputs: stateFiles("run"),
  },
  train: {
    name: "train",
    args: [
      "train",
      "--data",
      "data",
      "--out",
      "new-run",
      ...TINY_MODEL,
      "--iters",
      "1",
      "--batch",
      "4",
      "--steps-per-scale-train",
      "1,2",
      "--eval-batches",
      "1",
      "--device",
      "cpu",
    ],
    outputs: stateFiles("new-run"),
  },
  tokenizerFit: {
    name: "tokenizer fit",
    args: [
      "tokenizer",
      "fit",
      "--dataset",
      "folder:imgs",
      "--side",
      "16",
      "--codes",
      "4",
      "--iterations",
      "1",
      "--out",
      "new-tok",
      "--device",
      "cpu",
    ],
    outputs: ["new-tok/tokenizer.safetensors", "new-tok/tokenizer.json"],
  },
  data: {
    name: "data",
    args: [
      "data",
      "--dataset",
      "folder:imgs",
      "--tokenizer",
      "tok",
      "--out",
      "new-data",
      "--device",
      "cpu",
    ],
    outputs: [],
  },
  recon: {
    name: "tokenizer recon",
    args: [
      "tokenizer",
      "recon",
      "--tokenizer",
      "tok",
      "--dataset",
      "folder:imgs",
      "--count",
      "1",
      "--out",
      "recon.png",
      "--device",
      "cpu",
    ],
    outputs: [],
  },
} satisfies Record<string, CaseCommand>;
