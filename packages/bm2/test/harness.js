// The same tests under `node --test` and `bun test`: their runners' test/describe/before/after,
// a temporary BM2_HOME per suite, the bm2 binary from BM2_BIN, polling with deadlines.
"use strict";

const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");

const isBun = typeof globalThis.Bun !== "undefined";
const runner = isBun ? require("bun:test") : require("node:test");

const TIMEOUT = 60_000;

/** A test with a generous timeout (bun's default is 5 s). */
function test(name, fn) {
  return isBun ? runner.test(name, fn, TIMEOUT) : runner.test(name, { timeout: TIMEOUT }, fn);
}

const describe = (name, fn) => runner.describe(name, fn);
const before = (fn) => (isBun ? runner.beforeAll(fn, TIMEOUT) : runner.before(fn, { timeout: TIMEOUT }));
const after = (fn) => (isBun ? runner.afterAll(fn, TIMEOUT) : runner.after(fn, { timeout: TIMEOUT }));

/** The bm2 binary under test: BM2_BIN, an absolute path. */
function bm2Bin() {
  const bin = process.env.BM2_BIN;
  if (!bin || !path.isAbsolute(bin) || !fs.existsSync(bin)) {
    throw new Error(`set BM2_BIN to the absolute path of the bm2 binary (target/debug/bm2), not ${JSON.stringify(bin)}`);
  }
  return bin;
}

/** A fresh temporary directory (short: the socket path must fit in sun_path). */
function tempDir(tag) {
  return fs.mkdtempSync(path.join(os.tmpdir(), `bm2js-${tag}-`));
}

/** Polls `fn` until it returns a truthy value; fails after `ms` with `what`. */
async function waitFor(what, fn, ms = 20_000) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Collects an emitter's events of `type` until one satisfies `pred`. */
function nextEvent(emitter, type, pred = () => true, ms = 20_000) {
  return new Promise((resolve, reject) => {
    const seen = [];
    const timer = setTimeout(() => {
      emitter.off(type, on);
      reject(new Error(`no ${type} event matching within ${ms} ms; saw ${JSON.stringify(seen).slice(0, 2000)}`));
    }, ms);
    function on(e) {
      seen.push(e);
      if (pred(e)) {
        clearTimeout(timer);
        emitter.off(type, on);
        resolve(e);
      }
    }
    emitter.on(type, on);
  });
}

/** Writes the apps the tests run into `dir`. */
function writeApps(dir) {
  // Logs a line at start, answers IPC messages, then idles.
  fs.writeFileSync(
    path.join(dir, "server.js"),
    `console.log("hello from " + (process.env.APP_TAG || "server"));
console.error("warn from server");
process.on("message", (m) => {
  console.log("got " + JSON.stringify(m));
  if (process.send) process.send({ type: "process:msg", topic: "echo", data: { echoed: m.data } });
});
setInterval(() => {}, 1 << 30);
`,
  );
  // Prints a line and exits with code 3 (no autorestart in the tests that use it).
  fs.writeFileSync(
    path.join(dir, "exits.js"),
    `console.log("about to exit");
setTimeout(() => process.exit(3), 300);
`,
  );
  // A program without an IPC channel.
  fs.writeFileSync(path.join(dir, "sleeper.sh"), "#!/bin/sh\necho sleeping\nexec sleep 600\n", { mode: 0o755 });
}

function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return e.code === "EPERM";
  }
}

module.exports = { test, describe, before, after, isBun, bm2Bin, tempDir, waitFor, nextEvent, writeApps, alive };
