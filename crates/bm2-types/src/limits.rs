//! Limits on an app's options, checked on every road to the daemon: ecosystem files and CLI
//! flags (bm2-config) and the API (the daemon checks what it receives).

use crate::AppSpec;

/// Longest app name, in bytes. bm2 names files after apps; the longest such name is a rotated
/// stderr log parked for the rotation worker, `<name>-error-<id>.log.rotating-<run>-<seq>`,
/// which with the largest id (10 digits), a run stamp in milliseconds (13 digits) and the
/// largest counter (20 digits) is 65 bytes longer than the name. 180 keeps every file name bm2
/// derives from an app name under the 255-byte limit of Linux file systems.
pub const MAX_NAME_BYTES: usize = 180;

/// Longest stop timeout, readiness wait, restart delay or minimum uptime, in milliseconds
/// (1 hour).
pub const MAX_LIFECYCLE_MS: u64 = 3_600_000;

/// An option outside its limits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct LimitError {
    /// The ecosystem key of the option (`name`, `kill_timeout`).
    pub key: &'static str,
    /// What is wrong, naming the app, the option (key and flag) and the limit.
    pub message: String,
}

/// True for characters that make a terminal do something instead of showing a glyph: control
/// characters (C0, DEL, C1: `ESC` starts escape sequences) and the bidirectional overrides and
/// isolates, which reorder the text around them.
pub fn is_unsafe_char(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// The start of `name` as a quoted, escaped string, for messages.
pub fn shown_name(name: &str) -> String {
    const SHOWN: usize = 40;
    if name.chars().count() <= SHOWN {
        format!("{name:?}")
    } else {
        let head: String = name.chars().take(SHOWN).collect();
        format!("{head:?}…")
    }
}

/// Checks an app name: at most [`MAX_NAME_BYTES`] bytes, and no control characters.
pub fn check_name(name: &str) -> Result<(), LimitError> {
    let err = |message: String| {
        Err(LimitError {
            key: "name",
            message,
        })
    };
    if name.len() > MAX_NAME_BYTES {
        return err(format!(
            "app name {} is {} bytes; names are at most {MAX_NAME_BYTES} bytes, so that the files \
             bm2 names after an app (logs such as <name>-error-<id>.log and their rotated copies, \
             pid files) stay under the 255-byte file name limit",
            shown_name(name),
            name.len()
        ));
    }
    if let Some(c) = name.chars().find(|c| is_unsafe_char(*c)) {
        return err(format!(
            "app name {} contains the control character U+{:04X}; names are printed in \
             terminals and used in file names: use printable characters only",
            shown_name(name),
            u32::from(c)
        ));
    }
    Ok(())
}

/// The duration options with an upper bound: key, CLI flag, value, and what a larger value
/// would do.
fn durations(spec: &AppSpec) -> [(&'static str, &'static str, Option<u64>, &'static str); 6] {
    [
        (
            "kill_timeout",
            "--kill-timeout",
            Some(spec.kill_timeout),
            "stop, restart, reload and delete wait this long for the app to exit before SIGKILL, \
             and would seem to hang",
        ),
        (
            "listen_timeout",
            "--listen-timeout",
            Some(spec.listen_timeout),
            "start and reload wait this long for an instance to be ready",
        ),
        (
            "restart_delay",
            "--restart-delay",
            Some(spec.restart_delay),
            "a crashed app would stay down this long",
        ),
        (
            "exp_backoff_restart_delay",
            "--exp-backoff-restart-delay",
            spec.exp_backoff_restart_delay,
            "a crashed app would stay down at least this long",
        ),
        (
            "min_uptime",
            "--min-uptime",
            Some(spec.min_uptime),
            "every exit sooner than this after a start counts as a crash",
        ),
        (
            "kill_retry_time",
            "kill_retry_time",
            Some(spec.kill_retry_time),
            "it is how often a stopping process is checked, and is never longer than the stop \
             timeout",
        ),
    ]
}

/// Checks the limits of `spec`: its name and its durations.
pub fn check(spec: &AppSpec) -> Result<(), LimitError> {
    check_name(&spec.name)?;
    for (key, flag, value, why) in durations(spec) {
        let Some(ms) = value else { continue };
        if ms > MAX_LIFECYCLE_MS {
            let named = if key == flag {
                key.to_string()
            } else {
                format!("{key} ({flag})")
            };
            return Err(LimitError {
                key,
                message: format!(
                    "app {}: {named} is {ms} ms; at most {MAX_LIFECYCLE_MS} ms (1 hour): {why}",
                    shown_name(&spec.name)
                ),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(name: &str) -> AppSpec {
        AppSpec {
            name: name.into(),
            script: "app.js".into(),
            ..AppSpec::default()
        }
    }

    #[test]
    fn names_longer_than_the_limit_are_refused_with_the_limit() {
        assert!(check(&app(&"a".repeat(MAX_NAME_BYTES))).is_ok());
        let e = check(&app(&"a".repeat(MAX_NAME_BYTES + 1))).unwrap_err();
        assert_eq!(e.key, "name");
        assert!(
            e.message.contains("181 bytes") && e.message.contains("at most 180 bytes"),
            "{e}"
        );
        // Bytes, not characters: 101 two-byte characters are 202 bytes.
        assert!(check(&app(&"é".repeat(101))).is_err());
        // The message shows the start of the name, not all of it.
        assert!(e.message.len() < 400, "{e}");
    }

    #[test]
    fn control_characters_in_names_are_refused() {
        for bad in [
            "a\u{1b}[2Jb",
            "two\nlines",
            "tab\there",
            "nul\0",
            "\u{9b}c1",
            "rtl\u{202e}",
        ] {
            let e = check(&app(bad)).unwrap_err();
            assert!(e.message.contains("control character"), "{bad:?}: {e}");
            assert!(
                !e.message.contains('\u{1b}'),
                "the message itself is escaped: {e}"
            );
        }
        assert!(check(&app("api-v2.prod_ünïcødé 日本")).is_ok());
    }

    #[test]
    fn durations_are_bounded_at_one_hour() {
        let mut spec = app("api");
        spec.kill_timeout = MAX_LIFECYCLE_MS;
        assert!(check(&spec).is_ok());
        spec.kill_timeout = MAX_LIFECYCLE_MS + 1;
        let e = check(&spec).unwrap_err();
        assert_eq!(e.key, "kill_timeout");
        assert!(
            e.message.contains("kill_timeout (--kill-timeout)")
                && e.message.contains("at most 3600000 ms (1 hour)")
                && e.message.contains("SIGKILL"),
            "{e}"
        );
        for (key, set) in [
            (
                "listen_timeout",
                (|s: &mut AppSpec| s.listen_timeout = u64::MAX) as fn(&mut AppSpec),
            ),
            ("restart_delay", |s| s.restart_delay = u64::MAX),
            ("exp_backoff_restart_delay", |s| {
                s.exp_backoff_restart_delay = Some(u64::MAX);
            }),
            ("min_uptime", |s| s.min_uptime = u64::MAX),
            ("kill_retry_time", |s| s.kill_retry_time = u64::MAX),
        ] {
            let mut spec = app("api");
            set(&mut spec);
            assert_eq!(check(&spec).unwrap_err().key, key);
        }
    }
}
