//! bm2's module host script (and bm2's JavaScript package beside it), written to
//! `$BM2_HOME/modules/.host/` whenever a BM2 module is started, so it always matches this binary.

use std::path::PathBuf;

use anyhow::Context as _;
use bm2_types::Home;

/// The host script.
const HOST: &str = include_str!("host.cjs");

/// Files of bm2's JavaScript package (`ProcessManager`), written under `.host/bm2/`.
/// (The compiled `CommonJS` of `packages/bm2`, kept in the repository and checked up to date by
/// the package's own tests.)
const PACKAGE: &[(&str, &str)] = &[
    (
        "dashboard.js",
        include_str!("../../../../../packages/bm2/dist/dashboard.js"),
    ),
    (
        "errors.js",
        include_str!("../../../../../packages/bm2/dist/errors.js"),
    ),
    (
        "events.js",
        include_str!("../../../../../packages/bm2/dist/events.js"),
    ),
    (
        "index.js",
        include_str!("../../../../../packages/bm2/dist/index.js"),
    ),
    (
        "pm2-shape.js",
        include_str!("../../../../../packages/bm2/dist/pm2-shape.js"),
    ),
    (
        "pm2.js",
        include_str!("../../../../../packages/bm2/dist/pm2.js"),
    ),
    (
        "process-manager.js",
        include_str!("../../../../../packages/bm2/dist/process-manager.js"),
    ),
    (
        "transport.js",
        include_str!("../../../../../packages/bm2/dist/transport.js"),
    ),
    (
        "types.js",
        include_str!("../../../../../packages/bm2/dist/types.js"),
    ),
];

/// Writes the host (and the package) and returns the host script's path.
pub fn write(home: &Home) -> anyhow::Result<PathBuf> {
    let dir = super::store::modules_dir(home).join(".host");
    let pkg = dir.join("bm2");
    std::fs::create_dir_all(&pkg).with_context(|| format!("cannot create {}", pkg.display()))?;
    let host = dir.join("host.cjs");
    put(&host, HOST)?;
    for (name, text) in PACKAGE {
        put(&pkg.join(name), text)?;
    }
    Ok(host)
}

/// Writes `text` unless the file already holds it (a running module keeps reading the same file).
fn put(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    if std::fs::read(path).is_ok_and(|b| b == text.as_bytes()) {
        return Ok(());
    }
    bm2_daemon::persist::write_atomic(path, text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}
