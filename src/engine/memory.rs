//! Handing memory back to the operating system between updates.
//!
//! An update's states pass through the blocking pool's threads, and glibc's malloc gives each
//! thread its own arena and keeps what was freed there. Over a few large updates the server's
//! resident size crept up to three times its peak during any one of them (measured with
//! `cargo bench --bench e2e`). Two arenas and a trim after each finished update keep it near
//! that peak. Other platforms and allocators need neither: these are no-ops there.

/// Call once, before any thread starts.
///
/// Also fixes the size above which an allocation gets its own mapping at 1 MiB. glibc
/// otherwise raises that threshold (up to 32 MiB) each time such a block is freed, after
/// which request bodies and states land in the arenas and their pages stay resident after
/// they are freed: under a burst of large requests the resident size was twice the bytes the
/// requests ever held at once (`cargo bench --bench hostile`).
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets tunables; called before other threads allocate.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

/// Returns free heap pages to the OS. Takes a few milliseconds on a large heap, so it runs on
/// the blocking pool, after the reply.
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim is thread-safe and touches only free memory.
    unsafe {
        libc::malloc_trim(0);
    }
}
