//! The launchd property list `bm2 startup launchd` writes (after PM2's template): the daemon
//! runs in the foreground at load, and launchd starts it again should it fail.

use std::fmt::Write as _;

use super::Service;

/// The marker line (an XML comment).
pub const MARKER: &str = "<!-- Written by `bm2 startup`; `bm2 unstartup` removes it. -->";

/// Where a user's agents live (under the home directory).
pub const AGENT_DIR: &str = "Library/LaunchAgents";
/// Where system daemons live (written as root).
pub const DAEMON_DIR: &str = "/Library/LaunchDaemons";

/// XML-escaped text.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// The plist's text; `system` adds `UserName` (a system daemon run as the user).
pub fn plist(s: &Service, system: bool) -> String {
    let program = escape(&s.program.display().to_string());
    // argv[0]: the absolute path for bm2; `pm2` so that the daemon keeps PM2's names.
    let argv0 = match s.layout {
        bm2_types::Layout::Bm2 => program.clone(),
        bm2_types::Layout::Pm2 => "pm2".to_string(),
    };
    let mut p = String::new();
    let _ = writeln!(p, r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    let _ = writeln!(
        p,
        r#"<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">"#
    );
    let _ = writeln!(p, "{MARKER}");
    let _ = writeln!(p, r#"<plist version="1.0">"#);
    let _ = writeln!(p, "<dict>");
    let _ = writeln!(
        p,
        "  <key>Label</key>\n  <string>{}</string>",
        escape(&s.name)
    );
    if system {
        let _ = writeln!(
            p,
            "  <key>UserName</key>\n  <string>{}</string>",
            escape(&s.user)
        );
    }
    let _ = writeln!(p, "  <key>Program</key>\n  <string>{program}</string>");
    let _ = writeln!(p, "  <key>ProgramArguments</key>\n  <array>");
    for arg in [argv0.as_str(), "daemon", "--resurrect"] {
        let _ = writeln!(p, "    <string>{arg}</string>");
    }
    let _ = writeln!(p, "  </array>");
    let _ = writeln!(p, "  <key>RunAtLoad</key>\n  <true/>");
    let _ = writeln!(
        p,
        "  <key>KeepAlive</key>\n  <dict>\n    <key>SuccessfulExit</key>\n    <false/>\n  </dict>"
    );
    let _ = writeln!(p, "  <key>EnvironmentVariables</key>\n  <dict>");
    let _ = writeln!(
        p,
        "    <key>{}</key>\n    <string>{}</string>",
        s.layout.home_var(),
        escape(&s.home.display().to_string())
    );
    let _ = writeln!(
        p,
        "    <key>PATH</key>\n    <string>{}</string>",
        escape(&s.path)
    );
    let _ = writeln!(p, "  </dict>");
    let _ = writeln!(p, "</dict>");
    let _ = writeln!(p, "</plist>");
    p
}
