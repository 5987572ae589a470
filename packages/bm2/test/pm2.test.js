// bm2/pm2: PM2's callback API over a real daemon, and a PM2 script with only its import changed.
"use strict";

const assert = require("node:assert/strict");
const fs = require("node:fs");
const path = require("node:path");
const { spawn } = require("node:child_process");
const { test, describe, before, after, bm2Bin, tempDir, waitFor, nextEvent, writeApps, alive } = require("./harness");

describe("bm2/pm2", () => {
  let home;
  let dir;
  let pm2;
  let savedHome;
  let savedBin;
  let daemonPid;

  before(() => {
    home = tempDir("pm2");
    dir = path.join(home, "apps");
    fs.mkdirSync(dir);
    writeApps(dir);
    // PM2's API reads its home from the environment, as PM2 does PM2_HOME.
    savedHome = process.env.BM2_HOME;
    savedBin = process.env.BM2_BIN;
    process.env.BM2_HOME = home;
    process.env.BM2_BIN = bm2Bin();
    pm2 = require("../dist/pm2.js");
  });

  after(async () => {
    try {
      await new Promise((resolve) => pm2.killDaemon(() => resolve()));
    } finally {
      if (daemonPid && alive(daemonPid)) process.kill(daemonPid, "SIGKILL");
      if (savedHome === undefined) delete process.env.BM2_HOME;
      else process.env.BM2_HOME = savedHome;
      if (savedBin === undefined) delete process.env.BM2_BIN;
      else process.env.BM2_BIN = savedBin;
      fs.rmSync(home, { recursive: true, force: true });
    }
  });

  test("a PM2 script runs unchanged but for require('bm2/pm2')", async () => {
    const script = path.join(__dirname, "fixtures", "pm2-script.js");
    // The script runs under the runtime running the tests (node or bun).
    const child = spawn(process.execPath, [script, dir], {
      env: { ...process.env, BM2_HOME: home },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (err += d));
    const code = await new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        child.kill("SIGKILL");
        reject(new Error(`the PM2 script did not finish: ${out} ${err}`));
      }, 30_000);
      child.on("exit", (c) => {
        clearTimeout(t);
        resolve(c);
      });
    });
    assert.equal(code, 0, err);
    const seen = JSON.parse(out.trim().split("\n").pop());
    assert.deepEqual(seen.started.map((s) => [s.name, s.exec_mode]), [["job", "fork_mode"]]);
    const [p] = seen.list;
    assert.equal(p.name, "job");
    assert.equal(p.pm_id, seen.started[0].pm_id);
    assert.equal(typeof p.pid, "number");
    assert.equal(typeof p.monit.memory, "number");
    assert.equal(typeof p.monit.cpu, "number");
    assert.ok(["online", "launching", "stopped"].includes(p.status), p.status);
    assert.equal(typeof p.pm_uptime, "number");
    assert.equal(p.restart_time, 0);
    assert.equal(p.exec_mode, "fork_mode");
    assert.equal(p.instances, 1);
    assert.equal(p.pm_exec_path, path.join(dir, "exits.js"));
    assert.equal(p.namespace, "default");
    assert.ok(seen.logs.includes("about to exit\n"), JSON.stringify(seen.logs));
    const names = seen.events.map((e) => e.event);
    assert.ok(names.includes("exit"), JSON.stringify(names));
    assert.equal(seen.exitPacket.process.exit_code, 3);
    assert.equal(seen.exitPacket.process.name, "job");
    assert.equal(typeof seen.exitPacket.at, "number");
    assert.equal(seen.afterDelete, 0);
  });

  test("connect starts the daemon; connect(true) (no-daemon mode) is refused", async () => {
    const meta = await new Promise((resolve, reject) => pm2.connect((e, m) => (e ? reject(e) : resolve(m))));
    daemonPid = meta.pid;
    assert.ok(alive(meta.pid));
    const err = await new Promise((resolve) => pm2.connect(true, (e) => resolve(e)));
    assert.equal(err.code, "unsupported");
  });

  test("start(script, opts), list, describe, restart, reload, stop and delete with callbacks", async () => {
    const call = (fn, ...args) => new Promise((resolve, reject) => fn(...args, (e, r) => (e ? reject(e) : resolve(r))));
    const apps = await call(pm2.start, path.join(dir, "server.js"), { name: "web", instances: 2, exec_mode: "cluster" });
    assert.equal(apps.length, 2);
    assert.ok(apps.every((a) => a.pm2_env.exec_mode === "cluster_mode" && a.pm2_env.instances === 2));
    await waitFor("web online", async () => (await call(pm2.list)).filter((p) => p.pm2_env.status === "online").length === 2);
    const [d] = await call(pm2.describe, "web");
    assert.equal(d.name, "web");
    assert.equal(d.pm2_env.pm_exec_path, path.join(dir, "server.js"));
    assert.equal(typeof d.pm2_env.env, "object");
    const restarted = await call(pm2.restart, "web");
    assert.equal(restarted.length, 2);
    const reloaded = await call(pm2.reload, "web", { updateEnv: true });
    assert.equal(reloaded.length, 2);
    const stopped = await call(pm2.stop, "all");
    assert.ok(stopped.every((p) => p.pm2_env.status === "stopped"));
    // An ecosystem: apps already running are restarted, as PM2 does.
    const eco = await call(pm2.start, { apps: [{ name: "web", script: "server.js", cwd: dir, instances: 2, exec_mode: "cluster" }] });
    assert.equal(eco.length, 2);
    await call(pm2.delete, "web");
    assert.deepEqual(await call(pm2.list), []);
  });

  test("start of an ecosystem file, sendDataToProcessId and process:msg on the bus, dump", async () => {
    const call = (fn, ...args) => new Promise((resolve, reject) => fn(...args, (e, r) => (e ? reject(e) : resolve(r))));
    fs.writeFileSync(
      path.join(dir, "ecosystem.config.js"),
      `module.exports = { apps: [{ name: "eco", script: "./server.js", env_production: { APP_TAG: "prod" } }] };\n`,
    );
    const started = await call(pm2.start, path.join(dir, "ecosystem.config.js"), { env: "production" });
    assert.equal(started[0].name, "eco");
    assert.equal(started[0].pm2_env.APP_TAG, "prod");
    const bus = await call(pm2.launchBus);
    const msg = nextEvent(bus, "process:msg", (p) => p.process.name === "eco");
    const anyLog = nextEvent(bus, "log:*", () => true);
    const line = nextEvent(bus, "log:out", (p) => p.data.startsWith("got "));
    await waitFor("eco online", async () => (await call(pm2.describe, "eco"))[0].pm2_env.status === "online");
    const res = await call(pm2.sendDataToProcessId, started[0].pm_id, { topic: "t1", data: { hi: 1 } });
    assert.equal(res.success, true);
    const m = await msg;
    assert.equal(m.topic, "echo");
    assert.deepEqual(m.data, { echoed: { hi: 1 } });
    assert.equal(m.process.pm_id, started[0].pm_id);
    assert.match((await line).data, /^got .*"topic":"t1".*\n$/);
    await anyLog;
    // PM2's form with the id in the packet; a packet without topic is refused as PM2 does.
    await call(pm2.sendDataToProcessId, { id: started[0].pm_id, topic: "t2", data: 2 });
    await assert.rejects(call(pm2.sendDataToProcessId, started[0].pm_id, { data: 1 }), /TOPIC/);
    const dumped = await call(pm2.dump);
    assert.ok(fs.existsSync(dumped.path));
    bus.close();
  });

  test("errors carry the daemon's code", async () => {
    const err = await new Promise((resolve) => pm2.describe("nope", (e) => resolve(e)));
    assert.equal(err.code, "unknown_target");
    assert.equal(err.name, "Bm2Error");
    const err2 = await new Promise((resolve) => pm2.stop(999, (e) => resolve(e)));
    assert.equal(err2.code, "unknown_target");
  });

  test("killDaemon stops the daemon and its apps", async () => {
    const call = (fn, ...args) => new Promise((resolve, reject) => fn(...args, (e, r) => (e ? reject(e) : resolve(r))));
    const pids = (await call(pm2.list)).map((p) => p.pid).filter(Boolean);
    const r = await call(pm2.killDaemon);
    assert.equal(r.pid, daemonPid);
    assert.equal(alive(daemonPid), false);
    await waitFor("apps gone", () => pids.every((pid) => !alive(pid)));
  });
});
