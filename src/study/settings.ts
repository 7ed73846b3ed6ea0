/**
 * The settings every run of a study shares, fixed when the study starts and stored in its
 * study.json (and, for the report, in results.json). Training and sampling defaults come from
 * src/train/defaults.ts, the same module `train` and `sample` read; the study adds only what is
 * its own (how many images it evaluates and samples).
 *
 * Files written before these settings were complete (version 1 of study.json and results.json)
 * are read with the values that version used, so an old study continues and an old report can
 * be drawn again with what really happened.
 */
import { SAMPLE_DEFAULTS, TRAIN_DEFAULTS } from "../train/defaults.ts";
import { PRESET_NAMES, type PresetName } from "../model/config.ts";
import type { Fields } from "../util/schema.ts";

export interface StudySettings {
  /** Model preset of every run (`--model`). */
  model: PresetName;
  depth?: number;
  width?: number;
  heads?: number;
  /** Optimizer steps of every run (the equal training budget). */
  iters: number;
  batch: number;
  accum: number;
  lr: number;
  warmup: number;
  /** Fractions of the run where the lr steps down by 10x. */
  lrDrops: number[];
  classDropout: number;
  /** P is drawn per batch from this list while training. */
  stepsPerScaleTrain: number[];
  /** Validation images scored per step count (evenly spaced over the split). */
  evalImages: number;
  /** Sampled images per class in each grid. */
  perClass: number;
  /** Sampled images per entropy measurement. */
  entropyImages: number;
  /** CFG weight of the sample grids and entropy measurements. */
  guidance: number;
  /** Guidance is off for steps before this one (0-based), as in `sample --cfg-start`. */
  guidanceStart: number;
}

/** The study's own defaults (the rest are TRAIN_DEFAULTS and SAMPLE_DEFAULTS). */
export const STUDY_DEFAULTS = {
  budgetMinutes: 120,
  seeds: 2,
  evalImages: 500,
  perClass: 8,
  entropyImages: 256,
} as const;

/** The settings of a study with nothing given on the command line (iters still to choose). */
export function defaultSettings(): StudySettings {
  return {
    model: TRAIN_DEFAULTS.model,
    iters: 0,
    batch: TRAIN_DEFAULTS.batch,
    accum: TRAIN_DEFAULTS.accum,
    lr: TRAIN_DEFAULTS.lr,
    warmup: TRAIN_DEFAULTS.warmup,
    lrDrops: [...TRAIN_DEFAULTS.lrDrops],
    classDropout: TRAIN_DEFAULTS.classDropout,
    stepsPerScaleTrain: [...TRAIN_DEFAULTS.stepsPerScaleTrain],
    evalImages: STUDY_DEFAULTS.evalImages,
    perClass: STUDY_DEFAULTS.perClass,
    entropyImages: STUDY_DEFAULTS.entropyImages,
    guidance: SAMPLE_DEFAULTS.cfg,
    guidanceStart: SAMPLE_DEFAULTS.cfgStart,
  };
}

/**
 * What version 1 of the study did without storing it: a fixed recipe (lr drops at 90% and 95%,
 * class dropout 0.1, P drawn from 1..16, no gradient accumulation) and guidance from the first
 * step. Only for reading version-1 files; never a default of a new study.
 */
const VERSION_1_FIXED = {
  accum: 1,
  lrDrops: [0.9, 0.95],
  classDropout: 0.1,
  stepsPerScaleTrain: [1, 2, 4, 8, 16],
  guidanceStart: 0,
} as const;

/**
 * The command-line option of each setting, for messages ("--lr 0.01 (study: 0.001)"); the
 * settings without one are fixed by the defaults module when the study starts.
 */
export const SETTING_OPTIONS: Partial<Record<keyof StudySettings, string>> = {
  model: "model",
  depth: "depth",
  width: "width",
  heads: "heads",
  iters: "iters",
  batch: "batch",
  lr: "lr",
  warmup: "warmup",
  evalImages: "eval-images",
  perClass: "per-class",
  entropyImages: "entropy-images",
  guidance: "cfg",
  guidanceStart: "cfg-start",
};

/**
 * Reads stored settings (study.json's or results.json's `settings`). `version` 1 files named
 * the model `preset` and left out the fixed recipe, which is filled in as that version used it.
 */
export function readSettings(f: Fields, version: number): StudySettings {
  const optional = (key: string) => (f.has(key) ? f.int(key, { min: 1 }) : undefined);
  // Version 1 left the fixed recipe out: what it used stands in for a missing field.
  const v1 = (key: keyof typeof VERSION_1_FIXED) => version === 1 && !f.has(key);
  return {
    model: f.choice(version === 1 && !f.has("model") ? "preset" : "model", PRESET_NAMES),
    depth: optional("depth"),
    width: optional("width"),
    heads: optional("heads"),
    iters: f.int("iters", { min: 1 }),
    batch: f.int("batch", { min: 1 }),
    accum: v1("accum") ? VERSION_1_FIXED.accum : f.int("accum", { min: 1 }),
    lr: f.number("lr", { min: 0 }),
    warmup: f.int("warmup", { min: 0 }),
    lrDrops: v1("lrDrops")
      ? [...VERSION_1_FIXED.lrDrops]
      : f.numberList("lrDrops", { min: 0, max: 1 }),
    classDropout: v1("classDropout")
      ? VERSION_1_FIXED.classDropout
      : f.number("classDropout", { min: 0, max: 1 }),
    stepsPerScaleTrain: v1("stepsPerScaleTrain")
      ? [...VERSION_1_FIXED.stepsPerScaleTrain]
      : f.intList("stepsPerScaleTrain", { min: 1 }, { minLength: 1 }),
    evalImages: f.int("evalImages", { min: 1 }),
    perClass: f.int("perClass", { min: 1 }),
    entropyImages: f.int("entropyImages", { min: 1 }),
    guidance: f.number("guidance", { min: 0 }),
    guidanceStart: v1("guidanceStart")
      ? VERSION_1_FIXED.guidanceStart
      : f.int("guidanceStart", { min: 0 }),
  };
}

/** The settings as stored: optional overrides left out rather than written as null. */
export function settingsJson(s: StudySettings): Record<string, unknown> {
  return Object.fromEntries(Object.entries(s).filter(([, v]) => v !== undefined));
}

/** A setting's value for messages and the report: lists joined with commas. */
export function showSetting(value: unknown): string {
  return Array.isArray(value) ? value.join(",") : String(value);
}
