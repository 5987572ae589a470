//! Bun for the tests that run apps under it, installed from npm once per checkout.

use std::fs;
use std::path::PathBuf;

/// Installs bun into `target/test-tools` (once, under a file lock so that parallel tests and
/// test binaries do not race) and returns the directory holding the `bun` executable.
pub fn bun_bin_dir() -> PathBuf {
    // The marker is written once npm has finished: a `bun` link alone may be an install still
    // in progress in another test process.
    super::tools::install_once(
        ".bun-installed",
        "npm install --prefix . --no-audit --no-fund bun && node_modules/.bin/bun --version && touch .bun-installed",
        "bun",
        "",
    );
    fs::canonicalize(super::tools::dir().join("node_modules/.bin")).unwrap()
}

/// PATH with bun first.
pub fn path_with_bun() -> String {
    format!(
        "{}:{}",
        bun_bin_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    )
}
