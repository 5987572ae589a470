//! `bm2 deploy <file> <env> [command]`: SSH deploys like `pm2 deploy`, against real OpenSSH
//! servers on 127.0.0.1 (one per host, `common::sshd`) and a local bare git repository that the
//! "remote" side reaches by path.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::TestEnv;
use common::sshd::Sshd;
use serde_json::{Value, json};

/// A bare repository (`repo` of the deploy files) and a working clone that pushes to it.
struct Repo {
    bare: PathBuf,
    work: PathBuf,
}

impl Repo {
    fn new(dir: &Path) -> Repo {
        let bare = dir.join("origin.git");
        let work = dir.join("work");
        git(
            dir,
            &["init", "-q", "--bare", "--initial-branch=main"],
            &bare,
        );
        git(dir, &["init", "-q", "--initial-branch=main"], &work);
        git(&work, &["remote", "add", "origin"], &bare);
        Repo { bare, work }
    }

    /// Writes `files` (name, content), commits them on the current branch and pushes it;
    /// returns the full commit hash.
    fn commit(&self, files: &[(&str, &str)], message: &str) -> String {
        for (name, body) in files {
            fs::write(self.work.join(name), body).unwrap();
        }
        git_ok(&self.work, &["add", "-A"]);
        git_ok(
            &self.work,
            &[
                "-c",
                "user.name=bm2 test",
                "-c",
                "user.email=test@bm2.invalid",
                "commit",
                "-q",
                "-m",
                message,
            ],
        );
        let branch = git_ok(&self.work, &["rev-parse", "--abbrev-ref", "HEAD"]);
        git_ok(&self.work, &["push", "-q", "origin", branch.trim()]);
        git_ok(&self.work, &["rev-parse", "HEAD"])
            .trim()
            .to_string()
    }

    /// Starts the branch `name` at the current commit.
    fn branch(&self, name: &str) {
        git_ok(&self.work, &["checkout", "-q", "-b", name]);
    }
}

fn git(cwd: &Path, args: &[&str], last: &Path) {
    let out = Command::new("git")
        .args(args)
        .arg(last)
        .current_dir(cwd)
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?} {} failed: {}",
        last.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn git_ok(cwd: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One test's world: bm2, a repository, the servers, and the deploy path on them.
struct World {
    /// First, so that they are dropped (killed) before the directories they use go.
    servers: Vec<Sshd>,
    env: TestEnv,
    repo: Repo,
    /// The `path` of the deploy file (the same on every host).
    path: PathBuf,
}

impl World {
    /// One server; the deploy path is a directory of the test.
    fn one() -> World {
        let env = TestEnv::new();
        let repo = Repo::new(env.dir.path());
        let server = Sshd::start(&env.path("sshd-a"));
        let path = env.path("srv/app");
        World {
            servers: vec![server],
            env,
            repo,
            path,
        }
    }

    /// `n` servers, each holding its own files at the deploy path, all reached with the
    /// first one's key.
    fn hosts(n: usize) -> World {
        let env = TestEnv::new();
        let repo = Repo::new(env.dir.path());
        let path = env.path("srv/app");
        let servers: Vec<Sshd> = (0..n)
            .map(|i| Sshd::start_isolated(&env.path(&format!("sshd-{i}")), &path))
            .collect();
        for s in &servers[1..] {
            s.authorize(servers[0].key_path());
        }
        World {
            servers,
            env,
            repo,
            path,
        }
    }

    /// A PM2-style environment reaching every server (`host` an array of `127.0.0.1:port`),
    /// deploying `origin/main`; `extra` keys are added over it.
    fn section(&self, extra: &Value) -> Value {
        let hosts: Vec<String> = self.servers.iter().map(Sshd::host).collect();
        let mut s = json!({
            "user": Sshd::user(),
            "host": hosts,
            "ref": "origin/main",
            "repo": self.repo.bare.display().to_string(),
            "path": self.path.display().to_string(),
            "key": self.servers[0].key_path().display().to_string(),
            "ssh_options": Sshd::ssh_options(),
            // Without one, bm2 runs PM2's default (`bm2 startOrRestart <file>`): see
            // `without_a_post_deploy_the_apps_are_started_as_pm2_does`.
            "post-deploy": ":",
        });
        for (k, v) in extra.as_object().unwrap() {
            s[k] = v.clone();
        }
        s
    }

    /// Writes `ecosystem.json` with the environment `production` = `section(extra)`; returns
    /// its path.
    fn file(&self, extra: &Value) -> String {
        self.file_with(&json!({ "production": self.section(extra) }))
    }

    fn file_with(&self, deploy: &Value) -> String {
        let file = json!({
            "apps": [{ "name": "web", "script": "server.js" }],
            "deploy": deploy,
        });
        let path = self.env.path("ecosystem.json");
        fs::write(&path, serde_json::to_string_pretty(&file).unwrap()).unwrap();
        path.display().to_string()
    }

    /// `bm2 deploy <file> production <args>`: (success, stdout, stderr).
    fn deploy(&self, file: &str, args: &[&str]) -> (bool, String, String) {
        let mut all = vec!["deploy", file, "production"];
        all.extend_from_slice(args);
        self.env.output(&all)
    }

    /// Like [`World::deploy`], asserting success; returns stdout.
    fn deploy_ok(&self, file: &str, args: &[&str]) -> String {
        let (ok, out, err) = self.deploy(file, args);
        assert!(
            ok,
            "bm2 deploy {args:?} failed:\nstdout: {out}\nstderr: {err}"
        );
        out
    }

    /// What server `i` holds at the deploy path.
    fn remote(&self, i: usize) -> PathBuf {
        self.servers[i].local_view(&self.path)
    }

    /// The release names on server `i`, oldest first.
    fn releases(&self, i: usize) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.remote(i).join("releases"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// The release that `current` points at on server `i` (its name under `releases/`).
    fn current(&self, i: usize) -> Option<String> {
        let target = fs::read_link(self.remote(i).join("current")).ok()?;
        let parent = target.parent()?.file_name()?.to_string_lossy().into_owned();
        assert_eq!(
            parent,
            "releases",
            "current points outside releases/: {}",
            target.display()
        );
        Some(target.file_name()?.to_string_lossy().into_owned())
    }

    /// The directory of release `name` on server `i`, as the test reads it.
    fn release_dir(&self, i: usize, name: &str) -> PathBuf {
        self.remote(i).join("releases").join(name)
    }

    /// The commit recorded in release `name` (first line of its `.bm2-release`).
    fn release_commit(&self, i: usize, name: &str) -> String {
        let text = fs::read_to_string(self.release_dir(i, name).join(".bm2-release"))
            .unwrap_or_else(|e| panic!("{name}/.bm2-release: {e}"));
        text.lines().next().unwrap_or_default().trim().to_string()
    }

    /// The commit of the current release on server `i`.
    fn current_commit(&self, i: usize) -> String {
        let name = self
            .current(i)
            .unwrap_or_else(|| panic!("no current release on host {i}"));
        self.release_commit(i, &name)
    }

    /// A file of the current release on server `i`.
    fn current_file(&self, i: usize, file: &str) -> String {
        let name = self.current(i).expect("a current release");
        fs::read_to_string(self.release_dir(i, &name).join(file)).unwrap_or_default()
    }
}

fn short(commit: &str) -> &str {
    &commit[..7]
}

/// `2026-12-05T10-30-00-123Z`.
fn is_release_name(name: &str) -> bool {
    let b = name.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    b.len() == 24
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b'-'
        && digits(14..16)
        && b[16] == b'-'
        && digits(17..19)
        && b[19] == b'-'
        && digits(20..23)
        && b[23] == b'Z'
}

#[test]
fn sshd_harness_accepts_a_login() {
    let dir = tempfile::tempdir().unwrap();
    let server = Sshd::start(&dir.path().join("sshd"));
    let out = server.ssh("echo ok");
    assert!(
        out.status.success(),
        "ssh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n");
    // The remote side finds the tools the deploy runs (git), and the client is the plain one
    // a user has.
    let git = server.ssh("git --version");
    assert!(git.status.success(), "git on the remote side: {git:?}");

    // An isolated server shows its own root at the shared path; a second key is let in.
    let at = dir.path().join("srv");
    let other = Sshd::start_isolated(&dir.path().join("sshd-2"), &at);
    other.authorize(server.key_path());
    let out = Command::new("ssh")
        .arg("-p")
        .arg(other.port().to_string())
        .arg("-i")
        .arg(server.key_path())
        .args(Sshd::ssh_options().iter().flat_map(|o| ["-o", o.as_str()]))
        .args(["-o", "BatchMode=yes"])
        .arg(format!("{}@127.0.0.1", Sshd::user()))
        .arg(format!("echo inside > {}/f", at.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "ssh with the other key: {out:?}");
    assert_eq!(
        fs::read_to_string(other.local_view(&at).join("f")).unwrap(),
        "inside\n"
    );
    assert!(!at.join("f").exists(), "the bind mount leaked out");

    let pid = server.child_pid();
    drop(server);
    assert!(!common::alive(pid), "sshd {pid} still running after drop");
}

#[test]
fn setup_creates_the_layout_and_runs_its_hooks() {
    let w = World::one();
    w.repo.commit(&[("server.js", "one")], "first");
    let pre = w.env.path("pre-setup.txt");
    let post = w.env.path("post-setup.txt");
    let file = w.file(&json!({
        // Before the layout: the clone is not there yet.
        "pre-setup": format!(
            "if [ -e {p}/source ]; then echo late > {f}; else echo early > {f}; fi",
            p = w.path.display(),
            f = pre.display()
        ),
        "post-setup": format!("pwd -P > {}", post.display()),
    }));
    w.deploy_ok(&file, &["setup"]);
    let root = w.remote(0);
    assert!(root.join("source/.git").is_dir(), "no clone in source/");
    assert_eq!(
        fs::read_to_string(root.join("source/server.js")).unwrap(),
        "one"
    );
    assert!(root.join("releases").is_dir(), "no releases/");
    assert!(root.join("shared").is_dir(), "no shared/");
    assert!(w.releases(0).is_empty(), "setup made a release");
    assert_eq!(fs::read_to_string(&pre).unwrap(), "early\n");
    assert_eq!(
        fs::read_to_string(&post).unwrap().trim(),
        root.join("source")
            .canonicalize()
            .unwrap()
            .display()
            .to_string()
    );
}

#[test]
fn deploy_points_current_at_a_release_of_the_ref() {
    let w = World::one();
    let c1 = w
        .repo
        .commit(&[("server.js", "v1"), ("README", "r")], "first");
    let file = w.file(&json!({}));
    w.deploy_ok(&file, &["setup"]);
    // No command: update.
    w.deploy_ok(&file, &[]);
    let releases = w.releases(0);
    assert_eq!(releases.len(), 1, "{releases:?}");
    assert!(
        is_release_name(&releases[0]),
        "release name {}",
        releases[0]
    );
    assert_eq!(w.current(0).as_deref(), Some(releases[0].as_str()));
    assert_eq!(w.current_commit(0), c1);
    assert_eq!(w.current_file(0, "server.js"), "v1");
    assert_eq!(w.current_file(0, "README"), "r");
    assert!(
        !w.release_dir(0, &releases[0]).join(".git").exists(),
        "a release holds .git"
    );
}

#[test]
fn hooks_run_in_their_places_with_the_env() {
    let w = World::one();
    w.repo.commit(&[("server.js", "v1")], "first");
    let pre = w.env.path("pre-deploy.txt");
    let post = w.env.path("post-deploy.txt");
    let file = w.file(&json!({
        "env": { "GREETING": "hello from the file" },
        // Locally, in the file's directory: a relative name lands next to it.
        "pre-deploy-local": "pwd -P > local.txt; echo \"$GREETING\" >> local.txt",
        "pre-deploy": format!(
            "pwd -P > {f}; echo \"$GREETING\" >> {f}; readlink {p}/current >> {f} || echo none >> {f}",
            f = pre.display(),
            p = w.path.display()
        ),
        "post-deploy": format!(
            "pwd -P > {f}; echo \"$GREETING\" >> {f}; cat server.js >> {f}",
            f = post.display()
        ),
    }));
    w.deploy_ok(&file, &["setup"]);
    w.deploy_ok(&file, &["update"]);
    let release = w.current(0).unwrap();
    let release_dir = w
        .release_dir(0, &release)
        .canonicalize()
        .unwrap()
        .display()
        .to_string();

    let local = fs::read_to_string(w.env.path("local.txt")).expect("pre-deploy-local ran locally");
    let local: Vec<&str> = local.lines().collect();
    assert_eq!(
        local,
        [
            w.env
                .dir
                .path()
                .canonicalize()
                .unwrap()
                .display()
                .to_string()
                .as_str(),
            "hello from the file"
        ]
    );

    let pre = fs::read_to_string(&pre).expect("pre-deploy ran");
    let pre: Vec<&str> = pre.lines().collect();
    assert_eq!(pre[0], release_dir, "pre-deploy's cwd");
    assert_eq!(pre[1], "hello from the file");
    // Before the switch: the first deploy had no current yet.
    assert!(
        !pre[2].contains(&release),
        "current already pointed at the new release during pre-deploy: {pre:?}"
    );

    let post = fs::read_to_string(&post).expect("post-deploy ran");
    assert_eq!(
        post.lines().collect::<Vec<_>>(),
        [release_dir.as_str(), "hello from the file", "v1"]
    );
}

#[test]
fn a_second_deploy_keeps_both_releases() {
    let w = World::one();
    let c1 = w.repo.commit(&[("server.js", "v1")], "first");
    let file = w.file(&json!({}));
    w.deploy_ok(&file, &["setup"]);
    w.deploy_ok(&file, &[]);
    let first = w.current(0).unwrap();
    let c2 = w.repo.commit(&[("server.js", "v2")], "second");
    w.deploy_ok(&file, &[]);
    let releases = w.releases(0);
    assert_eq!(releases.len(), 2, "{releases:?}");
    assert_eq!(releases[0], first);
    assert_eq!(w.current(0).as_deref(), Some(releases[1].as_str()));
    assert_eq!(w.current_commit(0), c2);
    assert_eq!(w.current_file(0, "server.js"), "v2");
    assert_eq!(w.release_commit(0, &first), c1);
    assert_eq!(
        fs::read_to_string(w.release_dir(0, &first).join("server.js")).unwrap(),
        "v1"
    );
}

#[test]
fn revert_switches_current_back() {
    let w = World::one();
    let c1 = w.repo.commit(&[("server.js", "v1")], "first");
    let file = w.file(&json!({}));
    w.deploy_ok(&file, &["setup"]);
    w.deploy_ok(&file, &[]);
    let c2 = w.repo.commit(&[("server.js", "v2")], "second");
    w.deploy_ok(&file, &[]);
    assert_eq!(w.current_commit(0), c2);
    w.deploy_ok(&file, &["revert"]);
    assert_eq!(w.current_commit(0), c1);
    assert_eq!(w.current_file(0, "server.js"), "v1");
    assert_eq!(w.releases(0).len(), 2, "revert removed a release");
}

#[test]
fn revert_n_goes_back_n_releases() {
    let w = World::one();
    let c1 = w.repo.commit(&[("server.js", "v1")], "first");
    let file = w.file(&json!({}));
    w.deploy_ok(&file, &["setup"]);
    w.deploy_ok(&file, &[]);
    w.repo.commit(&[("server.js", "v2")], "second");
    w.deploy_ok(&file, &[]);
    w.repo.commit(&[("server.js", "v3")], "third");
    w.deploy_ok(&file, &[]);
    w.deploy_ok(&file, &["revert", "2"]);
    assert_eq!(w.current_commit(0), c1);
    // Nothing that far back: an error, current unchanged.
    let (ok, _, err) = w.deploy(&file, &["revert", "5"]);
    assert!(!ok, "revert 5 with three releases succeeded");
    assert!(err.contains("127.0.0.1"), "error without the host: {err}");
    assert_eq!(w.current_commit(0), c1);
}

#[test]
fn list_curr_and_prev_print_the_short_commits() {
    let w = World::one();
    let c1 = w.repo.commit(&[("server.js", "v1")], "first");
    let file = w.file(&json!({}));
    w.deploy_ok(&file, &["setup"]);
    w.deploy_ok(&file, &[]);
    let c2 = w.repo.commit(&[("server.js", "v2")], "second");
    w.deploy_ok(&file, &[]);

    let list = w.deploy_ok(&file, &["list"]);
    let at = |c: &str| {
        list.lines()
            .position(|l| l.contains(short(c)))
            .unwrap_or_else(|| panic!("{} not in the list:\n{list}", short(c)))
    };
    assert!(at(&c2) < at(&c1), "not newest first:\n{list}");
    for l in list.lines().filter(|l| l.contains(short(&c1))) {
        assert!(l.contains("[127.0.0.1:"), "line without its host: {l}");
    }
    // The release date is on its line (the release name starts with it).
    let first = w.releases(0)[0].clone();
    assert!(
        list.lines()
            .any(|l| l.contains(short(&c1)) && l.contains(&first[..10])),
        "no date on the line of {}:\n{list}",
        short(&c1)
    );

    for cmd in ["curr", "current"] {
        let out = w.deploy_ok(&file, &[cmd]);
        assert!(out.contains(short(&c2)), "{cmd}: {out}");
        assert!(!out.contains(short(&c1)), "{cmd}: {out}");
    }
    for cmd in ["prev", "previous"] {
        let out = w.deploy_ok(&file, &[cmd]);
        assert!(out.contains(short(&c1)), "{cmd}: {out}");
        assert!(!out.contains(short(&c2)), "{cmd}: {out}");
    }
}

#[test]
fn exec_runs_in_current_on_every_host() {
    let w = World::hosts(2);
    w.repo.commit(&[("server.js", "v1")], "first");
    let file = w.file(&json!({}));
    w.deploy_ok(&file, &["setup"]);
    w.deploy_ok(&file, &[]);
    let out = w.deploy_ok(
        &file,
        &["exec", "cat server.js; echo; echo marker > ran-here"],
    );
    for (i, s) in w.servers.iter().enumerate() {
        let prefix = format!("[{}] ", s.host());
        assert!(
            out.lines()
                .any(|l| l.starts_with(&prefix) && l.contains("v1")),
            "no output of {} in:\n{out}",
            s.host()
        );
        assert_eq!(w.current_file(i, "ran-here"), "marker\n", "host {i}");
    }
    // A failing command fails the run, naming the host.
    let (ok, _, err) = w.deploy(&file, &["exec", "exit 3"]);
    assert!(!ok, "a failing exec succeeded");
    assert!(err.contains("127.0.0.1"), "error without the host: {err}");
}

fn deploy_to_two_hosts(args: &[&str]) {
    let w = World::hosts(2);
    let c1 = w.repo.commit(&[("server.js", "v1")], "first");
    let file = w.file(&json!({}));
    w.deploy_ok(&file, &["setup"]);
    let mut all = args.to_vec();
    all.insert(0, "update");
    w.deploy_ok(&file, &all);
    for i in 0..2 {
        assert_eq!(w.releases(i).len(), 1, "host {i}: {:?}", w.releases(i));
        assert_eq!(w.current_commit(i), c1, "host {i}");
        assert_eq!(w.current_file(i, "server.js"), "v1", "host {i}");
    }
}

#[test]
fn two_hosts_get_the_same_release_in_turn() {
    deploy_to_two_hosts(&[]);
}

#[test]
fn two_hosts_get_the_same_release_in_parallel() {
    deploy_to_two_hosts(&["--parallel"]);
}

#[test]
fn a_failing_pre_deploy_local_deploys_nothing() {
    let w = World::hosts(2);
    w.repo.commit(&[("server.js", "v1")], "first");
    let file = w.file(&json!({ "pre-deploy-local": "echo refusing >&2; exit 4" }));
    w.deploy_ok(&file, &["setup"]);
    let (ok, _, err) = w.deploy(&file, &[]);
    assert!(!ok, "the deploy succeeded");
    assert!(
        err.contains("refusing") || err.contains("pre-deploy-local"),
        "{err}"
    );
    for i in 0..2 {
        assert!(w.releases(i).is_empty(), "host {i}: {:?}", w.releases(i));
        assert_eq!(w.current(i), None, "host {i}");
    }
}

/// Deploys a good commit, then one whose `post-deploy` fails; returns the world and the two
/// commits.
fn deploy_a_failing_post_deploy(extra: &Value) -> (World, String, String, String) {
    let w = World::one();
    let c1 = w.repo.commit(&[("server.js", "v1")], "first");
    let mut extra = extra.clone();
    extra["post-deploy"] = json!("if [ -e broken ]; then echo post-deploy broke >&2; exit 7; fi");
    let file = w.file(&extra);
    w.deploy_ok(&file, &["setup"]);
    w.deploy_ok(&file, &[]);
    let c2 = w.repo.commit(&[("broken", "")], "second");
    let (ok, out, err) = w.deploy(&file, &[]);
    assert!(!ok, "a failing post-deploy succeeded:\n{out}");
    assert!(
        err.contains(&w.servers[0].host()),
        "the error does not name the host {}: {err}",
        w.servers[0].host()
    );
    (w, c1, c2, err)
}

#[test]
fn a_failing_post_deploy_rolls_current_back() {
    let (w, c1, _, _) = deploy_a_failing_post_deploy(&json!({}));
    assert_eq!(w.current_commit(0), c1);
    assert_eq!(w.current_file(0, "server.js"), "v1");
}

#[test]
fn a_failing_post_deploy_stays_without_rollback_on_failure() {
    let (w, _, c2, _) = deploy_a_failing_post_deploy(&json!({ "rollback_on_failure": false }));
    assert_eq!(w.current_commit(0), c2);
}

#[test]
fn an_unreachable_host_fails_fast_naming_it() {
    let w = World::one();
    w.repo.commit(&[("server.js", "v1")], "first");
    // A port nothing listens on.
    let closed = common::free_port();
    let host = format!("127.0.0.1:{closed}");
    let mut section = w.section(&json!({}));
    section["host"] = json!([host]);
    let file = w.file_with(&json!({ "production": section }));
    for args in [&["setup"][..], &[][..]] {
        let started = Instant::now();
        let (ok, _, err) = w.deploy(&file, args);
        assert!(!ok, "deploy {args:?} to a closed port succeeded");
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "took {:?}",
            started.elapsed()
        );
        assert!(err.contains(&host), "the error does not name {host}: {err}");
    }
}

#[test]
fn a_host_that_never_answers_fails_at_the_connect_timeout() {
    let w = World::one();
    // A port that takes connections into its queue and never says a word (a host lost
    // behind a firewall looks the same to ssh); the file's ConnectTimeout wins over bm2's.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let host = format!("127.0.0.1:{}", silent.local_addr().unwrap().port());
    let mut section = w.section(&json!({}));
    section["host"] = json!([host]);
    let mut options = Sshd::ssh_options();
    options.push("ConnectTimeout=2".into());
    section["ssh_options"] = json!(options);
    let file = w.file_with(&json!({ "production": section }));
    let started = Instant::now();
    let (ok, _, err) = w.deploy(&file, &["list"]);
    let took = started.elapsed();
    assert!(!ok, "a silent host succeeded");
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(15),
        "took {took:?}: {err}"
    );
    assert!(err.contains(&host), "the error names {host}: {err}");
    drop(silent);
}

#[test]
fn keep_releases_prunes_the_oldest() {
    let w = World::one();
    w.repo.commit(&[("server.js", "v1")], "first");
    let file = w.file(&json!({ "keep_releases": 2 }));
    w.deploy_ok(&file, &["setup"]);
    w.deploy_ok(&file, &[]);
    let c2 = w.repo.commit(&[("server.js", "v2")], "second");
    w.deploy_ok(&file, &[]);
    let c3 = w.repo.commit(&[("server.js", "v3")], "third");
    w.deploy_ok(&file, &[]);
    let releases = w.releases(0);
    assert_eq!(releases.len(), 2, "{releases:?}");
    assert_eq!(w.release_commit(0, &releases[0]), c2);
    assert_eq!(w.release_commit(0, &releases[1]), c3);
    assert_eq!(w.current_commit(0), c3);
}

#[test]
fn values_of_the_file_arrive_literally() {
    let w = World::one();
    let dir = w.env.dir.path().display().to_string();
    let markers: Vec<String> = (1..=6).map(|i| format!("{dir}/injected-{i}")).collect();
    // A branch name git accepts that a shell would run (no spaces in ref names).
    let branch = format!("evil;>{};$(>{})", markers[0], markers[1]);
    w.repo.branch(&branch);
    let c1 = w.repo.commit(&[("server.js", "evil branch")], "first");
    let value = format!(
        "a;touch {} $(touch {}) `touch {}` '\"\\ $HOME",
        markers[2], markers[3], markers[4]
    );
    let seen_local = w.env.path("seen-local");
    let seen_remote = w.env.path("seen-remote");
    let file = w.file(&json!({
        "ref": format!("origin/{branch}"),
        "env": { "VALUE": value, "OTHER": format!("x\"; touch {} #", markers[5]) },
        "pre-deploy-local": format!("printf %s \"$VALUE\" > {}", seen_local.display()),
        "post-deploy": format!("printf %s \"$VALUE\" > {}", seen_remote.display()),
    }));
    w.deploy_ok(&file, &["setup"]);
    w.deploy_ok(&file, &[]);
    assert_eq!(w.current_commit(0), c1);
    assert_eq!(fs::read_to_string(&seen_local).unwrap(), value);
    assert_eq!(fs::read_to_string(&seen_remote).unwrap(), value);
    for m in &markers {
        assert!(
            !Path::new(m).exists(),
            "{m} was created: a value ran as code"
        );
    }
}

#[test]
fn a_bm2_style_section_works() {
    let w = World::one();
    let c1 = w.repo.commit(&[("server.js", "v1")], "first");
    let post = w.env.path("post.txt");
    // camelCase hooks: preDeploy runs locally (BM2's documented meaning), postDeploy remotely.
    let section = json!({
        "user": Sshd::user(),
        "host": [w.servers[0].host()],
        "ref": "origin/main",
        "repo": w.repo.bare.display().to_string(),
        "path": w.path.display().to_string(),
        "key": w.servers[0].key_path().display().to_string(),
        "ssh_options": Sshd::ssh_options(),
        "preDeploy": "pwd -P > pre-local.txt",
        "postDeploy": format!("pwd -P > {}", post.display()),
        "env": { "NODE_ENV": "production" },
    });
    let file = w.file_with(&json!({ "production": section }));
    w.deploy_ok(&file, &["setup"]);
    w.deploy_ok(&file, &[]);
    assert_eq!(w.current_commit(0), c1);
    assert_eq!(
        fs::read_to_string(w.env.path("pre-local.txt"))
            .expect("preDeploy ran locally in the file's directory")
            .trim(),
        w.env
            .dir
            .path()
            .canonicalize()
            .unwrap()
            .display()
            .to_string()
    );
    assert_ran_in_the_current_release(&w, &post, "postDeploy");
}

/// Asserts that `file` (written by a hook with `pwd -P`) names server 0's current release.
fn assert_ran_in_the_current_release(w: &World, file: &Path, hook: &str) {
    let release = w.release_dir(0, &w.current(0).unwrap());
    assert_eq!(
        fs::read_to_string(file)
            .unwrap_or_else(|_| panic!("{hook} ran"))
            .trim(),
        release.canonicalize().unwrap().display().to_string()
    );
}

#[test]
fn a_pm2_style_section_works() {
    let w = World::one();
    let c1 = w.repo.commit(&[("server.js", "v1")], "first");
    let post = w.env.path("post.txt");
    // PM2's documented shape: one host string, the port apart, dashed hook names.
    let section = json!({
        "user": Sshd::user(),
        "host": "127.0.0.1",
        "port": w.servers[0].port().to_string(),
        "ref": "origin/main",
        "repo": w.repo.bare.display().to_string(),
        "path": w.path.display().to_string(),
        "key": w.servers[0].key_path().display().to_string(),
        "ssh_options": Sshd::ssh_options(),
        "pre-deploy-local": "echo local > pre-local.txt",
        "post-deploy": format!("pwd -P > {}", post.display()),
    });
    let file = w.file_with(&json!({ "production": section }));
    w.deploy_ok(&file, &["setup"]);
    w.deploy_ok(&file, &[]);
    assert_eq!(w.current_commit(0), c1);
    assert_eq!(
        fs::read_to_string(w.env.path("pre-local.txt")).unwrap(),
        "local\n"
    );
    assert_ran_in_the_current_release(&w, &post, "post-deploy");
}

#[test]
fn a_ref_argument_deploys_that_ref() {
    let w = World::one();
    let c1 = w.repo.commit(&[("server.js", "v1")], "first");
    let c2 = w.repo.commit(&[("server.js", "v2")], "second");
    let file = w.file(&json!({}));
    w.deploy_ok(&file, &["setup"]);
    w.deploy_ok(&file, &[&c1]);
    assert_eq!(w.current_commit(0), c1);
    assert_eq!(w.current_file(0, "server.js"), "v1");
    w.deploy_ok(&file, &[]);
    assert_eq!(w.current_commit(0), c2);
}

#[test]
fn a_clone_edited_on_the_host_does_not_stop_a_deploy() {
    let w = World::one();
    w.repo.commit(&[("server.js", "v1")], "first");
    let file = w.file(&json!({}));
    w.deploy_ok(&file, &["setup"]);
    // Someone edited the clone on the host: releases come from the commit, not its files.
    fs::write(w.remote(0).join("source/server.js"), "edited on the host").unwrap();
    let c2 = w.repo.commit(&[("server.js", "v2")], "second");
    w.deploy_ok(&file, &["update"]);
    assert_eq!(w.current_commit(0), c2);
    assert_eq!(w.current_file(0, "server.js"), "v2");
}

#[test]
fn local_changes_stop_a_deploy_unless_forced() {
    let w = World::one();
    let c1 = w.repo.commit(&[("server.js", "v1")], "first");
    // The ecosystem file lives in the local clone, as it usually does.
    let file = w.repo.work.join("ecosystem.json");
    let body = json!({
        "apps": [{ "name": "web", "script": "server.js" }],
        "deploy": { "production": w.section(&json!({})) },
    });
    fs::write(&file, body.to_string()).unwrap();
    let file = file.display().to_string();
    w.deploy_ok(&file, &["setup"]);
    // An uncommitted change: PM2's check stops the deploy, nothing reaches the host.
    fs::write(w.repo.work.join("server.js"), "not committed").unwrap();
    let (ok, _, err) = w.deploy(&file, &[]);
    assert!(!ok, "a deploy with local changes succeeded");
    assert!(err.contains("commit or stash"), "{err}");
    assert!(w.releases(0).is_empty(), "nothing was deployed");
    // --force deploys what is pushed.
    w.deploy_ok(&file, &["--force"]);
    assert_eq!(w.current_commit(0), c1);
    // A commit not pushed stops it too.
    git_ok(
        &w.repo.work,
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t.invalid",
            "commit",
            "-qam",
            "local only",
        ],
    );
    git_ok(
        &w.repo.work,
        &["branch", "-q", "--set-upstream-to=origin/main"],
    );
    let (ok, _, err) = w.deploy(&file, &[]);
    assert!(!ok, "a deploy with unpushed commits succeeded");
    assert!(err.contains("push your changes"), "{err}");
}

#[test]
fn a_missing_environment_lists_the_ones_there_are() {
    let env = TestEnv::new();
    let section = json!({
        "user": "deploy", "host": "127.0.0.1", "ref": "origin/main",
        "repo": "/nonexistent.git", "path": "/srv/app",
    });
    let file = json!({
        "apps": [{ "name": "web", "script": "server.js" }],
        "deploy": { "production": section, "staging": section },
    });
    let path = env.path("ecosystem.json");
    fs::write(&path, file.to_string()).unwrap();
    let (ok, out, err) = env.output(&["deploy", path.to_str().unwrap(), "nope"]);
    assert!(!ok, "an unknown environment succeeded: {out}");
    assert!(err.contains("nope"), "{err}");
    assert!(
        err.contains("production") && err.contains("staging"),
        "the environments are not listed: {err}"
    );
}

#[test]
fn without_a_post_deploy_the_apps_are_started_as_pm2_does() {
    // The host has this bm2 on its PATH and uses the test's home, as a server would its own.
    let env = TestEnv::new();
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_bm2")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let server = Sshd::start_with_env(
        &env.path("sshd-a"),
        &[
            ("PATH", path),
            ("BM2_HOME", env.home_path().display().to_string()),
        ],
    );
    let repo = Repo::new(env.dir.path());
    let w = World {
        servers: vec![server],
        path: env.path("srv/app"),
        env,
        repo,
    };
    // The repository holds the ecosystem file (its apps) and the app.
    w.repo.commit(
        &[
            (
                "ecosystem.json",
                r#"{"apps":[{"name":"web","script":"server.js"}]}"#,
            ),
            ("server.js", "setInterval(() => {}, 1000);\n"),
        ],
        "app",
    );
    let mut section = w.section(&json!({}));
    section.as_object_mut().unwrap().remove("post-deploy");
    let file = w.file_with(&json!({ "production": section }));
    w.deploy_ok(&file, &["setup"]);
    w.deploy_ok(&file, &[]);
    // `bm2 startOrRestart ecosystem.json --env production` ran in the release.
    w.env.wait_status("web", "online");
    let web = w
        .env
        .jlist()
        .into_iter()
        .find(|p| p["name"] == "web")
        .unwrap();
    assert!(
        web["pm2_env"]["pm_cwd"]
            .as_str()
            .is_some_and(|c| c.contains("/releases/")),
        "the app runs from the release: {web}"
    );
}
