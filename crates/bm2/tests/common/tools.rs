//! Tools the tests install for themselves into `target/test-tools` (bun, playwright-core, the
//! MCP Python SDK): each once, under one file lock, so parallel tests and test binaries do not
//! race, and marked done only once its install has finished.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `target/test-tools`.
pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-tools")
}

/// Runs `install` (shell code, in [`dir`]) unless the file `marker` there says it ran already;
/// `install` must create `marker` when it succeeds. Panics with `what`, `hint` and the output
/// when it fails.
pub fn install_once(marker: &str, install: &str, what: &str, hint: &str) {
    let tools = dir();
    if tools.join(marker).is_file() {
        return;
    }
    fs::create_dir_all(&tools).unwrap();
    let script = format!("test -f {marker} || {{ {install}; }}");
    let out = Command::new("flock")
        .arg(tools.join(".install.lock"))
        .args(["sh", "-c", &script])
        .current_dir(&tools)
        .output()
        .expect("run flock (util-linux)");
    assert!(
        out.status.success() && tools.join(marker).is_file(),
        "installing {what} into {} failed{hint}:\n{}{}",
        tools.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
