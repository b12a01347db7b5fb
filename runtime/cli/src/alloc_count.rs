//! A counting global allocator: how many heap allocations a stretch of code makes.
//!
//! The `clip-edge` binary and the allocation tests install it with
//! `#[global_allocator] static A: CountingAllocator = CountingAllocator;`. It forwards
//! to the underlying allocator and adds one relaxed atomic increment per allocation,
//! which is what `bench` reports as allocations per frame.
//!
//! The underlying allocator is the system's, except on musl targets (the static
//! aarch64 build), where it is dlmalloc: musl's `malloc` and `free` were about a third
//! of the instructions of loading a ViT-B/32-sized bundle under QEMU.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicU64, Ordering};

#[cfg(target_env = "musl")]
use musl_heap::Inner;
#[cfg(not(target_env = "musl"))]
use std::alloc::System as Inner;

/// dlmalloc behind a spin lock, for the static musl build.
///
/// `dlmalloc::GlobalDlmalloc` locks a pthread mutex around every call, and musl's
/// mutex cost more than dlmalloc itself (docs/perf.md#musl-heap). The allocator's
/// critical sections are short
/// and tract's worker threads seldom allocate at the same time, so a spin lock is
/// enough.
#[cfg(target_env = "musl")]
mod musl_heap {
    use std::alloc::{GlobalAlloc, Layout};
    use std::cell::UnsafeCell;
    use std::sync::atomic::{AtomicBool, Ordering};

    struct Heap {
        busy: AtomicBool,
        dlmalloc: UnsafeCell<dlmalloc::Dlmalloc>,
    }

    // SAFETY: `dlmalloc` is only reached through `with`, which holds `busy`.
    unsafe impl Sync for Heap {}

    static HEAP: Heap = Heap {
        busy: AtomicBool::new(false),
        dlmalloc: UnsafeCell::new(dlmalloc::Dlmalloc::new()),
    };

    /// Runs `f` on the heap with the lock held. `f` must not allocate or panic.
    fn with<R>(f: impl FnOnce(&mut dlmalloc::Dlmalloc) -> R) -> R {
        while HEAP
            .busy
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            std::hint::spin_loop();
        }
        // SAFETY: `busy` is held, so no other thread has a reference to the heap.
        let result = f(unsafe { &mut *HEAP.dlmalloc.get() });
        HEAP.busy.store(false, Ordering::Release);
        result
    }

    /// The process heap: dlmalloc, one spin lock.
    pub struct Inner;

    // SAFETY: dlmalloc upholds `GlobalAlloc`'s contract for sizes and alignments
    // passed through unchanged, and `with` serialises every call.
    unsafe impl GlobalAlloc for Inner {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            // SAFETY: the caller's layout, as `GlobalAlloc::alloc` requires.
            with(|h| unsafe { h.malloc(layout.size(), layout.align()) })
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            // SAFETY: as for `alloc`.
            with(|h| unsafe { h.calloc(layout.size(), layout.align()) })
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: `ptr` came from this heap with `layout`.
            with(|h| unsafe { h.free(ptr, layout.size(), layout.align()) })
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            // SAFETY: `ptr` came from this heap with `layout`.
            with(|h| unsafe { h.realloc(ptr, layout.size(), layout.align(), new_size) })
        }
    }
}

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

/// The system allocator (dlmalloc on musl), counting allocations (`alloc`,
/// `alloc_zeroed`, `realloc`).
pub struct CountingAllocator;

// SAFETY: every call is forwarded unchanged to `Inner`, which upholds the
// `GlobalAlloc` contract; the counters have no effect on the memory handed out.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: forwarded with the caller's layout.
        unsafe { Inner.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: forwarded with the caller's layout.
        unsafe { Inner.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `Inner` with this layout.
        unsafe { Inner.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(new_size as u64, Ordering::Relaxed);
        // SAFETY: `ptr` was allocated by `Inner` with `layout`.
        unsafe { Inner.realloc(ptr, layout, new_size) }
    }
}

/// Allocations and bytes requested so far, process-wide. Only counts when
/// [`CountingAllocator`] is the global allocator; otherwise stays at zero.
pub fn snapshot() -> (u64, u64) {
    (
        ALLOCATIONS.load(Ordering::Relaxed),
        BYTES.load(Ordering::Relaxed),
    )
}

/// True when [`CountingAllocator`] is installed (an allocation moved the counter).
pub fn is_counting() -> bool {
    let before = snapshot().0;
    let probe = std::hint::black_box(Box::new(0u64));
    drop(probe);
    snapshot().0 != before
}
