//! `depends_on`: apps start once their dependencies meet their condition, stop before them,
//! and are restarted with them; cycles and unknown names are refused before anything starts.

mod common;

use common::TestEnv;
use serde_json::{Value, json};

/// A Node app that appends `start <NAME>` to `order.txt` when it starts, `ready <NAME>` when
/// it says it is ready (after `DELAY` ms, with `wait_ready`), and `stop <NAME>` on SIGINT.
const APP: &str = r"
const fs = require('fs');
const name = process.env.NAME;
const note = (what) => fs.appendFileSync('order.txt', what + ' ' + name + '\n');
note('start');
const delay = Number(process.env.DELAY || 0);
setTimeout(() => { note('ready'); if (process.send) process.send('ready'); }, delay);
process.on('SIGINT', () => { note('stop'); process.exit(0); });
setInterval(() => {}, 1000);
";

fn app(name: &str, extra: &Value) -> Value {
    let mut a = json!({
        "name": name,
        "script": "app.js",
        "wait_ready": true,
        "listen_timeout": 10000,
        "env": { "NAME": name },
    });
    for (k, v) in extra.as_object().unwrap() {
        a[k] = v.clone();
    }
    a
}

fn write_file(env: &TestEnv, apps: &[Value]) -> String {
    env.file("app.js", APP);
    env.file("eco.json", &json!({ "apps": apps }).to_string());
    "eco.json".to_string()
}

fn order(env: &TestEnv) -> Vec<String> {
    std::fs::read_to_string(env.path("order.txt"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn wait_order(env: &TestEnv, n: usize) -> Vec<String> {
    env.wait_for(&format!("{n} lines in order.txt"), || {
        let o = order(env);
        (o.len() >= n).then_some(o)
    })
}

#[test]
fn a_chain_starts_in_order_and_stops_in_reverse() {
    let env = TestEnv::new();
    // Listed dependents first: the order comes from depends_on, not from the file.
    let file = write_file(
        &env,
        &[
            app("worker", &json!({ "depends_on": { "api": "ready" } })),
            app(
                "api",
                &json!({ "depends_on": ["db"], "env": { "NAME": "api", "DELAY": "200" } }),
            ),
            app("db", &json!({ "env": { "NAME": "db", "DELAY": "500" } })),
        ],
    );
    env.ok(&["start", &file]);
    let o = wait_order(&env, 6);
    // api waits for db to be started only (the list form); worker for api to be ready.
    let pos = |l: &str| {
        o.iter()
            .position(|x| x == l)
            .unwrap_or_else(|| panic!("{l} in {o:?}"))
    };
    assert!(pos("start db") < pos("start api"), "{o:?}");
    assert!(pos("ready api") < pos("start worker"), "{o:?}");
    assert!(pos("ready db") < pos("start worker"), "{o:?}");
    for name in ["db", "api", "worker"] {
        env.wait_status(name, "online");
    }
    std::fs::remove_file(env.path("order.txt")).unwrap();
    env.ok(&["stop", "all"]);
    let o = wait_order(&env, 3);
    assert_eq!(o, ["stop worker", "stop api", "stop db"]);
}

#[test]
fn a_ready_dependency_is_waited_for() {
    let env = TestEnv::new();
    let file = write_file(
        &env,
        &[
            app("api", &json!({ "depends_on": { "db": "ready" } })),
            app("db", &json!({ "env": { "NAME": "db", "DELAY": "500" } })),
        ],
    );
    env.ok(&["start", &file]);
    let o = wait_order(&env, 3);
    assert_eq!(&o[..3], ["start db", "ready db", "start api"]);
}

#[test]
fn a_cycle_is_refused_and_nothing_starts() {
    let env = TestEnv::new();
    let file = write_file(
        &env,
        &[
            app("api", &json!({ "depends_on": ["worker"] })),
            app("worker", &json!({ "depends_on": ["api"] })),
            app("db", &json!({})),
        ],
    );
    let err = env.fail(&["start", &file]);
    assert!(
        err.contains("depends_on cycle: api -> worker -> api"),
        "{err}"
    );
    assert!(env.jlist().is_empty());
    assert!(order(&env).is_empty());
}

#[test]
fn an_unknown_name_is_refused_and_nothing_starts() {
    let env = TestEnv::new();
    let file = write_file(
        &env,
        &[
            app("api", &json!({ "depends_on": ["dbx"] })),
            app("db", &json!({})),
            app("cache", &json!({})),
        ],
    );
    let err = env.fail(&["start", &file]);
    assert!(
        err.contains("api depends_on unknown app \"dbx\" (known: cache, db)"),
        "{err}"
    );
    assert!(env.jlist().is_empty());
    assert!(order(&env).is_empty());
}

#[test]
fn a_managed_app_can_be_a_dependency() {
    let env = TestEnv::new();
    write_file(&env, &[]);
    env.ok(&[
        "start",
        "app.js",
        "--name",
        "db",
        "--wait-ready",
        "--env",
        "NAME=db",
    ]);
    env.wait_status("db", "online");
    env.ok(&[
        "start",
        "app.js",
        "--name",
        "api",
        "--depends-on",
        "db:ready",
        "--env",
        "NAME=api",
    ]);
    env.wait_status("api", "online");
    let err = env.fail(&["start", "app.js", "--name", "w", "--depends-on", "nope"]);
    assert!(err.contains("w depends_on unknown app \"nope\""), "{err}");
}

#[test]
fn a_failing_dependency_leaves_its_dependents_stopped_with_the_reason() {
    let env = TestEnv::new();
    env.script("fail.sh", "#!/bin/sh\nexit 1\n");
    let file = write_file(
        &env,
        &[
            json!({ "name": "db", "script": "fail.sh", "max_restarts": 1, "min_uptime": 5000 }),
            app("api", &json!({ "depends_on": { "db": "ready" } })),
            app("worker", &json!({ "depends_on": ["api"] })),
        ],
    );
    let out = env.run(&["start", &file]);
    let stderr = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stderr.contains("waiting for db (ready): db is errored"),
        "{stderr}"
    );
    env.wait_status("db", "errored");
    let api = env.describe("api");
    assert_eq!(api["status"], "stopped", "{api}");
    assert_eq!(
        api["status_reason"], "waiting for db (ready): db is errored",
        "{api}"
    );
    let worker = env.describe("worker");
    assert_eq!(worker["status"], "stopped");
    assert_eq!(
        worker["status_reason"], "waiting for api (started): api was not started",
        "{worker}"
    );
    assert!(order(&env).is_empty(), "{:?}", order(&env));
}

#[test]
fn restart_dependents_restarts_the_dependents_once_the_dependency_is_ready_again() {
    let env = TestEnv::new();
    let file = write_file(
        &env,
        &[
            app(
                "db",
                &json!({ "restart_dependents": true, "env": { "NAME": "db", "DELAY": "300" } }),
            ),
            app("api", &json!({ "depends_on": { "db": "ready" } })),
            // Does not depend on db: left alone.
            app("other", &json!({})),
        ],
    );
    env.ok(&["start", &file]);
    let api = env.wait_status("api", "online")["pid"].as_u64().unwrap();
    let other = env.wait_status("other", "online")["pid"].as_u64().unwrap();
    // A restart on request.
    std::fs::remove_file(env.path("order.txt")).unwrap();
    env.ok(&["restart", "db"]);
    let api2 = env.wait_new_pid("api", api);
    let o = wait_order(&env, 4);
    let pos = |l: &str| {
        o.iter()
            .rposition(|x| x == l)
            .unwrap_or_else(|| panic!("{l} in {o:?}"))
    };
    assert!(pos("ready db") < pos("start api"), "{o:?}");
    // A crash: db is restarted by bm2, and api after it.
    let db = env.proc("db")["pid"].as_u64().unwrap();
    common::kill_pid(u32::try_from(db).unwrap(), "KILL");
    env.wait_new_pid("api", api2);
    assert_eq!(env.proc("other")["pid"].as_u64().unwrap(), other);
}

#[test]
fn a_client_that_goes_away_while_apps_wait_does_not_stop_the_start() {
    let env = TestEnv::new();
    let file = write_file(
        &env,
        &[
            app("db", &json!({ "env": { "NAME": "db", "DELAY": "1500" } })),
            app("api", &json!({ "depends_on": { "db": "ready" } })),
        ],
    );
    let mut client = env.command(&["start", &file]).spawn().unwrap();
    wait_order(&env, 1);
    client.kill().unwrap();
    client.wait().unwrap();
    env.wait_status("api", "online");
    let o = wait_order(&env, 3);
    assert_eq!(&o[..3], ["start db", "ready db", "start api"]);
}
