//! What runs an app, decided when its options are resolved (PM2's `resolveInterpreter` and
//! `determineExecMode`): the interpreter of scripts the daemon cannot tell by their extension,
//! and fork or cluster mode when the mode is not given.

use std::io::Read;
use std::path::Path;

use bm2_types::{ExecMode, Instances};

/// Extensions the daemon picks an interpreter for (`node`, `bun`, `python3`, ...).
const KNOWN_EXTENSIONS: &[&str] = &[
    "js", "mjs", "cjs", "ts", "tsx", "mts", "cts", "py", "rb", "sh", "pl", "php",
];

/// Extensions of scripts run by Node or Bun.
const JS_EXTENSIONS: &[&str] = &["js", "mjs", "cjs", "ts", "tsx", "mts", "cts"];

/// The interpreter of a script file the daemon cannot tell by its extension, as PM2 decides it:
/// a text file is a Node script (`bin/www`, and `npm`, `yarn`, `pnpm` once found on PATH), so
/// that `node_args` and cluster mode apply to it. A binary runs directly, and so does a script
/// whose `#!` line names another interpreter (where PM2 would run it with node and fail).
pub fn script_interpreter(path: &Path) -> Option<&'static str> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    if KNOWN_EXTENSIONS.contains(&ext) {
        return None;
    }
    let mut head = [0u8; 512];
    let n = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .ok()?;
    let head = &head[..n];
    if n == 0 || head.contains(&0) || head.starts_with(b"\x7fELF") {
        return None;
    }
    if let Some(rest) = head.strip_prefix(b"#!") {
        let line = rest.split(|b| *b == b'\n').next().unwrap_or(rest);
        let line = String::from_utf8_lossy(line);
        let words: Vec<&str> = line.split_whitespace().collect();
        // `#!/usr/bin/env node`, `#!/usr/bin/env -S node --flag`, `#!/usr/local/bin/node`.
        let program = words
            .iter()
            .map(|w| w.rsplit('/').next().unwrap_or(w))
            .find(|w| *w != "env" && !w.starts_with('-'))?;
        return match program {
            "node" | "nodejs" => Some("node"),
            "bun" => Some("bun"),
            _ => None,
        };
    }
    // Text without `#!`: node, as in PM2, for a file without extension (`bin/www` style); a
    // file with an unknown extension (`data.bin`) is not taken for a Node script (bm2 reports it
    // as not executable, where PM2 would run it with node).
    // (The first 512 bytes may end inside a character: that is still text.)
    let text = match std::str::from_utf8(head) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none(),
    };
    (ext.is_empty() && text).then_some("node")
}

/// True when `script` (an absolute path, or a program name) runs under Node or Bun with
/// `interpreter` (PM2 tests the interpreter's name: `node`, `nodejs`, `bun`, or a path to one).
pub fn is_js(script: &str, interpreter: Option<&str>) -> bool {
    match interpreter {
        Some(i) => js_runtime(i).is_some(),
        None => Path::new(script)
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| JS_EXTENSIONS.contains(&e)),
    }
}

/// `node` or `bun` when `interpreter` (a name or a path) is one of them, as PM2 tells them by
/// name (`node`, `nodejs`, `/usr/local/bin/node`, `bun`). The daemon uses the same rule for the
/// cluster shim and source maps.
pub fn js_runtime(interpreter: &str) -> Option<&'static str> {
    let base = Path::new(interpreter)
        .file_name()
        .and_then(|f| f.to_str())
        .unwrap_or(interpreter);
    if base.ends_with("bun") {
        Some("bun")
    } else if base.ends_with("node") || base.ends_with("nodejs") {
        Some("node")
    } else {
        None
    }
}

/// The exec mode: as given; else fork for PM2's `execute_command` (`-x`); else cluster for a
/// Node/Bun script given a number of instances (PM2's `determineExecMode`, for files and flags
/// alike); else fork.
pub fn exec_mode(
    given: Option<ExecMode>,
    execute_command: bool,
    instances: Option<Instances>,
    js: bool,
) -> ExecMode {
    match given {
        Some(m) => m,
        None if execute_command => ExecMode::Fork,
        None if instances.is_some() && js => ExecMode::Cluster,
        None => ExecMode::Fork,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, body: &[u8]) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        p
    }

    #[test]
    fn extensionless_scripts_are_classified_by_their_first_line() {
        let d = tempfile::tempdir().unwrap();
        let d = d.path();
        let www = write(d, "www", b"#!/usr/bin/env node\nrequire('../app')\n");
        assert_eq!(script_interpreter(&www), Some("node"));
        let s = write(d, "s", b"#!/usr/bin/env -S node --no-warnings\n");
        assert_eq!(script_interpreter(&s), Some("node"));
        let b = write(d, "b", b"#!/home/u/.bun/bin/bun\n");
        assert_eq!(script_interpreter(&b), Some("bun"));
        let sh = write(d, "run", b"#!/bin/sh\necho hi\n");
        assert_eq!(script_interpreter(&sh), None);
        let plain = write(d, "plain", b"console.log(1)\n");
        assert_eq!(script_interpreter(&plain), Some("node"));
        let bin = write(d, "bin", b"\x7fELF\x02\x01\x01\0\0");
        assert_eq!(script_interpreter(&bin), None);
        let data = write(d, "data.bin", b"not a program\n");
        assert_eq!(script_interpreter(&data), None);
        // A character cut by the 512 bytes read is still text.
        let mut cut = b"// ".to_vec();
        cut.extend(std::iter::repeat_n(b'a', 508));
        cut.extend("é\n".as_bytes());
        let cut = write(d, "cut", &cut);
        assert_eq!(script_interpreter(&cut), Some("node"));
        let js = write(d, "a.js", b"#!/bin/sh\n");
        assert_eq!(
            script_interpreter(&js),
            None,
            "known extensions are the daemon's"
        );
    }

    #[test]
    fn node_and_bun_are_told_by_name() {
        assert_eq!(js_runtime("node"), Some("node"));
        assert_eq!(js_runtime("nodejs"), Some("node"));
        assert_eq!(js_runtime("/usr/local/bin/node"), Some("node"));
        assert_eq!(js_runtime("/home/u/.bun/bin/bun"), Some("bun"));
        assert_eq!(js_runtime("python3"), None);
    }

    #[test]
    fn cluster_mode_is_inferred_for_js_with_instances() {
        let two = Some(Instances::Count(2));
        assert_eq!(
            exec_mode(None, false, two, is_js("/a/server.js", None)),
            ExecMode::Cluster
        );
        assert_eq!(
            exec_mode(None, false, two, is_js("/a/www", Some("node"))),
            ExecMode::Cluster
        );
        assert_eq!(
            exec_mode(None, false, two, is_js("/a/app.py", None)),
            ExecMode::Fork
        );
        assert_eq!(
            exec_mode(None, false, None, is_js("/a/server.js", None)),
            ExecMode::Fork
        );
        assert_eq!(
            exec_mode(None, true, two, is_js("/a/server.js", None)),
            ExecMode::Fork
        );
        assert_eq!(
            exec_mode(Some(ExecMode::Fork), false, two, true),
            ExecMode::Fork
        );
        assert!(is_js("x", Some("/usr/local/bin/nodejs")));
        assert!(!is_js("x.js", Some("python3")));
    }
}
