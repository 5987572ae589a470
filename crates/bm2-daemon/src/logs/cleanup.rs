//! Removing the log files of deleted instances: only those bm2 named itself under
//! `$BM2_HOME/logs` (`<name>-out.log`, `-error.log`, `<name>-out-<id>.log` ..., `-l` without a
//! file name) with their rotated copies (`.N`, `.N.gz`, and the temporary names of a rotation in progress). A file the
//! user named (`-o`, `-e`, `-l FILE`, `out_file` ...) is never removed, nor a file that an
//! instance still managed writes (merged logs of the app's other instances).

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use bm2_types::{AppSpec, Home, ProcId};

use super::{LogPaths, lock};
use crate::registry::Handle;

/// The log files bm2 named itself for instance `id` (of `count`) of `spec`: the default file of
/// each stream for which the spec names none.
pub fn owned_paths(home: &Home, spec: &AppSpec, id: ProcId, count: u32) -> Vec<PathBuf> {
    let paths = LogPaths::for_instance(home, spec, id, count);
    let unnamed = |given: &Option<String>| given.as_deref().is_none_or(str::is_empty);
    let dir = home.logs_dir();
    [
        (paths.out, unnamed(&spec.out_file)),
        (paths.err, unnamed(&spec.error_file)),
        (paths.combined, spec.log_file.as_deref() == Some("")),
    ]
    .into_iter()
    .filter_map(|(path, owned)| path.filter(|_| owned))
    .filter(|p| p.parent() == Some(dir.as_path()))
    .collect()
}

/// Removes the files bm2 named for the instances `gone` (just deleted), with their rotated
/// copies, except those an instance in `remaining` writes; nothing when `keep` is set. The
/// directory is read and the files removed in the blocking pool.
pub async fn remove_owned(home: &Home, gone: &[Handle], remaining: &[Handle], keep: bool) {
    if keep || gone.is_empty() {
        return;
    }
    let in_use: HashSet<PathBuf> = remaining
        .iter()
        .flat_map(|h| {
            let logs = lock(&h.inst.logs);
            let p = logs.paths();
            [p.out.clone(), p.err.clone(), p.combined.clone()]
        })
        .flatten()
        .collect();
    let names: HashSet<String> = gone
        .iter()
        .flat_map(|h| {
            let spec = h.view.borrow().spec.clone();
            owned_paths(home, &spec, h.inst.id, h.inst.count)
        })
        .filter(|p| !in_use.contains(p))
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    if names.is_empty() {
        return;
    }
    let dir = home.logs_dir();
    match tokio::task::spawn_blocking(move || remove_in(&dir, &names)).await {
        Ok(removed) => tracing::debug!(removed, "log files of deleted instances removed"),
        Err(e) => tracing::warn!(error = %e, "cannot remove the log files of deleted instances"),
    }
}

/// Removes the files of `dir` named in `names`, or rotated copies of them; returns how many.
fn remove_in(dir: &Path, names: &HashSet<String>) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !names.contains(name) && !names.contains(rotated_from(name)) {
            continue;
        }
        if entry.file_type().is_ok_and(|t| !t.is_dir()) {
            match fs::remove_file(entry.path()) {
                Ok(()) => removed += 1,
                Err(e) => {
                    tracing::warn!(file = %entry.path().display(), error = %e, "cannot remove log file");
                }
            }
        }
    }
    removed
}

/// The live file a rotated file comes from: `a.log` for `a.log.3`, `a.log.3.gz`, `a.log.1.gz.tmp`
/// and `a.log.rotating-7`; `name` itself for any other name.
pub fn rotated_from(name: &str) -> &str {
    let numbered = |s: &'static str, n: &str| -> Option<usize> {
        let (head, tail) = n.rsplit_once(s)?;
        (!tail.is_empty() && tail.bytes().all(|b| b.is_ascii_digit() || b == b'-'))
            .then_some(head.len())
    };
    if let Some(end) = numbered(".rotating-", name) {
        return &name[..end];
    }
    let unzipped = name
        .strip_suffix(".compressing")
        .or_else(|| name.strip_suffix(".gz.tmp"))
        .or_else(|| name.strip_suffix(".gz"))
        .unwrap_or(name);
    numbered(".", unzipped).map_or(name, |end| &name[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::rotate::{pending_name, rotated_name};

    fn spec(name: &str) -> AppSpec {
        AppSpec {
            name: name.into(),
            cwd: Some(PathBuf::from("/srv")),
            ..AppSpec::default()
        }
    }

    #[test]
    fn rotated_files_lead_back_to_their_log() {
        for name in [
            "api-0-out.log",
            "api-0-out.log.1",
            "api-0-out.log.12.gz",
            "api-0-out.log.1.gz.tmp",
            "api-0-out.log.rotating-7",
        ] {
            assert_eq!(rotated_from(name), "api-0-out.log", "{name}");
        }
        for other in ["api-0-out.log.bak", "api-0-out.log.gz", "notes.txt", "a.1x"] {
            assert_eq!(rotated_from(other), other);
        }
    }

    #[test]
    fn only_the_files_bm2_named_are_owned() {
        let home = Home::at(PathBuf::from("/h"));
        let mut s = spec("api");
        assert_eq!(
            owned_paths(&home, &s, 3, 1),
            [
                PathBuf::from("/h/logs/api-out.log"),
                PathBuf::from("/h/logs/api-error.log")
            ]
        );
        s.out_file = Some("/var/log/api.out".into());
        s.log_file = Some(String::new());
        assert_eq!(
            owned_paths(&home, &s, 3, 1),
            [
                PathBuf::from("/h/logs/api-error.log"),
                PathBuf::from("/h/logs/api.log")
            ]
        );
        s.error_file = Some("/h/logs/mine.log".into());
        s.log_file = Some("all.log".into());
        assert_eq!(owned_paths(&home, &s, 3, 1), Vec::<PathBuf>::new());
        s.disable_logs = true;
        s.out_file = None;
        assert_eq!(owned_paths(&home, &s, 3, 1), Vec::<PathBuf>::new());
    }

    #[test]
    fn removal_takes_rotated_copies_and_leaves_other_files() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("api-0-out.log");
        let doomed = [
            live.clone(),
            rotated_name(&live, 1, false),
            rotated_name(&live, 2, true),
            pending_name(&live),
            crate::logs::rotate::compressing_name(&live),
            PathBuf::from(format!("{}.tmp", rotated_name(&live, 1, true).display())),
        ];
        let kept = [
            dir.path().join("api-1-out.log"),
            dir.path().join("api-0-out.log.bak"),
            dir.path().join("api-0-out-log.1"),
        ];
        for p in doomed.iter().chain(&kept) {
            fs::write(p, "x\n").unwrap();
        }
        let names = HashSet::from(["api-0-out.log".to_string()]);
        assert_eq!(remove_in(dir.path(), &names), doomed.len());
        for p in &doomed {
            assert!(!p.exists(), "{} left", p.display());
        }
        for p in &kept {
            assert!(p.exists(), "{} removed", p.display());
        }
    }

    #[test]
    fn the_longest_names_bm2_derives_from_a_name_fit_a_file_system() {
        // The longest name accepted, the largest id and rotation numbers.
        let name = "n".repeat(bm2_types::limits::MAX_NAME_BYTES);
        let home = Home::at(PathBuf::from("/h"));
        let mut s = spec(&name);
        s.log_file = Some(String::new());
        let mut files = owned_paths(&home, &s, ProcId::MAX, 2);
        s.merge_logs = true;
        files.extend(owned_paths(&home, &s, ProcId::MAX, 2));
        let mut all = vec![home.app_pid_file(&name, ProcId::MAX)];
        for f in &files {
            all.push(crate::logs::rotate::parked_name(
                f,
                9_999_999_999_999,
                u64::MAX,
            ));
            all.push(PathBuf::from(format!(
                "{}.tmp",
                rotated_name(f, u32::MAX, true).display()
            )));
        }
        for p in &all {
            let len = p.file_name().unwrap().len();
            assert!(len <= 255, "{} is {len} bytes", p.display());
        }
        assert!(
            all.iter()
                .map(|p| p.file_name().unwrap().len())
                .max()
                .unwrap()
                > 240,
            "the limit is tight enough to be worth it"
        );
    }
}
