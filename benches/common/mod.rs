//! Shared by the micro-benchmarks: a counting global allocator, so each benchmark can print how
//! many heap allocations one operation makes next to Criterion's timings.
//!
//! The counter is one relaxed atomic increment per allocation (a few ns, uncontended); it is
//! charged to every side alike.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        System.alloc_zeroed(layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        System.realloc(ptr, layout, new_size)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// True under `cargo bench` (Criterion's measuring mode). Under `cargo test --all-targets` the
/// bench binaries run each routine once as a smoke test, and the allocation census is skipped.
pub fn measuring() -> bool {
    std::env::args().any(|a| a == "--bench") && !std::env::args().any(|a| a == "--test")
}

/// Heap allocations (alloc + realloc) per operation: runs `f` `runs` times, each run doing
/// `ops_per_run` operations, and prints one line. Does nothing unless `measuring()`.
pub fn report_allocs(name: &str, runs: u64, ops_per_run: u64, mut f: impl FnMut()) {
    if !measuring() {
        return;
    }
    f(); // warm up: first-use allocations (lazy statics, buffer growth) are not per operation
    let before = ALLOCS.load(Relaxed);
    for _ in 0..runs {
        f();
    }
    let n = ALLOCS.load(Relaxed) - before;
    let per_op = n as f64 / (runs * ops_per_run) as f64;
    println!("allocs/op {name:<58} {per_op:>8.2}");
}
