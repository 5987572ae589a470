// ProcessManager and Dashboard against a real daemon in a temporary BM2_HOME.
"use strict";

const assert = require("node:assert/strict");
const fs = require("node:fs");
const path = require("node:path");
const { test, describe, before, after, bm2Bin, tempDir, waitFor, nextEvent, writeApps, alive } = require("./harness");
const { ProcessManager, Dashboard, Bm2Error, EventStream } = require("../dist/index.js");

describe("ProcessManager", () => {
  let home;
  let dir;
  let pm;
  let daemonPid;
  const notices = [];

  before(() => {
    home = tempDir("pm");
    dir = path.join(home, "apps");
    fs.mkdirSync(dir);
    writeApps(dir);
    pm = new ProcessManager({ home, bin: bm2Bin(), onNotice: (n) => notices.push(n) });
  });

  after(async () => {
    try {
      await pm.kill();
    } finally {
      if (daemonPid && alive(daemonPid)) process.kill(daemonPid, "SIGKILL");
      fs.rmSync(home, { recursive: true, force: true });
    }
  });

  test("ping starts the daemon with the bm2 binary and names its home", async () => {
    assert.equal(fs.existsSync(path.join(home, "daemon.sock")), false);
    const p = await pm.ping();
    daemonPid = p.pid;
    assert.ok(alive(p.pid));
    assert.equal(fs.realpathSync(p.home), fs.realpathSync(home));
    assert.equal(typeof p.version, "string");
  });

  test("start takes BM2's option spellings, resolves the script in the cwd and passes the caller's env", async () => {
    process.env.APP_TAG = "js-client";
    let states;
    try {
      states = await pm.start({ name: "api", script: "./server.js", execMode: "fork", env: { EXTRA: "1" } }, { cwd: dir });
    } finally {
      delete process.env.APP_TAG;
    }
    assert.equal(states.length, 1);
    assert.equal(states[0].name, "api");
    const [d] = await pm.describe("api");
    assert.equal(d.env.APP_TAG, "js-client");
    assert.equal(d.env.EXTRA, "1");
    await waitFor("api online", async () => (await pm.list()).find((p) => p.name === "api" && p.status === "online" && p.pid));
  });

  test("start without cwd resolves relative scripts in process.cwd()", async () => {
    const cwd = process.cwd();
    process.chdir(dir);
    try {
      const states = await pm.start({ name: "rel", script: "sleeper.sh" });
      assert.equal(states[0].name, "rel");
    } finally {
      process.chdir(cwd);
    }
    // A relative cwd flag, and an app's own cwd relative to it.
    const sub = path.join(dir, "sub");
    fs.mkdirSync(sub, { recursive: true });
    fs.copyFileSync(path.join(dir, "sleeper.sh"), path.join(sub, "sleeper.sh"));
    const prev = process.cwd();
    process.chdir(home);
    try {
      await pm.start({ name: "sub", script: "sleeper.sh", cwd: "sub" }, { cwd: "apps" });
    } finally {
      process.chdir(prev);
    }
    const [s] = await pm.describe("sub");
    assert.equal(path.resolve(s.spec.cwd, s.spec.script), path.join(sub, "sleeper.sh"));
    await pm.delete("sub");
    const [d] = await pm.describe("rel");
    assert.equal(path.resolve(d.spec.cwd, d.spec.script), path.join(dir, "sleeper.sh"));
    await pm.delete("rel");
  });

  test("start refuses a name that is managed, and bad options, with the daemon's codes", async () => {
    await assert.rejects(pm.start({ name: "api", script: "server.js" }, { cwd: dir }), (e) => {
      assert.ok(e instanceof Bm2Error);
      assert.equal(e.code, "already_exists");
      return true;
    });
    await assert.rejects(pm.start({ name: "bad", script: "server.js", instances: "lots" }, { cwd: dir }), (e) => {
      assert.ok(e instanceof Bm2Error);
      assert.equal(e.code, "invalid_app");
      assert.equal(e.status, 400);
      assert.match(e.message, /instances/);
      return true;
    });
    await assert.rejects(pm.start([]), (e) => e instanceof Bm2Error && e.code === "invalid_request");
  });

  test("list and describe give the instances", async () => {
    const list = await pm.list();
    const api = list.find((p) => p.name === "api");
    assert.ok(api);
    assert.equal(api.exec_mode, "fork");
    assert.equal(typeof api.id, "number");
    const [d] = await pm.describe(api.id);
    assert.equal(d.id, api.id);
    assert.ok(d.out_log.endsWith(".log"));
    assert.equal(d.spec.script.endsWith("server.js"), true);
  });

  test("logs gives the last lines of both streams without following", async () => {
    const lines = await waitFor("api's first lines", async () => {
      const l = await pm.logs("api", { lines: 10 });
      return l.some((x) => x.type === "out" && x.data === "hello from js-client") && l.some((x) => x.type === "err") ? l : null;
    });
    const out = lines.find((x) => x.type === "out");
    assert.equal(out.name, "api");
    assert.equal(out.app, "api");
    const onlyErr = await pm.logs("api", { lines: 10, out: false });
    assert.ok(onlyErr.length > 0 && onlyErr.every((x) => x.type === "err"));
  });

  test("unknown targets are errors with code unknown_target", async () => {
    const calls = [
      () => pm.describe("nope"),
      () => pm.stop("nope"),
      () => pm.restart(4242),
      () => pm.logs("nope"),
      () => pm.events({ targets: "nope" }),
      () => pm.sendDataToProcessId(4242, { topic: "t", data: 1 }),
      () => pm.scale("nope", 2),
    ];
    for (const call of calls) {
      await assert.rejects(call(), (e) => {
        assert.ok(e instanceof Bm2Error, String(e));
        assert.equal(e.code, "unknown_target");
        assert.equal(e.status, 404);
        return true;
      });
    }
  });

  test("events stream lifecycle events, log lines and the apps' messages; sendDataToProcessId reaches the app", async () => {
    const events = await pm.events({ logs: true });
    assert.ok(events instanceof EventStream);
    try {
      const got = nextEvent(events, "log:out", (e) => e.process.name === "api" && e.data.startsWith("got "));
      const msg = nextEvent(events, "process:msg", (e) => e.process.name === "api");
      const [api] = await pm.describe("api");
      const acted = await pm.sendDataToProcessId(api.id, { topic: "greet", data: { n: 7 } });
      assert.equal(acted[0].id, api.id);
      const line = await got;
      const sent = JSON.parse(line.data.slice(4));
      assert.equal(sent.type, "process:msg");
      assert.equal(sent.topic, "greet");
      assert.deepEqual(sent.data, { n: 7 });
      const m = await msg;
      assert.equal(m.topic, "echo");
      assert.deepEqual(m.data, { echoed: { n: 7 } });
      assert.equal(typeof m.at_ms, "number");

      const restart = nextEvent(events, "process:event", (e) => e.event === "restart" && e.process.name === "api");
      const online = nextEvent(events, "process:event", (e) => e.event === "online" && e.process.name === "api");
      await pm.restart("api");
      const r = await restart;
      assert.equal(r.reason, "manual");
      assert.ok((await online).process.pid > 0);
    } finally {
      events.close();
    }
    assert.equal(events.isClosed, true);
  });

  test("events can be iterated with for await and filtered by target", async () => {
    await pm.start({ name: "once", script: "exits.js", autorestart: false }, { cwd: dir });
    await waitFor("once to exit", async () => (await pm.list()).find((p) => p.name === "once" && p.pid === null && p.status !== "online"));
    const events = await pm.events({ targets: "once" });
    // `once` is started before the subscription: restart it so that it exits again, seen.
    const it = (async () => {
      const seen = [];
      for await (const e of events) {
        seen.push(e);
        assert.equal(e.process.name, "once", "only the target's events");
        if (e.type === "process:event" && e.event === "exit") return e;
      }
      throw new Error(`stream ended without exit: ${JSON.stringify(seen)}`);
    })();
    await pm.restart("once");
    const exit = await it;
    assert.equal(exit.code, 3);
    assert.equal(events.isClosed, true, "leaving for-await closes the stream");
    await pm.delete("once");
  });

  test("sendDataToProcessId to a process without an IPC channel fails, naming it", async () => {
    await pm.start({ name: "noipc", script: "sleeper.sh" }, { cwd: dir });
    await assert.rejects(pm.sendDataToProcessId("noipc", { topic: "t", data: 1 }), (e) => {
      assert.ok(e instanceof Bm2Error);
      assert.ok(e.errors.length >= 1);
      assert.equal(typeof e.code, "string");
      assert.equal(e.processes[0].name, "noipc");
      return true;
    });
    await pm.delete("noipc");
  });

  test("scale, reload, stop, stopAll", async () => {
    const scaled = await pm.scale("api", 2);
    assert.ok(scaled.length >= 1);
    await waitFor("two api instances online", async () => (await pm.list()).filter((p) => p.name === "api" && p.status === "online").length === 2);
    const reloaded = await pm.reload("api");
    assert.equal(reloaded.length, 2);
    const stopped = await pm.stop("api");
    assert.ok(stopped.every((p) => p.status === "stopped"));
    await pm.restart("api");
    await pm.stopAll();
    assert.ok((await pm.list()).every((p) => p.status === "stopped"));
  });

  test("save, delete and resurrect", async () => {
    await pm.restart("api");
    const saved = await pm.save();
    assert.ok(fs.existsSync(saved.path));
    assert.equal(saved.count, 2, JSON.stringify(await pm.list()));
    const deleted = await pm.delete("all");
    assert.equal(deleted.length, 2);
    assert.deepEqual(await pm.list(), []);
    const back = await pm.resurrect();
    assert.equal(back.length, 2);
    assert.deepEqual([...new Set((await pm.list()).map((p) => p.name))], ["api"]);
  });

  test("metrics: snapshot, history and Prometheus text", async () => {
    const m = await waitFor("metrics of api", async () => {
      const s = await pm.getMetrics();
      return s.processes.some((p) => p.app === "api") ? s : null;
    });
    assert.equal(typeof m.system.cpuCount, "number");
    const h = await pm.getMetricsHistory(60);
    assert.ok(Array.isArray(h.timestamps));
    await assert.rejects(pm.getMetricsHistory(-1), (e) => e.code === "invalid_request");
    const text = await pm.getPrometheusMetrics();
    assert.equal(typeof text, "string");
    assert.match(text, /# TYPE \S+ /);
    assert.match(text, /bm2_process_cpu\{name="api-0",id="\d+"\}/);
  });

  test("Dashboard starts, shows and stops the web dashboard", async () => {
    const dash = new Dashboard(pm);
    assert.equal(await dash.status(), null);
    const info = await dash.start({ port: 0, metricsPort: 0 });
    assert.match(info.url, /^http:\/\/127\.0\.0\.1:\d+/);
    assert.notEqual(info.options.port, 0);
    const res = await fetch(info.metrics_url);
    assert.equal(res.status, 200);
    await res.text();
    assert.equal((await dash.status()).url, info.url);
    assert.equal(await dash.stop(), true);
    assert.equal(await dash.stop(), false);
    assert.equal(await dash.status(), null);
  });

  test("an event stream ends with close when the daemon goes; kill waits for it and leaves nothing", async () => {
    const events = await pm.events();
    const closed = new Promise((r) => events.once("close", r));
    const pids = (await pm.list()).map((p) => p.pid).filter(Boolean);
    assert.ok(pids.length > 0);
    const p = await pm.kill();
    assert.equal(p.pid, daemonPid);
    assert.equal(alive(daemonPid), false);
    await closed;
    await waitFor("apps gone", () => pids.every((pid) => !alive(pid)));
    assert.equal(await pm.kill(), null, "kill does not start a daemon to kill it");
    assert.equal(fs.existsSync(path.join(home, "daemon.sock")) && alive(daemonPid), false);
  });
});

describe("ProcessManager without a daemon", () => {
  test("concurrent first calls start one daemon and all succeed", async () => {
    const home = tempDir("conc");
    const pm = new ProcessManager({ home, bin: bm2Bin() });
    let pid;
    try {
      const [a, b, list, c] = await Promise.all([pm.ping(), pm.ping(), pm.list(), new ProcessManager({ home, bin: bm2Bin() }).ping()]);
      pid = a.pid;
      assert.equal(b.pid, a.pid);
      assert.equal(c.pid, a.pid);
      assert.deepEqual(list, []);
    } finally {
      await pm.kill();
      if (pid && alive(pid)) process.kill(pid, "SIGKILL");
      fs.rmSync(home, { recursive: true, force: true });
    }
    assert.equal(alive(pid), false);
  });

  test("a binary that cannot start the daemon is an error with code daemon_start_failed", async () => {
    const home = tempDir("nobin");
    try {
      const pm = new ProcessManager({ home, bin: path.join(home, "no-such-bm2") });
      await assert.rejects(pm.list(), (e) => {
        assert.ok(e instanceof Bm2Error);
        assert.equal(e.code, "daemon_start_failed");
        assert.ok(e.hint);
        return true;
      });
    } finally {
      fs.rmSync(home, { recursive: true, force: true });
    }
  });

  test("home and bin come from BM2_HOME and BM2_BIN", () => {
    const saved = { h: process.env.BM2_HOME, b: process.env.BM2_BIN };
    process.env.BM2_HOME = "/tmp/some-home";
    process.env.BM2_BIN = "/opt/bm2";
    try {
      const pm = new ProcessManager();
      assert.equal(pm.home, "/tmp/some-home");
      assert.equal(pm.bin, "/opt/bm2");
      delete process.env.BM2_HOME;
      assert.equal(new ProcessManager().home, path.join(require("node:os").homedir(), ".bm2"));
    } finally {
      for (const [k, v] of [["BM2_HOME", saved.h], ["BM2_BIN", saved.b]]) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
  });
});
