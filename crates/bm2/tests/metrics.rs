//! `bm2 metrics`, `bm2 metrics --history` and `bm2 prometheus`.

mod common;

use common::TestEnv;
use prometheus_parse::{LineInfo, Scrape, Value as PromValue};
use serde_json::Value;

/// `bm2 metrics` as JSON.
fn metrics(env: &TestEnv) -> Value {
    serde_json::from_str(&env.ok(&["metrics"])).expect("metrics prints JSON")
}

fn process<'a>(snapshot: &'a Value, name: &str) -> &'a Value {
    snapshot["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {snapshot}"))
}

#[test]
fn metrics_prints_every_field_of_the_snapshot() {
    let env = TestEnv::new();
    env.start_sleeper("sleeper");
    env.start_sleeper("idle");
    env.ok(&["stop", "idle"]);
    let pid = env.wait_status("sleeper", "online")["pid"]
        .as_u64()
        .unwrap();
    let snap = env.wait_for("a sample of sleeper's memory", || {
        let s = metrics(&env);
        (process(&s, "sleeper")["memory"].as_u64()? > 0).then_some(s)
    });
    assert!(snap["timestamp"].as_u64().unwrap() > 1_600_000_000_000);

    let p = process(&snap, "sleeper");
    assert_eq!(p["id"], 0);
    assert_eq!(p["app"], "sleeper");
    assert_eq!(p["pid"].as_u64(), Some(pid));
    assert!(p["cpu"].as_f64().unwrap() >= 0.0);
    assert!(
        p["handles"].as_u64().unwrap() >= 3,
        "stdin, stdout, stderr: {p}"
    );
    assert_eq!(p["status"], "online");
    assert_eq!(p["restarts"], 0);
    assert!(p["uptime"].as_u64().unwrap() > 0);

    let stopped = process(&snap, "idle");
    assert_eq!(stopped["status"], "stopped");
    assert!(stopped["pid"].is_null());
    assert_eq!(stopped["memory"], 0);
    assert_eq!(stopped["uptime"], 0);
    assert!(stopped["handles"].is_null());

    let sys = &snap["system"];
    let total = sys["totalMemory"].as_u64().unwrap();
    let free = sys["freeMemory"].as_u64().unwrap();
    assert!(total > 0 && free > 0 && free <= total, "{sys}");
    assert!(sys["cpuCount"].as_u64().unwrap() >= 1);
    assert_eq!(sys["loadAvg"].as_array().unwrap().len(), 3);
    assert_eq!(sys["platform"], "linux");
    let usage = sys["cpuUsage"].as_f64().unwrap();
    assert!((0.0..=100.0).contains(&usage), "{sys}");
    let disk = &sys["disk"];
    assert!(disk["totalBytes"].as_u64().unwrap() >= disk["freeBytes"].as_u64().unwrap());
    assert_eq!(disk["path"], env.home_path().display().to_string());
    assert!(sys["network"]["rxBytes"].is_u64() && sys["network"]["txBytes"].is_u64());

    // Restarts are counted.
    env.ok(&["restart", "sleeper"]);
    assert_eq!(process(&metrics(&env), "sleeper")["restarts"], 1);
}

#[test]
fn history_has_one_point_per_sample_for_every_process() {
    let env = TestEnv::new();
    env.start_sleeper("first");
    let history = |seconds: &str| -> Value {
        serde_json::from_str(&env.ok(&["metrics", "--history", seconds])).unwrap()
    };
    // The tests sample every 200 ms: a few points come quickly.
    let h = env.wait_for("5 points of history", || {
        let h = history("60");
        let points = h["timestamps"].as_array()?.len();
        let first = h["processes"].as_array()?.first()?.clone();
        let memory = first["memory"].as_array()?.last()?.as_u64()?;
        (points >= 5 && memory > 0).then_some(h)
    });
    assert_eq!(h["interval_ms"], 200);
    let times: Vec<u64> = h["timestamps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_u64().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] < w[1]), "{times:?}");
    let gaps: Vec<u64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    let mut sorted = gaps.clone();
    sorted.sort_unstable();
    let median = sorted[sorted.len() / 2];
    assert!((150..=400).contains(&median), "sample spacing {gaps:?}");
    let p = &h["processes"][0];
    assert_eq!(p["id"], 0);
    assert_eq!(p["name"], "first");
    assert_eq!(p["cpu"].as_array().unwrap().len(), times.len());
    assert_eq!(p["memory"].as_array().unwrap().len(), times.len());
    assert_eq!(
        h["system"]["cpuUsage"].as_array().unwrap().len(),
        times.len()
    );
    assert_eq!(
        h["system"]["freeMemory"].as_array().unwrap().len(),
        times.len()
    );

    // An app started later has nulls before its first sample, and a window of 1 s holds
    // about 5 samples.
    env.start_sleeper("second");
    let h = env.wait_for("points of the second app", || {
        let h = history("60");
        let second = h["processes"]
            .as_array()?
            .iter()
            .find(|p| p["name"] == "second")?;
        let mem = second["memory"].as_array()?;
        (mem.first()?.is_null() && mem.last()?.as_u64()? > 0).then_some(h)
    });
    assert_eq!(h["processes"].as_array().unwrap().len(), 2);
    let all = h["timestamps"].as_array().unwrap().len();
    let recent = history("1")["timestamps"].as_array().unwrap().len();
    assert!(
        (1..=7).contains(&recent) && recent < all,
        "{recent} points in 1 s, {all} in 60 s"
    );

    // A deleted app leaves the history.
    env.ok(&["delete", "first"]);
    env.wait_for("first to leave the history", || {
        let h = history("60");
        let names: Vec<&Value> = h["processes"]
            .as_array()?
            .iter()
            .map(|p| &p["name"])
            .collect();
        (names == [&Value::from("second")]).then_some(())
    });
}

#[test]
fn history_refuses_a_bad_window() {
    let env = TestEnv::new();
    for bad in ["0", "3601", "-5", "soon"] {
        let err = env.fail(&["metrics", &format!("--history={bad}")]);
        assert!(
            err.contains("invalid value") && err.contains("--history"),
            "{bad}: {err}"
        );
    }
    assert!(env.fail(&["metrics", "--history"]).contains("SECONDS"));
}

#[test]
fn prometheus_text_parses_with_the_spec_names() {
    let env = TestEnv::new();
    env.start_sleeper("api");
    env.start_sleeper("batch");
    env.ok(&["stop", "batch"]);
    env.ok(&["restart", "api"]);
    env.wait_for("a memory sample of api", || {
        let s = metrics(&env);
        (process(&s, "api")["memory"].as_u64()? > 0).then_some(())
    });
    let text = env.ok(&["prometheus"]);

    // Every line is a comment the format defines or a sample the parser reads.
    for line in text.lines() {
        match LineInfo::parse(line) {
            LineInfo::Doc { .. } | LineInfo::Type { .. } | LineInfo::Sample { .. } => {}
            _ => assert!(
                line.starts_with("# UNIT ") || line == "# EOF",
                "not exposition format: {line:?}\n{text}"
            ),
        }
    }
    assert_eq!(text.lines().last(), Some("# EOF"));

    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("parses");
    let sample = |metric: &str, labels: &[(&str, &str)]| -> f64 {
        let s = scrape
            .samples
            .iter()
            .find(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .unwrap_or_else(|| panic!("no {metric}{labels:?} in:\n{text}"));
        match s.value {
            PromValue::Gauge(v) | PromValue::Counter(v) | PromValue::Untyped(v) => v,
            _ => panic!("{metric} is not a number"),
        }
    };
    for metric in [
        "bm2_process_cpu",
        "bm2_process_memory_bytes",
        "bm2_process_restarts",
        "bm2_process_uptime_seconds",
        "bm2_process_status",
        "bm2_system_memory_total_bytes",
        "bm2_system_memory_free_bytes",
        "bm2_system_load_average",
    ] {
        assert!(scrape.docs.contains_key(metric), "no HELP for {metric}");
    }
    let api = [("name", "api"), ("id", "0")];
    assert!(sample("bm2_process_cpu", &api) >= 0.0);
    assert!(sample("bm2_process_memory_bytes", &api) > 0.0);
    assert!((sample("bm2_process_restarts_total", &api) - 1.0).abs() < f64::EPSILON);
    assert!(sample("bm2_process_uptime_seconds", &api) >= 0.0);
    let online = [("name", "api"), ("id", "0"), ("status", "online")];
    assert!((sample("bm2_process_status", &online) - 1.0).abs() < f64::EPSILON);
    let stopped = [("name", "batch"), ("id", "1"), ("status", "stopped")];
    assert!(sample("bm2_process_status", &stopped).abs() < f64::EPSILON);
    assert!(sample("bm2_system_memory_total_bytes", &[]) > 0.0);
    assert!(
        sample("bm2_system_memory_free_bytes", &[]) <= sample("bm2_system_memory_total_bytes", &[])
    );
    for period in ["1m", "5m", "15m"] {
        assert!(sample("bm2_system_load_average", &[("period", period)]) >= 0.0);
    }
    assert!(sample("bm2_system_cpu_count", &[]) >= 1.0);
    assert!(sample("bm2_system_network_receive_bytes_total", &[]) >= 0.0);
    assert!(sample("bm2_system_disk_total_bytes", &[]) > 0.0);
}

#[test]
fn history_api_filters_by_id_and_refuses_bad_requests() {
    use bm2_client::{Client, ClientError};
    let env = TestEnv::new();
    env.start_sleeper("one");
    env.start_sleeper("two");
    let client = Client::new(bm2_types::Home::at(env.home_path().to_path_buf()));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let h = env.wait_for("a point of instance 1", || {
        let h = rt.block_on(client.metrics_history(60, Some(1))).unwrap();
        (!h.processes.is_empty()).then_some(h)
    });
    assert_eq!(h.processes.len(), 1);
    assert_eq!(h.processes[0].id, 1);
    assert_eq!(h.processes[0].name, "two");
    assert_eq!(h.processes[0].cpu.len(), h.timestamps.len());

    let code = |r: Result<bm2_types::MetricsHistory, ClientError>| match r {
        Err(ClientError::Api(e)) => e.code,
        other => panic!("expected a refusal, got {other:?}"),
    };
    assert_eq!(
        code(rt.block_on(client.metrics_history(0, None))),
        bm2_types::ErrorCode::InvalidRequest
    );
    assert_eq!(
        code(rt.block_on(client.metrics_history(3601, None))),
        bm2_types::ErrorCode::InvalidRequest
    );
    assert_eq!(
        code(rt.block_on(client.metrics_history(60, Some(99)))),
        bm2_types::ErrorCode::UnknownTarget
    );

    // The snapshot and the Prometheus text through the client match the CLI's.
    let snap = rt.block_on(client.metrics()).unwrap();
    assert_eq!(snap.processes.len(), 2);
    let text = rt.block_on(client.prometheus()).unwrap();
    assert!(
        text.contains(r#"bm2_process_cpu{name="two",id="1"}"#),
        "{text}"
    );
}

#[test]
fn prometheus_serves_the_classic_text_format_when_asked() {
    use common::unix_http::request;
    let env = TestEnv::new();
    env.start_sleeper("api");
    env.ok(&["restart", "api"]);
    let get = |accept: Option<&str>| {
        let headers: Vec<(&str, &str)> = accept.map(|a| ("Accept", a)).into_iter().collect();
        let r = request(env.home_path(), "GET", "/v1/prometheus", &headers, b"").unwrap();
        assert_eq!(r.status, 200);
        (
            r.header("content-type").unwrap_or_default().to_string(),
            r.text(),
        )
    };
    let (kind, text) = get(Some(
        "text/plain;version=0.0.4;q=1,application/openmetrics-text;q=0.5",
    ));
    assert!(kind.starts_with("text/plain; version=0.0.4"), "{kind}");
    assert!(!text.contains("# EOF"), "{text}");
    // Counters are typed under the name of their samples, as 0.0.4 requires.
    let types: Vec<(String, String)> = text
        .lines()
        .filter_map(|l| match LineInfo::parse(l) {
            LineInfo::Type {
                metric_name,
                sample_type,
                ..
            } => Some((metric_name, format!("{sample_type:?}"))),
            _ => None,
        })
        .collect();
    for counter in [
        "bm2_process_restarts_total",
        "bm2_system_network_receive_bytes_total",
    ] {
        assert!(
            types.contains(&(counter.to_string(), "Counter".to_string())),
            "{counter} not typed counter: {types:?}"
        );
    }
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("parses");
    let restarts = scrape
        .samples
        .iter()
        .find(|s| s.metric == "bm2_process_restarts_total")
        .expect("restarts sample");
    assert!(matches!(restarts.value, PromValue::Counter(v) if (v - 1.0).abs() < f64::EPSILON));
    // Without a preference, OpenMetrics as before.
    for accept in [None, Some("application/openmetrics-text; version=1.0.0")] {
        let (kind, text) = get(accept);
        assert!(kind.starts_with("application/openmetrics-text"), "{kind}");
        assert_eq!(text.lines().last(), Some("# EOF"));
    }
}
