//! Giving freed memory back to the system. The C allocator keeps the pages of freed blocks
//! when other blocks live near them: after hundreds of apps are deleted the daemon's heap is
//! small again but its resident size is not, and under long start/delete churn the kept pages
//! add up. Trimming after a deletion returns every whole free page (glibc's `malloc_trim`
//! releases free pages anywhere in each arena, not only at its top).

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
