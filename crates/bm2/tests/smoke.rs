mod common;

use common::TestEnv;

#[test]
fn start_list_stop_delete() {
    let env = TestEnv::new();
    env.script("loop.sh", "while true; do echo tick; sleep 0.2; done\n");
    env.ok(&["start", "loop.sh", "--name", "looper"]);
    let p = env.wait_status("looper", "online");
    assert!(p["pid"].as_u64().unwrap() > 0);
    assert!(!env.app_pids().is_empty());
    env.ok(&["stop", "looper"]);
    env.wait_status("looper", "stopped");
    assert!(
        env.app_pids().is_empty(),
        "app processes left after stop: {:?}",
        env.app_pids()
    );
    env.ok(&["delete", "looper"]);
    assert!(env.list().is_empty());
}
