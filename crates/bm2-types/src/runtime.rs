//! Which runtime runs TypeScript: the decision shared by the daemon (apps) and the CLI
//! (ecosystem files).

/// How to run a TypeScript file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TsRunner {
    /// With bun.
    Bun,
    /// With node, which strips types itself (23.6 and newer).
    Node,
    /// With `node --experimental-strip-types` (22.6 to 23.5).
    NodeStripTypes,
}

impl TsRunner {
    /// The program and its arguments before the file.
    pub fn command(self) -> (&'static str, &'static [&'static str]) {
        match self {
            TsRunner::Bun => ("bun", &[]),
            TsRunner::Node => ("node", &[]),
            TsRunner::NodeStripTypes => ("node", &["--experimental-strip-types"]),
        }
    }
}

/// bun when installed, else node when it can strip types, else why neither works.
pub fn ts_runner(
    bun_installed: bool,
    node_version: Option<(u32, u32)>,
) -> Result<TsRunner, String> {
    if bun_installed {
        return Ok(TsRunner::Bun);
    }
    match node_version {
        Some(v) if v >= (23, 6) => Ok(TsRunner::Node),
        Some(v) if v >= (22, 6) => Ok(TsRunner::NodeStripTypes),
        Some((major, minor)) => Err(format!(
            "node {major}.{minor} cannot run TypeScript and bun is not on PATH; install bun, or node 22.6 or newer"
        )),
        None => {
            Err("neither bun nor node is on PATH; install bun (or node 22.6 or newer)".to_string())
        }
    }
}

/// Looks a program up: a path (containing `/`) is taken as is, a bare name is searched in the
/// directories of `path_var` (a `PATH` value). Only executable files count.
pub fn find_program(name: &str, path_var: &str) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    use std::path::{Path, PathBuf};
    let is_exec = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if name.contains('/') {
        let p = PathBuf::from(name);
        return is_exec(&p).then_some(p);
    }
    path_var
        .split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(name))
        .find(|p| is_exec(p))
}

/// Parses `node --version` output (`v20.11.1`) into (major, minor).
pub fn parse_node_version(text: &str) -> Option<(u32, u32)> {
    let mut parts = text.trim().trim_start_matches('v').split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bun_first_then_node_by_version() {
        assert_eq!(ts_runner(true, Some((20, 0))), Ok(TsRunner::Bun));
        assert_eq!(ts_runner(false, Some((24, 1))), Ok(TsRunner::Node));
        assert_eq!(
            ts_runner(false, Some((22, 6))),
            Ok(TsRunner::NodeStripTypes)
        );
        assert!(
            ts_runner(false, Some((20, 11)))
                .unwrap_err()
                .contains("install bun")
        );
        assert!(ts_runner(false, None).is_err());
        assert_eq!(parse_node_version("v20.11.1\n"), Some((20, 11)));
    }
}
