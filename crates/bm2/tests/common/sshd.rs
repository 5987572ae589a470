//! A real OpenSSH server per test, for the `bm2 deploy` tests: its own host key, client key,
//! config and port (127.0.0.1 only), in the test's directory; killed (its own pid) on drop.
//!
//! `/usr/sbin/sshd` comes from Debian's `openssh-server`: when it is missing, the first test
//! that needs it installs it (`apt-get install`, under a file lock so parallel tests install
//! once; we run as root, as `scripts/test` does).

use std::fs::{self, File};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};

use super::free_port;

const SSHD: &str = "/usr/sbin/sshd";
/// How long a started server may take to accept a login.
const READY: Duration = Duration::from_secs(20);
/// Tries with a new port when the one picked was taken by someone else before sshd bound it.
const ATTEMPTS: u32 = 5;

/// One running `sshd -D` that accepts the current user with [`Sshd::key_path`].
pub struct Sshd {
    child: Child,
    port: u16,
    key: PathBuf,
    dir: PathBuf,
    /// With [`Sshd::start_isolated`]: the remote path, and the directory that its sessions see
    /// there.
    mount: Option<(PathBuf, PathBuf)>,
}

impl Sshd {
    /// Starts a server whose files live in `dir` (created when missing); returns once it
    /// accepts a login. Panics (with sshd's log) when it cannot.
    pub fn start(dir: &Path) -> Sshd {
        Sshd::spawn(dir, None, &[])
    }

    /// Like [`Sshd::start`], with `vars` set in every session (as a host's profile would).
    pub fn start_with_env(dir: &Path, vars: &[(&str, String)]) -> Sshd {
        Sshd::spawn(dir, None, vars)
    }

    /// Like [`Sshd::start`], but its sessions see `dir/root` at `at` (a bind mount in a mount
    /// namespace of its own): several servers on this one machine then hold different files at
    /// the same path, as different hosts do. `at` is created when missing.
    pub fn start_isolated(dir: &Path, at: &Path) -> Sshd {
        let root = dir.join("root");
        fs::create_dir_all(&root).unwrap();
        fs::create_dir_all(at).unwrap();
        Sshd::spawn(dir, Some(&(at.to_path_buf(), root)), &[])
    }

    fn spawn(dir: &Path, mount: Option<&(PathBuf, PathBuf)>, vars: &[(&str, String)]) -> Sshd {
        ensure_sshd();
        fs::create_dir_all(dir).unwrap();
        // The privilege separation directory sshd insists on.
        fs::create_dir_all("/run/sshd")
            .expect("create /run/sshd (the deploy tests run sshd as root, as scripts/test does)");
        let host_key = dir.join("ssh_host_ed25519_key");
        let key = dir.join("id_ed25519");
        keygen(&host_key);
        keygen(&key);
        let authorized = dir.join("authorized_keys");
        fs::copy(key.with_extension("pub"), &authorized).unwrap();

        let mut last_log = String::new();
        for attempt in 0..ATTEMPTS {
            let port = free_port();
            let config = dir.join("sshd_config");
            fs::write(
                &config,
                config_text(dir, port, &host_key, &authorized, vars),
            )
            .unwrap();
            let log = dir.join(format!("sshd-{attempt}.log"));
            let mut command = match mount {
                None => Command::new(SSHD),
                Some((at, root)) => {
                    // unshare and sh exec: the child's pid is sshd's.
                    let mut c = Command::new("unshare");
                    c.args(["--mount", "--propagation", "private", "--", "/bin/sh", "-c"])
                        .arg(r#"mount --bind "$0" "$1" && shift && exec "$@""#)
                        .arg(root)
                        .arg(at)
                        .arg(SSHD);
                    c
                }
            };
            let child = command
                .arg("-D")
                .arg("-e")
                .arg("-f")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(File::create(&log).unwrap())
                .spawn()
                .expect("spawn /usr/sbin/sshd");
            let mut sshd = Sshd {
                child,
                port,
                key: key.clone(),
                dir: dir.to_path_buf(),
                mount: mount.cloned(),
            };
            if sshd.wait_ready() {
                return sshd;
            }
            last_log = fs::read_to_string(&log).unwrap_or_default();
            // Dropped here: killed and reaped; the next attempt takes another port.
        }
        panic!("sshd did not accept a login after {ATTEMPTS} attempts; its last log:\n{last_log}");
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`, as a deploy file's `host` entry and bm2's output prefix name it.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The pid of the sshd process (the test's own child).
    pub fn child_pid(&self) -> u32 {
        self.child.id()
    }

    /// The client's private key (the deploy file's `key`).
    pub fn key_path(&self) -> &Path {
        &self.key
    }

    /// The directory of its files (keys, config, logs).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the test finds what this server's sessions see at `remote` (an absolute path):
    /// `remote` itself, or, for an isolated server, the same place under its own root.
    pub fn local_view(&self, remote: &Path) -> PathBuf {
        match &self.mount {
            Some((at, root)) => match remote.strip_prefix(at) {
                Ok(rest) => root.join(rest),
                Err(_) => remote.to_path_buf(),
            },
            None => remote.to_path_buf(),
        }
    }

    /// Lets the holder of the private key `key` (its `.pub` next to it) log in too: several
    /// servers that one deploy file (one `key`) reaches.
    pub fn authorize(&self, key: &Path) {
        let public = fs::read_to_string(key.with_extension("pub")).unwrap();
        let mut file = fs::OpenOptions::new()
            .append(true)
            .open(self.dir.join("authorized_keys"))
            .unwrap();
        std::io::Write::write_all(&mut file, public.as_bytes()).unwrap();
    }

    /// The `-o` options (a deploy file's `ssh_options`) that reach it without reading or
    /// writing `~/.ssh`: the host key is new for each server.
    pub fn ssh_options() -> Vec<String> {
        vec![
            "StrictHostKeyChecking=no".into(),
            "UserKnownHostsFile=/dev/null".into(),
            "LogLevel=ERROR".into(),
        ]
    }

    /// The user it lets in: the one running the tests.
    pub fn user() -> String {
        let out = Command::new("id").arg("-un").output().expect("run id -un");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Runs `command` (shell code) on the server with the plain `ssh` client.
    pub fn ssh(&self, command: &str) -> Output {
        let mut cmd = Command::new("ssh");
        cmd.arg("-p")
            .arg(self.port.to_string())
            .arg("-i")
            .arg(&self.key)
            .args(["-o", "BatchMode=yes", "-o", "ConnectTimeout=5"]);
        for o in Sshd::ssh_options() {
            cmd.arg("-o").arg(o);
        }
        cmd.arg(format!("{}@127.0.0.1", Sshd::user()))
            .arg(command)
            .stdin(Stdio::null())
            .output()
            .expect("run ssh")
    }

    /// Polls until the port accepts connections and a login runs `true`; false when sshd
    /// exits first (the port was taken) or the deadline passes.
    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + READY;
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return false;
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok()
                && self.ssh("true").status.success()
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        // Its own child only; sessions it forked end with their connections.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config_text(
    dir: &Path,
    port: u16,
    host_key: &Path,
    authorized: &Path,
    vars: &[(&str, String)],
) -> String {
    // Without PAM, sshd gives sessions a fixed PATH (/usr/bin:/bin); the remote side of the
    // tests needs the tools the tests themselves find (git may live in /usr/local/bin).
    let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into());
    // (A PATH in `vars` replaces it.)
    let mut words: Vec<String> = vars.iter().map(|(k, v)| format!("\"{k}={v}\"")).collect();
    if !vars.iter().any(|(k, _)| *k == "PATH") {
        words.insert(0, format!("\"PATH={path}\""));
    }
    let set_env = words.join(" ");
    format!(
        "ListenAddress 127.0.0.1\n\
         Port {port}\n\
         HostKey {host_key}\n\
         AuthorizedKeysFile {authorized}\n\
         PidFile {pid}\n\
         PermitRootLogin yes\n\
         PubkeyAuthentication yes\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         StrictModes no\n\
         UsePAM no\n\
         SetEnv {set_env}\n\
         MaxStartups 100\n\
         MaxSessions 100\n\
         LogLevel ERROR\n",
        host_key = host_key.display(),
        authorized = authorized.display(),
        pid = dir.join("sshd.pid").display(),
    )
}

fn keygen(path: &Path) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "bm2-test", "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .expect("run ssh-keygen");
    assert!(
        out.status.success(),
        "ssh-keygen {} failed: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Installs openssh-server when `/usr/sbin/sshd` is missing, once across parallel tests and
/// test binaries (a file lock; the first holder installs, the others find it installed).
fn ensure_sshd() {
    if Path::new(SSHD).exists() {
        return;
    }
    let lock = File::create(std::env::temp_dir().join("bm2-tests-openssh-install.lock")).unwrap();
    let _held = Flock::lock(lock, FlockArg::LockExclusive).expect("lock the install lock file");
    if Path::new(SSHD).exists() {
        return;
    }
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "openssh-server"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .output()
            .expect("run apt-get install")
    };
    let mut out = install();
    if !out.status.success() {
        // A fresh machine has no package lists yet.
        let _ = Command::new("apt-get")
            .args(["update", "-qq"])
            .stdin(Stdio::null())
            .output();
        out = install();
    }
    assert!(
        out.status.success() && Path::new(SSHD).exists(),
        "the deploy tests need an OpenSSH server: `apt-get install openssh-server` failed \
         (scripts/test installs it, as root or with sudo):\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
