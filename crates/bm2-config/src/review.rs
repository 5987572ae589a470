//! What `bm2 validate` points out in an app that reads fine but will not run as its author
//! probably expects: things no rule can fix silently.

use std::path::Path;

use bm2_types::{AppSpec, ExecMode};

/// Notes on `spec` (resolved), each a sentence naming the key. `path` is the `PATH` programs
/// are looked up on.
pub fn notes(spec: &AppSpec, path: Option<&str>) -> Vec<(&'static str, String)> {
    let mut notes = Vec::new();
    if !runnable(&spec.script, path) {
        notes.push((
            "script",
            format!(
                "{:?} is neither a file (relative paths are taken from the app's cwd) nor a program on PATH: starting it will fail",
                spec.script
            ),
        ));
    }
    let js = crate::runtime::is_js(&spec.script, spec.interpreter.as_deref());
    if spec.exec_mode == ExecMode::Cluster
        && !js
        && spec.port.is_none()
        && !spec.env.contains_key("PORT")
    {
        notes.push((
            "exec_mode",
            "cluster mode for a program that is not Node or Bun balances the app's `port` (or the PORT in its env) across the instances; this app has neither, so each instance gets only a private PORT and nothing is balanced".to_string(),
        ));
    }
    notes
}

/// True when `script` is a file, or a program found on `path`.
fn runnable(script: &str, path: Option<&str>) -> bool {
    if script.contains('/') {
        return Path::new(script).exists();
    }
    path.unwrap_or_default()
        .split(':')
        .filter(|d| !d.is_empty())
        .any(|d| Path::new(d).join(script).is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_scripts_and_unbalanced_cluster_apps_are_noted() {
        let path = std::env::var("PATH").ok();
        let app = |script: &str, mode: ExecMode| AppSpec {
            script: script.into(),
            exec_mode: mode,
            ..AppSpec::default()
        };
        assert!(notes(&app("sh", ExecMode::Fork), path.as_deref()).is_empty());
        let missing = notes(&app("/nowhere/app.js", ExecMode::Fork), path.as_deref());
        assert_eq!(missing.len(), 1);
        assert_eq!(missing[0].0, "script");
        let cluster = notes(&app("sh", ExecMode::Cluster), path.as_deref());
        assert_eq!(cluster.len(), 1, "{cluster:?}");
        assert_eq!(cluster[0].0, "exec_mode");
        let mut with_port = app("sh", ExecMode::Cluster);
        with_port.env.insert("PORT".into(), "8000".into());
        assert!(notes(&with_port, path.as_deref()).is_empty());
        assert!(notes(&app("/bin/sh", ExecMode::Cluster), None).len() == 1);
    }
}
