#!/usr/bin/env node
// `npm test`: checks that dist/ is what tsc makes of src/ (dist is committed: the bm2 binary
// embeds it), then runs the suite under node (`node --test`) and under bun (`bun test`).
// Needs BM2_BIN (absolute path of the bm2 binary); bun from BUN, else the repository's
// target/test-tools (installed there from npm when missing).
"use strict";

const { spawnSync } = require("node:child_process");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");

const pkg = path.resolve(__dirname, "..");
const repo = path.resolve(pkg, "../..");

function run(what, cmd, args, opts = {}) {
  console.log(`== ${what}`);
  const r = spawnSync(cmd, args, { cwd: pkg, stdio: "inherit", ...opts });
  if (r.error) throw new Error(`${what}: cannot run ${cmd}: ${r.error.message}`);
  if (r.status !== 0) {
    console.error(`${what} failed (exit ${r.status ?? r.signal})`);
    process.exit(1);
  }
}

/** Every file under `dir`, relative, sorted. */
function files(dir, base = dir) {
  return fs
    .readdirSync(dir, { withFileTypes: true })
    .flatMap((e) => (e.isDirectory() ? files(path.join(dir, e.name), base) : [path.relative(base, path.join(dir, e.name))]))
    .sort();
}

function checkDist() {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), "bm2-dist-"));
  try {
    run("tsc (fresh build, to compare with dist/)", process.execPath, [require.resolve("typescript/bin/tsc"), "-p", "tsconfig.json", "--outDir", out]);
    const fresh = files(out);
    const committed = files(path.join(pkg, "dist"));
    const stale = [];
    for (const f of new Set([...fresh, ...committed])) {
      const a = path.join(out, f);
      const b = path.join(pkg, "dist", f);
      if (!fs.existsSync(a) || !fs.existsSync(b) || !fs.readFileSync(a).equals(fs.readFileSync(b))) stale.push(f);
    }
    if (stale.length > 0) {
      console.error(`dist/ is not what src/ builds to (${stale.join(", ")}): run \`npm run build\` and commit dist/`);
      process.exit(1);
    }
    console.log("dist/ is up to date");
  } finally {
    fs.rmSync(out, { recursive: true, force: true });
  }
}

function bunPath() {
  if (process.env.BUN) return process.env.BUN;
  const tools = path.join(repo, "target", "test-tools");
  const bun = path.join(tools, "node_modules", ".bin", "bun");
  if (!fs.existsSync(path.join(tools, ".bun-installed"))) {
    // As the Rust tests install it (crates/bm2/tests/common/bun.rs), under the same lock.
    fs.mkdirSync(tools, { recursive: true });
    run("install bun into target/test-tools", "flock", [
      path.join(tools, ".install.lock"),
      "sh",
      "-c",
      "test -f .bun-installed || { npm install --prefix . --no-audit --no-fund bun && node_modules/.bin/bun --version && touch .bun-installed; }",
    ], { cwd: tools });
  }
  return bun;
}

const bin = process.env.BM2_BIN;
if (!bin || !path.isAbsolute(bin) || !fs.existsSync(bin)) {
  console.error(`set BM2_BIN to the absolute path of the bm2 binary (e.g. $PWD/../../target/debug/bm2 after cargo build), not ${JSON.stringify(bin)}`);
  process.exit(1);
}

checkDist();
const tests = fs.readdirSync(path.join(pkg, "test")).filter((f) => f.endsWith(".test.js")).map((f) => path.join("test", f));
run("node --test", process.execPath, ["--test", ...tests]);
run("bun test", bunPath(), ["test", ...tests.map((t) => `./${t}`)]);
