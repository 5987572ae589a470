//! The HTTP bearer token of `bm2 mcp`: `$BM2_HOME/mcp.token`, made as the dashboard's is.

use std::path::PathBuf;

use bm2_types::Home;

/// Where the token lives.
pub fn path(home: &Home) -> PathBuf {
    home.root().join("mcp.token")
}

/// The token, created (mode 0600, 24 random bytes as hex) on first use.
pub fn load_or_create(home: &Home) -> anyhow::Result<String> {
    home.create()?;
    let path = path(home);
    bm2_daemon::web::token::load_or_create(&path)
        .map_err(|e| anyhow::anyhow!("the MCP token file {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_token_is_made_once_in_the_home_and_kept_private() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path().join("home"));
        let first = load_or_create(&home).unwrap();
        assert_eq!(first.len(), 48);
        assert!(first.bytes().all(|b| b.is_ascii_hexdigit()));
        let file = dir.path().join("home/mcp.token");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), first);
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(load_or_create(&home).unwrap(), first);
        // Not the dashboard's token.
        assert!(!dir.path().join("home/dashboard.token").exists());
    }
}
