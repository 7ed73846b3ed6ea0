/** Locates the npm packages that ship datasets, relative to this checkout. */
import { fileURLToPath } from "node:url";
import { UserError } from "../errors.ts";

const NODE_MODULES = new URL("../../node_modules/", import.meta.url);

/** Absolute folder of an installed npm package, or a UserError saying how to install it. */
export async function packageDir(name: string): Promise<string> {
  const dir = fileURLToPath(new URL(`${name}/`, NODE_MODULES));
  try {
    await Deno.stat(`${dir}package.json`);
  } catch {
    throw new UserError(
      `the npm package '${name}' is not installed (${dir}); run 'npm install' in the checkout`,
    );
  }
  return dir;
}
