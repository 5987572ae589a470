//! Getting a module's files: `npm install --prefix`, `git clone --depth 1`, or a directory copy.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

use super::store::Kind;

/// What `module install` was given.
#[derive(Debug, Clone)]
pub struct Source {
    pub kind: Kind,
    /// The npm spec, the URL, or the absolute path.
    pub spec: String,
}

/// Tells a git URL, a local directory and an npm name apart: `https://`, `http://`, `git@`,
/// `git+`, `ssh://`, `file://` or a name ending in `.git` is git; an existing directory (or a
/// name starting with `.` or `/`) is a path; anything else an npm package.
pub fn classify(given: &str, here: &Path) -> anyhow::Result<Source> {
    let git_prefix = [
        "https://", "http://", "git@", "git+", "ssh://", "git://", "file://",
    ]
    .iter()
    .any(|p| given.starts_with(p));
    let trimmed = given.trim_end_matches('/');
    if git_prefix
        || Path::new(trimmed)
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("git"))
    {
        let local = here.join(trimmed);
        let spec = if !git_prefix && local.exists() {
            local.canonicalize()?.display().to_string()
        } else {
            given.strip_prefix("git+").unwrap_or(given).to_string()
        };
        return Ok(Source {
            kind: Kind::Git,
            spec,
        });
    }
    let local = here.join(given);
    if local.is_dir() {
        return Ok(Source {
            kind: Kind::Path,
            spec: local.canonicalize()?.display().to_string(),
        });
    }
    if given.starts_with('.') || given.starts_with('/') || given.starts_with('~') {
        bail!("{given}: no such directory");
    }
    Ok(Source {
        kind: Kind::Npm,
        spec: given.to_string(),
    })
}

/// The package name of an npm spec: `foo@1.2` → `foo`, `@scope/foo@^2` → `@scope/foo`.
pub fn npm_name(spec: &str) -> &str {
    let from = usize::from(spec.starts_with('@'));
    match spec[from..].find('@') {
        Some(at) => &spec[..from + at],
        None => spec,
    }
}

/// What was fetched: the module's directory (inside `into`) and the git commit.
pub struct Fetched {
    pub dir: PathBuf,
    pub commit: Option<String>,
}

/// Fetches `src` into the empty directory `into`.
pub fn fetch(src: &Source, into: &Path) -> anyhow::Result<Fetched> {
    std::fs::create_dir_all(into)?;
    match src.kind {
        Kind::Npm => {
            run(Command::new("npm")
                .args(["install", "--loglevel=error", "--no-audit", "--no-fund"])
                .arg("--prefix")
                .arg(into)
                .arg(&src.spec))?;
            let dir = into.join("node_modules").join(npm_name(&src.spec));
            if !dir.join("package.json").is_file() {
                bail!(
                    "npm installed no package {} in {}",
                    npm_name(&src.spec),
                    dir.display()
                );
            }
            Ok(Fetched { dir, commit: None })
        }
        Kind::Git => {
            std::fs::remove_dir(into)?;
            run(Command::new("git")
                .args(["clone", "--depth", "1", "--quiet", "--"])
                .arg(&src.spec)
                .arg(into))?;
            let out = Command::new("git")
                .arg("-C")
                .arg(into)
                .args(["rev-parse", "HEAD"])
                .output()?;
            let commit = out
                .status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string());
            let _ = std::fs::remove_dir_all(into.join(".git"));
            install_deps(into)?;
            Ok(Fetched {
                dir: into.to_path_buf(),
                commit,
            })
        }
        Kind::Path => {
            copy_dir(Path::new(&src.spec), into)?;
            install_deps(into)?;
            Ok(Fetched {
                dir: into.to_path_buf(),
                commit: None,
            })
        }
    }
}

/// `npm install --omit=dev` when the module's package.json has dependencies.
fn install_deps(dir: &Path) -> anyhow::Result<()> {
    if super::manifest::has_dependencies(dir) {
        run(Command::new("npm")
            .args([
                "install",
                "--omit=dev",
                "--loglevel=error",
                "--no-audit",
                "--no-fund",
            ])
            .current_dir(dir))?;
    }
    Ok(())
}

/// Copies a directory tree, without `node_modules` and `.git`; symbolic links are copied as links.
fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in
        std::fs::read_dir(from).with_context(|| format!("cannot read {}", from.display()))?
    {
        let entry = entry?;
        let name = entry.file_name();
        if name == "node_modules" || name == ".git" {
            continue;
        }
        let target = to.join(&name);
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path())?, &target)?;
        } else {
            std::fs::copy(entry.path(), &target)
                .with_context(|| format!("cannot copy {}", entry.path().display()))?;
        }
    }
    Ok(())
}

/// Runs a command, its output shown to the user; an error names the command when it fails.
fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let shown = format!(
        "{} {}",
        cmd.get_program().to_string_lossy(),
        cmd.get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    );
    // The user sees npm's and git's messages; stdout stays for bm2's own output.
    let status = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::inherit())
        .stderr(std::process::Stdio::inherit())
        .status()
        .with_context(|| format!("cannot run `{shown}`"))?;
    if !status.success() {
        bail!("`{shown}` failed ({status})");
    }
    Ok(())
}
