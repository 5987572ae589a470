//! Which paths are never watched: `ignore_watch` globs (compiled by bm2-config, see
//! [`IgnoreWatch`]), plus paths bm2 itself writes.
//!
//! A pattern without `/` (`node_modules`, `*.log`, `\.git`) matches a file or directory *name*
//! at any depth; a pattern with `/` (`client/img`, `src/**/*.tmp`) matches a path relative to the
//! app's directory, or an absolute path when it starts with `/`. A matching directory is never
//! entered, so nothing under it is watched or read. The app's own log files (and their rotated
//! copies) and bm2's home are never watched either.

use std::path::{Path, PathBuf};

use bm2_config::triggers::IgnoreWatch;

/// The paths one app never watches.
#[derive(Debug, Clone)]
pub struct IgnoreSet {
    patterns: IgnoreWatch,
    exact: Vec<PathBuf>,
    base: PathBuf,
}

impl IgnoreSet {
    /// `patterns`, relative paths being taken from `base` (the app's directory); `exact` paths
    /// (and everything under them) are ignored too.
    pub fn new(patterns: IgnoreWatch, base: &Path, exact: Vec<PathBuf>) -> IgnoreSet {
        IgnoreSet {
            patterns,
            exact,
            base: base.to_path_buf(),
        }
    }

    /// True when `path` (absolute) must not be watched.
    pub fn is_ignored(&self, path: &Path) -> bool {
        if self
            .exact
            .iter()
            .any(|p| path.starts_with(p) || is_rotated_copy(path, p))
        {
            return true;
        }
        if path
            .file_name()
            .is_some_and(|name| self.patterns.matches_name(Path::new(name)))
        {
            return true;
        }
        match path.strip_prefix(&self.base) {
            Ok(rel) if !rel.as_os_str().is_empty() => self.patterns.matches_path(rel),
            Ok(_) => false,
            Err(_) => self.patterns.matches_path(path),
        }
    }
}

/// True for `<file>.<suffix>` beside `file`: the rotated (`.1`, `.1.gz`) and parked copies of a
/// log file.
fn is_rotated_copy(path: &Path, file: &Path) -> bool {
    let (Some(name), Some(base)) = (path.file_name(), file.file_name()) else {
        return false;
    };
    path.parent() == file.parent()
        && name
            .as_encoded_bytes()
            .strip_prefix(base.as_encoded_bytes())
            .is_some_and(|rest| rest.first() == Some(&b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(patterns: &[&str]) -> IgnoreSet {
        let patterns: Vec<String> = patterns.iter().map(ToString::to_string).collect();
        IgnoreSet::new(
            IgnoreWatch::parse(&patterns).unwrap(),
            Path::new("/app"),
            vec![PathBuf::from("/app/out.log")],
        )
    }

    #[test]
    fn names_match_at_any_depth() {
        let s = set(&["node_modules", ".git", "*.log"]);
        assert!(s.is_ignored(Path::new("/app/node_modules")));
        assert!(s.is_ignored(Path::new("/app/packages/a/node_modules")));
        assert!(s.is_ignored(Path::new("/app/.git")));
        assert!(s.is_ignored(Path::new("/app/src/debug.log")));
        assert!(!s.is_ignored(Path::new("/app/src/index.js")));
        assert!(!s.is_ignored(Path::new("/app/node_modules_old")));
        assert!(!s.is_ignored(Path::new("/app/.gitignore")));
        assert!(!s.is_ignored(Path::new("/app")));
    }

    #[test]
    fn paths_match_from_the_app_directory() {
        let s = set(&["client/img", "./dist/", "src/**/*.tmp", "/var/cache"]);
        assert!(s.is_ignored(Path::new("/app/client/img")));
        assert!(s.is_ignored(Path::new("/app/client/img/logo.png")));
        assert!(!s.is_ignored(Path::new("/app/client/imgs")));
        assert!(!s.is_ignored(Path::new("/app/other/client/img")));
        assert!(s.is_ignored(Path::new("/app/dist")));
        assert!(s.is_ignored(Path::new("/app/src/a/b/x.tmp")));
        assert!(s.is_ignored(Path::new("/app/src/x.tmp")));
        assert!(!s.is_ignored(Path::new("/app/src/x.js")));
        assert!(s.is_ignored(Path::new("/var/cache/thing")));
    }

    #[test]
    fn pm2_style_escapes_and_exact_paths() {
        let s = set(&["\\.git", "*.py[co]"]);
        assert!(s.is_ignored(Path::new("/app/.git")));
        assert!(!s.is_ignored(Path::new("/app/xgit")));
        assert!(s.is_ignored(Path::new("/app/m.pyc")));
        assert!(s.is_ignored(Path::new("/app/out.log")));
        assert!(s.is_ignored(Path::new("/app/out.log.1.gz")));
        assert!(s.is_ignored(Path::new("/app/out.log.rotating-3")));
        assert!(!s.is_ignored(Path::new("/app/out.logs")));
        assert!(!s.is_ignored(Path::new("/app/sub/out.log.1")));
    }
}
