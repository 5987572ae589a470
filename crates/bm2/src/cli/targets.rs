//! Commands that act on targets: stop, restart, delete, reset, signal, pid, id.

use std::process::ExitCode;

use bm2_client::Client;
use bm2_types::Signal;
use bm2_types::{DeleteRequest, IfExists, ReloadRequest, RestartRequest, StopRequest};
use clap::Args;

use super::{api_error, report};

/// One or more targets.
#[derive(Debug, Args)]
pub struct Targets {
    /// Ids, names, namespaces, `all`, script paths or /regex/
    #[arg(required = true, num_args = 1..)]
    pub targets: Vec<String>,
}

/// Targets, or one ecosystem file whose apps are the targets.
#[allow(clippy::doc_markdown)] // doc comments are the --help text
#[derive(Debug, Args)]
pub struct FileTargets {
    /// Ids, names, namespaces, `all`, script paths, /regex/, or an ecosystem file
    #[arg(required = true, num_args = 1..)]
    pub targets: Vec<String>,
    /// With an ecosystem file: the environment name (for `append_env_to_name` and env blocks)
    #[arg(long = "env", value_name = "NAME|KEY=VAL")]
    pub env: Vec<String>,
    #[command(flatten)]
    pub file: super::ecosystem::FileOptions,
    /// reload: instances reloaded at a time
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub parallel: usize,
    /// restart: turn file watching on (the app's directory when `watch` is unset) or off,
    /// as in PM2; stop: stop watching too, so a later start does not watch
    #[arg(long)]
    pub watch: bool,
    /// delete: keep the log files bm2 named in $BM2_HOME/logs (<name>-out.log, ... and
    /// their rotated copies), which are otherwise removed; files named with -o/-e/-l or in an
    /// ecosystem file are always kept
    #[arg(long)]
    pub keep_logs: bool,
    /// restart and reload: options applied to the apps (as with `start`)
    #[command(flatten)]
    pub app: super::start::AppFlags,
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
    Reload,
    Delete,
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

pub async fn action(client: &Client, verb: Verb, t: FileTargets) -> anyhow::Result<ExitCode> {
    if t.parallel != 1 && !matches!(verb, Verb::Reload) {
        anyhow::bail!("--parallel applies to reload");
    }
    if t.file.update_env && matches!(verb, Verb::Stop | Verb::Delete) {
        anyhow::bail!("--update-env applies to start, restart and reload");
    }
    if t.keep_logs && !matches!(verb, Verb::Delete) {
        anyhow::bail!("--keep-logs applies to delete");
    }
    if t.watch && !matches!(verb, Verb::Stop | Verb::Restart) {
        anyhow::bail!("--watch applies to restart (toggle watching) and stop (stop watching)");
    }
    let overrides = super::start::flags(&t.app, &std::env::current_dir()?);
    let with_options = overrides != bm2_config::RawApp::default();
    if with_options && matches!(verb, Verb::Stop | Verb::Delete) {
        anyhow::bail!("app options (--name, --node-args, ...) apply to start, restart and reload");
    }
    if let [one] = t.targets.as_slice()
        && let Some(mut loaded) = super::ecosystem::load(
            one,
            &t.env,
            &t.file,
            bm2_config::RawApp {
                name: None,
                ..overrides.clone()
            },
        )?
    {
        super::start::name_the_app(&mut loaded, t.app.name.as_deref(), one)?;
        if t.watch {
            anyhow::bail!(
                "--watch toggles watching of running apps; with an ecosystem file, set `watch` in the file"
            );
        }
        // As in PM2, restarting or reloading a file also starts its apps not running yet, and
        // gives the running ones the file's options and environment (`env`, `env_<name>`) over
        // this shell's: PM2 updates the environment whenever it acts on a file.
        match verb {
            Verb::Restart => {
                return super::ecosystem::start(client, loaded, IfExists::Restart, true).await;
            }
            Verb::Reload => {
                return super::ecosystem::start(client, loaded, IfExists::Reload, true).await;
            }
            _ => {}
        }
        let names = super::ecosystem::names(&loaded);
        let res = match verb {
            Verb::Stop => client.stop(names).await,
            _ => {
                client
                    .delete_with(&delete_request(names, t.keep_logs))
                    .await
            }
        };
        return report(client, res).await;
    }
    if let Some(env) = t.env.first() {
        anyhow::bail!(
            "--env {env:?} applies with an ecosystem file (as in PM2); for an app's variables use `bm2 env set` or --update-env"
        );
    }
    let targets = normalize(t.targets);
    if with_options {
        let how = match verb {
            Verb::Reload if t.parallel != 1 => {
                anyhow::bail!(
                    "--parallel cannot be combined with app options: reload with the options first"
                )
            }
            Verb::Reload => IfExists::Reload,
            _ if t.watch => anyhow::bail!(
                "--watch toggles watching and cannot be combined with app options: run them as two commands"
            ),
            _ => IfExists::Restart,
        };
        return super::start::apply(client, &targets, &overrides, how, t.file.update_env).await;
    }
    let res = match verb {
        Verb::Stop => {
            client
                .stop_with(&StopRequest {
                    targets: targets.clone(),
                    stop_watching: t.watch,
                })
                .await
        }
        Verb::Restart => {
            let update_env = t.file.update_env.then(|| std::env::vars().collect());
            client
                .restart_with(&RestartRequest {
                    targets: targets.clone(),
                    update_env,
                    toggle_watch: t.watch,
                })
                .await
        }
        Verb::Reload => {
            client
                .reload(&ReloadRequest {
                    targets: targets.clone(),
                    parallel: Some(t.parallel),
                    update_env: t.file.update_env.then(|| std::env::vars().collect()),
                })
                .await
        }
        Verb::Delete => {
            client
                .delete_with(&delete_request(targets.clone(), t.keep_logs))
                .await
        }
    };
    if t.watch && res.is_ok() {
        report_watching(client, targets).await;
    }
    report(client, res).await
}

fn delete_request(targets: Vec<String>, keep_logs: bool) -> DeleteRequest {
    DeleteRequest { targets, keep_logs }
}

/// Says which of `targets` now watch their files (after `--watch`).
async fn report_watching(client: &Client, targets: Vec<String>) {
    let Ok(described) = client.describe(targets).await else {
        return;
    };
    for d in &described.processes {
        let state = match &d.watch {
            Some(w) if w.watching => format!(
                "watching {}",
                w.paths
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            _ => "not watching".to_string(),
        };
        crate::render::info(&format!(
            "{} (id {}): {state}",
            d.summary.instance_name, d.summary.id
        ));
    }
}

pub async fn scale(client: &Client, app: &str, instances: &str) -> anyhow::Result<ExitCode> {
    let res = client.scale(app, instances).await;
    report(client, res).await
}

pub async fn reset(client: &Client, t: Targets) -> anyhow::Result<ExitCode> {
    let res = client.reset(normalize(t.targets)).await;
    report(client, res).await
}

fn is_signal(word: &str) -> bool {
    word.parse::<Signal>().is_ok()
}

/// Splits `signal` words into the signal and the targets. A signal name (`SIGUSR2`, `usr2`) is
/// preferred over a number, since ids are numbers too: `signal SIGUSR2 1` targets id 1.
fn split_signal(mut words: Vec<String>) -> anyhow::Result<(Signal, Vec<String>)> {
    let named = |w: &String| is_signal(w) && w.parse::<i32>().is_err();
    let last = words.len() - 1;
    let at = if named(&words[0]) {
        0
    } else if named(&words[last]) {
        last
    } else if is_signal(&words[0]) {
        0
    } else if is_signal(&words[last]) {
        last
    } else {
        anyhow::bail!(
            "no signal among {words:?}: give a signal name such as SIGUSR2, USR2 or a number"
        );
    };
    let sig = words.remove(at).parse()?;
    Ok((sig, words))
}

pub async fn signal(client: &Client, s: SignalArgs) -> anyhow::Result<ExitCode> {
    let (sig, targets) = split_signal(s.words)?;
    let res = client
        .signal(normalize(targets), sig)
        .await
        .map_err(api_error)?;
    for e in &res.errors {
        crate::render::error(&crate::render::api_error_text(e));
    }
    for p in &res.processes {
        crate::render::info(&format!("sent {sig} to {} (id {})", p.instance_name, p.id));
    }
    Ok(if res.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
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
    let list = client.list().await.map_err(api_error)?;
    // The app's ids; an instance name (`worker-1`) only when no app has that name.
    let mut ids: Vec<u32> = list
        .iter()
        .filter(|p| p.name == name)
        .map(|p| p.id)
        .collect();
    if ids.is_empty() {
        ids = list
            .iter()
            .filter(|p| p.instance_name == name)
            .map(|p| p.id)
            .collect();
    }
    println!("{}", serde_json::to_string(&ids)?);
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(w: &[&str]) -> Vec<String> {
        w.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn signal_names_win_over_numeric_ids() {
        let (sig, t) = split_signal(words(&["SIGUSR2", "1"])).unwrap();
        assert_eq!((sig, t), (Signal::USR2, words(&["1"])));
        let (sig, t) = split_signal(words(&["api", "HUP"])).unwrap();
        assert_eq!((sig, t), (Signal::HUP, words(&["api"])));
        let (sig, t) = split_signal(words(&["12", "api", "web"])).unwrap();
        assert_eq!((sig, t), (Signal::USR2, words(&["api", "web"])));
        assert!(split_signal(words(&["api", "web"])).is_err());
    }
}
