//! Commands that act on targets: stop, restart, delete, reset, signal, pid, id.

use std::process::ExitCode;

use bm2_client::Client;
use clap::Args;

use super::{api_error, report};

/// One or more targets.
#[derive(Debug, Args)]
pub struct Targets {
    /// Ids, names, namespaces, `all`, script paths or /regex/
    #[arg(required = true, num_args = 1..)]
    pub targets: Vec<String>,
}

/// Zero or more targets.
#[derive(Debug, Args)]
pub struct OptionalTargets {
    /// Ids, names, namespaces, `all`, script paths or /regex/ (default: all)
    pub targets: Vec<String>,
}

/// `signal <SIG> <targets...>`, or `signal <target> <SIG>`.
#[derive(Debug, Args)]
pub struct SignalArgs {
    /// A signal (SIGUSR2, USR2, 12) and one or more targets, in either order
    #[arg(required = true, num_args = 2..)]
    pub words: Vec<String>,
}

/// What to do to the targets.
#[derive(Debug, Clone, Copy)]
pub enum Verb {
    Stop,
    Restart,
    Delete,
    Reset,
}

/// Script paths given as files are matched by their absolute path.
fn normalize(targets: Vec<String>) -> Vec<String> {
    targets
        .into_iter()
        .map(|t| {
            let relative_path = (t.contains('/') || t.contains('.')) && !t.starts_with('/');
            match std::fs::canonicalize(&t) {
                Ok(abs) if relative_path && abs.is_file() => abs.display().to_string(),
                _ => t,
            }
        })
        .collect()
}

pub async fn action(client: &Client, verb: Verb, t: Targets) -> anyhow::Result<ExitCode> {
    let targets = normalize(t.targets);
    let res = match verb {
        Verb::Stop => client.stop(targets).await,
        Verb::Restart => client.restart(targets).await,
        Verb::Delete => client.delete(targets).await,
        Verb::Reset => client.reset(targets).await,
    };
    report(client, res).await
}

fn is_signal(word: &str) -> bool {
    bm2_daemon::supervisor::kill::parse_signal(word).is_ok()
}

pub async fn signal(client: &Client, s: SignalArgs) -> anyhow::Result<ExitCode> {
    let mut words = s.words;
    let (sig, targets) = if is_signal(&words[0]) && !is_signal(&words[1]) {
        let sig = words.remove(0);
        (sig, words)
    } else if is_signal(&words[words.len() - 1]) {
        let sig = words.pop().unwrap_or_default();
        (sig, words)
    } else {
        anyhow::bail!(
            "no signal among {words:?}: give a signal name such as SIGUSR2, USR2 or a number"
        );
    };
    let res = client.signal(normalize(targets), sig.clone()).await.map_err(api_error)?;
    for e in &res.errors {
        crate::render::error(&crate::render::api_error_text(e));
    }
    for p in &res.processes {
        crate::render::info(&format!("sent {sig} to {} (id {})", p.instance_name, p.id));
    }
    Ok(if res.errors.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

pub async fn pids(client: &Client, t: OptionalTargets) -> anyhow::Result<ExitCode> {
    let procs = if t.targets.is_empty() {
        client.list().await.map_err(api_error)?
    } else {
        client
            .describe(normalize(t.targets))
            .await
            .map_err(api_error)?
            .processes
            .into_iter()
            .map(|d| d.summary)
            .collect()
    };
    for pid in procs.iter().filter_map(|p| p.pid) {
        println!("{pid}");
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn ids(client: &Client, name: String) -> anyhow::Result<ExitCode> {
    let ids: Vec<u32> = client
        .list()
        .await
        .map_err(api_error)?
        .into_iter()
        .filter(|p| p.name == name || p.instance_name == name)
        .map(|p| p.id)
        .collect();
    println!("{}", serde_json::to_string(&ids)?);
    Ok(ExitCode::SUCCESS)
}
