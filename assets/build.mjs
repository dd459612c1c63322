// Builds the page's static files for Caddy's `file_server precompressed br
// zstd gzip` and the Service Worker: writes `sw-version.js` (a digest of
// every served file; sw.js caches the shell under it and serves it from
// the cache), then next to each text file `.br`
// (Brotli, quality 11, Node's zlib), `.gz` (gzip level 9, Node's zlib) and
// `.zst` (zstd -19, the `zstd` command; skipped with a note when it is
// missing: Caddy then serves br or gzip, or compresses on the fly).
//
//   node assets/build.mjs           # (re)write every compressed copy
//   node assets/build.mjs --clean   # remove them
//
// Run it after editing anything here: Caddy serves a compressed copy
// whenever one exists, so a stale one would hide the edit. (The e2e
// harness builds when it starts a cluster and removes the output when it
// stops.) Without the output everything still works: Caddy compresses on
// the fly and the Service Worker runs in its "dev" mode (network first). Copies whose
// source is gone are removed. The compressed files are build output
// (ignored by git), as is sw-version.js. Prints the sizes it wrote.

import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { readdirSync, readFileSync, writeFileSync, statSync, unlinkSync, existsSync } from "node:fs";
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
 * itself, so that any change installs a new Service Worker. */
function stampVersion() {
  const hash = createHash("sha256");
  const served = [...files(ROOT)]
    .filter((p) => !COPIES.some((e) => p.endsWith(e)))
    .filter((p) => !p.endsWith(VERSION_FILE))
    .sort();
  for (const path of served) {
    hash.update(relative(ROOT, path)).update("\0").update(readFileSync(path)).update("\0");
  }
  const version = hash.digest("hex").slice(0, 16);
  writeFileSync(join(ROOT, VERSION_FILE), `self.CHECKRAFT_SHELL_VERSION = "${version}";\n`);
  return version;
}

/** Writes every copy and the shell's version; returns rows of sizes. */
export function build() {
  clean(false);
  const version = stampVersion();
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
  return { rows, withZstd, version };
}

/** Removes every build output (compressed copies, sw-version.js); returns
 * how many compressed copies there were. */
export function unbuild() {
  const removed = clean(true);
  if (existsSync(join(ROOT, VERSION_FILE))) unlinkSync(join(ROOT, VERSION_FILE));
  return removed;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  if (process.argv.includes("--clean")) {
    console.log(`removed ${unbuild()} compressed copies`);
  } else {
    const { rows, withZstd, version } = build();
    console.log(`shell version ${version} (${VERSION_FILE})`);
    const total = (k) => rows.reduce((n, r) => n + (r[k] ?? r.raw), 0);
    for (const r of rows) {
      console.log(`${r.file.padEnd(22)} ${String(r.raw).padStart(6)} B  br ${r[".br"] ?? "-"}  zst ${r[".zst"] ?? "-"}  gz ${r[".gz"] ?? "-"}`);
    }
    console.log(`${"total".padEnd(22)} ${String(total("raw")).padStart(6)} B  br ${total(".br")}  zst ${withZstd ? total(".zst") : "-"}  gz ${total(".gz")}`);
    if (!withZstd) console.log("note: no `zstd` command; .zst copies skipped");
  }
}
