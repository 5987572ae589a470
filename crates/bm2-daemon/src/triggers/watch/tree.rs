//! The watched tree of one app: one non-recursive inotify watch per directory, added by walking
//! the tree ourselves so that ignored directories are never entered (a `node_modules` of 50 000
//! files costs nothing), and extended when directories are created or moved in. Walks run in
//! the blocking pool, never on the daemon's thread.

use std::collections::{BTreeSet, HashMap};
use std::ffi::{OsStr, OsString};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use inotify::{EventMask, WatchDescriptor, WatchMask, Watches};

use super::ignore::IgnoreSet;

/// Most directories watched for one app: a larger tree is almost surely a mistake (watching `/`,
/// or a build output), and would eat into the user's inotify watches.
pub const MAX_DIRS: usize = 65_536;

/// What each directory watch reports: entries created, deleted, written or moved.
fn mask() -> WatchMask {
    WatchMask::CREATE
        | WatchMask::DELETE
        | WatchMask::MODIFY
        | WatchMask::CLOSE_WRITE
        | WatchMask::MOVED_FROM
        | WatchMask::MOVED_TO
        | WatchMask::ONLYDIR
        | WatchMask::DONT_FOLLOW
        | WatchMask::EXCL_UNLINK
}

/// A watched directory.
#[derive(Debug, Clone)]
struct Dir {
    path: PathBuf,
    /// Only these entries count (a directory watched for the files named as roots in it).
    only: Option<BTreeSet<OsString>>,
}

/// A change worth a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// This path was created, written, deleted or moved.
    Path(PathBuf),
    /// The kernel's event queue overflowed: something changed, no telling what.
    Overflow,
}

/// The watches of one app's tree.
#[derive(Debug)]
pub struct Tree {
    watches: Watches,
    ignore: Arc<IgnoreSet>,
    roots: Vec<PathBuf>,
    dirs: HashMap<WatchDescriptor, Dir>,
    /// The last problem met while adding watches.
    pub error: Option<String>,
}

/// Watches added by one walk.
#[derive(Debug, Default)]
struct Added {
    dirs: Vec<(WatchDescriptor, Dir)>,
    error: Option<String>,
}

impl Tree {
    /// A tree for `roots` (absolute directories or files), not watched yet: see [`Tree::scan`].
    pub fn new(watches: Watches, ignore: Arc<IgnoreSet>, roots: Vec<PathBuf>) -> Tree {
        Tree {
            watches,
            ignore,
            roots,
            dirs: HashMap::new(),
            error: None,
        }
    }

    /// Directories under watch.
    pub fn len(&self) -> usize {
        self.dirs.len()
    }

    /// True when nothing is watched.
    pub fn is_empty(&self) -> bool {
        self.dirs.is_empty()
    }

    /// Walks every root and watches its directories (again, after an overflow).
    pub async fn scan(&mut self) {
        let (watches, ignore, roots) = (
            self.watches.clone(),
            self.ignore.clone(),
            self.roots.clone(),
        );
        let budget = MAX_DIRS;
        let added = blocking(move || {
            let mut watches = watches;
            let mut added = Added::default();
            for root in &roots {
                if added.dirs.len() >= budget {
                    break;
                }
                add_root(&mut watches, &ignore, root, budget, &mut added);
            }
            added
        })
        .await;
        self.dirs.clear();
        self.error = None;
        self.merge(added);
    }

    /// Handles one inotify event: keeps the watches in step with the tree and returns the
    /// change it reports, unless it is about an ignored path or nothing that counts.
    pub async fn on_event(
        &mut self,
        mask: EventMask,
        wd: &WatchDescriptor,
        name: Option<&OsStr>,
    ) -> Option<Change> {
        if mask.contains(EventMask::Q_OVERFLOW) {
            self.scan().await;
            return Some(Change::Overflow);
        }
        if mask.contains(EventMask::IGNORED) {
            self.dirs.remove(wd);
            return None;
        }
        let dir = self.dirs.get(wd)?;
        let name = name?;
        if dir.only.as_ref().is_some_and(|only| !only.contains(name)) {
            return None;
        }
        let path = dir.path.join(name);
        let whole_dir = dir.only.is_none();
        if self.ignore.is_ignored(&path) {
            return None;
        }
        if mask.contains(EventMask::ISDIR) && whole_dir {
            if mask.intersects(EventMask::CREATE | EventMask::MOVED_TO) {
                self.add_subtree(path.clone()).await;
            } else if mask.contains(EventMask::MOVED_FROM) {
                self.forget_under(&path);
            }
        }
        Some(Change::Path(path))
    }

    /// Watches a directory that appeared, and everything under it.
    async fn add_subtree(&mut self, dir: PathBuf) {
        let budget = MAX_DIRS.saturating_sub(self.dirs.len());
        if budget == 0 {
            self.error = Some(limit_error());
            return;
        }
        let (watches, ignore) = (self.watches.clone(), self.ignore.clone());
        let added = blocking(move || {
            let mut watches = watches;
            let mut added = Added::default();
            walk(&mut watches, &ignore, &dir, budget, &mut added);
            added
        })
        .await;
        self.merge(added);
    }

    /// Stops watching a directory moved away, and everything under it.
    fn forget_under(&mut self, gone: &Path) {
        let wds: Vec<WatchDescriptor> = self
            .dirs
            .iter()
            .filter(|(_, d)| d.only.is_none() && d.path.starts_with(gone))
            .map(|(wd, _)| wd.clone())
            .collect();
        for wd in wds {
            self.dirs.remove(&wd);
            let _ = self.watches.remove(wd);
        }
    }

    fn merge(&mut self, added: Added) {
        for (wd, dir) in added.dirs {
            match self.dirs.get_mut(&wd) {
                Some(existing) => match (&mut existing.only, dir.only) {
                    (Some(names), Some(more)) => names.extend(more),
                    (_, None) => {
                        *existing = Dir {
                            path: dir.path,
                            only: None,
                        }
                    }
                    (None, Some(_)) => {}
                },
                None => {
                    self.dirs.insert(wd, dir);
                }
            }
        }
        if added.error.is_some() {
            self.error = added.error;
        }
    }
}

async fn blocking(f: impl FnOnce() -> Added + Send + 'static) -> Added {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Added {
            dirs: Vec::new(),
            error: Some(format!("watching failed: {e}")),
        })
}

/// Watches one root: a directory and its tree, or a file (through its directory).
fn add_root(
    watches: &mut Watches,
    ignore: &IgnoreSet,
    root: &Path,
    budget: usize,
    added: &mut Added,
) {
    match std::fs::metadata(root) {
        Ok(m) if m.is_dir() => walk(watches, ignore, root, budget, added),
        Ok(_) => {
            let (Some(parent), Some(name)) = (root.parent(), root.file_name()) else {
                return;
            };
            match watches.add(parent, mask()) {
                Ok(wd) => added.dirs.push((
                    wd,
                    Dir {
                        path: parent.to_path_buf(),
                        only: Some(BTreeSet::from([name.to_os_string()])),
                    },
                )),
                Err(e) => note(added, &add_error(parent, &e)),
            }
        }
        Err(e) => note(added, &format!("cannot watch {}: {e}", root.display())),
    }
}

/// Watches `top` and every directory under it that is not ignored (symlinks are not followed).
fn walk(watches: &mut Watches, ignore: &IgnoreSet, top: &Path, budget: usize, added: &mut Added) {
    let mut stack = vec![top.to_path_buf()];
    while let Some(dir) = stack.pop() {
        if added.dirs.len() >= budget {
            note(added, &limit_error());
            return;
        }
        match watches.add(&dir, mask()) {
            Ok(wd) => added.dirs.push((
                wd,
                Dir {
                    path: dir.clone(),
                    only: None,
                },
            )),
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => {
                note(
                    added,
                    &format!(
                        "the inotify watch limit was reached after {} directories (raise fs.inotify.max_user_watches, or ignore more with --ignore-watch)",
                        added.dirs.len()
                    ),
                );
                return;
            }
            Err(e) => {
                // Gone already, or unreadable: not fatal for the rest of the tree.
                if e.kind() != io::ErrorKind::NotFound {
                    note(added, &add_error(&dir, &e));
                }
                continue;
            }
        }
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                let path = entry.path();
                if !ignore.is_ignored(&path) {
                    stack.push(path);
                }
            }
        }
    }
}

/// Adds a problem to those met by a walk (a few are kept, with the count of the others).
fn note(added: &mut Added, problem: &str) {
    let problems = added.error.get_or_insert_with(String::new);
    if problems.contains(problem) {
        return;
    }
    if problems.matches("; ").count() < 3 {
        if !problems.is_empty() {
            problems.push_str("; ");
        }
        problems.push_str(problem);
    }
}

fn add_error(path: &Path, e: &io::Error) -> String {
    format!("cannot watch {}: {e}", path.display())
}

fn limit_error() -> String {
    format!(
        "more than {MAX_DIRS} directories to watch: the rest are not watched (narrow `watch` or add to `ignore_watch`)"
    )
}

#[cfg(test)]
mod tests {
    use std::fs;

    use futures_util::StreamExt;
    use inotify::Inotify;

    use super::*;
    use bm2_config::triggers::IgnoreWatch;

    #[tokio::test]
    async fn ignored_trees_are_not_entered_and_new_directories_are_watched() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for i in 0..50 {
            fs::create_dir_all(root.join(format!("node_modules/p{i}/lib"))).unwrap();
        }
        fs::create_dir_all(root.join("src/a")).unwrap();
        let ignore = IgnoreSet::new(
            IgnoreWatch::parse(&["node_modules".to_string()]).unwrap(),
            root,
            Vec::new(),
        );
        let mut stream = Inotify::init()
            .unwrap()
            .into_event_stream(vec![0u8; 4096])
            .unwrap();
        let mut tree = Tree::new(stream.watches(), Arc::new(ignore), vec![root.to_path_buf()]);
        tree.scan().await;
        assert_eq!(tree.len(), 3, "the root, src and src/a");
        assert_eq!(tree.error, None);

        fs::create_dir_all(root.join("src/new/deeper")).unwrap();
        fs::write(root.join("node_modules/p1/x.js"), "x").unwrap();
        let event = stream.next().await.unwrap().unwrap();
        let change = tree
            .on_event(event.mask, &event.wd, event.name.as_deref())
            .await;
        assert_eq!(change, Some(Change::Path(root.join("src/new"))));
        assert_eq!(tree.len(), 5, "src/new and src/new/deeper are watched");

        fs::write(root.join("src/new/deeper/f.js"), "x").unwrap();
        let event = stream.next().await.unwrap().unwrap();
        let change = tree
            .on_event(event.mask, &event.wd, event.name.as_deref())
            .await;
        assert_eq!(change, Some(Change::Path(root.join("src/new/deeper/f.js"))));
    }

    #[tokio::test]
    async fn a_file_root_reports_that_file_only_and_missing_roots_are_said() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::write(root.join("app.conf"), "a").unwrap();
        let ignore = IgnoreSet::new(IgnoreWatch::parse(&[]).unwrap(), root, Vec::new());
        let mut stream = Inotify::init()
            .unwrap()
            .into_event_stream(vec![0u8; 4096])
            .unwrap();
        let roots = vec![root.join("app.conf"), root.join("missing")];
        let mut tree = Tree::new(stream.watches(), Arc::new(ignore), roots);
        tree.scan().await;
        assert_eq!(tree.len(), 1);
        assert!(
            tree.error.as_deref().unwrap().contains("missing"),
            "{:?}",
            tree.error
        );
        fs::write(root.join("other"), "b").unwrap();
        fs::write(root.join("app.conf"), "b").unwrap();
        loop {
            let event = stream.next().await.unwrap().unwrap();
            if let Some(change) = tree
                .on_event(event.mask, &event.wd, event.name.as_deref())
                .await
            {
                assert_eq!(change, Change::Path(root.join("app.conf")));
                break;
            }
        }
    }
}
