//! Keeps glibc's malloc from handing a training step's buffers back to the
//! kernel between steps.
//!
//! A LoRA training step allocates and frees the same few hundred
//! `[tokens, features]` buffers every step (activations, gradients, gemm
//! outputs). glibc serves requests above its dynamic mmap threshold with a
//! fresh `mmap` and returns them with `munmap`, and trims the heap top above
//! 128 KiB, so every step page-faults its buffers back in and the kernel
//! zeroes each page (`clear_page_erms`: 12–21% of a step's profile, about
//! 21k faults per step). [`retain_freed_memory`] raises the mmap threshold
//! to 32 MiB (above every per-step buffer of SmolLM2-135M, including the
//! 127 × 49,152 logit rows), turns trimming off and pads heap growth, so
//! freed buffers stay mapped and are reused. The process keeps its training
//! peak resident afterwards; the peak itself does not grow (measured in
//! docs/factory.md, "Element-wise and memory (session 5)").
//!
//! mimalloc and jemalloc were measured as global allocators instead and lost
//! (same document), so this is a `mallopt` call rather than an allocator.
//!
//! `mallopt` is a C function, so calling it is `unsafe`; this is the only
//! unsafe code outside the SIMD kernels (`kernels::qkernel`) and the AMX
//! instructions and permission request (`kernels::amx`).
#![allow(unsafe_code)]

use std::sync::Once;

/// Allocations below this size come from the heap (and are reused once
/// freed) instead of a private `mmap`.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 32 << 20;
/// Never give the heap top back to the kernel below this much free space.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_THRESHOLD: libc::c_int = libc::c_int::MAX;
/// Extra bytes asked for whenever the heap grows, so growth is rare.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TOP_PAD: libc::c_int = 256 << 20;

/// Tells glibc's malloc (once per process) to keep freed memory mapped for
/// reuse. A no-op on other C libraries. Safe to call from any thread, any
/// number of times.
pub(crate) fn retain_freed_memory() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        {
            let settings = [
                ("M_MMAP_THRESHOLD", libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD),
                ("M_TRIM_THRESHOLD", libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD),
                ("M_TOP_PAD", libc::M_TOP_PAD, TOP_PAD),
            ];
            for (name, param, value) in settings {
                // SAFETY: mallopt takes two ints, touches only malloc's own
                // state under its lock, and returns 0 on a rejected value;
                // it has no pointer arguments.
                let ok = unsafe { libc::mallopt(param, value) };
                if ok == 0 {
                    tracing::warn!(
                        target: "trib::model",
                        "glibc malloc refused {name} = {value}; training steps will page-fault more"
                    );
                }
            }
            tracing::debug!(
                target: "trib::model",
                mmap_threshold = MMAP_THRESHOLD,
                "glibc malloc keeps freed training buffers mapped"
            );
        }
    });
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    /// Minor page faults of this process so far (`/proc/self/stat` field 10).
    fn minor_faults() -> u64 {
        let s = std::fs::read_to_string("/proc/self/stat").expect("procfs");
        let rest = s.rsplit_once(')').expect("stat format").1;
        rest.split_whitespace()
            .nth(7)
            .and_then(|v| v.parse().ok())
            .expect("minflt field")
    }

    /// One round of a training step's allocation pattern in miniature:
    /// 40 buffers of 1 to 8 MiB (180 MiB), touched, then all freed, so the
    /// free space at the heap top far exceeds glibc's dynamic trim threshold
    /// (twice the largest freed mmap chunk). Returns the round's page faults.
    fn round() -> u64 {
        let before = minor_faults();
        let mut bufs: Vec<Vec<f32>> = Vec::new();
        for i in 0..40usize {
            bufs.push(vec![1f32; ((1 + i % 8) << 20) / 4]);
            std::hint::black_box(&bufs);
        }
        while let Some(b) = bufs.pop() {
            drop(std::hint::black_box(b));
        }
        minor_faults() - before
    }

    #[test]
    fn freed_buffers_are_reused_without_faulting_their_pages_again() {
        retain_freed_memory();
        retain_freed_memory(); // idempotent
        let fresh_pages = (180u64 << 20) / 4096;
        let mut last = 0;
        for _ in 0..4 {
            last = round();
        }
        // With glibc's defaults every round trims the heap and faults ~37k
        // of the 46k pages again (measured on a thread when written); kept
        // mapped, the fourth round takes ~0.
        assert!(
            last < fresh_pages / 4,
            "the fourth round faulted {last} pages of {fresh_pages}"
        );
    }
}
