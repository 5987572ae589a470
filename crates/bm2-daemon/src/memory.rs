//! Keeping the daemon's resident memory near what it uses. The C allocator gives each thread
//! that allocates its own arena (up to eight per core) and keeps the pages of freed blocks
//! when other blocks live near them: after hundreds of apps come and go, a daemon with a
//! 1 MiB heap held 35 MiB, most of it in the arenas of blocking-pool threads. So the daemon
//! uses at most [`ARENAS`] arenas, and gives whole free pages back after apps are deleted
//! (glibc's `malloc_trim` releases free pages anywhere in each arena, not only at its top).
//! Figures: `bench/churn.py` in docs/benchmarks.md.

/// Arenas the daemon's allocator may use: one per core of the machines it is sized for;
/// `MALLOC_ARENA_MAX` in the daemon's environment overrides it.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const ARENAS: libc::c_int = 2;

/// Caps the allocator's arenas. Call before the daemon starts any thread.
#[allow(unsafe_code)]
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets an allocator parameter; no other thread exists yet.
        unsafe { libc::mallopt(libc::M_ARENA_MAX, ARENAS) };
    }
}

/// Returns the allocator's free pages to the system, off the async threads (it walks every
/// arena). A no-op where the C library has no `malloc_trim`.
#[allow(unsafe_code)]
pub async fn give_back() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let _ = tokio::task::spawn_blocking(|| {
            // SAFETY: malloc_trim only walks the allocator's own free lists under its locks.
            unsafe { libc::malloc_trim(0) };
        })
        .await;
    }
}
