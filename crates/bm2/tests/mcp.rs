//! `bm2 mcp` driven by an independent client: the official MCP Python SDK (`tests/mcp/client.py`),
//! over stdio and over streamable HTTP, against a real daemon in its own `BM2_HOME`.
//!
//! Needs python3 with the venv module (Debian: python3-venv, installed by scripts/test); the SDK is
//! installed with pip into a virtualenv under `target/test-tools` on first use.

mod common;

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use common::{DEADLINE, TestEnv, free_port, wait_for};
use serde_json::{Value, json};

/// The SDK release the client is written against (its 1.x API: `streamable_http_client`,
/// `ClientSession(message_handler=...)`).
const MCP_SDK: &str = "mcp==1.30.0";

/// Every tool of the contract.
const TOOLS: [&str; 16] = [
    "bm2_list_processes",
    "bm2_describe_process",
    "bm2_start_process",
    "bm2_restart_process",
    "bm2_reload_process",
    "bm2_stop_process",
    "bm2_delete_process",
    "bm2_scale_process",
    "bm2_flush_logs",
    "bm2_reload_logs",
    "bm2_save",
    "bm2_tail_logs",
    "bm2_get_metrics",
    "bm2_get_env",
    "bm2_health",
    "bm2_kill_daemon",
];

/// The read-only tools of the contract (the only ones `--read-only` lists).
const READ_ONLY_TOOLS: [&str; 6] = [
    "bm2_list_processes",
    "bm2_describe_process",
    "bm2_tail_logs",
    "bm2_get_metrics",
    "bm2_get_env",
    "bm2_health",
];

/// An app writing a numbered line to stdout and one to stderr ten times a second.
const TICKER: &str = "#!/bin/sh\ni=0\nwhile :; do\n  i=$((i+1))\n  echo \"tick $i\"\n  echo \"oops $i\" >&2\n  sleep 0.1\ndone\n";

/// How long one request to the MCP client may take.
const STEP: Duration = Duration::from_secs(90);

/// Creates the virtualenv with the MCP SDK under `target/test-tools/mcp-venv` (once, under the
/// file lock the other test tools use, so parallel tests and test binaries do not race) and
/// returns its python.
fn venv_python() -> PathBuf {
    // The marker names the SDK version: a venv alone may be an install still in progress in
    // another test process, or one of another version.
    let marker = format!(".mcp-venv-{}-installed", MCP_SDK.replace("==", "-"));
    common::tools::install_once(
        &marker,
        &format!(
            "rm -rf mcp-venv .mcp-venv-*-installed && python3 -m venv mcp-venv \
             && mcp-venv/bin/pip install --quiet --disable-pip-version-check '{MCP_SDK}' \
             && mcp-venv/bin/python -c 'import mcp.client.stdio, mcp.client.streamable_http' \
             && touch {marker}"
        ),
        &format!("the MCP SDK ({MCP_SDK}) in a virtualenv"),
        " (python3 needs the venv module: `apt-get install python3-venv`, which scripts/test does)",
    );
    // The venv's python is a symlink to the base interpreter: resolving it would leave the venv.
    fs::canonicalize(common::tools::dir().join("mcp-venv"))
        .unwrap()
        .join("bin/python")
}

fn client_py() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mcp/client.py")
}

/// A run of `client.py`: the MCP SDK's `ClientSession` connected to a `bm2 mcp` server, taking
/// one JSON command a line and answering each with one JSON line.
struct McpClient {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr: PathBuf,
    /// What `initialize` returned: {"server", "protocol", "capabilities"}.
    init: Value,
}

impl McpClient {
    /// A client that starts `bm2 mcp <extra>` over stdio in this environment.
    fn stdio(env: &TestEnv, extra: &[&str]) -> McpClient {
        let bm2 = env!("CARGO_BIN_EXE_bm2");
        let home = env.home_path().to_str().unwrap();
        let mut args = vec!["--transport", "stdio", "--bm2", bm2, "--home", home];
        args.extend_from_slice(extra);
        McpClient::spawn(env, &args)
    }

    /// A client of the streamable HTTP server `server`.
    fn http(env: &TestEnv, server: &HttpServer) -> McpClient {
        let url = server.url();
        McpClient::spawn(
            env,
            &[
                "--transport",
                "http",
                "--url",
                &url,
                "--token",
                &server.token,
            ],
        )
    }

    fn spawn(env: &TestEnv, args: &[&str]) -> McpClient {
        let python = venv_python();
        let stderr = tempfile::Builder::new()
            .prefix("mcp-client-")
            .suffix(".stderr")
            .tempfile_in(env.dir.path())
            .unwrap()
            .into_temp_path()
            .keep()
            .unwrap();
        let mut child = Command::new(python)
            .arg(client_py())
            .args(args)
            .arg("session")
            .current_dir(env.dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("run the MCP client (python)");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut client = McpClient {
            stdin: child.stdin.take(),
            child,
            lines,
            stderr,
            init: Value::Null,
        };
        client.init = client.answer("initialize");
        assert_eq!(
            client.init["ok"], true,
            "initialize failed: {}",
            client.init
        );
        client
    }

    /// The next answer line, parsed; panics (with the client's stderr) when none comes.
    fn answer(&mut self, what: &str) -> Value {
        let Ok(line) = self.lines.recv_timeout(STEP) else {
            panic!(
                "no answer from the MCP client to {what} (it exited, or {STEP:?} passed); its stderr:\n{}",
                fs::read_to_string(&self.stderr).unwrap_or_default()
            );
        };
        let v: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("MCP client printed {line:?} ({e})"));
        assert!(
            v.get("fatal").is_none(),
            "the MCP client failed during {what}: {}\nits stderr:\n{}",
            v["fatal"],
            fs::read_to_string(&self.stderr).unwrap_or_default()
        );
        v
    }

    /// Sends one command; returns its answer ({"ok": bool, ...}).
    fn send(&mut self, cmd: &Value) -> Value {
        let stdin = self.stdin.as_mut().expect("client open");
        writeln!(stdin, "{cmd}").expect("write to the MCP client");
        stdin.flush().unwrap();
        self.answer(&cmd.to_string())
    }

    /// Sends one command that must succeed at the MCP level.
    fn ok(&mut self, cmd: &Value) -> Value {
        let v = self.send(cmd);
        assert_eq!(v["ok"], true, "{cmd} failed: {v}");
        v
    }

    /// `tools/call`; returns the `CallToolResult`.
    fn call(&mut self, name: &str, arguments: &Value) -> Value {
        self.ok(&json!({"op": "call", "name": name, "arguments": arguments}))["result"].take()
    }

    /// `tools/call` that must not be a tool error; returns its structuredContent.
    fn call_ok(&mut self, name: &str, arguments: &Value) -> Value {
        let r = self.call(name, arguments);
        assert_ne!(r["isError"], true, "{name} {arguments} failed: {r}");
        let text = r["content"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == "text"));
        assert!(text.is_some(), "{name}: no text copy of the result: {r}");
        assert!(
            r["structuredContent"].is_object(),
            "{name}: no structuredContent: {r}"
        );
        r["structuredContent"].clone()
    }

    fn tools(&mut self) -> Vec<Value> {
        let v = self.ok(&json!({"op": "list_tools"}));
        v["tools"].as_array().unwrap().clone()
    }

    /// What the transport received on the server's stdout (or stream) that was not a message.
    fn stream_errors(&mut self) -> Vec<Value> {
        let v = self.ok(&json!({"op": "stream_errors"}));
        v["errors"].as_array().unwrap().clone()
    }

    /// Closes the session and waits for the client (and the stdio server it started) to exit.
    fn close(mut self) {
        self.finish();
    }

    fn finish(&mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = writeln!(stdin, "{}", json!({"op": "close"}));
        }
        let deadline = Instant::now() + DEADLINE;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        assert!(
            std::thread::panicking(),
            "the MCP client did not exit after close; its stderr:\n{}",
            fs::read_to_string(&self.stderr).unwrap_or_default()
        );
    }
}

impl Drop for McpClient {
    fn drop(&mut self) {
        if self.stdin.is_some() {
            self.finish();
        }
    }
}

/// `bm2 mcp --transport http` on a free port, started by the test and killed when dropped.
struct HttpServer {
    child: Child,
    port: u16,
    token: String,
}

impl HttpServer {
    fn start(env: &TestEnv, extra: &[&str]) -> HttpServer {
        let token = env.ok(&["mcp", "token"]).trim().to_string();
        assert!(!token.is_empty(), "bm2 mcp token printed nothing");
        let port = free_port();
        let log = env.path(&format!("mcp-http-{port}.log"));
        let port_s = port.to_string();
        let mut args = vec!["mcp", "--transport", "http", "--port", &port_s];
        args.extend_from_slice(extra);
        let mut child = env
            .command(&args)
            .stdin(Stdio::null())
            .stdout(fs::File::create(&log).unwrap())
            .stderr(fs::File::create(env.path(&format!("mcp-http-{port}.err"))).unwrap())
            .spawn()
            .expect("spawn bm2 mcp");
        let err = env.path(&format!("mcp-http-{port}.err"));
        wait_for(&format!("bm2 mcp to listen on {port}"), DEADLINE, || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "bm2 mcp --transport http exited ({status}):\n{}{}",
                    fs::read_to_string(&log).unwrap_or_default(),
                    fs::read_to_string(&err).unwrap_or_default()
                );
            }
            TcpStream::connect(("127.0.0.1", port)).ok().map(|_| ())
        });
        HttpServer { child, port, token }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `bm2 jlist` entry of the app `name`, if any.
fn jlist_entry(env: &TestEnv, name: &str) -> Option<Value> {
    env.jlist().into_iter().find(|p| p["name"] == name)
}

fn tool<'a>(tools: &'a [Value], name: &str) -> &'a Value {
    tools
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("tool {name} not listed: {tools:?}"))
}

fn names(tools: &[Value]) -> Vec<String> {
    tools
        .iter()
        .filter_map(|t| t["name"].as_str().map(str::to_string))
        .collect()
}

/// The whole life of an app through MCP, checked against `bm2 jlist`: initialize, tools and
/// resources listed, start, tail (with filters), subscribe + restart → resources/updated, read
/// the process resource, delete.
fn lifecycle(env: &TestEnv, mcp: &mut McpClient) {
    // initialize
    assert_eq!(mcp.init["server"]["name"], "bm2", "{}", mcp.init);
    assert_eq!(
        mcp.init["server"]["version"],
        env!("CARGO_PKG_VERSION"),
        "{}",
        mcp.init
    );
    let caps = &mcp.init["capabilities"];
    assert!(caps["tools"].is_object(), "no tools capability: {caps}");
    assert_eq!(
        caps["resources"]["subscribe"], true,
        "resources must support subscribe: {caps}"
    );

    // tools, with their annotations
    let tools = mcp.tools();
    let listed = names(&tools);
    for name in TOOLS {
        assert!(listed.iter().any(|n| n == name), "{name} not in {listed:?}");
    }
    for name in [
        "bm2_list_processes",
        "bm2_tail_logs",
        "bm2_health",
        "bm2_get_env",
    ] {
        assert_eq!(
            tool(&tools, name)["annotations"]["readOnlyHint"],
            true,
            "{name} should be read-only: {}",
            tool(&tools, name)
        );
    }
    for name in ["bm2_stop_process", "bm2_delete_process", "bm2_kill_daemon"] {
        assert_eq!(
            tool(&tools, name)["annotations"]["destructiveHint"],
            true,
            "{name} should be destructive: {}",
            tool(&tools, name)
        );
        assert_ne!(
            tool(&tools, name)["annotations"]["readOnlyHint"],
            true,
            "{name} is not read-only"
        );
    }
    for name in ["bm2_start_process", "bm2_restart_process"] {
        assert_ne!(
            tool(&tools, name)["annotations"]["readOnlyHint"],
            true,
            "{name} is not read-only: {}",
            tool(&tools, name)
        );
    }
    assert_eq!(
        tool(&tools, "bm2_start_process")["inputSchema"]["type"],
        "object"
    );

    // resources and templates
    let resources = mcp.ok(&json!({"op": "list_resources"}))["resources"].take();
    let list = resources
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["uri"] == "bm2://processes")
        .unwrap_or_else(|| panic!("bm2://processes not listed: {resources}"));
    assert_eq!(list["mimeType"], "application/json", "{list}");
    let templates = mcp.ok(&json!({"op": "list_templates"}))["templates"].take();
    for (uri, mime) in [
        ("bm2://process/{id}", "application/json"),
        ("bm2://logs/{id}", "text/plain"),
    ] {
        let t = templates
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["uriTemplate"] == uri)
            .unwrap_or_else(|| panic!("template {uri} not listed: {templates}"));
        assert_eq!(t["mimeType"], mime, "{t}");
    }

    // start an app; bm2 jlist shows it
    let script = env.script("ticker.sh", TICKER);
    let started = mcp.call_ok(
        "bm2_start_process",
        &json!({"script": script, "name": "ticker", "cwd": env.dir.path()}),
    );
    let procs = started["processes"].as_array().expect("processes");
    assert_eq!(procs.len(), 1, "{started}");
    assert_eq!(procs[0]["name"], "ticker", "{started}");
    let id = procs[0]["id"].as_u64().expect("numeric id");
    let entry = env.wait_for("ticker online in bm2 jlist", || {
        jlist_entry(env, "ticker").filter(|p| p["pm2_env"]["status"] == "online")
    });
    assert_eq!(entry["pm_id"], id, "{entry}");

    // the list tool agrees
    let listed = mcp.call_ok("bm2_list_processes", &json!({}));
    let row = listed["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "ticker")
        .unwrap_or_else(|| panic!("ticker not in {listed}"))
        .clone();
    assert_eq!(row["id"], id, "{row}");
    for key in ["namespace", "status", "pid", "restarts", "uptime_ms"] {
        assert!(row.get(key).is_some(), "{key} missing in {row}");
    }

    // tail its logs: both streams, then a filter, then one stream
    let lines = env.wait_for("tick and oops lines from bm2_tail_logs", || {
        let tail = mcp.call_ok("bm2_tail_logs", &json!({"process": "ticker", "lines": 40}));
        let lines = tail["lines"].as_array().unwrap().clone();
        let has = |stream: &str, word: &str| {
            lines.iter().any(|l| {
                l["stream"] == stream && l["line"].as_str().is_some_and(|s| s.contains(word))
            })
        };
        (has("out", "tick ") && has("err", "oops ")).then_some(lines)
    });
    assert!(lines.len() <= 40, "{} lines for lines=40", lines.len());
    assert!(lines.iter().all(|l| l["process"] == id), "{lines:?}");
    let filtered = mcp.call_ok(
        "bm2_tail_logs",
        &json!({"process": "ticker", "lines": 40, "filter": "oops"}),
    )["lines"]
        .as_array()
        .unwrap()
        .clone();
    assert!(!filtered.is_empty(), "the filter oops matched nothing");
    assert!(
        filtered
            .iter()
            .all(|l| l["line"].as_str().unwrap().contains("oops") && l["stream"] == "err"),
        "{filtered:?}"
    );
    let regex = mcp.call_ok(
        "bm2_tail_logs",
        &json!({"process": "ticker", "lines": 40, "filter": "^tick [0-9]+$", "regex": true}),
    )["lines"]
        .as_array()
        .unwrap()
        .clone();
    assert!(
        !regex.is_empty() && regex.iter().all(|l| l["stream"] == "out"),
        "{regex:?}"
    );
    let out_only = mcp.call_ok(
        "bm2_tail_logs",
        &json!({"process": "ticker", "lines": 5, "stream": "out"}),
    )["lines"]
        .as_array()
        .unwrap()
        .clone();
    assert!(
        !out_only.is_empty()
            && out_only.len() <= 5
            && out_only.iter().all(|l| l["stream"] == "out"),
        "{out_only:?}"
    );

    // read the process resource
    let uri = format!("bm2://process/{id}");
    let read = mcp.ok(&json!({"op": "read", "uri": uri}))["result"].take();
    let content = &read["contents"][0];
    assert_eq!(content["uri"], uri.as_str(), "{read}");
    assert_eq!(content["mimeType"], "application/json", "{read}");
    let detail: Value = serde_json::from_str(content["text"].as_str().expect("text"))
        .unwrap_or_else(|e| panic!("{uri} is not JSON ({e}): {read}"));
    assert!(detail.to_string().contains("ticker"), "{detail}");

    // subscribe, restart: restart count up in jlist, and resources/updated for that uri
    mcp.ok(&json!({"op": "subscribe", "uri": uri}));
    let before = entry["pm2_env"]["restart_time"].as_u64().unwrap();
    let restarted = mcp.call_ok("bm2_restart_process", &json!({"process": "ticker"}));
    assert_eq!(restarted["processes"][0]["id"], id, "{restarted}");
    env.wait_for("the restart count to go up in bm2 jlist", || {
        let p = jlist_entry(env, "ticker")?;
        (p["pm2_env"]["restart_time"].as_u64()? > before).then_some(())
    });
    let got = mcp.ok(&json!({"op": "wait_updated", "uri": uri, "timeout": 20}));
    assert_eq!(
        got["received"], true,
        "no notifications/resources/updated for {uri} after a restart: {got}"
    );

    // delete it
    let deleted = mcp.call_ok("bm2_delete_process", &json!({"process": "ticker"}));
    assert_eq!(deleted["deleted"], json!([id]), "{deleted}");
    assert!(
        jlist_entry(env, "ticker").is_none(),
        "ticker still in bm2 jlist after bm2_delete_process"
    );

    assert_eq!(mcp.stream_errors(), Vec::<Value>::new());
}

#[test]
fn stdio_lifecycle() {
    let env = TestEnv::new();
    let mut mcp = McpClient::stdio(&env, &[]);
    lifecycle(&env, &mut mcp);
    mcp.close();
}

#[test]
fn http_lifecycle() {
    let env = TestEnv::new();
    let server = HttpServer::start(&env, &[]);
    let mut mcp = McpClient::http(&env, &server);
    lifecycle(&env, &mut mcp);
    mcp.close();
}

/// A daemon error is a tool result (isError, the daemon's message and hint), not a protocol
/// error, and the server keeps serving; stdout carries nothing but protocol.
#[test]
fn stdio_tool_error_is_a_result() {
    let env = TestEnv::new();
    let mut mcp = McpClient::stdio(&env, &[]);
    let r = mcp.call("bm2_describe_process", &json!({"process": "ghost"}));
    assert_eq!(r["isError"], true, "{r}");
    let text = r["content"][0]["text"].as_str().unwrap_or_default();
    assert!(
        text.contains("no process matches \"ghost\"") && text.contains("\nhint: "),
        "the daemon's message and hint should come back: {r}"
    );
    let health = mcp.call_ok("bm2_health", &json!({}));
    assert!(health["daemon"]["pid"].as_u64().is_some(), "{health}");
    assert_eq!(health["daemon"]["version"], env!("CARGO_PKG_VERSION"));
    let list = mcp.call_ok("bm2_list_processes", &json!({}));
    assert_eq!(list["processes"], json!([]), "{list}");
    assert_eq!(mcp.stream_errors(), Vec::<Value>::new());
    mcp.close();
}

/// `bm2 mcp --read-only` lists only the read-only tools and refuses the others.
#[test]
fn stdio_read_only_refuses_stop() {
    let env = TestEnv::new();
    env.start_sleeper("keeper");
    let mut mcp = McpClient::stdio(&env, &["--read-only"]);
    let listed = names(&mcp.tools());
    for name in READ_ONLY_TOOLS {
        assert!(listed.iter().any(|n| n == name), "{name} not in {listed:?}");
    }
    for name in TOOLS.iter().filter(|n| !READ_ONLY_TOOLS.contains(n)) {
        assert!(
            !listed.iter().any(|n| n == name),
            "{name} listed by a read-only server: {listed:?}"
        );
    }
    let v = mcp.send(&json!({"op": "call", "name": "bm2_stop_process",
                             "arguments": {"process": "keeper"}}));
    // Either a JSON-RPC error or a tool result with isError, saying the server is read-only.
    let refused = v["ok"] == false || v["result"]["isError"] == true;
    assert!(refused, "bm2_stop_process was not refused: {v}");
    assert!(
        v.to_string().to_lowercase().contains("read-only"),
        "the refusal should say the server is read-only: {v}"
    );
    let p = env.proc("keeper");
    assert_eq!(p["status"], "online", "keeper was stopped: {p}");
    // It keeps serving.
    let list = mcp.call_ok("bm2_list_processes", &json!({}));
    assert!(list.to_string().contains("keeper"), "{list}");
    assert_eq!(mcp.stream_errors(), Vec::<Value>::new());
    mcp.close();
}

/// Is this answer of the raw HTTP scenario a protocol error (HTTP 400 with a body, or a JSON-RPC
/// parse / invalid request / invalid params error)?
fn protocol_error(answer: &Value) -> bool {
    let code = answer["json"]["error"]["code"].as_i64();
    matches!(code, Some(-32700 | -32600 | -32602))
        || (answer["status"] == 400 && !answer["body"].as_str().unwrap_or_default().is_empty())
}

/// The HTTP transport's guards: the bearer token, Origin and Host checks, malformed bodies.
#[test]
fn http_guards() {
    let env = TestEnv::new();
    let server = HttpServer::start(&env, &[]);
    // The token is stable and private.
    assert_eq!(env.ok(&["mcp", "token"]).trim(), server.token);
    let mode = fs::metadata(env.home_path().join("mcp.token"))
        .expect("$BM2_HOME/mcp.token")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "mcp.token mode {mode:o}");

    let out = Command::new(venv_python())
        .arg(client_py())
        .args([
            "--transport",
            "http",
            "--url",
            &server.url(),
            "--token",
            &server.token,
            "http-guards",
        ])
        .current_dir(env.dir.path())
        .output()
        .expect("run the MCP client (python)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the http-guards scenario failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_str(stdout.trim()).expect("one JSON object");

    assert_eq!(
        r["no_token"]["status"], 401,
        "without a token: {}",
        r["no_token"]
    );
    assert_eq!(
        r["wrong_token"]["status"], 401,
        "wrong token: {}",
        r["wrong_token"]
    );
    assert_eq!(
        r["evil_origin"]["status"], 403,
        "foreign Origin: {}",
        r["evil_origin"]
    );
    assert_eq!(
        r["evil_host"]["status"], 403,
        "foreign Host: {}",
        r["evil_host"]
    );
    let init = &r["initialize"];
    assert_eq!(init["status"], 200, "initialize: {init}");
    assert_eq!(
        init["json"]["result"]["serverInfo"]["name"], "bm2",
        "{init}"
    );
    assert!(
        r["initialized"]["status"]
            .as_u64()
            .is_some_and(|s| (200..300).contains(&s)),
        "notifications/initialized: {}",
        r["initialized"]
    );
    assert!(
        protocol_error(&r["truncated"]),
        "a truncated JSON body should get a parse error: {}",
        r["truncated"]
    );
    assert!(
        protocol_error(&r["not_jsonrpc"]),
        "JSON that is not JSON-RPC should get an invalid request error: {}",
        r["not_jsonrpc"]
    );
    let after = &r["after"];
    assert_eq!(after["status"], 200, "the server stopped serving: {after}");
    let tools = after["json"]["result"]["tools"].as_array();
    assert!(
        tools.is_some_and(|t| t.iter().any(|t| t["name"] == "bm2_list_processes")),
        "tools/list after the malformed bodies: {after}"
    );
}

/// `--read-only` over HTTP too: only the read-only tools are listed.
#[test]
fn http_read_only_lists_read_only_tools() {
    let env = TestEnv::new();
    let server = HttpServer::start(&env, &["--read-only"]);
    let mut mcp = McpClient::http(&env, &server);
    let mut listed = names(&mcp.tools());
    listed.sort();
    let mut want: Vec<String> = READ_ONLY_TOOLS.iter().map(|s| (*s).to_string()).collect();
    want.sort();
    assert_eq!(listed, want);
    let v = mcp.send(&json!({"op": "call", "name": "bm2_kill_daemon", "arguments": {}}));
    assert!(
        v["ok"] == false || v["result"]["isError"] == true,
        "bm2_kill_daemon was not refused: {v}"
    );
    let health = mcp.call_ok("bm2_health", &json!({}));
    assert!(health["daemon"]["pid"].as_u64().is_some(), "{health}");
    mcp.close();
}

/// The children of a live process.
fn children(pid: u32) -> Vec<u32> {
    fs::read_dir(format!("/proc/{pid}/task"))
        .map(|tasks| {
            tasks
                .flatten()
                .filter_map(|t| fs::read_to_string(t.path().join("children")).ok())
                .flat_map(|s| {
                    s.split_whitespace()
                        .filter_map(|p| p.parse().ok())
                        .collect::<Vec<u32>>()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A stdio server whose client vanishes (killed, its pipes closed) exits by itself.
#[test]
fn stdio_server_exits_when_the_client_vanishes() {
    let env = TestEnv::new();
    let mut mcp = McpClient::stdio(&env, &[]);
    mcp.call_ok("bm2_list_processes", &json!({}));
    let server = children(mcp.child.id())
        .into_iter()
        .find(|pid| {
            fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                let args: Vec<&[u8]> = c.split(|b| *b == 0).collect();
                args.first().is_some_and(|a| a.ends_with(b"bm2"))
                    && args.get(1).is_some_and(|a| *a == b"mcp")
            })
        })
        .expect("the client's bm2 mcp child");
    mcp.child.kill().unwrap();
    mcp.child.wait().unwrap();
    mcp.stdin = None;
    let deadline = Instant::now() + DEADLINE;
    while common::alive(server) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if common::alive(server) {
        common::kill_pid(server, "KILL");
        panic!("bm2 mcp ({server}) still runs {DEADLINE:?} after its client vanished");
    }
    // The daemon it used is unharmed.
    env.ok(&["ping"]);
}

#[test]
fn http_refuses_a_non_loopback_bind_without_allow_remote() {
    let env = TestEnv::new();
    let (ok, out, err) = env.output(&[
        "mcp",
        "--transport",
        "http",
        "--host",
        "0.0.0.0",
        "--port",
        &common::free_port().to_string(),
    ]);
    assert!(!ok, "a non-loopback bind was accepted: {out}");
    assert!(err.contains("--allow-remote"), "{err}");
}
