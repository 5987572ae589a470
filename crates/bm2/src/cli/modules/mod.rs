//! Modules (PM2's `pm2 install`): packages installed into `$BM2_HOME/modules/<name>` and run as
//! managed apps of the namespace `modules`, with settings in `module_conf.json` (`bm2 set`).

mod conf;
mod host;
mod manifest;
mod source;
mod store;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use bm2_client::Client;
use bm2_config::RawApp;
use bm2_config::forms::{EnvVars, Words};
use bm2_types::{AppSpec, IfExists, ProcSummary, StartRequest};
use clap::{Args, Subcommand};

pub use conf::{ConfArgs, conf, get, set, unset};

use super::{api_error, report};

/// The namespace of modules' apps.
pub const NAMESPACE: &str = crate::render::table::MODULES_NAMESPACE;

/// `bm2 module <command>`.
#[derive(Debug, Args)]
pub struct ModuleArgs {
    #[command(subcommand)]
    pub cmd: ModuleCmd,
}

/// The module commands.
#[allow(clippy::doc_markdown)] // doc comments are the --help text
#[derive(Debug, Subcommand)]
pub enum ModuleCmd {
    /// Install a module (npm name, git URL, or local directory) and start it
    #[command(
        visible_alias = "add",
        after_help = "Examples:\n  bm2 module install ./my-module\n  bm2 module install https://github.com/user/bm2-logrotate.git\n  bm2 module install pm2-logrotate"
    )]
    Install {
        /// npm package name (with @version), git URL (https://, git@, git+, file://, *.git) or
        /// local directory
        source: String,
    },
    /// List the installed modules
    #[command(visible_alias = "ls")]
    List {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Stop and remove a module (its settings stay in module_conf.json, as in PM2)
    #[command(visible_aliases = ["remove", "rm"])]
    Uninstall {
        /// Module name
        name: String,
    },
    /// Fetch a module again from where it was installed from (npm: the latest version) and
    /// restart it
    Update {
        /// Module name
        name: String,
    },
}

pub async fn run(client: &Client, args: ModuleArgs) -> anyhow::Result<ExitCode> {
    match args.cmd {
        ModuleCmd::Install { source } => install(client, &source).await,
        ModuleCmd::List { json } => list(client, json).await,
        ModuleCmd::Uninstall { name } => uninstall(client, &name).await,
        ModuleCmd::Update { name } => update(client, &name).await,
    }
}

/// `bm2 module install <source>` (and `bm2 install`).
pub async fn install(client: &Client, given: &str) -> anyhow::Result<ExitCode> {
    let here = std::env::current_dir()?;
    let src = source::classify(given, &here)?;
    let home = client.home().clone();
    let root = store::modules_dir(&home);
    std::fs::create_dir_all(&root)?;
    let tmp = root.join(format!(".install-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    crate::render::info(&format!("installing module from {}", src.spec));
    let fetched = {
        let (src, tmp) = (src.clone(), tmp.clone());
        tokio::task::spawn_blocking(move || source::fetch(&src, &tmp)).await?
    };
    let fetched = match fetched {
        Ok(f) => f,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    let m = match manifest::read(&fetched.dir) {
        Ok(m) => m,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    let name = match src.kind {
        store::Kind::Npm => source::npm_name(&src.spec).to_string(),
        _ => m.name.clone().unwrap_or_else(|| default_name(&src.spec)),
    };
    if let Err(e) = check_name(&name) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    let final_dir = root.join(&name);
    // Installing again replaces the module, as PM2 does (uninstall, then install).
    stop_module(client, &name).await?;
    if final_dir.exists() {
        std::fs::remove_dir_all(&final_dir)
            .with_context(|| format!("cannot remove {}", final_dir.display()))?;
    }
    if let Some(parent) = final_dir.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::rename(&tmp, &final_dir)?;
    let dir = final_dir.join(fetched.dir.strip_prefix(&tmp).unwrap_or(Path::new("")));
    let record = store::Installed {
        source: src.spec.clone(),
        kind: src.kind,
        version: m.version.clone(),
        commit: fetched.commit,
        installed_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        dir,
    };
    store::add_defaults(&home, &name, &m.defaults)?;
    let mut all = store::installed(&home)?;
    all.insert(name.clone(), record.clone());
    store::save_installed(&home, &all)?;
    crate::render::info(&format!(
        "module {name} installed in {}",
        record.dir.display()
    ));
    start(client, &name, &record).await
}

/// `bm2 module uninstall <name>` (and `bm2 uninstall`).
pub async fn uninstall(client: &Client, name: &str) -> anyhow::Result<ExitCode> {
    let home = client.home().clone();
    let mut all = store::installed(&home)?;
    if all.remove(name).is_none() {
        bail!(
            "no module named {name:?} is installed{}",
            installed_hint(&home)
        );
    }
    stop_module(client, name).await?;
    let dir = store::modules_dir(&home).join(name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .with_context(|| format!("cannot remove {}", dir.display()))?;
    }
    store::save_installed(&home, &all)?;
    crate::render::info(&format!("module {name} uninstalled"));
    Ok(ExitCode::SUCCESS)
}

/// `bm2 module update <name>`: fetches it again and restarts it.
pub async fn update(client: &Client, name: &str) -> anyhow::Result<ExitCode> {
    let home = client.home().clone();
    let all = store::installed(&home)?;
    let Some(old) = all.get(name) else {
        bail!(
            "no module named {name:?} is installed{}",
            installed_hint(&home)
        );
    };
    let given = match old.kind {
        // An npm module moves to the newest version unless one was pinned.
        store::Kind::Npm if source::npm_name(&old.source) == old.source => {
            format!("{}@latest", old.source)
        }
        _ => old.source.clone(),
    };
    install(client, &given).await
}

/// `bm2 module list`.
async fn list(client: &Client, json: bool) -> anyhow::Result<ExitCode> {
    let all = store::installed(client.home())?;
    let procs = module_procs(client).await?;
    let status = |name: &str| {
        procs
            .iter()
            .find(|p| p.name == name)
            .map_or("not running", |p| p.status.as_str())
    };
    if json {
        let rows: Vec<_> = all
            .iter()
            .map(|(name, m)| {
                let mut v = serde_json::to_value(m).unwrap_or_default();
                v["name"] = name.clone().into();
                v["status"] = status(name).into();
                v
            })
            .collect();
        println!("{}", serde_json::to_string(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    if all.is_empty() {
        crate::render::info(
            "no modules installed; install one with `bm2 module install <npm name|git URL|path>`",
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = comfy_table::Table::new();
    table
        .load_preset(comfy_table::presets::UTF8_FULL_CONDENSED)
        .set_header(vec!["name", "version", "status", "from", "installed"]);
    if !crate::render::color() {
        table.force_no_tty();
    }
    for (name, m) in &all {
        let version = match (&m.version, &m.commit) {
            (Some(v), Some(c)) => format!("{v} ({})", &c[..c.len().min(8)]),
            (Some(v), None) => v.clone(),
            (None, Some(c)) => c[..c.len().min(8)].to_string(),
            (None, None) => "-".into(),
        };
        table.add_row(vec![
            crate::render::escape::message(name).into_owned(),
            version,
            status(name).to_string(),
            crate::render::escape::message(&m.source).into_owned(),
            m.installed_at.clone(),
        ]);
    }
    println!("{table}");
    Ok(ExitCode::SUCCESS)
}

/// Starts (or restarts with its current settings) an installed module.
async fn start(client: &Client, name: &str, m: &store::Installed) -> anyhow::Result<ExitCode> {
    let spec = spec(client.home(), name, m)?;
    let req = StartRequest {
        apps: vec![spec],
        client_env: std::env::vars().collect(),
        force: false,
        if_exists: IfExists::Restart,
        update_env: true,
    };
    let res = client.start(&req).await;
    report(client, res).await
}

/// Restarts an installed module so that its settings apply (after `set`/`unset`); false when
/// `name` is not an installed module.
pub(super) async fn restart_for_settings(client: &Client, name: &str) -> anyhow::Result<bool> {
    let all = store::installed(client.home())?;
    let Some(m) = all.get(name) else {
        return Ok(false);
    };
    let spec = spec(client.home(), name, m)?;
    let req = StartRequest {
        apps: vec![spec],
        client_env: std::env::vars().collect(),
        force: false,
        if_exists: IfExists::Restart,
        update_env: true,
    };
    let res = client.start(&req).await.map_err(api_error)?;
    for e in &res.errors {
        crate::render::error(&crate::render::api_error_text(e));
    }
    Ok(res.errors.is_empty())
}

/// PM2 launches the installed modules whenever a new daemon starts: when this command found no
/// daemon (`fresh`), every installed module that the daemon does not run yet is started.
pub async fn launch_on_new_daemon(client: &Client) -> anyhow::Result<()> {
    let all = store::installed(client.home())?;
    if all.is_empty() {
        return Ok(());
    }
    let running = module_procs(client).await?;
    let mut apps = Vec::new();
    for (name, m) in &all {
        if running.iter().any(|p| &p.name == name) {
            continue;
        }
        match spec(client.home(), name, m) {
            Ok(s) => apps.push(s),
            Err(e) => crate::render::error(&format!("module {name}: {e:#}")),
        }
    }
    // One request per module: a module that another command (finding no daemon at the same
    // time) started first is refused as managed already, and the others still start.
    for app in apps {
        let name = app.name.clone();
        let req = StartRequest {
            apps: vec![app],
            client_env: std::env::vars().collect(),
            force: false,
            if_exists: IfExists::Fail,
            update_env: false,
        };
        let errors = match client.start(&req).await {
            Ok(res) => res.errors,
            Err(bm2_client::ClientError::Api(e)) => vec![e],
            Err(e) => return Err(api_error(e)),
        };
        for e in errors {
            if e.code != bm2_types::ErrorCode::AlreadyExists {
                crate::render::error(&format!(
                    "module {name}: {}",
                    crate::render::api_error_text(&e)
                ));
            }
        }
    }
    Ok(())
}

/// True when `modules.json` lists a module (an unreadable file counts: the launch reports it).
pub fn any_installed(home: &bm2_types::Home) -> bool {
    store::installed(home).map_or(true, |all| !all.is_empty())
}

/// True when no daemon listens on the home's socket.
pub fn no_daemon(home: &bm2_types::Home) -> bool {
    std::os::unix::net::UnixStream::connect(home.socket()).is_err()
}

/// The app of a module: from its manifest, in the namespace `modules`, its directory as working
/// directory, its settings in `BM2_MODULE_CONFIG` (JSON), in the variable named after it (JSON,
/// as PM2) and one variable per key (as PM2).
fn spec(home: &bm2_types::Home, name: &str, m: &store::Installed) -> anyhow::Result<AppSpec> {
    let man = manifest::read(&m.dir)?;
    let settings = store::module_conf(&store::conf(home)?, name);
    let json = serde_json::Value::Object(settings.clone()).to_string();
    let mut env = BTreeMap::new();
    for (k, v) in &settings {
        let text = match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        env.insert(k.clone(), text);
    }
    env.insert(name.to_string(), json.clone());
    env.insert("BM2_MODULE_CONFIG".into(), json);
    env.insert("BM2_MODULE_NAME".into(), name.to_string());
    let mut raw = match man.run {
        manifest::Run::Process(raw) => *raw,
        manifest::Run::Host { entry } => host_app(home, &entry, &mut env)?,
    };
    let mut vars = raw.env.take().map(|e| e.0).unwrap_or_default();
    vars.extend(env);
    raw.env = Some(EnvVars(vars));
    raw.name = Some(name.to_string());
    raw.namespace = Some(NAMESPACE.to_string());
    raw.cwd = Some(m.dir.display().to_string());
    let ctx = bm2_config::Context {
        base_dir: m.dir.clone(),
        ..bm2_config::Context::default()
    };
    let file = format!("module {name}");
    let resolved = bm2_config::resolve::resolve(raw, &BTreeMap::new(), &ctx, 0, &file)?;
    for w in &resolved.warnings {
        eprintln!(
            "[bm2] warning: module {name}: {}",
            crate::render::escape::message(&w.to_string())
        );
    }
    super::start::check_triggers(std::slice::from_ref(&resolved.spec))?;
    Ok(resolved.spec)
}

/// The app that runs `entry` in bm2's module host: node for JavaScript; for TypeScript the
/// runtime the daemon picks for TypeScript apps (bun when installed, else node that strips types).
fn host_app(
    home: &bm2_types::Home,
    entry: &Path,
    env: &mut BTreeMap<String, String>,
) -> anyhow::Result<RawApp> {
    if !entry.is_file() {
        bail!("the module's entry {} does not exist", entry.display());
    }
    let script = host::write(home)?;
    let path_var = std::env::var("PATH").unwrap_or_default();
    let (interpreter, node_args) = if manifest::is_typescript(entry) {
        let bun = bm2_types::runtime::find_program("bun", &path_var);
        let node = std::process::Command::new("node")
            .arg("--version")
            .output()
            .ok()
            .and_then(|o| {
                bm2_types::runtime::parse_node_version(&String::from_utf8_lossy(&o.stdout))
            });
        let runner = bm2_types::runtime::ts_runner(bun.is_some(), node)
            .map_err(|e| anyhow::anyhow!("module {}: {e}", entry.display()))?;
        let (program, args) = runner.command();
        let program = match (runner, bun) {
            (bm2_types::runtime::TsRunner::Bun, Some(b)) => b.display().to_string(),
            _ => program.to_string(),
        };
        (program, args.iter().map(|a| (*a).to_string()).collect())
    } else {
        ("node".to_string(), Vec::new())
    };
    env.insert("BM2_HOME".into(), home.root().display().to_string());
    env.insert(
        "BM2_BIN".into(),
        std::env::current_exe()?.display().to_string(),
    );
    Ok(RawApp {
        script: Some(script.display().to_string()),
        args: Some(Words(vec![entry.display().to_string()])),
        interpreter: Some(interpreter),
        node_args: (!node_args.is_empty()).then_some(Words(node_args)),
        ..RawApp::default()
    })
}

/// The processes of modules.
async fn module_procs(client: &Client) -> anyhow::Result<Vec<ProcSummary>> {
    let list = client.list().await.map_err(api_error)?;
    Ok(list
        .into_iter()
        .filter(|p| p.namespace == NAMESPACE)
        .collect())
}

/// Stops and removes the app of module `name`, if it runs (a BM2 module's `destroy()` runs).
async fn stop_module(client: &Client, name: &str) -> anyhow::Result<()> {
    let ids: Vec<String> = module_procs(client)
        .await?
        .iter()
        .filter(|p| p.name == name)
        .map(|p| p.id.to_string())
        .collect();
    if ids.is_empty() {
        return Ok(());
    }
    let res = client
        .delete_with(&bm2_types::DeleteRequest {
            targets: ids,
            keep_logs: false,
        })
        .await
        .map_err(api_error)?;
    if let Some(e) = res.errors.first() {
        bail!(
            "cannot stop module {name}: {}",
            crate::render::api_error_text(e)
        );
    }
    Ok(())
}

/// A module's name when its manifest has none: the last part of where it came from.
fn default_name(spec: &str) -> String {
    let last = spec
        .trim_end_matches('/')
        .rsplit(['/', ':'])
        .next()
        .unwrap_or(spec);
    last.trim_end_matches(".git").to_string()
}

/// A module name is a directory name under `$BM2_HOME/modules` (npm's `@scope/name` allowed).
fn check_name(name: &str) -> anyhow::Result<()> {
    let parts: Vec<&str> = name.split('/').collect();
    let scoped = parts.len() == 2 && parts[0].starts_with('@');
    let ok = !name.is_empty()
        && (parts.len() == 1 || scoped)
        && parts
            .iter()
            .all(|p| !p.is_empty() && *p != "." && *p != ".." && !p.starts_with(".install-"))
        && !name.chars().any(|c| c.is_control() || c == '\\');
    if !ok {
        bail!("{name:?} cannot be a module name (a directory name, or @scope/name)");
    }
    Ok(())
}

fn installed_hint(home: &bm2_types::Home) -> String {
    let names: Vec<String> = store::installed(home)
        .map(|a| a.into_keys().collect())
        .unwrap_or_default();
    if names.is_empty() {
        String::new()
    } else {
        format!(" (installed: {})", names.join(", "))
    }
}
