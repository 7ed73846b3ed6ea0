/**
 * The formats the tool reads, what files of the corpus each covers, how a case mutates one,
 * and which command reads it:
 *   model      run/model.safetensors            sample (then eval nll as its oracle), eval nll
 *   resume     run's resume state + metrics     train --resume
 *   tokenizer  tokenizer.json/.safetensors      sample (run/tokenizer), data, train, recon (tok)
 *   shards     data/*.npz                       train, eval nll
 *   manifest   data/manifest.json               train, eval nll
 *   images     imgs/CLASS/*.png|jpg             tokenizer fit, data
 */
import sharp from "sharp";
import { basename, dirname, join } from "node:path";
import { byteMutation, type Mutated } from "./bytes.ts";
import { CLASSES, listFiles } from "./corpus.ts";
import { type CaseCommand, COMMANDS } from "./commands.ts";
import { mutateImage } from "./images.ts";
import { editJson, type Json, type TargetedEdit } from "./json.ts";
import { mutateNpz } from "./npz.ts";
import { FuzzRng } from "./rng.ts";
import { mutateSafetensors, nonFiniteTensors } from "./safetensors.ts";

export interface CaseMutation {
  file: string;
  what: string;
  injectsNonFinite: boolean;
  /** Invalid in a way that must be refused or warned about. */
  mustRefuse: boolean;
  apply(caseDir: string): Promise<void>;
}

interface Format {
  name: string;
  /** The corpus files this format covers. */
  files(all: string[]): string[];
  /** How often a case picks each file (default: all alike). */
  fileWeight?(file: string): number;
  command(rng: FuzzRng, file: string): CaseCommand;
  mutate(rng: FuzzRng, file: string, bytes: Uint8Array): Promise<CaseMutation> | CaseMutation;
}

function writes(file: string, m: Mutated): CaseMutation {
  return {
    file,
    what: m.what,
    injectsNonFinite: m.injectsNonFinite ?? false,
    mustRefuse: m.mustRefuse ?? false,
    apply: (dir) => Deno.writeFile(join(dir, file), m.data),
  };
}

/** The file itself gone, empty, a folder or a dangling link. */
function fileSystemMutation(rng: FuzzRng, file: string): CaseMutation {
  const op = rng.pick(["delete", "empty", "folder", "dangling link"] as const);
  return {
    file,
    what: op === "delete"
      ? "file deleted"
      : op === "empty"
      ? "file emptied"
      : `file replaced by a ${op}`,
    injectsNonFinite: false,
    mustRefuse: false,
    async apply(dir) {
      const path = join(dir, file);
      await Deno.remove(path);
      if (op === "empty") await Deno.writeFile(path, new Uint8Array());
      if (op === "folder") await Deno.mkdir(path);
      if (op === "dangling link") await Deno.symlink(join(dir, "no-such-file"), path);
    },
  };
}

/** A safetensors mutation, flagged when it made a float tensor non-finite (bit flips too). */
function safetensorsMutation(rng: FuzzRng, file: string, bytes: Uint8Array): CaseMutation {
  if (rng.chance(0.05)) return fileSystemMutation(rng, file);
  const m = mutateSafetensors(rng, bytes);
  if (!m.injectsNonFinite) {
    const before = new Set(nonFiniteTensors(bytes) ?? []);
    const after = nonFiniteTensors(m.data) ?? [];
    const fresh = after.filter((n) => !before.has(n));
    if (fresh.length > 0) {
      m.injectsNonFinite = true;
      m.what += ` (makes ${fresh.join(", ")} non-finite)`;
    }
  }
  return writes(file, m);
}

function jsonMutation(
  rng: FuzzRng,
  file: string,
  bytes: Uint8Array,
  targeted: TargetedEdit[],
): CaseMutation {
  if (rng.chance(0.05)) return fileSystemMutation(rng, file);
  if (rng.chance(0.1)) return writes(file, byteMutation(rng, bytes));
  let root: Json;
  try {
    root = JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return writes(file, byteMutation(rng, bytes));
  }
  const edit = editJson(rng, root, { targeted });
  return writes(file, {
    data: new TextEncoder().encode(edit.text),
    what: edit.what,
    mustRefuse: edit.mustRefuse,
  });
}

const MANIFEST_EDITS: TargetedEdit[] = [
  { path: ["shards"], value: [] },
  { path: ["counts"], value: "x" },
  { path: ["counts", "train"], value: 0 },
  { path: ["counts", "val"], value: 0 },
  { path: ["counts", "train"], value: 1e9 },
  { path: ["counts"], delete: true },
  { path: ["classes"], value: ["one", "two"] },
  { path: ["classes"], value: [...CLASSES, "extra"] },
  { path: ["classes"], value: [] },
  { path: ["classes"], value: [1, 2, 3] },
  { path: ["classes"], delete: true },
  { path: ["scales"], value: [1, 2, 4] },
  { path: ["scales"], value: [1, 2, 4, 8, 16] },
  { path: ["scales"], value: [2, 4, 8] },
  { path: ["scales"], value: "1,2,4,8" },
  { path: ["scales"], delete: true },
  { path: ["version"], value: 2 },
  { path: ["format"], value: "checkerboard-model" },
  { path: ["imageSide"], value: 0 },
  { path: ["imageSide"], value: 1e9 },
  { path: ["ratio"], value: "3" },
  { path: ["ratio"], value: 2, refuse: false },
  { path: ["tokenizer", "path"], delete: true },
  { path: ["tokenizer", "path"], value: 3 },
  { path: ["tokenizer", "path"], value: "nowhere" },
  { path: ["tokenizer", "path"], value: "" },
  { path: ["tokenizer", "path"], value: "../run/model.safetensors" },
  { path: ["tokenizer", "hash"], value: "0000000000000000" },
  { path: ["tokenizer", "codes"], value: 8 },
  { path: ["tokenizer"], value: "tok" },
  { path: ["codes"], value: 8 },
  { path: ["codes"], value: 70000 },
  { path: ["patch"], value: 2 },
  { path: ["sequenceLength"], value: 84 },
  { path: ["shards", 0, "file"], value: "../run/model.safetensors" },
  { path: ["shards", 0, "file"], value: "/etc/passwd" },
  // Shard 0 is a training shard: eval nll, which reads only the validation split, may pass.
  { path: ["shards", 0, "file"], value: "val-00000.npz", refuse: false },
  { path: ["shards", 0, "file"], value: "missing.npz", refuse: false },
  { path: ["shards", 0, "split"], value: "test" },
  { path: ["shards", 0, "count"], value: 5 },
  { path: ["shards", 0, "count"], value: -1 },
  { path: ["shards", 3, "count"], value: 0 },
  { path: ["shards", 3], delete: true },
];

const TOKENIZER_EDITS: TargetedEdit[] = [
  { path: ["channels"], value: "x" },
  { path: ["channels"], value: 1 },
  { path: ["codes"], value: 8 },
  { path: ["codes"], value: 0 },
  { path: ["patch"], value: 2 },
  { path: ["patch"], value: 0 },
  { path: ["imageSide"], value: 0 },
  { path: ["imageSide"], value: 33 },
  { path: ["version"], value: 2 },
  { path: ["format"], value: "checkerboard-model" },
  { path: ["hash"], value: "0000000000000000", refuse: false },
  { path: ["fitScales"], value: [], refuse: false },
  { path: ["dataset"], value: "emoji", refuse: false },
  { path: ["dataset"], value: 5 },
  { path: ["fit"], delete: true, refuse: false },
  { path: ["fit", "mse"], value: null, refuse: false },
];

const model: Format = {
  name: "model",
  files: (all) => all.filter((f) => f === "run/model.safetensors"),
  command: (rng) => rng.weighted<CaseCommand>([[65, COMMANDS.sample], [35, COMMANDS.eval]]),
  mutate: safetensorsMutation,
};

const resume: Format = {
  name: "resume",
  files: (all) =>
    all.filter((f) =>
      dirname(f) === "run" && f !== "run/model.safetensors" &&
      (f.endsWith(".safetensors") || f.endsWith(".jsonl") || f.endsWith(".json"))
    ),
  // The state file is what resume reads; metrics.jsonl is a log it only trims.
  fileWeight: (file) => (file.endsWith(".safetensors") ? 4 : 1),
  command: () => COMMANDS.resume,
  mutate(rng, file, bytes) {
    if (file.endsWith(".safetensors")) return safetensorsMutation(rng, file, bytes);
    if (file.endsWith(".json")) return jsonMutation(rng, file, bytes, []);
    // metrics.jsonl: a line edited as JSON, or the bytes.
    const lines = new TextDecoder().decode(bytes).split("\n");
    const full = lines.map((l, i) => [l, i] as const).filter(([l]) => l.trim());
    if (full.length === 0 || rng.chance(0.3)) return writes(file, byteMutation(rng, bytes));
    const [line, i] = rng.pick(full);
    const edit = editJson(rng, JSON.parse(line));
    lines[i] = edit.text.replace(/\n/g, " ");
    return writes(file, {
      data: new TextEncoder().encode(lines.join("\n")),
      what: `line ${i + 1}: ${edit.what}`,
      mustRefuse: false, // metrics.jsonl is a log: resume may rewrite it
    });
  },
};

const tokenizer: Format = {
  name: "tokenizer",
  files: (all) =>
    all.filter((f) => /^(tok|run\/tokenizer)\/tokenizer\.(json|safetensors)$/.test(f)),
  command: (rng, file) =>
    file.startsWith("run/")
      ? COMMANDS.sample
      : rng.weighted<CaseCommand>([[40, COMMANDS.data], [40, COMMANDS.train], [
        20,
        COMMANDS.recon,
      ]]),
  mutate(rng, file, bytes) {
    if (file.endsWith(".json")) return jsonMutation(rng, file, bytes, TOKENIZER_EDITS);
    const m = safetensorsMutation(rng, file, bytes);
    // The codebook file's metadata holds a copy of tokenizer.json that the tool never reads
    // (tokenizer.json is the configuration), so damage there may pass.
    if (m.what.startsWith("metadata")) m.mustRefuse = false;
    return m;
  },
};

const shards: Format = {
  name: "shards",
  files: (all) => all.filter((f) => f.startsWith("data/") && f.endsWith(".npz")),
  command: (rng, file) =>
    basename(file).startsWith("val") && rng.chance(0.5) ? COMMANDS.eval : COMMANDS.train,
  mutate(rng, file, bytes) {
    if (rng.chance(0.05)) return fileSystemMutation(rng, file);
    return writes(file, mutateNpz(rng, bytes));
  },
};

const manifest: Format = {
  name: "manifest",
  files: (all) => all.filter((f) => f === "data/manifest.json"),
  command: (rng) => rng.weighted<CaseCommand>([[40, COMMANDS.eval], [60, COMMANDS.train]]),
  mutate: (rng, file, bytes) => jsonMutation(rng, file, bytes, MANIFEST_EDITS),
};

/** A valid image of an unusual kind (size, depth, channels, container) under an image's name. */
async function unusualImage(rng: FuzzRng, file: string): Promise<Mutated> {
  const kind = rng.pick(
    [
      "1x1",
      "2000x2000",
      "grey",
      "rgba",
      "16-bit",
      "cmyk",
      "progressive",
      "gif",
      "webp",
      "tiff",
    ] as const,
  );
  const side = kind === "1x1" ? 1 : kind === "2000x2000" ? 2000 : 24;
  const base = sharp({
    create: {
      width: side,
      height: side,
      channels: kind === "rgba" ? 4 : 3,
      background: { r: 200, g: 30, b: 90, alpha: 0.3 },
    },
  });
  const img = kind === "grey" ? base.greyscale() : base;
  const isPng = file.endsWith(".png");
  let data: Buffer;
  if (kind === "gif") data = await img.gif().toBuffer();
  else if (kind === "webp") data = await img.webp().toBuffer();
  else if (kind === "tiff") data = await img.tiff().toBuffer();
  else if (kind === "cmyk") data = await img.toColourspace("cmyk").jpeg().toBuffer();
  else if (kind === "progressive") data = await img.jpeg({ progressive: true }).toBuffer();
  else if (kind === "16-bit") data = await img.toColourspace("rgb16").png().toBuffer();
  else data = isPng ? await img.png().toBuffer() : await img.jpeg().toBuffer();
  return { data: new Uint8Array(data), what: `replaced by a valid ${kind} image` };
}

/** A change to the folder dataset's layout rather than to one image's bytes. */
function folderMutation(rng: FuzzRng, file: string): CaseMutation {
  const cls = dirname(file);
  // [what, must be refused or warned about, apply]
  const ops: [string, boolean, (dir: string) => Promise<void>][] = [
    ["every image of its class removed (empty class folder)", true, async (dir) => {
      for await (const e of Deno.readDir(join(dir, cls))) await Deno.remove(join(dir, cls, e.name));
    }],
    ["an extra empty class folder imgs/zzz", true, (dir) => Deno.mkdir(join(dir, "imgs", "zzz"))],
    [
      "a dangling symbolic link broken.png in its class",
      true,
      (dir) => Deno.symlink(join(dir, "no-such-image.png"), join(dir, cls, "broken.png")),
    ],
    [
      "a symbolic link loop.png to itself in its class",
      true,
      (dir) => Deno.symlink("loop.png", join(dir, cls, "loop.png")),
    ],
    [
      "a zero-byte empty.png in its class",
      true,
      (dir) => Deno.writeFile(join(dir, cls, "empty.png"), new Uint8Array()),
    ],
    [
      "a text file notes.jpg in its class",
      true,
      (dir) => Deno.writeTextFile(join(dir, cls, "notes.jpg"), "not an image\n"),
    ],
    ["a folder named sub.png in its class", false, (dir) => Deno.mkdir(join(dir, cls, "sub.png"))],
    ["a nested folder with a copy of the image", false, async (dir) => {
      await Deno.mkdir(join(dir, cls, "nested"));
      await Deno.copyFile(join(dir, file), join(dir, cls, "nested", basename(file)));
    }],
    [
      "the image renamed with an upper-case extension",
      false,
      (dir) =>
        Deno.rename(
          join(dir, file),
          join(dir, file.replace(/\.(\w+)$/, (_, e) => `.${e.toUpperCase()}`)),
        ),
    ],
    [
      "the image renamed with the other extension",
      false,
      (dir) =>
        Deno.rename(
          join(dir, file),
          join(
            dir,
            file.endsWith(".png") ? file.replace(/png$/, "jpg") : file.replace(/jpg$/, "png"),
          ),
        ),
    ],
    ["every image of the dataset removed", true, async (dir) => {
      for (const c of CLASSES) {
        for await (const e of Deno.readDir(join(dir, "imgs", c))) {
          await Deno.remove(join(dir, "imgs", c, e.name));
        }
      }
    }],
    [
      "a class folder that is a dangling symbolic link",
      true,
      (dir) => Deno.symlink(join(dir, "no-such-folder"), join(dir, "imgs", "linked")),
    ],
  ];
  const [what, mustRefuse, apply] = rng.pick(ops);
  return { file, what, injectsNonFinite: false, mustRefuse, apply };
}

const images: Format = {
  name: "images",
  files: (all) => all.filter((f) => f.startsWith("imgs/")),
  command: (rng) => rng.weighted<CaseCommand>([[50, COMMANDS.tokenizerFit], [50, COMMANDS.data]]),
  async mutate(rng, file, bytes) {
    const kind = rng.weighted(
      [[65, "bytes"], [20, "folder"], [10, "unusual"], [5, "fs"]] as const,
    );
    if (kind === "folder") return folderMutation(rng, file);
    if (kind === "unusual") return writes(file, await unusualImage(rng, file));
    if (kind === "fs") return fileSystemMutation(rng, file);
    return writes(file, mutateImage(rng, bytes));
  },
};

export const FORMATS: Format[] = [model, resume, tokenizer, shards, manifest, images];
export const FORMAT_NAMES = FORMATS.map((f) => f.name);

export interface FuzzCase {
  id: string;
  format: string;
  mutation: CaseMutation;
  command: CaseCommand;
}

/**
 * Case `index` of `format`: a pure function of (seed, format, index) and the corpus, so that
 * `--case format-index` regenerates it whatever --cases and --formats were.
 */
export async function makeCase(
  corpus: string,
  seed: number,
  formatName: string,
  index: number,
): Promise<FuzzCase> {
  const format = FORMATS.find((f) => f.name === formatName);
  if (!format) {
    throw new Error(`unknown format '${formatName}' (one of ${FORMAT_NAMES.join(", ")})`);
  }
  const files = format.files(await listAll(corpus));
  if (files.length === 0) throw new Error(`the corpus has no file of format ${formatName}`);
  const rng = new FuzzRng(seed, formatName, index);
  const file = rng.weighted(files.map((f) => [format.fileWeight?.(f) ?? 1, f] as const));
  const bytes = await Deno.readFile(join(corpus, file));
  const mutation = await format.mutate(rng, file, bytes);
  return {
    id: `${formatName}-${index}`,
    format: formatName,
    mutation,
    command: format.command(rng, file),
  };
}

let cachedList: { corpus: string; files: string[] } | undefined;

async function listAll(corpus: string): Promise<string[]> {
  if (cachedList?.corpus !== corpus) {
    cachedList = {
      corpus,
      files: [
        ...await listFiles(corpus, "imgs"),
        ...await listFiles(corpus, "tok"),
        ...await listFiles(corpus, "data"),
        ...await listFiles(corpus, "run"),
      ],
    };
  }
  return cachedList.files;
}
