//! Wall-clock helpers.

use std::time::{SystemTime, UNIX_EPOCH};

/// Sleeps until `at`, or forever when there is nothing to wait for (a `select!` arm that is
/// disabled while `at` is `None`).
pub async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
