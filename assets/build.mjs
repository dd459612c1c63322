// Builds the page's static files for Caddy's `file_server precompressed br
// zstd gzip` and the Service Worker:
// - `dist/`: the production build (esbuild, an npm dev dependency of this
//   folder: `npm ci` here). One minified bundle per entry point: the page
//   (`dist/js/main.js`), the SharedWorker (`dist/js/socket-worker.js`), the
//   hub for browsers without SharedWorker (`dist/js/hub.js`, which the
//   page's bundle imports on demand, as the source does), the CSS
//   (`dist/css/app.css`), and the Service Worker (`dist/sw.js`, with the
//   shell's version and file list written into it). Caddy serves
//   `dist/PATH` for `PATH` when it exists (`try_files` in the Caddyfile), so
//   the page's URLs stay the same and without a build the source modules
//   are served. Without esbuild installed, no `dist/` (a note says so);
// - `sw-version.js` (a digest of every served file; the source sw.js,
//   served where there is no `dist/`, caches the shell under it and serves
//   it from the cache);
// - next to each text file `.br`
// (Brotli, quality 11, Node's zlib), `.gz` (gzip level 9, Node's zlib) and
// `.zst` (zstd -19, the `zstd` command; skipped with a note when it is
// missing: Caddy then serves br or gzip, or compresses on the fly).
//
//   node assets/build.mjs           # (re)write every compressed copy
//   node assets/build.mjs --clean   # remove them
//
// Run it after editing anything here: Caddy serves the bundle and a
// compressed copy whenever one exists, so a stale one would hide the edit
// (or `--clean` to work on the modules). (The e2e
// harness builds when it starts a cluster and removes the output when it
// stops.) Without the output everything still works: Caddy compresses on
// the fly, the page loads its modules one by one and the Service Worker
// runs in its "dev" mode (network first). Copies whose source is gone are
// removed. The compressed files, `dist/` and sw-version.js are build output
// (ignored by git). Prints the sizes it wrote.

import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { readdirSync, readFileSync, writeFileSync, statSync, unlinkSync, existsSync, rmSync } from "node:fs";
import { join, relative, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { brotliCompressSync, gzipSync, constants } from "node:zlib";

const ROOT = dirname(fileURLToPath(import.meta.url));
/** Extensions worth compressing. */
const TEXT = /\.(html|js|mjs|css|json|svg|webmanifest|txt)$/;
/** Compressed-copy extensions this script owns. */
const COPIES = [".br", ".gz", ".zst"];
/** Not part of the served page. */
const SKIP = new Set(["node_modules", "test", "package.json", "package-lock.json", "build.mjs"]);
/** The shell's version, imported by sw.js (build output). */
const VERSION_FILE = "sw-version.js";
/** The production build (output), served in place of the sources. */
const DIST = "dist";
/** Entry points bundled into DIST, as paths under ROOT. */
const ENTRIES = ["js/main.js", "js/socket-worker.js", "js/hub.js", "css/app.css"];
/** The shell the built Service Worker precaches (the page's own URLs;
 * the bundles answer them), and what it caches when first used (the hub
 * of a browser without SharedWorker). */
const BUILT_SHELL = ["/", "/css/app.css", "/js/main.js", "/js/socket-worker.js"];
const BUILT_LAZY = ["/js/hub.js"];

function* files(dir) {
  for (const name of readdirSync(dir)) {
    if (name.startsWith(".") || SKIP.has(name)) continue;
    const path = join(dir, name);
    if (statSync(path).isDirectory()) yield* files(path);
    else yield path;
  }
}

function hasZstd() {
  try {
    execFileSync("zstd", ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

function brotli(data) {
  return brotliCompressSync(data, {
    params: {
      [constants.BROTLI_PARAM_QUALITY]: constants.BROTLI_MAX_QUALITY,
      [constants.BROTLI_PARAM_MODE]: constants.BROTLI_MODE_TEXT,
      [constants.BROTLI_PARAM_SIZE_HINT]: data.length,
    },
  });
}

function zstd(data) {
  return execFileSync("zstd", ["-19", "-q", "-c", "--no-progress"], { input: data, maxBuffer: 1 << 26 });
}

/** Removes every compressed copy (all of them with `all`, else those
 * whose source is gone). */
function clean(all) {
  let removed = 0;
  for (const path of files(ROOT)) {
    const ext = COPIES.find((e) => path.endsWith(e));
    if (!ext) continue;
    if (all || !existsSync(path.slice(0, -ext.length))) {
      unlinkSync(path);
      removed++;
    }
  }
  return removed;
}

/** Writes sw-version.js: a digest of every served file but the worker
 * itself (and its built copy, which carries the digest), so that any
 * change installs a new Service Worker. */
function stampVersion() {
  const hash = createHash("sha256");
  const built = join(ROOT, DIST, "sw.js");
  const served = [...files(ROOT)]
    .filter((p) => !COPIES.some((e) => p.endsWith(e)))
    .filter((p) => !p.endsWith(VERSION_FILE) && p !== built)
    .sort();
  for (const path of served) {
    hash.update(relative(ROOT, path)).update("\0").update(readFileSync(path)).update("\0");
  }
  const version = hash.digest("hex").slice(0, 16);
  writeFileSync(join(ROOT, VERSION_FILE), `self.CHECKRAFT_SHELL_VERSION = "${version}";\n`);
  return version;
}

/** esbuild, or null when it is not installed (`npm ci` in assets/). */
async function loadEsbuild() {
  try {
    return await import("esbuild");
  } catch {
    return null;
  }
}

/** Writes DIST's bundles (all but the Service Worker); false without
 * esbuild. */
async function bundle(esbuild) {
  rmSync(join(ROOT, DIST), { recursive: true, force: true });
  if (!esbuild) return false;
  // The page loads the hub only where it runs it (no SharedWorker): its
  // bundle keeps that import, which then loads dist/js/hub.js.
  const hubApart = {
    name: "hub-apart",
    setup(b) {
      b.onResolve({ filter: /^\.\/hub\.js$/ }, (args) =>
        args.kind === "dynamic-import" ? { path: "./hub.js", external: true } : undefined);
    },
  };
  await esbuild.build({
    entryPoints: ENTRIES.map((e) => join(ROOT, e)),
    outbase: ROOT,
    outdir: join(ROOT, DIST),
    bundle: true,
    format: "esm",
    minify: true,
    target: ["chrome100", "firefox100", "safari16"],
    legalComments: "none",
    plugins: [hubApart],
    logLevel: "warning",
  });
  return true;
}

/** Writes DIST/sw.js: the minified worker with the shell's version and
 * file list set before its code runs. */
async function bundleWorker(esbuild, version) {
  const shell = `self.CHECKRAFT_SHELL_VERSION=${JSON.stringify(version)};` +
    `self.CHECKRAFT_SHELL=${JSON.stringify(BUILT_SHELL)};self.CHECKRAFT_LAZY=${JSON.stringify(BUILT_LAZY)};`;
  await esbuild.build({
    entryPoints: [join(ROOT, "sw.js")],
    outfile: join(ROOT, DIST, "sw.js"),
    bundle: false,
    minify: true,
    target: ["chrome100", "firefox100", "safari16"],
    legalComments: "none",
    banner: { js: shell },
    logLevel: "warning",
  });
}

/** Writes the bundles, every copy and the shell's version; returns rows
 * of sizes. */
export async function build() {
  clean(false);
  const esbuild = await loadEsbuild();
  const bundled = await bundle(esbuild);
  const version = stampVersion();
  if (bundled) await bundleWorker(esbuild, version);
  const withZstd = hasZstd();
  const rows = [];
  for (const path of [...files(ROOT)]) {
    if (!TEXT.test(path)) continue;
    const data = readFileSync(path);
    const row = { file: relative(ROOT, path), raw: data.length };
    const encoders = [[".br", brotli], [".gz", (d) => gzipSync(d, { level: 9 })]];
    if (withZstd) encoders.push([".zst", zstd]);
    for (const [ext, encode] of encoders) {
      const packed = encode(data);
      // A copy no smaller than the file would only cost a lookup.
      if (packed.length < data.length) {
        writeFileSync(path + ext, packed);
        row[ext] = packed.length;
      } else if (existsSync(path + ext)) {
        unlinkSync(path + ext);
      }
    }
    rows.push(row);
  }
  return { rows, withZstd, version, bundled };
}

/** Removes every build output (compressed copies, sw-version.js, dist/);
 * returns how many compressed copies there were. */
export function unbuild() {
  const removed = clean(true);
  rmSync(join(ROOT, DIST), { recursive: true, force: true });
  if (existsSync(join(ROOT, VERSION_FILE))) unlinkSync(join(ROOT, VERSION_FILE));
  return removed;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  if (process.argv.includes("--clean")) {
    console.log(`removed ${unbuild()} compressed copies`);
  } else {
    const { rows, withZstd, version, bundled } = await build();
    console.log(`shell version ${version} (${VERSION_FILE})`);
    if (!bundled) console.log("note: esbuild is not installed (`npm ci` in assets/): no dist/, the page loads its modules");
    const total = (k) => rows.reduce((n, r) => n + (r[k] ?? r.raw), 0);
    for (const r of rows) {
      console.log(`${r.file.padEnd(26)} ${String(r.raw).padStart(6)} B  br ${r[".br"] ?? "-"}  zst ${r[".zst"] ?? "-"}  gz ${r[".gz"] ?? "-"}`);
    }
    console.log(`${"total".padEnd(26)} ${String(total("raw")).padStart(6)} B  br ${total(".br")}  zst ${withZstd ? total(".zst") : "-"}  gz ${total(".gz")}`);
    if (bundled) {
      const built = rows.filter((r) => r.file.startsWith(`${DIST}/`));
      const sum = (k) => built.reduce((n, r) => n + (r[k] ?? r.raw), 0);
      console.log(`${"of which dist/".padEnd(26)} ${String(sum("raw")).padStart(6)} B  br ${sum(".br")} (served in place of the modules)`);
    }
    if (!withZstd) console.log("note: no `zstd` command; .zst copies skipped");
  }
}
