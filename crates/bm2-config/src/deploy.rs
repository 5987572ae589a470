//! The `deploy` section of an ecosystem file (`bm2 deploy <file> <env>`): PM2's keys
//! (`user`, `host`, `port`, `ref`, `repo`, `path`, `key`, `ssh_options`, `pre-setup`,
//! `post-setup`, `pre-deploy-local`, `pre-deploy`, `post-deploy`, `env`, `fetch`) and BM2's
//! camelCase ones (`preSetup`, `postSetup`, `preDeploy` — run locally, as BM2 documents it —
//! and `postDeploy`), read into one typed [`DeployEnv`] per environment.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// Releases kept on each host when the file does not say.
pub const DEFAULT_KEEP_RELEASES: u32 = 5;

/// One SSH destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The user to log in as (`user`, or `user@` in the host entry); none: ssh's default.
    pub user: Option<String>,
    /// The host name or address, as ssh takes it (an alias of `~/.ssh/config` works).
    pub host: String,
    /// The port (`port`, or `:port` in the host entry); none: ssh's default.
    pub port: Option<u16>,
}

/// The commands run around a setup or a deploy. Each is shell code, run with `sh -c`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hooks {
    /// Remote, before the layout is made (`pre-setup`, `preSetup`).
    pub pre_setup: Option<String>,
    /// Remote, in the clone, after setup (`post-setup`, `postSetup`).
    pub post_setup: Option<String>,
    /// Local, in the file's directory, before anything is sent (`pre-deploy-local`, BM2's
    /// `preDeploy`).
    pub pre_deploy_local: Option<String>,
    /// Remote, in the new release, before it becomes current (`pre-deploy`).
    pub pre_deploy: Option<String>,
    /// Remote, in the new release, once it is current (`post-deploy`, `postDeploy`).
    pub post_deploy: Option<String>,
}

/// One environment of the `deploy` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployEnv {
    /// Its name (`production`).
    pub name: String,
    /// Where to deploy, in order.
    pub targets: Vec<Target>,
    /// The git repository, as the remote host reaches it.
    pub repo: String,
    /// The ref deployed by default (`origin/main`, a branch, a tag, a commit).
    pub reference: String,
    /// The directory on the hosts that holds `source`, `releases`, `current` and `shared`.
    pub path: String,
    /// `-i` key file for ssh (`~` expanded).
    pub key: Option<PathBuf>,
    /// Extra ssh options (`-o` values such as `StrictHostKeyChecking=no`, or raw arguments).
    pub ssh_options: Vec<String>,
    /// The hooks.
    pub hooks: Hooks,
    /// Variables for the hooks (local and remote).
    pub env: BTreeMap<String, String>,
    /// `fetch: "all"`: fetch every remote, not only `origin`.
    pub fetch_all: bool,
    /// Releases kept on each host (`keep_releases`, at least 1).
    pub keep_releases: u32,
    /// When `post-deploy` fails, make the previous release current again (default); with
    /// `rollback_on_failure: false`, leave the new one, as PM2 does.
    pub rollback_on_failure: bool,
}

/// The `deploy` section of a file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeploySection {
    /// The environments, by name.
    pub envs: BTreeMap<String, DeployEnv>,
}
