//! How much freed memory the C allocator keeps, set once at each hop's start.
//!
//! glibc's malloc gives the top of a heap back to the kernel as soon as 128 KiB there are free
//! (`M_TRIM_THRESHOLD`), and only raises that bar after a large block was freed. A session
//! moving output queues ~64 KiB messages on their way from one stream to the next; whenever the
//! writer catches up, the queue empties, the free space at the top crosses the bar, the heap
//! shrinks, and the next messages fault their pages back in one by one. On a fresh
//! apiserver-proxy that was 114,000 page faults and 45% more CPU for the first GiB of stdout
//! than for the second. Keeping a few MiB of freed memory per heap, as Go's runtime keeps freed
//! spans until its background scavenger returns them, removes that.

/// Free memory a heap keeps at its top before giving it back to the kernel.
pub const TRIM_THRESHOLD: usize = 8 << 20;
/// Blocks from this size up get their own mapping (returned at once when freed, faulted in
/// anew each time); smaller ones come from the heaps. Setting the trim threshold stops glibc from
/// raising this one by itself (from 128 KiB, as large blocks are freed), so it is set too: above
/// a SPDY stream's 1 MiB buffer and its growth, half the trim threshold as glibc keeps them.
pub const MMAP_THRESHOLD: usize = 4 << 20;

/// Applies [`TRIM_THRESHOLD`] and [`MMAP_THRESHOLD`] to the process's allocator. True when
/// the allocator took them (glibc); elsewhere there is nothing to set and this returns false.
pub fn retain_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let set = |param, value: usize| {
            let value = libc::c_int::try_from(value).unwrap_or(libc::c_int::MAX);
            // SAFETY: mallopt only changes allocator parameters; any value is accepted or
            // refused (0) without touching memory.
            unsafe { libc::mallopt(param, value) == 1 }
        };
        set(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD) && set(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}
