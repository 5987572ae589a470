//! Writing and removing a service file: atomically, and only files bm2 wrote.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// What is at the service file's path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Nothing.
    None,
    /// A file bm2 wrote (it carries the marker).
    Ours,
    /// Someone else's file.
    Foreign,
}

/// What is at `path`, judged by `marker` (a line bm2 writes in every service file).
pub fn existing(path: &Path, marker: &str) -> io::Result<Existing> {
    match fs::read_to_string(path) {
        Ok(text) if text.lines().any(|l| l == marker) => Ok(Existing::Ours),
        Ok(_) => Ok(Existing::Foreign),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Existing::None),
        // Not text: not ours either.
        Err(e) if e.kind() == io::ErrorKind::InvalidData => Ok(Existing::Foreign),
        Err(e) => Err(e),
    }
}

/// Writes `text` to `path` atomically (a synced temporary file in the same directory, renamed
/// over it) with `mode` (readable by all, as init systems expect).
pub fn write_atomic(path: &Path, text: &str, mode: u32) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map_or_else(|| "service".into(), |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(".{name}.bm2-tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}
