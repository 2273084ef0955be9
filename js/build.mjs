// esbuild: the anywidget ESM bundle and an IIFE bundle for save_html, both into the package.
import * as esbuild from "esbuild";
import { fileURLToPath } from "node:url";
import path from "node:path";

const here = path.dirname(fileURLToPath(import.meta.url));
const outdir = path.join(here, "..", "leafx_widgets", "static");
const watch = process.argv.includes("--watch");

const common = { bundle: true, minify: !watch, target: "es2020", logLevel: "info" };
const builds = [
  { ...common, entryPoints: [path.join(here, "src", "widget.js")], format: "esm",
    outfile: path.join(outdir, "widget.js") },
  { ...common, entryPoints: [path.join(here, "src", "standalone.js")], format: "iife",
    globalName: "LeafX", outfile: path.join(outdir, "standalone.js") },
  { ...common, entryPoints: [path.join(here, "src", "widget.css")],
    outfile: path.join(outdir, "widget.css") },
];

if (watch) {
  for (const b of builds) await (await esbuild.context(b)).watch();
} else {
  await Promise.all(builds.map((b) => esbuild.build(b)));
}
