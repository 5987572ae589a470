//! The systemd unit `bm2 startup systemd` writes.

use std::fmt::Write as _;
use std::path::Path;

use super::Service;

/// The line that marks a unit as bm2's: `unstartup` removes only files that carry it, and
/// `startup` replaces only those without `--force`.
pub const MARKER: &str = "# Written by `bm2 startup`; `bm2 unstartup` removes it.";

/// Where system units written by an administrator live.
pub const UNIT_DIR: &str = "/etc/systemd/system";

/// The unit's text. The daemon runs in the foreground as the main process (`Type=notify`: it
/// sends `READY=1` once the saved apps run), its apps stay in the service's cgroup, `ExecStop`
/// stops them gracefully with their kill timeouts (keeping the saved list), and `KillMode=mixed`
/// signals the daemon alone first, so that it stops its apps itself if `ExecStop` could not.
pub fn unit(s: &Service) -> String {
    let exec = |args: &str| {
        // `@path argv0 args`: the daemon picks its layout (bm2's or PM2's names) from argv0.
        format!("@{} {} {args}", exec_quote(&s.program), s.layout.program())
    };
    let mut u = String::new();
    let _ = writeln!(u, "{MARKER}");
    let _ = writeln!(u, "[Unit]");
    let _ = writeln!(
        u,
        "Description={} process manager for {}",
        s.layout.program(),
        escape_specifiers(&s.user)
    );
    let _ = writeln!(u, "After=network.target");
    let _ = writeln!(u);
    let _ = writeln!(u, "[Service]");
    let _ = writeln!(u, "Type=notify");
    let _ = writeln!(u, "NotifyAccess=main");
    let _ = writeln!(u, "User={}", escape_specifiers(&s.user));
    let _ = writeln!(u, "LimitNOFILE=infinity");
    let _ = writeln!(u, "LimitNPROC=infinity");
    let _ = writeln!(u, "LimitCORE=infinity");
    let _ = writeln!(
        u,
        "Environment={}",
        quote(&format!("{}={}", s.layout.home_var(), s.home.display()))
    );
    let _ = writeln!(u, "Environment={}", quote(&format!("PATH={}", s.path)));
    let _ = writeln!(u, "ExecStart={}", exec("daemon --resurrect"));
    let _ = writeln!(u, "ExecReload={}", exec("reload all"));
    let _ = writeln!(u, "ExecStop={}", exec("kill"));
    let _ = writeln!(u, "KillMode=mixed");
    let _ = writeln!(u, "Restart=on-failure");
    let _ = writeln!(u);
    let _ = writeln!(u, "[Install]");
    let _ = writeln!(u, "WantedBy=multi-user.target");
    u
}

/// `%` starts a specifier in every unit setting.
fn escape_specifiers(s: &str) -> String {
    s.replace('%', "%%")
}

/// A double-quoted value (for `Environment=` and command arguments).
fn quote(s: &str) -> String {
    let inner = escape_specifiers(s)
        .replace('\\', "\\\\")
        .replace('"', "\\\"");
    format!("\"{inner}\"")
}

/// A program path in a command line, where `$` also expands.
fn exec_quote(p: &Path) -> String {
    quote(&p.display().to_string()).replace('$', "$$")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn paths_with_spaces_percent_and_dollar_are_quoted() {
        let s = Service {
            name: "bm2-me".into(),
            user: "me".into(),
            home: PathBuf::from("/home/me/my 100% $home/.bm2"),
            program: PathBuf::from("/opt/b m2/$bin/bm2"),
            layout: bm2_types::Layout::Bm2,
            path: "/usr/bin:/bin".into(),
        };
        let u = unit(&s);
        assert!(
            u.contains("Environment=\"BM2_HOME=/home/me/my 100%% $home/.bm2\""),
            "{u}"
        );
        assert!(
            u.contains("ExecStart=@\"/opt/b m2/$$bin/bm2\" bm2 daemon --resurrect"),
            "{u}"
        );
        assert!(u.starts_with(MARKER));
    }
}
