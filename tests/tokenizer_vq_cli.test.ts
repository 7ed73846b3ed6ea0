/**
 * `checkerboard tokenizer import|retrain-codebook|recon` with the vq kind, on the LlamaGen VQ-16
 * fixture (../shared/fixtures/llamagen-vq-small; those tests are ignored where it is absent), and
 * hostile checkpoints: each is one clear line and a non-zero exit, and nothing in them runs.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { expectOneLineError, folderNames, repoRoot, runCli, tempDir } from "./helpers.ts";
import {
  callPickle,
  floatStorage,
  global,
  op,
  stateDictPickle,
  tensorOps,
  torchZip,
  unicode,
} from "./torch_pickles.ts";
import { writeMixedImages } from "./mixed_images.ts";
import { VqTokenizer } from "../src/tokenizer/vq_tokenizer.ts";
import { haveVqFixture, VQ_FIXTURE_PT } from "./vq_fixture.ts";

const PT = VQ_FIXTURE_PT;
const PATCH_TOKENIZER = join(repoRoot, "tests", "data", "mnist-patch-tokenizer");

Deno.test("tokenizer import of hostile or damaged checkpoints: one line, nothing run or written", async () => {
  await using tmp = await tempDir();
  const marker = join(tmp.path, "PWNED");
  const storage = { "0": floatStorage([1, 2, 3, 4]) };
  const tensor = tensorOps("0", 4, [2, 2], [2, 1]);
  const good = torchZip(stateDictPickle("model", "w", tensor), storage);
  const cases: [string, Uint8Array, RegExp][] = [
    [
      "os-system.pt",
      torchZip(callPickle("os", "system", `touch ${marker}`)),
      /not a readable PyTorch checkpoint .*os\.system/,
    ],
    [
      "eval.pt",
      torchZip(callPickle("builtins", "eval", `open(${JSON.stringify(marker)}, "w")`)),
      /not a readable PyTorch checkpoint .*builtins\.eval/,
    ],
    [
      "stack-global.pt",
      // Protocol 4's STACK_GLOBAL would fetch os.system from two strings on the stack.
      torchZip([
        op.PROTO,
        4,
        ...unicode("os"),
        ...unicode("system"),
        op.STACK_GLOBAL,
        ...unicode(`touch ${marker}`),
        op.TUPLE1,
        op.REDUCE,
        op.STOP,
      ]),
      /not a readable PyTorch checkpoint .*opcode/,
    ],
    [
      "unknown-opcode.pt",
      torchZip([op.PROTO, 2, ...global("torch", "FloatStorage"), 0xff, op.STOP]),
      /not a readable PyTorch checkpoint .*opcode/,
    ],
    ["truncated.pt", good.subarray(0, good.length - 30), /not a readable PyTorch checkpoint .*zip/],
    [
      "short-storage.pt",
      torchZip(stateDictPickle("model", "w", tensor), { "0": floatStorage([1, 2, 3]) }),
      /not a readable PyTorch checkpoint .*storage data\/0 has 12 bytes/,
    ],
    ["not-vq.pt", good, /not a LlamaGen VQ checkpoint \(no tensor 'encoder\.conv_in\.weight'\)/],
  ];
  for (const [name, bytes, pattern] of cases) {
    const file = join(tmp.path, name);
    await Deno.writeFile(file, bytes);
    const out = join(tmp.path, `out-${name}`);
    const r = await expectOneLineError(
      ["tokenizer", "import", "--llamagen", file, "--out", out],
      pattern,
    );
    assert.equal(r.code, 1, name);
    assert.match(
      r.stderr,
      new RegExp(`^checkerboard: error: ${file.replaceAll(".", "\\.")}: `, "m"),
    );
    assert.equal(await Deno.stat(marker).then(() => true, () => false), false, `${name} ran code`);
  }
  assert.deepEqual(await folderNames(tmp.path), cases.map(([n]) => n).sort(), "no output folder");
  await expectOneLineError(
    [
      "tokenizer",
      "import",
      "--llamagen",
      join(tmp.path, "missing.pt"),
      "--out",
      join(tmp.path, "o"),
    ],
    /missing\.pt: file not found/,
  );
  await expectOneLineError(
    ["tokenizer", "import", "--out", join(tmp.path, "o")],
    /--llamagen is required/,
  );
});

Deno.test({
  name: "tokenizer import on the fixture, then --force rules for the output folder",
  ignore: !haveVqFixture,
  async fn() {
    await using tmp = await tempDir();
    const out = join(tmp.path, "vq");
    const r = await runCli(["tokenizer", "import", "--llamagen", PT, "--out", out]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /ch 32, ch_mult \[1,1,2,2,4\], z 64, 512 codes of 8, 16 px per code/);
    assert.deepEqual(await folderNames(out), ["tokenizer.json", "tokenizer.safetensors"]);
    assert.deepEqual(await folderNames(tmp.path), ["vq"], "no temporary folder left");
    const tok = await VqTokenizer.load(out);
    assert.match(r.stdout, new RegExp(`hash ${tok.hash}`));
    await expectOneLineError(
      ["tokenizer", "import", "--llamagen", PT, "--out", out],
      /--out .*vq: a tokenizer is already there \(use --force to replace it\)/,
    );
    const again = await runCli(["tokenizer", "import", "--llamagen", PT, "--out", out, "--force"]);
    assert.equal(again.code, 0, again.stderr);
    assert.equal((await VqTokenizer.load(out)).hash, tok.hash, "the same hash each import");
    const other = join(tmp.path, "other");
    await Deno.mkdir(other);
    await Deno.writeTextFile(join(other, "notes.txt"), "mine\n");
    await expectOneLineError(
      ["tokenizer", "import", "--llamagen", PT, "--out", other, "--force"],
      /holds no tokenizer\.json; only a tokenizer folder is replaced/,
    );
    assert.deepEqual(await folderNames(other), ["notes.txt"]);
  },
});

Deno.test({
  name: "tokenizer retrain-codebook and recon on the fixture: report, files, PSNR per scale",
  ignore: !haveVqFixture,
  sanitizeResources: false,
  async fn() {
    await using tmp = await tempDir();
    const vq = join(tmp.path, "vq");
    assert.equal((await runCli(["tokenizer", "import", "--llamagen", PT, "--out", vq])).code, 0);
    const images = join(tmp.path, "images");
    await writeMixedImages(images, 48, 11);
    // Damaged files are skipped with a warning naming each, as data skips them.
    for (const k of [0, 1, 2]) {
      await Deno.writeFile(
        join(images, `class${k}`, "broken.jpg"),
        new Uint8Array([0xff, 0xd8, 1]),
      );
    }
    const dataset = `folder:${images}`;
    const base = ["tokenizer", "retrain-codebook", "--tokenizer", vq, "--dataset", dataset];
    const out = join(tmp.path, "vq64");
    const bad: [string[], RegExp, number][] = [
      [["--out", out, "--min-side", "20"], /--min-side must be a multiple of 16/, 2],
      [
        ["--out", out, "--min-side", "64", "--max-side", "32"],
        /--min-side 64 is larger than --max-side 32/,
        2,
      ],
      [["--out", out, "--codes", "1"], /--codes must be at least 2/, 2],
      [
        ["--out", out, "--codes", "5000", "--max-side", "32"],
        /only \d+ latents to fit 5000 codes/,
        1,
      ],
    ];
    for (const [args, pattern, code] of bad) {
      assert.equal((await expectOneLineError([...base, ...args], pattern)).code, code);
    }
    await expectOneLineError(
      [
        "tokenizer",
        "retrain-codebook",
        "--tokenizer",
        PATCH_TOKENIZER,
        "--dataset",
        dataset,
        "--out",
        out,
      ],
      /a patch tokenizer; retrain-codebook needs a vq tokenizer/,
    );
    assert.deepEqual(
      await folderNames(tmp.path),
      ["images", "vq"],
      "nothing written by the failures",
    );

    const args = [
      ...base,
      "--out",
      out,
      "--codes",
      "64",
      "--max-side",
      "64",
      "--iterations",
      "5",
      "--json",
      "--device",
      "cpu",
    ];
    const r = await runCli(args);
    assert.equal(r.code, 0, r.stderr);
    const report = JSON.parse(r.stdout);
    assert.ok(report.latentErrorAfter <= report.latentErrorBefore, r.stdout);
    assert.deepEqual(report.perSide.map((x: { side: number }) => x.side), [16, 32, 48, 64]);
    assert.match(r.stderr, /latents: 100% .* img\/s/, "progress of the latent extraction");
    assert.match(r.stderr, /k-means: 100% \(5\/5\) .*iter\/s.*error \d/, "progress per iteration");
    assert.match(r.stderr, /^warning: skipped .*broken\.jpg: cannot decode image/m);
    assert.match(r.stderr, /^warning: skipped \d unreadable image\(s\) of folder:/m);
    const retrained = await VqTokenizer.load(out);
    assert.equal(retrained.hash, report.tokenizer);
    assert.equal(retrained.codes, 64);
    assert.equal(retrained.config.codebook.origin, "retrained");

    const text = await runCli([...args.filter((a) => a !== "--json"), "--force"]);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /^ +all +\d+ +\d\.\d{5} +\d\.\d{5}$/m);
    assert.match(
      text.stdout,
      /^held out \(\d+ latents of \d+ validation images, never fitted\): /m,
    );
    assert.equal((await VqTokenizer.load(out)).hash, retrained.hash, "deterministic");

    // recon reads the dataset whole (loadDataset), which refuses a damaged file: remove them.
    for (const k of [0, 1, 2]) await Deno.remove(join(images, `class${k}`, "broken.jpg"));
    const png = join(tmp.path, "recon.png");
    const recon = await runCli([
      "tokenizer",
      "recon",
      "--tokenizer",
      out,
      "--dataset",
      dataset,
      "--side",
      "64",
      "--scales",
      "1,2,4",
      "--count",
      "3",
      "--json",
      "--device",
      "cpu",
    ].concat(["--out", png]));
    assert.equal(recon.code, 0, recon.stderr);
    const figures = JSON.parse(recon.stdout);
    assert.equal(figures.kind, "vq");
    assert.equal(figures.validationImages, 5);
    assert.deepEqual(figures.scales.map((x: { side: number }) => x.side), [1, 2, 4]);
    assert.ok(figures.scales.every((x: { psnrDb: number }) => Number.isFinite(x.psnrDb)));
    assert.ok((await Deno.stat(png)).size > 0);
    await expectOneLineError(
      ["tokenizer", "recon", "--tokenizer", out, "--out", png],
      /--dataset is required for a vq tokenizer/,
    );
  },
});

Deno.test("tokenizer help: an example for every subcommand", async () => {
  for (const sub of ["fit", "import", "retrain-codebook", "recon"]) {
    const r = await runCli(["tokenizer", sub, "--help"]);
    assert.equal(r.code, 0, sub);
    assert.match(r.stdout, /Example/, sub);
  }
});
