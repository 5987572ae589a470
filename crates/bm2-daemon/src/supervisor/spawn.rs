//! Turning an app's options into a running child: interpreter choice, environment, user, process group.

use std::collections::{BTreeMap, HashSet};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Mutex, OnceLock};

use bm2_types::AppSpec;
use tokio::process::{Child, Command};

/// Why a process could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The script is neither a file nor a program on `PATH`.
    #[error(
        "script not found: {script} (no such file in {cwd}, and no program of that name on PATH)"
    )]
    ScriptNotFound {
        /// The script as given.
        script: String,
        /// The working directory it was looked up in.
        cwd: String,
    },
    /// The file exists but cannot be executed directly.
    #[error("permission denied: {path} is not executable (chmod +x it, or give --interpreter)")]
    NotExecutable {
        /// The file.
        path: String,
    },
    /// The interpreter is not installed.
    #[error("interpreter not found: {interpreter} is not on PATH{hint}")]
    InterpreterNotFound {
        /// The interpreter looked for.
        interpreter: String,
        /// What to install, with a leading separator.
        hint: String,
    },
    /// TypeScript needs bun or a newer node.
    #[error("cannot run TypeScript: {0}")]
    TypeScript(String),
    /// The working directory is unusable.
    #[error("bad cwd {cwd}: {reason}")]
    BadCwd {
        /// The directory.
        cwd: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A user or group option could not be applied.
    #[error("{0}")]
    User(String),
    /// The listening socket of the app's port cannot be held or handed to it.
    #[error("{0}")]
    Socket(String),
    /// The operating system refused to start the process.
    #[error("spawn of {program} failed: {source}")]
    Os {
        /// What was executed.
        program: String,
        /// The error.
        source: io::Error,
    },
}

/// The pids of children that tokio owns and reaps. Orphans adopted by the daemon (as subreaper)
/// are reaped by bm2 itself, and must never be confused with these.
#[derive(Debug, Default)]
pub struct ChildTable {
    pids: Mutex<HashSet<u32>>,
    /// While set, adopted zombies are left alone: the process (a runtime, where the CLI and the
    /// daemon share one process) may be waiting for children of its own, such as the `node`
    /// that evaluates a config file.
    held: std::sync::atomic::AtomicBool,
}

impl ChildTable {
    /// Spawns `cmd` and records its pid, atomically with respect to [`ChildTable::reap_orphans`].
    pub fn spawn(&self, cmd: &mut Command) -> io::Result<Child> {
        let mut pids = self.lock();
        let child = cmd.spawn()?;
        if let Some(pid) = child.id() {
            pids.insert(pid);
        }
        Ok(child)
    }

    /// Runs a short helper command to completion and returns its stdout.
    pub fn run_blocking(&self, cmd: &mut std::process::Command) -> io::Result<Vec<u8>> {
        let _pids = self.lock();
        Ok(cmd.stderr(Stdio::null()).output()?.stdout)
    }

    /// True for a child the daemon spawned itself (the main process of some instance), as
    /// opposed to an orphan it adopted.
    pub fn owns(&self, pid: u32) -> bool {
        self.lock().contains(&pid)
    }

    /// Records a child taken over in a handover: bm2 reaps it by pid, as its main process.
    pub fn adopt(&self, pid: u32) {
        self.lock().insert(pid);
    }

    /// Forgets a child after tokio has reaped it.
    pub fn forget(&self, pid: u32) {
        self.lock().remove(&pid);
    }

    /// Reaps the given zombie children of the daemon that tokio does not own.
    pub fn reap_orphans(&self, zombies: impl IntoIterator<Item = u32>) {
        if self.held.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        let pids = self.lock();
        for pid in zombies {
            if !pids.contains(&pid) {
                let _ = nix::sys::wait::waitpid(
                    nix::unistd::Pid::from_raw(pid as i32),
                    Some(nix::sys::wait::WaitPidFlag::WNOHANG),
                );
            }
        }
    }

    /// Leaves adopted zombies alone until [`ChildTable::release_orphans`].
    pub fn hold_orphans(&self) {
        self.held.store(true, std::sync::atomic::Ordering::Release);
    }

    /// Reaps adopted zombies again.
    pub fn release_orphans(&self) {
        self.held.store(false, std::sync::atomic::Ordering::Release);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<u32>> {
        self.pids
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A resolved command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    /// The program executed.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// The interpreter's name, when the script runs under one.
    pub interpreter: Option<String>,
    /// The script's absolute path (or the program's, when run directly).
    pub script: PathBuf,
    /// Working directory.
    pub cwd: PathBuf,
}

/// Resolves what to execute for `spec`, looking programs up on the `PATH` of `env`.
pub fn plan(
    spec: &AppSpec,
    env: &BTreeMap<String, String>,
    table: &ChildTable,
) -> Result<Launch, SpawnError> {
    let cwd = spec.cwd.clone().unwrap_or_else(|| PathBuf::from("/"));
    match std::fs::metadata(&cwd) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(bad_cwd(&cwd, "not a directory")),
        Err(e) => return Err(bad_cwd(&cwd, &e.to_string())),
    }
    let path_var = env
        .get("PATH")
        .map_or("/usr/local/bin:/usr/bin:/bin", String::as_str);
    let script = resolve_script(&spec.script, &cwd, path_var)?;
    let interpreter = match spec.interpreter.as_deref() {
        Some("none" | "") => None,
        Some(explicit) => Some(Interp::plain(explicit)),
        None => interpreter_for(&script, path_var, table)?,
    };
    let mut args = Vec::new();
    let program = if let Some(interp) = &interpreter {
        let program = find_program(&interp.program, path_var).ok_or_else(|| {
            SpawnError::InterpreterNotFound {
                interpreter: interp.program.clone(),
                hint: install_hint(&interp.program),
            }
        })?;
        args.extend(interp.args.iter().cloned());
        if spec.source_map_support
            && bm2_config::runtime::js_runtime(&interp.program) == Some("node")
        {
            args.push("--enable-source-maps".to_string());
        }
        args.extend(spec.node_args.iter().cloned());
        args.extend(spec.interpreter_args.iter().cloned());
        args.push(script.to_string_lossy().into_owned());
        program
    } else {
        let mode = std::fs::metadata(&script).map_or(0, |m| m.permissions().mode());
        if mode & 0o111 == 0 {
            return Err(SpawnError::NotExecutable {
                path: script.display().to_string(),
            });
        }
        script.clone()
    };
    args.extend(spec.args.iter().cloned());
    Ok(Launch {
        program,
        args,
        interpreter: interpreter.map(|i| i.program),
        script,
        cwd,
    })
}

/// Builds the command for a launch: own process group, piped output, exact environment, user.
pub fn command(
    launch: &Launch,
    spec: &AppSpec,
    env: &BTreeMap<String, String>,
) -> Result<Command, SpawnError> {
    let mut cmd = Command::new(&launch.program);
    cmd.args(&launch.args)
        .current_dir(&launch.cwd)
        .env_clear()
        .envs(env)
        // A pipe kept open by the daemon, as PM2 gives: `send` writes lines to it.
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(false);
    apply_user(&mut cmd, spec)?;
    Ok(cmd)
}

fn bad_cwd(cwd: &Path, reason: &str) -> SpawnError {
    SpawnError::BadCwd {
        cwd: cwd.display().to_string(),
        reason: reason.to_string(),
    }
}

fn resolve_script(script: &str, cwd: &Path, path_var: &str) -> Result<PathBuf, SpawnError> {
    let candidate = cwd.join(script);
    if candidate.is_file() {
        return Ok(candidate);
    }
    if !script.contains('/')
        && let Some(found) = find_program(script, path_var)
    {
        return Ok(found);
    }
    Err(SpawnError::ScriptNotFound {
        script: script.to_string(),
        cwd: cwd.display().to_string(),
    })
}

pub use bm2_types::runtime::find_program;

struct Interp {
    program: String,
    args: Vec<String>,
}

impl Interp {
    fn plain(program: &str) -> Interp {
        Interp {
            program: program.to_string(),
            args: Vec::new(),
        }
    }
}

fn interpreter_for(
    script: &Path,
    path_var: &str,
    table: &ChildTable,
) -> Result<Option<Interp>, SpawnError> {
    let ext = script.extension().and_then(|e| e.to_str()).unwrap_or("");
    let program = match ext {
        "js" | "mjs" | "cjs" => "node",
        "ts" | "tsx" | "mts" | "cts" => return typescript_runner(path_var, table).map(Some),
        "py" => "python3",
        "rb" => "ruby",
        "sh" => "bash",
        "pl" => "perl",
        "php" => "php",
        _ => return Ok(None),
    };
    Ok(Some(Interp::plain(program)))
}

/// bun if installed, else node when it can strip types, else an error naming what to install.
fn typescript_runner(path_var: &str, table: &ChildTable) -> Result<Interp, SpawnError> {
    let bun = find_program("bun", path_var).is_some();
    let node = if bun {
        None
    } else {
        find_program("node", path_var).and_then(|n| node_version(&n, table))
    };
    let (program, args) = bm2_types::runtime::ts_runner(bun, node)
        .map_err(SpawnError::TypeScript)?
        .command();
    Ok(Interp {
        program: program.to_string(),
        args: args.iter().map(ToString::to_string).collect(),
    })
}

fn node_version(node: &Path, table: &ChildTable) -> Option<(u32, u32)> {
    type Versions = Vec<(PathBuf, Option<(u32, u32)>)>;
    static CACHE: OnceLock<Mutex<Versions>> = OnceLock::new();
    let cache = CACHE.get_or_init(Mutex::default);
    let mut cache = cache
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, v)) = cache.iter().find(|(p, _)| p == node) {
        return *v;
    }
    let out = table
        .run_blocking(std::process::Command::new(node).arg("--version"))
        .ok()?;
    let version = bm2_types::runtime::parse_node_version(&String::from_utf8_lossy(&out));
    cache.push((node.to_path_buf(), version));
    version
}

fn install_hint(program: &str) -> String {
    let pkg = match program {
        "node" => "nodejs",
        "python3" | "python" => "python3",
        "ruby" => "ruby",
        "perl" => "perl",
        "php" => "php-cli",
        "bun" => return "; install bun from bun.sh".to_string(),
        _ => return String::new(),
    };
    format!("; install it (e.g. apt-get install {pkg}) or give --interpreter")
}

fn apply_user(cmd: &mut Command, spec: &AppSpec) -> Result<(), SpawnError> {
    use nix::unistd::{Group, Uid, User};
    if spec.uid.is_none() && spec.gid.is_none() {
        return Ok(());
    }
    if !Uid::effective().is_root() {
        return Err(SpawnError::User(
            "uid/gid need the daemon to run as root".to_string(),
        ));
    }
    let mut primary_gid = None;
    if let Some(uid) = &spec.uid {
        let user = match uid.parse::<u32>() {
            Ok(n) => User::from_uid(Uid::from_raw(n)),
            Err(_) => User::from_name(uid),
        }
        .ok()
        .flatten()
        .ok_or_else(|| SpawnError::User(format!("bad uid: no user {uid:?} on this system")))?;
        cmd.uid(user.uid.as_raw());
        primary_gid = Some(user.gid.as_raw());
    }
    if let Some(gid) = &spec.gid {
        let group = match gid.parse::<u32>() {
            Ok(n) => Group::from_gid(nix::unistd::Gid::from_raw(n)),
            Err(_) => Group::from_name(gid),
        }
        .ok()
        .flatten()
        .ok_or_else(|| SpawnError::User(format!("bad gid: no group {gid:?} on this system")))?;
        primary_gid = Some(group.gid.as_raw());
    }
    if let Some(gid) = primary_gid {
        cmd.gid(gid);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_orphans_are_left_alone_until_released() {
        let table = ChildTable::default();
        // A child not in the table, as an adopted orphan is: left a zombie once it exits.
        let child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        std::mem::forget(child);
        let zombie = || crate::procfs::read_stat(pid).is_some_and(|s| s.is_zombie());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !zombie() {
            assert!(std::time::Instant::now() < deadline, "no zombie");
            std::thread::yield_now();
        }
        table.hold_orphans();
        table.reap_orphans([pid]);
        assert!(zombie(), "reaped while held");
        table.release_orphans();
        table.reap_orphans([pid]);
        assert!(
            crate::procfs::read_stat(pid).is_none(),
            "not reaped once released"
        );
    }

    fn spec_in(dir: &Path, script: &str) -> AppSpec {
        AppSpec {
            name: "t".into(),
            script: script.into(),
            cwd: Some(dir.to_path_buf()),
            ..AppSpec::default()
        }
    }

    fn env() -> BTreeMap<String, String> {
        BTreeMap::from([(
            "PATH".to_string(),
            std::env::var("PATH").unwrap_or_default(),
        )])
    }

    #[test]
    fn interpreter_by_extension() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.py"), "print(1)").unwrap();
        std::fs::write(dir.path().join("b.sh"), "echo").unwrap();
        let table = ChildTable::default();
        let py = plan(&spec_in(dir.path(), "a.py"), &env(), &table).unwrap();
        assert_eq!(py.interpreter.as_deref(), Some("python3"));
        assert_eq!(
            py.args.last().unwrap(),
            &dir.path().join("a.py").display().to_string()
        );
        let sh = plan(&spec_in(dir.path(), "b.sh"), &env(), &table).unwrap();
        assert_eq!(sh.interpreter.as_deref(), Some("bash"));
    }

    #[test]
    fn programs_on_path_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let table = ChildTable::default();
        let sleep = plan(&spec_in(dir.path(), "sleep"), &env(), &table).unwrap();
        assert!(sleep.program.ends_with("sleep"));
        assert!(sleep.interpreter.is_none());
        let missing = plan(&spec_in(dir.path(), "nope-such-thing.js"), &env(), &table);
        assert!(matches!(missing, Err(SpawnError::ScriptNotFound { .. })));
        std::fs::write(dir.path().join("data.bin"), "x").unwrap();
        let noexec = plan(&spec_in(dir.path(), "data.bin"), &env(), &table);
        assert!(matches!(noexec, Err(SpawnError::NotExecutable { .. })));
        let mut s = spec_in(dir.path(), "x.py");
        std::fs::write(dir.path().join("x.py"), "").unwrap();
        s.interpreter = Some("no-such-interpreter-xyz".into());
        assert!(matches!(
            plan(&s, &env(), &table),
            Err(SpawnError::InterpreterNotFound { .. })
        ));
        let mut s = spec_in(&dir.path().join("missing"), "x.py");
        s.interpreter = None;
        assert!(matches!(
            plan(&s, &env(), &table),
            Err(SpawnError::BadCwd { .. })
        ));
    }
}
