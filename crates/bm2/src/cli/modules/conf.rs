//! `bm2 set|get|unset|conf`: module settings in `module_conf.json`, as PM2's commands of the
//! same names. Changing a module's setting restarts the module with it.

use std::process::ExitCode;

use anyhow::bail;
use bm2_client::Client;
use clap::Args;
use serde_json::{Map, Value};

use super::store;

/// `bm2 conf [module[:key]] [value]`.
#[derive(Debug, Args)]
pub struct ConfArgs {
    /// `module` or `module:key`
    pub key: Option<String>,
    /// With a key: set it to this value
    pub value: Option<String>,
}

/// Splits `module:key` (or PM2's `module.key`).
fn split(key: &str) -> Option<(&str, &str)> {
    key.split_once(':')
        .or_else(|| key.split_once('.'))
        .filter(|(m, k)| !m.is_empty() && !k.is_empty())
}

/// `bm2 set <module>:<key> <value>`.
pub async fn set(client: &Client, key: &str, value: &str) -> anyhow::Result<ExitCode> {
    let Some((module, k)) = split(key) else {
        bail!("{key}: give <module>:<key> (e.g. bm2 set pm2-logrotate:max_size 10M)");
    };
    let home = client.home();
    let mut all = store::conf(home)?;
    let mut m = store::module_conf(&all, module);
    m.insert(k.to_string(), Value::String(value.to_string()));
    all.insert(module.to_string(), Value::Object(m));
    store::save_conf(home, &all)?;
    applied(client, module).await
}

/// `bm2 unset <module>:<key>` (or `<module>` for all its settings).
pub async fn unset(client: &Client, key: &str) -> anyhow::Result<ExitCode> {
    let home = client.home();
    let mut all = store::conf(home)?;
    let module = if let Some((module, k)) = split(key) {
        let mut m = store::module_conf(&all, module);
        if m.remove(k).is_none() {
            bail!("{module} has no setting {k:?}");
        }
        all.insert(module.to_string(), Value::Object(m));
        module
    } else {
        if all.remove(key).is_none() {
            bail!("no settings for {key:?}");
        }
        key
    };
    store::save_conf(home, &all)?;
    applied(client, module).await
}

/// After a change: restarts the module when it is installed, and shows its settings.
async fn applied(client: &Client, module: &str) -> anyhow::Result<ExitCode> {
    let restarted = super::restart_for_settings(client, module).await?;
    if restarted {
        crate::render::info(&format!("module {module} restarted with its new settings"));
    }
    print_module(
        module,
        &store::module_conf(&store::conf(client.home())?, module),
    );
    Ok(ExitCode::SUCCESS)
}

/// `bm2 get [<module>[:<key>]]`: one value (printed alone, for scripts), one module's settings,
/// or all of them.
pub fn get(client: &Client, key: Option<&str>) -> anyhow::Result<ExitCode> {
    let all = store::conf(client.home())?;
    match key {
        None | Some("all") => print_all(&all),
        Some(key) => {
            if let Some((module, k)) = split(key) {
                let Some(v) = store::module_conf(&all, module).get(k).cloned() else {
                    bail!("{module} has no setting {k:?}");
                };
                println!("{}", text(&v));
            } else {
                if !all.contains_key(key) {
                    bail!("no settings for {key:?}");
                }
                print_module(key, &store::module_conf(&all, key));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `bm2 conf`: as PM2, `conf key value` sets, `conf key` gets, `conf` shows everything.
pub async fn conf(client: &Client, args: ConfArgs) -> anyhow::Result<ExitCode> {
    match (args.key, args.value) {
        (Some(k), Some(v)) => set(client, &k, &v).await,
        (Some(k), None) => get(client, Some(&k)),
        (None, _) => {
            let all = store::conf(client.home())?;
            print_all(&all);
            println!(
                "# {} (change with `bm2 set <module>:<key> <value>`)",
                store::conf_file(client.home()).display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print_all(all: &Map<String, Value>) {
    for (module, v) in all {
        match v {
            Value::Object(m) => print_module(module, m),
            other => println!("{module} {}", text(other)),
        }
    }
}

/// One `module:key value` line per setting (lines to copy into `bm2 set`).
fn print_module(module: &str, m: &Map<String, Value>) {
    for (k, v) in m {
        println!(
            "{}:{} {}",
            crate::render::escape::message(module),
            crate::render::escape::message(k),
            crate::render::escape::message(&text(v))
        );
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
