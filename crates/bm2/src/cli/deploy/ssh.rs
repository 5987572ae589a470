//! Running the remote side of a deploy on one host with the system's OpenSSH client: the
//! script goes on stdin, every value as a quoted argument, and each output line comes back
//! prefixed with the host.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use bm2_config::deploy::{DeployEnv, Target};

/// The remote side, run by `sh -s` on each host.
const SCRIPT: &str = include_str!("remote.sh");

/// How long ssh may take to connect when the file's `ssh_options` do not say.
pub const CONNECT_TIMEOUT_S: u32 = 10;

/// What one host did.
#[derive(Debug)]
pub struct Outcome {
    /// The host, as shown.
    pub label: String,
    /// `Ok` when the remote side exited 0, else why not.
    pub result: Result<(), String>,
    /// The lines it printed on stdout (without the prefix).
    pub stdout: Vec<String>,
}

/// The host as shown before its lines: `host` or `host:port`.
pub fn label(target: &Target) -> String {
    let host = if target.host.contains(':') {
        format!("[{}]", target.host)
    } else {
        target.host.clone()
    };
    match target.port {
        Some(p) => format!("{host}:{p}"),
        None => host,
    }
}

/// The ssh command line for `target`: the file's options first (ssh keeps the first value of
/// an option), then bm2's defaults (no password prompt, a bounded connect), then the host and
/// the remote command, every argument of which is quoted.
pub fn command(env: &DeployEnv, target: &Target, remote_args: &[String]) -> Command {
    let mut cmd = Command::new("ssh");
    for opt in &env.ssh_options {
        if opt.starts_with('-') {
            cmd.arg(opt);
        } else {
            cmd.arg("-o").arg(opt);
        }
    }
    cmd.args(["-o", "BatchMode=yes"])
        .arg("-o")
        .arg(format!("ConnectTimeout={CONNECT_TIMEOUT_S}"));
    if let Some(key) = &env.key {
        cmd.arg("-i").arg(key);
    }
    if let Some(port) = target.port {
        cmd.arg("-p").arg(port.to_string());
    }
    if let Some(user) = &target.user {
        cmd.arg("-l").arg(user);
    }
    let mut remote = String::from("sh -s --");
    for a in remote_args {
        remote.push(' ');
        remote.push_str(&quote(a));
    }
    cmd.arg("--").arg(&target.host).arg(remote);
    cmd
}

/// `s` as one word for a POSIX shell: in single quotes, each `'` written as `'\''`.
pub fn quote(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('\'');
    for c in s.chars() {
        if c == '\'' {
            q.push_str("'\\''");
        } else {
            q.push(c);
        }
    }
    q.push('\'');
    q
}

/// Runs the remote side with `remote_args` on `target`, printing its lines prefixed with the
/// host as they come.
pub fn run(env: &DeployEnv, target: &Target, remote_args: &[String]) -> Outcome {
    let label = label(target);
    let mut cmd = command(env, target, remote_args);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return Outcome {
                result: Err(format!(
                    "cannot run ssh: {e} (is the OpenSSH client installed?)"
                )),
                label,
                stdout: Vec::new(),
            };
        }
    };
    let stdin = child.stdin.take();
    let writer = std::thread::spawn(move || {
        if let Some(mut stdin) = stdin {
            // The remote shell may stop reading (a failed connection): that is reported by
            // ssh's exit status, not here.
            let _ = stdin.write_all(SCRIPT.as_bytes());
        }
    });
    let out = child.stdout.take().map(|s| {
        let label = label.clone();
        std::thread::spawn(move || {
            let mut lines = Vec::new();
            for line in BufReader::new(s).lines().map_while(Result::ok) {
                println!("[{label}] {line}");
                lines.push(line);
            }
            lines
        })
    });
    let err = child.stderr.take().map(|s| {
        let label = label.clone();
        std::thread::spawn(move || {
            let mut last = String::new();
            for line in BufReader::new(s).lines().map_while(Result::ok) {
                eprintln!("[{label}] {line}");
                if !line.trim().is_empty() {
                    last = line;
                }
            }
            last
        })
    });
    let status = child.wait();
    let _ = writer.join();
    let stdout = out.and_then(|t| t.join().ok()).unwrap_or_default();
    let last_err = err.and_then(|t| t.join().ok()).unwrap_or_default();
    let result = match status {
        Ok(s) if s.success() => Ok(()),
        // ssh's own failures (unreachable, refused, no key) exit 255.
        Ok(s) if s.code() == Some(255) => Err(format!(
            "cannot reach {label} over ssh{}",
            if last_err.is_empty() {
                String::new()
            } else {
                format!(": {last_err}")
            }
        )),
        Ok(s) => Err(format!(
            "failed on {label} ({}){}",
            s.code()
                .map_or_else(|| "killed".to_string(), |c| format!("exit {c}")),
            if last_err.is_empty() {
                String::new()
            } else {
                format!(": {last_err}")
            }
        )),
        Err(e) => Err(format!("ssh to {label}: {e}")),
    };
    Outcome {
        label,
        result,
        stdout,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_keeps_every_value_literal() {
        for v in [
            "plain",
            "a b",
            "it's",
            "$(touch x); rm -rf /",
            "`id`",
            "\"q\"",
            "",
        ] {
            let out = Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s {}", quote(v)))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8(out.stdout).unwrap(), v);
        }
    }

    #[test]
    fn the_file_options_come_before_the_defaults_and_the_host_after_a_double_dash() {
        let env = DeployEnv {
            name: "p".into(),
            targets: Vec::new(),
            repo: "r".into(),
            reference: "main".into(),
            path: "/srv/app".into(),
            key: Some("/k".into()),
            ssh_options: vec!["ConnectTimeout=3".into(), "-A".into()],
            hooks: bm2_config::deploy::Hooks::default(),
            env: std::collections::BTreeMap::new(),
            fetch_all: false,
            keep_releases: 5,
            rollback_on_failure: true,
        };
        let target = Target {
            user: Some("deploy".into()),
            host: "web1".into(),
            port: Some(2222),
        };
        let cmd = command(&env, &target, &["list".into(), "a'b".into()]);
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "-o",
                "ConnectTimeout=3",
                "-A",
                "-o",
                "BatchMode=yes",
                "-o",
                "ConnectTimeout=10",
                "-i",
                "/k",
                "-p",
                "2222",
                "-l",
                "deploy",
                "--",
                "web1",
                "sh -s -- 'list' 'a'\\''b'"
            ]
        );
        assert_eq!(label(&target), "web1:2222");
    }
}
