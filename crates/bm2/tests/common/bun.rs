//! Bun for the tests that run apps under it, installed from npm once per checkout.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Installs bun into `target/test-tools` (once, under a file lock so that parallel tests and
/// test binaries do not race) and returns the directory holding the `bun` executable.
pub fn bun_bin_dir() -> PathBuf {
    let tools = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-tools");
    let bin = tools.join("node_modules/.bin");
    // The marker is written once npm has finished: a `bun` link alone may be an install still
    // in progress in another test process.
    if !tools.join(".bun-installed").is_file() {
        fs::create_dir_all(&tools).unwrap();
        let out = Command::new("flock")
            .arg(tools.join(".install.lock"))
            .args([
                "sh",
                "-c",
                "test -f .bun-installed || { npm install --prefix . --no-audit --no-fund bun && node_modules/.bin/bun --version && touch .bun-installed; }",
            ])
            .current_dir(&tools)
            .output()
            .expect("run flock (util-linux)");
        assert!(
            out.status.success() && bin.join("bun").is_file(),
            "installing bun into {} failed:\n{}{}",
            tools.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    fs::canonicalize(bin).unwrap()
}

/// PATH with bun first.
pub fn path_with_bun() -> String {
    format!(
        "{}:{}",
        bun_bin_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    )
}
