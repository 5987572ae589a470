//! The dashboard's access token: random, created at first start in `$BM2_HOME`, readable by its
//! owner only.

use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Bytes of randomness in a token.
const TOKEN_BYTES: usize = 24;

/// The token stored at `path`, created (mode 0600) when there is none.
pub fn load_or_create(path: &Path) -> io::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(t) if valid(t.trim()) => {
            // Whoever changed the mode, the token stays private.
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
            return Ok(t.trim().to_string());
        }
        Ok(_) => std::fs::remove_file(path)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut bytes = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut bytes).map_err(|e| io::Error::other(e.to_string()))?;
    let token: String = bytes.iter().fold(String::new(), |mut t, b| {
        use std::fmt::Write as _;
        let _ = write!(t, "{b:02x}");
        t
    });
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(token.as_bytes())?;
    file.sync_all()?;
    Ok(token)
}

/// True for a token this module could have made (hex, long enough).
fn valid(t: &str) -> bool {
    t.len() >= 32 && t.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_created_once_and_kept_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dashboard.token");
        let first = load_or_create(&path).unwrap();
        assert_eq!(first.len(), TOKEN_BYTES * 2);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(load_or_create(&path).unwrap(), first);
        std::fs::write(&path, "short").unwrap();
        let second = load_or_create(&path).unwrap();
        assert_ne!(second, first);
        assert!(valid(&second));
    }
}
