//! Host allocator settings for long-running programs.
//!
//! CPU inference and training allocate and free tensors of megabytes to hundreds of megabytes
//! at every step. With glibc's defaults, every block above 32 MiB at most is its own `mmap`,
//! returned to the system when freed, and the top of the heap is trimmed as soon as a little
//! is free: the next step faults the same pages in again, and the kernel zeroes each one. A CPU
//! stage-2 training step spends about a quarter of its time there. [`keep_freed_memory`] makes
//! the allocator serve such blocks from its heap and keep freed memory for reuse.

/// Makes glibc's `malloc` serve blocks up to 2 GiB from its heap (`M_MMAP_THRESHOLD`) and keep
/// freed memory for reuse instead of trimming it back to the system (`M_TRIM_THRESHOLD`), both
/// at their maximum. Meant for programs, called once at start-up:
/// it changes the allocator of the whole process. The peak memory is unchanged; memory freed
/// after the peak stays with the process until it exits. Returns whether the setting was
/// applied (never on other C libraries, which have their own policies).
pub fn keep_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: `mallopt` only sets parameters of glibc's allocator; it is thread-safe
        // and has no memory-safety preconditions.
        #[allow(unsafe_code)]
        let applied = unsafe {
            [libc::M_MMAP_THRESHOLD, libc::M_TRIM_THRESHOLD]
                .map(|param| libc::mallopt(param, libc::c_int::MAX))
        };
        applied == [1, 1]
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn glibc_accepts_the_setting() {
        assert!(super::keep_freed_memory());
    }
}
